// cuda.cpp — devices, the device guard, streams and events (torch.cuda's model).
//
// Current stream: per thread and per device; by default the device's *legacy* default stream
// (NULL), as in PyTorch. It orders itself with every blocking stream, so work that other
// libraries (torch, cupy) queue on their default stream and exchange with us by DLPack is ordered
// with ours without events; a per-thread default stream would give concurrency between threads
// but lose that. Streams users create come from a per-device pool (32 per priority, round-robin,
// never destroyed, created non-blocking): a stream handle stays valid for as long as a cached
// memory block may name it, and creating streams per `Stream()` call would cost a driver call.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "cuda_internal.hpp"

namespace vt {
namespace cu {

namespace {
int g_device_count = 0;
char g_unavailable[256] = "CUDA is not available";
std::once_flag g_init_once;

thread_local int t_device = -1;  // this thread's current device; -1: ask CUDA once
thread_local void* t_streams[kMaxDevices];  // current stream per device (NULL: legacy default)

constexpr int kPoolStreams = 32;
struct StreamPool {
  std::once_flag once;
  cudaStream_t low[kPoolStreams], high[kPoolStreams];
  std::atomic<uint32_t> next_low{0}, next_high{0};
};
StreamPool g_pools[kMaxDevices];
int g_prio_least = 0, g_prio_greatest = 0;

void init() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    std::snprintf(g_unavailable, sizeof g_unavailable,
                  "CUDA is not available: no CUDA device was found (cudaGetDeviceCount: %s)",
                  e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
    cudaGetLastError();  // clear the "no device" error so it does not leak into later calls
    g_device_count = 0;
    return;
  }
  g_device_count = n < kMaxDevices ? n : kMaxDevices;
  cudaDeviceGetStreamPriorityRange(&g_prio_least, &g_prio_greatest);
  install_cuda_allocator();
}
}  // namespace

int device_count() {
  cuda_available();
  return g_device_count;
}

vt_status not_available() {
  cuda_available();
  return set_error(VT_ERR_RUNTIME, "%s", g_unavailable);
}

bool check_device(int index, const char* what) {
  if (!cuda_available()) {
    not_available();
    return false;
  }
  if (index < 0 || index >= g_device_count) {
    set_error(VT_ERR_VALUE, "%s: invalid CUDA device index %d (this machine has %d)", what, index,
              g_device_count);
    return false;
  }
  return true;
}

vt_status fail(cudaError_t e, const char* what, int device) {
  cudaGetLastError();
  vt_status st = e == cudaErrorMemoryAllocation ? VT_ERR_MEMORY : VT_ERR_RUNTIME;
  return set_error(st, "cuda:%d: %s failed: %s (%s)", device, what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

int current_device() {
  if (t_device < 0) {
    int d = 0;
    if (cudaGetDevice(&d) != cudaSuccess) {
      cudaGetLastError();
      d = 0;
    }
    t_device = d;
  }
  return t_device;
}

std::string fmt_bytes(int64_t n) {
  char buf[64];
  double v = static_cast<double>(n);
  if (n >= (int64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", v / (1 << 30));
  else if (n >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", v / (1 << 20));
  else if (n >= (1 << 10)) std::snprintf(buf, sizeof buf, "%.2f KiB", v / (1 << 10));
  else std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(n));
  return buf;
}

namespace {
StreamPool& pool_of(int device) {
  StreamPool& p = g_pools[device];
  std::call_once(p.once, [&] {
    DeviceGuard g(device);
    for (int i = 0; i < kPoolStreams; ++i) {
      cudaStreamCreateWithPriority(&p.low[i], cudaStreamNonBlocking, g_prio_least);
      cudaStreamCreateWithPriority(&p.high[i], cudaStreamNonBlocking, g_prio_greatest);
    }
  });
  return p;
}
}  // namespace

}  // namespace cu

// ---- the glue internal.hpp declares -----------------------------------------------------------

bool cuda_available() {
  std::call_once(cu::g_init_once, cu::init);
  return cu::g_device_count > 0;
}

// Cheap when unchanged: a thread-local compare, no driver call. Code that calls cudaSetDevice
// behind our back (another library on the same thread) is seen at the next change through us.
int32_t cuda_exchange_device(int32_t index) {
  if (!cuda_available()) return -1;
  int prev = cu::current_device();
  if (index != prev && index >= 0 && index < cu::g_device_count) {
    cudaSetDevice(index);
    cu::t_device = index;
  }
  return prev;
}

void* cuda_current_stream(vt_device device) {
  int i = device.index;
  return i >= 0 && i < cu::kMaxDevices ? cu::t_streams[i] : nullptr;
}

}  // namespace vt

using namespace vt;

extern "C" {

int32_t vtrt_cuda_device_count(void) { return cu::device_count(); }

const char* vtrt_cuda_unavailable_reason(void) {
  cuda_available();
  return cu::g_device_count > 0 ? "" : cu::g_unavailable;
}

int32_t vtrt_cuda_is_built(void) { return 1; }

vt_status vtrt_cuda_synchronize(int32_t index) {
  if (!cu::check_device(index, "synchronize")) return vtrt_last_status();
  if (const char* why = cu::sync_forbidden(index))
    return set_error(VT_ERR_RUNTIME, "synchronize(): cannot wait for cuda:%d while %s", index, why);
  cu::DeviceGuard g(index);
  cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaDeviceSynchronize", index);
}

vt_status vtrt_cuda_set_device(int32_t index) {
  if (!cu::check_device(index, "set_device")) return vtrt_last_status();
  cuda_exchange_device(index);
  return VT_OK;
}

int32_t vtrt_cuda_current_device(void) { return cuda_available() ? cu::current_device() : -1; }

int32_t vtrt_cuda_exchange_device(int32_t index) {
  if (!cuda_available()) return -1;
  if (index < 0 || index >= cu::g_device_count) return cu::current_device();
  return cuda_exchange_device(index);
}

vt_status vtrt_cuda_get_device_properties(int32_t index, vtrt_cuda_device_props* out) {
  if (!cu::check_device(index, "get_device_properties")) return vtrt_last_status();
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, index);
  if (e != cudaSuccess) return cu::fail(e, "cudaGetDeviceProperties", index);
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", p.name);
  out->major = p.major;
  out->minor = p.minor;
  out->total_memory = static_cast<int64_t>(p.totalGlobalMem);
  out->multi_processor_count = p.multiProcessorCount;
  return VT_OK;
}

vt_status vtrt_cuda_mem_get_info(int32_t index, int64_t* free_bytes, int64_t* total_bytes) {
  if (!cu::check_device(index, "mem_get_info")) return vtrt_last_status();
  cu::DeviceGuard g(index);
  size_t f = 0, t = 0;
  cudaError_t e = cudaMemGetInfo(&f, &t);
  if (e != cudaSuccess) return cu::fail(e, "cudaMemGetInfo", index);
  *free_bytes = static_cast<int64_t>(f);
  *total_bytes = static_cast<int64_t>(t);
  return VT_OK;
}

vt_status vtrt_cuda_can_device_access_peer(int32_t a, int32_t b, int32_t* out) {
  if (!cu::check_device(a, "can_device_access_peer") ||
      !cu::check_device(b, "can_device_access_peer"))
    return vtrt_last_status();
  int can = 0;
  cudaError_t e = cudaDeviceCanAccessPeer(&can, a, b);
  if (e != cudaSuccess) return cu::fail(e, "cudaDeviceCanAccessPeer", a);
  *out = can;
  return VT_OK;
}

// ---- streams -------------------------------------------------------------------------------------

vt_status vtrt_cuda_stream_from_pool(int32_t device, int32_t high_priority, void** out) {
  if (!cu::check_device(device, "Stream()")) return vtrt_last_status();
  cu::StreamPool& p = cu::pool_of(device);
  if (high_priority) {
    *out = p.high[p.next_high.fetch_add(1, std::memory_order_relaxed) % cu::kPoolStreams];
  } else {
    *out = p.low[p.next_low.fetch_add(1, std::memory_order_relaxed) % cu::kPoolStreams];
  }
  if (!*out) return set_error(VT_ERR_RUNTIME, "cuda:%d: the stream pool could not be created", device);
  return VT_OK;
}

void* vtrt_cuda_current_stream(int32_t device) {
  return device >= 0 && device < cu::kMaxDevices ? cu::t_streams[device] : nullptr;
}

vt_status vtrt_cuda_set_current_stream(int32_t device, void* stream) {
  if (!cu::check_device(device, "set_stream")) return vtrt_last_status();
  cu::t_streams[device] = stream;
  return VT_OK;
}

// `with vt.cuda.stream(s)`: makes `stream` the device's current stream, returns the previous one
// (with vtrt_cuda_exchange_device, two calls in and two out, no allocation).
void* vtrt_cuda_exchange_stream(int32_t device, void* stream) {
  if (device < 0 || device >= cu::kMaxDevices) return nullptr;
  void* prev = cu::t_streams[device];
  cu::t_streams[device] = stream;
  return prev;
}

vt_status vtrt_cuda_stream_synchronize(int32_t device, void* stream) {
  if (!cu::check_device(device, "Stream.synchronize")) return vtrt_last_status();
  if (const char* why = cu::sync_forbidden(device))
    return set_error(VT_ERR_RUNTIME, "Stream.synchronize(): cannot wait for a stream while %s", why);
  cu::DeviceGuard g(device);
  cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaStreamSynchronize", device);
}

// Host microseconds per launch of an empty kernel on the device's current stream (benchmarks);
// via_driver: through the driver's cuLaunchKernel rather than the runtime's launch.
vt_status vtrt_cuda_launch_floor(int32_t device, int32_t n, int32_t via_driver, double* us) {
  if (!cu::check_device(device, "launch_floor")) return vtrt_last_status();
  if (const char* why = cu::sync_forbidden(device))
    return set_error(VT_ERR_RUNTIME, "launch_floor: cannot measure while %s", why);
  cu::DeviceGuard g(device);
  cudaError_t e = cu::launch_floor_us(static_cast<cudaStream_t>(cu::t_streams[device]), n, via_driver != 0, us);
  return e == cudaSuccess ? VT_OK : cu::fail(e, "launch_floor", device);
}

// 1: all work done; 0: work pending; -1: error (set)
int32_t vtrt_cuda_stream_query(int32_t device, void* stream) {
  if (!cu::check_device(device, "Stream.query")) return -1;
  if (const char* why = cu::sync_forbidden(device)) {
    set_error(VT_ERR_RUNTIME, "Stream.query(): not allowed while %s", why);
    return -1;
  }
  cu::DeviceGuard g(device);
  cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  if (e == cudaSuccess) return 1;
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return 0;
  }
  cu::fail(e, "cudaStreamQuery", device);
  return -1;
}

vt_status vtrt_cuda_stream_wait_event(int32_t device, void* stream, void* event) {
  if (!cu::check_device(device, "Stream.wait_event")) return vtrt_last_status();
  cu::DeviceGuard g(device);
  cudaError_t e = cudaStreamWaitEvent(static_cast<cudaStream_t>(stream),
                                      static_cast<cudaEvent_t>(event), 0);
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaStreamWaitEvent", device);
}

vt_status vtrt_cuda_stream_priority(void* stream, int32_t* out) {
  if (!cuda_available()) return cu::not_available();
  int p = 0;
  cudaError_t e = cudaStreamGetPriority(static_cast<cudaStream_t>(stream), &p);
  if (e != cudaSuccess) return cu::fail(e, "cudaStreamGetPriority", cu::current_device());
  *out = p;
  return VT_OK;
}

vt_status vtrt_cuda_stream_priority_range(int32_t* least, int32_t* greatest) {
  if (!cuda_available()) return cu::not_available();
  *least = cu::g_prio_least;
  *greatest = cu::g_prio_greatest;
  return VT_OK;
}

// ---- events --------------------------------------------------------------------------------------

vt_status vtrt_cuda_event_create(int32_t device, int32_t enable_timing, int32_t blocking,
                                 int32_t interprocess, void** out) {
  if (!cu::check_device(device, "Event")) return vtrt_last_status();
  unsigned flags = (enable_timing ? cudaEventDefault : cudaEventDisableTiming) |
                   (blocking ? cudaEventBlockingSync : 0) |
                   (interprocess ? cudaEventInterprocess | cudaEventDisableTiming : 0);
  cu::DeviceGuard g(device);
  cudaEvent_t ev = nullptr;
  cudaError_t e = cudaEventCreateWithFlags(&ev, flags);
  if (e != cudaSuccess) return cu::fail(e, "cudaEventCreateWithFlags", device);
  *out = ev;
  return VT_OK;
}

void vtrt_cuda_event_destroy(int32_t device, void* event) {
  if (!event || !cuda_available()) return;
  cu::DeviceGuard g(device);
  cudaEventDestroy(static_cast<cudaEvent_t>(event));  // safe while pending: freed when it completes
  cudaGetLastError();  // at interpreter exit the runtime may already be unloading
}

vt_status vtrt_cuda_event_record(int32_t device, void* event, void* stream) {
  if (!cu::check_device(device, "Event.record")) return vtrt_last_status();
  cu::DeviceGuard g(device);
  cudaError_t e = cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaEventRecord", device);
}

int32_t vtrt_cuda_event_query(int32_t device, void* event) {
  if (!cu::check_device(device, "Event.query")) return -1;
  if (const char* why = cu::sync_forbidden(device)) {
    set_error(VT_ERR_RUNTIME, "Event.query(): not allowed while %s", why);
    return -1;
  }
  cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (e == cudaSuccess) return 1;
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return 0;
  }
  cu::fail(e, "cudaEventQuery", device);
  return -1;
}

vt_status vtrt_cuda_event_synchronize(int32_t device, void* event) {
  if (!cu::check_device(device, "Event.synchronize")) return vtrt_last_status();
  if (const char* why = cu::sync_forbidden(device))
    return set_error(VT_ERR_RUNTIME, "Event.synchronize(): cannot wait for an event while %s", why);
  cudaError_t e = cudaEventSynchronize(static_cast<cudaEvent_t>(event));
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaEventSynchronize", device);
}

vt_status vtrt_cuda_event_elapsed_time(int32_t device, void* start, void* end, float* ms) {
  if (!cu::check_device(device, "Event.elapsed_time")) return vtrt_last_status();
  cudaError_t e = cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end));
  if (e == cudaErrorInvalidResourceHandle) {
    cudaGetLastError();
    return set_error(VT_ERR_RUNTIME, "Event.elapsed_time: both events need enable_timing=True");
  }
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return set_error(VT_ERR_RUNTIME,
                     "Event.elapsed_time: an event has not completed yet; synchronize() first");
  }
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaEventElapsedTime", device);
}

}  // extern "C"
