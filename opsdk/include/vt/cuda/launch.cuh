// vt/cuda/launch.cuh — what every CUDA compute function of an op pack needs around a launch.
//
//   vt::cuda::stream(c)            the call's stream (ctx->stream; the runtime's current stream)
//   vt::cuda::launch(c, "what", kernel, grid, block, smem, args...)
//                                  kernel<<<grid, block, smem, stream(c)>>>(args...) + check_launch
//   vt::cuda::check(c, err, "what") / check_launch(c, "what")
//                                  a CUDA error becomes "[ns::op] CUDA error in what: ..." (RuntimeError)
//   vt::cuda::grid_for(n)          blocks of kThreads for a grid-stride loop over n items
//   vt::cuda::dispatch(types, dtype, op, f)
//                                  vt::dispatch, but the tag's type is the DEVICE type: vt::half ->
//                                  __half, vt::bfloat16 -> __nv_bfloat16 (vt/half.hpp is host-only)
//   vt::cuda::acc_t<T>             the type arithmetic on T is done in (float for the 16-bit floats)
//
// Include it from .cu files only (nvcc). Launches never synchronise; errors of the launch itself
// (bad configuration, an earlier asynchronous fault) surface at check_launch with the op's name.
#ifndef VT_CUDA_LAUNCH_CUH_
#define VT_CUDA_LAUNCH_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "vt/oppack.hpp"

namespace vt {
namespace cuda {

constexpr int kThreads = 256;       // threads per block of the SDK's launchers
constexpr int64_t kMaxBlocks = 8192; // grid-stride loops: enough blocks to fill any current GPU

inline cudaStream_t stream(const Call& c) { return static_cast<cudaStream_t>(c.ctx->stream); }

inline void check(const Call& c, cudaError_t e, const char* what) {
  if (e != cudaSuccess) c.fail(VT_ERR_RUNTIME, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}
// After a launch: a bad configuration or an earlier asynchronous fault surfaces here.
inline void check_launch(const Call& c, const char* what) { check(c, cudaGetLastError(), what); }

// Blocks for a grid-stride loop over n items with `threads` threads per block (at least 1).
inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return (unsigned int)(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

// kernel<<<grid, block, smem, stream(c)>>>(args...), then check_launch(c, what).
template <class... KArgs, class... Args>
void launch(const Call& c, const char* what, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
            Args&&... args) {
  kernel<<<grid, block, smem, stream(c)>>>(std::forward<Args>(args)...);
  check_launch(c, what);
}

// The device type of a vt dtype's storage type.
template <class T> struct device_type { using type = T; };
template <> struct device_type<half> { using type = __half; };
template <> struct device_type<bfloat16> { using type = __nv_bfloat16; };
template <class T> using device_t = typename device_type<T>::type;

template <class T>
constexpr bool is_reduced_float_v = std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;
// compute type: float for __half / __nv_bfloat16, T otherwise
template <class T> using acc_t = typename std::conditional<is_reduced_float_v<T>, float, T>::type;

// vt::cuda::dispatch(vt::kFloatingTypes, t->dtype, c.op, [&](auto tag) {
//   using T = typename decltype(tag)::type;   // float, double, __half, __nv_bfloat16
//   ...
// });
template <class... Ts, class F>
void dispatch(types<Ts...> list, vt_dtype dtype, const char* op, F&& f) {
  vt::dispatch(list, dtype, op, [&](auto tag) { f(type_tag<device_t<typename decltype(tag)::type>>{}); });
}

// A tensor argument must live on a CUDA device (for kernels registered on VT_CUDA this holds; a
// helper for code that receives tensors some other way).
inline void check_on_cuda(const Call& c, const vt_tensor* t, const char* name) {
  if (t->device.type != VT_CUDA)
    c.fail(VT_ERR_VALUE, "%s is on %s, expected cuda (CUDA kernel)", name, device_name(t->device));
}

}  // namespace cuda
}  // namespace vt

#endif  // VT_CUDA_LAUNCH_CUH_
