// dropout_mask.cu — the CUDA computes of attention::dropout_mask and attention::dropout_draw: the
// bool keep mask of the dropout rule of attn.hpp (and core::dropout's). One thread per Philox group
// writes its 4 elements (one 4-byte store when aligned). Where the (seed, offset) comes from:
//   dropout_mask  the arguments, or the int64 [seed, offset] tensor rng read on the device
//   dropout_draw  a fresh reservation (host->philox_args: under CUDA-graph capture the values live
//                 in device memory each replay refreshes); block 0 records them into rng
// Graph-safe either way: nothing is read on the host. The meta steps are in pack.cpp; the cpu
// computes in composed.cpp.
#include <cmath>

#include "vt/cuda/launch.cuh"
#include "vt/philox.h"

namespace {

struct FromValues {  // dropout_mask(seed, offset)
  uint64_t seed, offset;
  __device__ vt_philox_seed_offset get() const { return {seed, offset}; }
};
struct FromTensor {  // dropout_mask(..., rng): the forward's record
  const int64_t* rng;
  __device__ vt_philox_seed_offset get() const { return {(uint64_t)rng[0], (uint64_t)rng[1]}; }
};
struct FromDraw {  // dropout_draw: this launch's reservation, recorded into rng
  vt_philox_args args;
  int64_t* rng;
  __device__ vt_philox_seed_offset get() const {
    const vt_philox_seed_offset so = vt_philox_unpack(args);
    if (blockIdx.x == 0 && threadIdx.x == 0) rng[0] = (int64_t)so.seed, rng[1] = (int64_t)so.offset;
    return so;
  }
};

template <class Source>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    dropout_mask_kernel(bool* out, int64_t n, Source src, uint32_t thr) {
  const vt_philox_seed_offset so = src.get();
  const int64_t groups = (n + 3) / 4, step = (int64_t)gridDim.x * blockDim.x;
  const bool vec = ((uintptr_t)out & 3u) == 0;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    const vt::philox::Philox4x32 r = vt::philox::philox_group(so.seed, so.offset + (uint64_t)g);
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

uint32_t threshold(double p) { return (uint32_t)std::ceil(p * 16777216.0); }  // attn::dropout_threshold

template <class Source>
void launch_mask(const vt::Call& c, const vt_tensor* out, const Source& src, double p) {
  const int64_t n = out->numel;
  vt::cuda::launch(c, "dropout_mask_kernel", dropout_mask_kernel<Source>, vt::cuda::grid_for((n + 3) / 4),
                   vt::cuda::kThreads, 0, vt::data<bool>(out), n, src, threshold(p));
}

}  // namespace

VT_COMPUTE(dropout_mask_cuda, "attention::dropout_mask") {
  const vt_tensor* out = c.out(0);
  const double p = c.arg(1, "p").float_();
  const vt_tensor* rng = c.arg(5, "rng").tensor_or_null();
  if (out->numel == 0) return;
  if (rng) launch_mask(c, out, FromTensor{vt::data<const int64_t>(rng)}, p);
  else launch_mask(c, out, FromValues{(uint64_t)c.arg(2, "seed").int_(), (uint64_t)c.arg(3, "offset").int_()}, p);
}

VT_COMPUTE(dropout_draw_cuda, "attention::dropout_draw") {
  const vt_tensor* out = c.out(0);
  vt_tensor* rng = c.arg(2, "rng").tensor();
  const int64_t n = out->numel;
  vt_philox_args args;
  c.host->philox_args(c.ctx->device, (uint64_t)((n + 3) / 4), &args);  // core::dropout's count
  launch_mask(c, out, FromDraw{args, vt::data<int64_t>(rng)}, c.arg(1, "p").float_());
}
