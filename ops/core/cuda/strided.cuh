// ops/core/cuda/strided.cuh — what the core pack's CUDA kernels share: launch checks, the stream,
// and per-thread offsets into operands described by a host-built vt::StridedLoop (vt/loops.hpp).
//
// The loop (sizes, byte strides, base pointers; at most kMaxDims dims, ~0.5 KB) is built on the
// host exactly as for CPU kernels — broadcasting, size-1 dims dropped, dims merged — and passed
// to the kernel by value, so device code only turns a linear index into per-operand addresses.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "vt/loops.hpp"

namespace vt_cuda {

constexpr int kThreads = 256;

// grid size for a grid-stride loop over n elements
inline unsigned int blocks_for(int64_t n) {
  return (unsigned int)std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 16));
}

inline cudaStream_t stream_of(const vt::Call& c) { return static_cast<cudaStream_t>(c.ctx->stream); }

// After every launch: a bad configuration or an earlier asynchronous fault surfaces here, with
// the op's name, instead of at some later synchronisation.
inline void check_launch(const vt::Call& c, const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) c.fail(VT_ERR_RUNTIME, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}
inline void check_cuda(const vt::Call& c, cudaError_t e, const char* what) {
  if (e != cudaSuccess) c.fail(VT_ERR_RUNTIME, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

inline void check_on_cuda(const vt::Call& c, const vt_tensor* t, const char* name) {
  if (t->device.type != VT_CUDA)
    c.fail(VT_ERR_VALUE, "%s is on %s, expected cuda (CUDA kernel)", name, vt::device_name(t->device));
}

// addresses of linear element i (dim 0 of the loop fastest) for each operand
template <int N>
__device__ __forceinline__ void element_ptrs(const vt::StridedLoop<N>& L, int64_t i, char* (&p)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) p[k] = L.data[k];
  for (int d = 0; d < L.ndim; ++d) {
    const int64_t idx = i % L.sizes[d];
    i /= L.sizes[d];
#pragma unroll
    for (int k = 0; k < N; ++k) p[k] += idx * L.strides[d][k];
  }
}

}  // namespace vt_cuda
