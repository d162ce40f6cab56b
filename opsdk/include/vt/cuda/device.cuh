// vt/cuda/device.cuh — facts about the call's GPU that kernels size themselves by.
//
//   vt::cuda::sm_count(c)   the multiprocessor count of the call's device, asked once per device
//                           (persistent schedulers size their grid by it); RuntimeError if unreadable
#ifndef VT_CUDA_DEVICE_CUH_
#define VT_CUDA_DEVICE_CUH_

#include <mutex>

#include "vt/cuda/launch.cuh"

namespace vt {
namespace cuda {

inline int sm_count(const vt::Call& c) {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static int count[kMaxDevices];
  const int d = c.ctx->device.index;
  if (d < 0 || d >= kMaxDevices) c.fail(VT_ERR_RUNTIME, "cuda device index %d out of range", d);
  std::call_once(once[d], [&] {
    if (cudaDeviceGetAttribute(&count[d], cudaDevAttrMultiProcessorCount, d) != cudaSuccess) count[d] = 0;
  });
  if (count[d] <= 0) c.fail(VT_ERR_RUNTIME, "could not read the multiprocessor count of cuda:%d", d);
  return count[d];
}

}  // namespace cuda
}  // namespace vt

#endif  // VT_CUDA_DEVICE_CUH_
