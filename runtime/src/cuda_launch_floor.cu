// cuda_launch_floor.cu — the cost of launching an empty kernel from C++, the floor under any eager
// CUDA op (bench/bench_cuda_runtime.py reports it next to the eager add it limits).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>

namespace vt {
namespace cu {

namespace {
__global__ void empty_kernel() {}
}  // namespace

// Host time per launch of n back-to-back empty kernels on `s` (microseconds), then a sync.
// via_driver: the driver's cuLaunchKernel on the kernel's CUfunction instead of the runtime's
// <<<>>> (cudaLaunchKernel), to see what the runtime layer adds to every launch.
cudaError_t launch_floor_us(cudaStream_t s, int32_t n, bool via_driver, double* us) {
  empty_kernel<<<1, 32, 0, s>>>();  // the first launch loads the module
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return e;
  PFN_cuLaunchKernel_v4000 launch = nullptr;
  cudaFunction_t f = nullptr;
  if (via_driver) {
    cudaDriverEntryPointQueryResult q;
    e = cudaGetDriverEntryPointByVersion("cuLaunchKernel", reinterpret_cast<void**>(&launch), 12000,
                                         cudaEnableDefault, &q);
    if (e == cudaSuccess && q != cudaDriverEntryPointSuccess) e = cudaErrorSymbolNotFound;
    if (e == cudaSuccess) e = cudaGetFuncBySymbol(&f, reinterpret_cast<const void*>(empty_kernel));
    if (e != cudaSuccess) return e;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (via_driver) {
    for (int32_t i = 0; i < n; ++i)
      if (launch(reinterpret_cast<CUfunction>(f), 1, 1, 1, 32, 1, 1, 0, reinterpret_cast<CUstream>(s), nullptr,
                 nullptr) != CUDA_SUCCESS)
        return cudaErrorLaunchFailure;
  } else {
    for (int32_t i = 0; i < n; ++i) empty_kernel<<<1, 32, 0, s>>>();
  }
  const auto t1 = std::chrono::steady_clock::now();
  *us = std::chrono::duration<double, std::micro>(t1 - t0).count() / (n > 0 ? n : 1);
  e = cudaGetLastError();
  return e != cudaSuccess ? e : cudaStreamSynchronize(s);
}

}  // namespace cu
}  // namespace vt
