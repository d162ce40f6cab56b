// dropout_mask.cu — the CUDA compute of attention::dropout_mask: the bool keep mask of the dropout
// rule of attn.hpp (and core::dropout's) at a given Philox seed and offset, for the composed
// backward. One thread per Philox group writes its 4 elements (one 4-byte store when aligned).
// The meta step is in pack.cpp; the cpu compute in composed.cpp. Graph-safe (no host work beyond
// the launch), though the seed and offset are launch arguments.
#include <cmath>

#include "vt/cuda/launch.cuh"
#include "vt/philox.h"

namespace {

__global__ void __launch_bounds__(vt::cuda::kThreads)
    dropout_mask_kernel(bool* out, int64_t n, uint64_t seed, uint64_t offset, uint32_t thr) {
  const int64_t groups = (n + 3) / 4, step = (int64_t)gridDim.x * blockDim.x;
  const bool vec = ((uintptr_t)out & 3u) == 0;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)g);
    if (vec && g * 4 + 4 <= n) {
      uchar4 k;
      k.x = (r.x[0] >> 8) >= thr;
      k.y = (r.x[1] >> 8) >= thr;
      k.z = (r.x[2] >> 8) >= thr;
      k.w = (r.x[3] >> 8) >= thr;
      *reinterpret_cast<uchar4*>(out + g * 4) = k;
    } else {
      for (int64_t w = 0; w < 4 && g * 4 + w < n; ++w) out[g * 4 + w] = (r.x[w] >> 8) >= thr;
    }
  }
}

}  // namespace

VT_COMPUTE(dropout_mask_cuda, "attention::dropout_mask") {
  const vt_tensor* out = c.out(0);
  const double p = c.arg(1, "p").float_();
  const uint64_t seed = (uint64_t)c.arg(2, "seed").int_(), offset = (uint64_t)c.arg(3, "offset").int_();
  const int64_t n = out->numel;
  if (n == 0) return;
  const uint32_t thr = (uint32_t)std::ceil(p * 16777216.0);  // attn::dropout_threshold
  vt::cuda::launch(c, "dropout_mask_kernel", dropout_mask_kernel, vt::cuda::grid_for((n + 3) / 4),
                   vt::cuda::kThreads, 0, vt::data<bool>(out), n, seed, offset, thr);
}
