// cuda_internal.hpp — what the runtime's CUDA files (cuda*.cpp) share and nothing else sees.
// Only included where VT_WITH_CUDA is defined.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "internal.hpp"

namespace vt {
namespace cu {

constexpr int kMaxDevices = 64;  // per-thread arrays are this long; more GPUs than this are refused

int device_count();  // 0 without a GPU (cuda_available() has run)

// The calling thread's current device, from a thread-local cache (no CUDA call when known).
int current_device();

// Sets the device for a scope and puts the previous one back; a no-op when it is already current.
struct DeviceGuard {
  int prev;
  explicit DeviceGuard(int index) : prev(cuda_exchange_device(index)) {}
  ~DeviceGuard() {
    if (prev >= 0) cuda_exchange_device(prev);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

// Lets the calling thread make calls a capture in progress would otherwise forbid (cudaMalloc of a
// new segment for a graph's private pool): relaxed capture mode for a scope.
struct RelaxedCaptureGuard {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  RelaxedCaptureGuard() { cudaThreadExchangeStreamCaptureMode(&mode); }
  ~RelaxedCaptureGuard() { cudaThreadExchangeStreamCaptureMode(&mode); }
};

// Sets the runtime error from a CUDA error (and clears CUDA's sticky last error).
vt_status fail(cudaError_t e, const char* what, int device);
vt_status not_available();  // "CUDA is not available: <why>"
bool check_device(int index, const char* what);  // sets an error when out of range

// ---- capture bookkeeping (cuda_graph.cpp) ------------------------------------------------------
// Number of captures in progress on a device, and on this thread: one relaxed load each, so the
// hot paths (every allocation, cuda_capturing) pay nothing when no graph is being captured.
int captures_on(int device);
int captures_on_this_thread();
// A host sync from this thread would break a capture: names what is being captured, else null.
const char* sync_forbidden(int device);

// ---- the caching allocator (cuda_allocator.cpp) ----------------------------------------------
// Graph-private pools: allocations on streams that belong to capture `capture_id` on `device` come
// from pool `pool` until end_allocate_to_pool; release_pool drops a graph's reference.
void begin_allocate_to_pool(int device, uint64_t pool, unsigned long long capture_id);
void end_allocate_to_pool(int device, unsigned long long capture_id);
void release_pool(int device, uint64_t pool);
bool allocator_is_async();

// ---- pinned host memory (cuda_host_alloc.cpp) ------------------------------------------------
bool host_is_pinned(const void* p);
// The pinned block holding `p` is in use by work queued on `stream` (of `device`) now (a copy).
void host_record_stream(const void* p, cudaStream_t stream, int device);

// ---- the fill kernel of graph-safe RNG (cuda_rng_kernel.cu) ------------------------------------
cudaError_t launch_philox_fill(uint64_t* dst, uint64_t seed, uint64_t offset, cudaStream_t s);
cudaError_t launch_floor_us(cudaStream_t s, int32_t n, bool via_driver, double* us);  // cuda_launch_floor.cu

std::string fmt_bytes(int64_t n);  // "1.50 GiB"

// An event from `pool`, or a new one when it is empty (timing off: cheapest to record and
// query). Allocators reuse events because creating them concurrently is slow. NULL when CUDA
// refuses (the caller then synchronises instead).
inline cudaEvent_t take_event(std::vector<cudaEvent_t>& pool) {
  if (!pool.empty()) {
    cudaEvent_t e = pool.back();
    pool.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return e;
}

}  // namespace cu
}  // namespace vt
