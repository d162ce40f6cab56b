// cuda.cpp — the runtime's CUDA glue: device count, host<->device copies, the current stream and
// a stream-ordered device allocator (cudaMallocAsync pools). Compiled only with VT_WITH_CUDA;
// without it every entry point reports that CUDA is not available.
#include "internal.hpp"

#ifdef VT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace vt {

#ifdef VT_WITH_CUDA

namespace {
int g_device_count = -1;

void* cuda_alloc(void*, size_t nbytes, int32_t index, void* stream) {
  if (nbytes == 0) nbytes = 1;
  cudaSetDevice(index);
  void* p = nullptr;
  cudaError_t e = cudaMallocAsync(&p, nbytes, static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) {
    set_error(VT_ERR_MEMORY, "cuda:%d: cannot allocate %zu bytes: %s", index, nbytes,
              cudaGetErrorString(e));
    return nullptr;
  }
  return p;
}

void cuda_free(void*, void* ptr, size_t, int32_t index, void* stream) {
  cudaSetDevice(index);
  cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream));
}
}  // namespace

bool cuda_available() {
  if (g_device_count < 0) {
    int n = 0;
    g_device_count = cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
    cudaGetLastError();  // clear the "no device" error so it does not leak into later calls
    if (g_device_count > 0) install_cuda_allocator();
  }
  return g_device_count > 0;
}

void install_cuda_allocator() {
  vtrt_allocator a{cuda_alloc, cuda_free, nullptr};
  vtrt_set_allocator(VT_CUDA, &a);
}

void* cuda_current_stream(vt_device) { return nullptr; }  // the legacy default stream for now

vt_status cuda_memcpy(void* dst, vt_device dd, const void* src, vt_device sd, size_t n) {
  if (!cuda_available()) return set_error(VT_ERR_NOT_IMPL, "copy: CUDA is not available");
  cudaMemcpyKind kind = dd.type == VT_CUDA ? (sd.type == VT_CUDA ? cudaMemcpyDeviceToDevice
                                                                  : cudaMemcpyHostToDevice)
                                           : cudaMemcpyDeviceToHost;
  cudaSetDevice(dd.type == VT_CUDA ? dd.index : sd.index);
  // Synchronous on purpose: the caller reads or frees host memory right after (.numpy(), .to()).
  cudaError_t e = cudaMemcpy(dst, src, n, kind);
  if (e != cudaSuccess)
    return set_error(VT_ERR_RUNTIME, "copy %s -> %s of %zu bytes failed: %s",
                     device_name(sd).c_str(), device_name(dd).c_str(), n, cudaGetErrorString(e));
  return VT_OK;
}

#else

bool cuda_available() { return false; }
void install_cuda_allocator() {}
void* cuda_current_stream(vt_device) { return nullptr; }
vt_status cuda_memcpy(void*, vt_device, const void*, vt_device, size_t) {
  return set_error(VT_ERR_NOT_IMPL, "this vibetensor was built without CUDA");
}

#endif

}  // namespace vt

extern "C" {
int32_t vtrt_cuda_device_count(void) {
#ifdef VT_WITH_CUDA
  return vt::cuda_available() ? vt::g_device_count : 0;
#else
  return 0;
#endif
}

vt_status vtrt_cuda_synchronize(int32_t index) {
#ifdef VT_WITH_CUDA
  if (!vt::cuda_available()) return vt::set_error(VT_ERR_NOT_IMPL, "CUDA is not available");
  cudaSetDevice(index);
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess)
    return vt::set_error(VT_ERR_RUNTIME, "cuda:%d synchronize: %s", index, cudaGetErrorString(e));
  return VT_OK;
#else
  (void)index;
  return vt::set_error(VT_ERR_NOT_IMPL, "this vibetensor was built without CUDA");
#endif
}
}
