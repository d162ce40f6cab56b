// vt/cuda/reduce.cuh — warp and block reductions for CUDA kernels of op packs.
//
//   vt::cuda::Sum, vt::cuda::Max, vt::cuda::Min       combine functors (Max/Min propagate NaN, like torch)
//   vt::cuda::warp_reduce(v, op)   all 32 lanes get op over the warp's values (__shfl_xor_sync)
//   vt::cuda::warp_sum(v) / warp_max(v)
//   vt::cuda::block_reduce(v, op, identity)
//                                  every thread of the block gets op over the block's values; any
//                                  blockDim.x up to 1024 (1-d blocks); all threads must call it
//   vt::cuda::block_sum(v) / block_max(v, lowest)
//
// Reduce in a 32- or 64-bit type (float, double, int, int64_t): accumulate __half/__nv_bfloat16
// inputs in float (vt::cuda::acc_t). A typical row reduction, one block per row:
//
//   __global__ void row_sum(const float* x, float* out, int64_t cols) {
//     const float* row = x + blockIdx.x * cols;
//     float s = 0.f;
//     for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += row[j];
//     s = vt::cuda::block_sum(s);
//     if (threadIdx.x == 0) out[blockIdx.x] = s;
//   }
#ifndef VT_CUDA_REDUCE_CUH_
#define VT_CUDA_REDUCE_CUH_

#include "vt/cuda/launch.cuh"

namespace vt {
namespace cuda {

struct Sum {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (a > b || a != a) ? a : b; }
};
struct Min {
  template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return (a < b || a != a) ? a : b; }
};

template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
template <class T> __device__ __forceinline__ T warp_sum(T v) { return warp_reduce(v, Sum{}); }
template <class T> __device__ __forceinline__ T warp_max(T v) { return warp_reduce(v, Max{}); }

// Two shuffle rounds through 32 slots of shared memory. Safe to call repeatedly in one kernel.
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
  __shared__ alignas(16) unsigned char raw[32 * sizeof(T)];  // raw storage: T may not be default-constructible
  T* slots = reinterpret_cast<T*>(raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // an earlier call may still be reading the slots
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  v = lane < nwarps ? slots[lane] : identity;
  return warp_reduce(v, op);  // every warp reduces the slots, so every thread has the result
}
template <class T> __device__ __forceinline__ T block_sum(T v) { return block_reduce(v, Sum{}, T(0)); }
template <class T> __device__ __forceinline__ T block_max(T v, T lowest) { return block_reduce(v, Max{}, lowest); }

}  // namespace cuda
}  // namespace vt

#endif  // VT_CUDA_REDUCE_CUH_
