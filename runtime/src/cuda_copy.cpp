// cuda_copy.cpp — copies between host and device memory, and between devices, on the calling
// thread's current stream of the CUDA side (so they are ordered with the kernels around them).
//
// Host <-> device: with non_blocking and a pinned host buffer the copy is only queued (the pinned
// block records the stream so it is not handed out again before the copy ran); otherwise the call
// waits for the stream, because the caller may read or free the host memory right after. A wait
// is a host sync, which a CUDA graph capture forbids: that is refused with a clear error before
// CUDA would invalidate the capture. Device <-> device never waits for the host; across devices
// both devices' current streams are joined around the copy (events), as torch does.

#include "cuda_internal.hpp"

namespace vt {

namespace {

vt_status copy_between_devices(void* dst, int dd, const void* src, int sd, size_t n) {
  cudaStream_t ds = static_cast<cudaStream_t>(cuda_current_stream(vt_device{VT_CUDA, dd}));
  if (dd == sd) {
    cu::DeviceGuard g(dd);
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, ds);
    return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaMemcpyAsync (device to device)", dd);
  }
  cudaStream_t ss = static_cast<cudaStream_t>(cuda_current_stream(vt_device{VT_CUDA, sd}));
  cudaEvent_t src_ready = nullptr, copied = nullptr;
  cudaError_t e;
  {
    cu::DeviceGuard g(sd);
    e = cudaEventCreateWithFlags(&src_ready, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(src_ready, ss);
  }
  if (e == cudaSuccess) {
    cu::DeviceGuard g(dd);
    e = cudaStreamWaitEvent(ds, src_ready, 0);
    if (e == cudaSuccess) e = cudaMemcpyPeerAsync(dst, dd, src, sd, n, ds);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&copied, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(copied, ds);
  }
  if (e == cudaSuccess) {
    cu::DeviceGuard g(sd);  // the source is not reused on its stream before the copy read it
    e = cudaStreamWaitEvent(ss, copied, 0);
  }
  if (src_ready) cudaEventDestroy(src_ready);  // released by CUDA once complete
  if (copied) cudaEventDestroy(copied);
  return e == cudaSuccess ? VT_OK : cu::fail(e, "copy between devices", dd);
}

}  // namespace

vt_status cuda_copy(void* dst, vt_device dd, const void* src, vt_device sd, size_t n,
                    bool non_blocking) {
  if (!cuda_available()) return cu::not_available();
  if (dd.type == VT_CUDA && sd.type == VT_CUDA) {
    if (!cu::check_device(dd.index, "copy") || !cu::check_device(sd.index, "copy"))
      return vtrt_last_status();
    return copy_between_devices(dst, dd.index, src, sd.index, n);
  }
  const bool h2d = dd.type == VT_CUDA;
  const int dev = h2d ? dd.index : sd.index;
  if (!cu::check_device(dev, "copy")) return vtrt_last_status();
  const void* host = h2d ? src : dst;
  cudaStream_t s = static_cast<cudaStream_t>(cuda_current_stream(vt_device{VT_CUDA, dev}));
  const bool async = non_blocking && cu::host_is_pinned(host);
  if (!async) {
    if (const char* why = cu::sync_forbidden(dev))
      return set_error(VT_ERR_RUNTIME,
                       "copy %s -> %s waits for the GPU, which is not allowed while %s; keep host "
                       "copies, .item(), .tolist() and printing outside the captured region (a "
                       "pinned tensor with non_blocking=True is captured as a plain copy)",
                       device_name(sd).c_str(), device_name(dd).c_str(), why);
  }
  cu::DeviceGuard g(dev);
  cudaError_t e = cudaMemcpyAsync(dst, src, n, h2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) {
    if (async) {
      if (cu::captures_on_this_thread() == 0) cu::host_record_stream(host, s, dev);
    } else {
      e = cudaStreamSynchronize(s);
    }
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    return set_error(VT_ERR_RUNTIME, "copy %s -> %s of %zu bytes failed: %s",
                     device_name(sd).c_str(), device_name(dd).c_str(), n, cudaGetErrorString(e));
  }
  return VT_OK;
}

}  // namespace vt
