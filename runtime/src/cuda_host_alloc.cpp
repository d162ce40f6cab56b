// cuda_host_alloc.cpp — the cached pinned (page-locked) host allocator behind Tensor.pin_memory().
//
// cudaHostAlloc is slow (it maps pages for the GPU) and cudaFreeHost synchronises the device, so
// blocks are cached, in power-of-two sizes. A block used by an asynchronous copy records an event
// on the copy's stream (host_record_stream); when its tensor dies it waits in a list until those
// events complete and only then serves another allocation, so a non_blocking copy never reads a
// buffer that has been handed out again.
#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "cuda_internal.hpp"

namespace vt {
namespace cu {

namespace {

struct HostBlock {
  char* ptr;
  size_t size;
  bool allocated = false;
  std::vector<std::pair<cudaStream_t, int>> streams;  // (stream, device) of copies since handed out
  int events = 0;
};

class HostAllocator {
 public:
  void* malloc(size_t n) {
    size_t size = round(n);
    std::lock_guard<std::mutex> g(mu_);
    process_events();
    num_allocs_++;
    auto& list = free_[size];
    if (!list.empty()) {
      HostBlock* b = list.back();
      list.pop_back();
      b->allocated = true;
      allocated_ += static_cast<int64_t>(b->size);
      return b->ptr;
    }
    void* p = nullptr;
    cudaError_t e;
    {
      RelaxedCaptureGuard rg;  // no stream is involved; safe even while this thread captures
      e = cudaHostAlloc(&p, size, cudaHostAllocDefault);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      set_error(VT_ERR_MEMORY, "pin_memory: cannot allocate %s of pinned host memory: %s",
                fmt_bytes(static_cast<int64_t>(size)).c_str(), cudaGetErrorString(e));
      return nullptr;
    }
    auto* b = new HostBlock();
    b->ptr = static_cast<char*>(p);
    b->size = size;
    b->allocated = true;
    blocks_[reinterpret_cast<uintptr_t>(p)] = b;
    reserved_ += static_cast<int64_t>(size);
    allocated_ += static_cast<int64_t>(size);
    num_host_allocs_++;
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
    if (it == blocks_.end() || !it->second->allocated) return;
    HostBlock* b = it->second;
    b->allocated = false;
    allocated_ -= static_cast<int64_t>(b->size);
    if (b->streams.empty()) {
      free_[b->size].push_back(b);
      return;
    }
    for (auto& sd : b->streams) {  // reusable once the copies queued on it are done
      DeviceGuard dg(sd.second);
      cudaEvent_t e = cu::take_event(event_pool_[sd.second]);  // per device (made current)
      if (!e) continue;
      if (cudaEventRecord(e, sd.first) != cudaSuccess) {
        cudaGetLastError();
        event_pool_[sd.second].push_back(e);
        continue;
      }
      b->events++;
      pending_.push_back(Pending{e, sd.second, b});
    }
    b->streams.clear();
    if (b->events == 0) free_[b->size].push_back(b);
  }

  // The block containing p (any address inside it), or null when p is not ours.
  HostBlock* find(const void* p) {
    auto a = reinterpret_cast<uintptr_t>(p);
    auto it = blocks_.upper_bound(a);
    if (it == blocks_.begin()) return nullptr;
    --it;
    HostBlock* b = it->second;
    return a < it->first + b->size ? b : nullptr;
  }

  bool is_pinned(const void* p) {
    std::lock_guard<std::mutex> g(mu_);
    return find(p) != nullptr;
  }

  void record_stream(const void* p, cudaStream_t s, int device) {
    std::lock_guard<std::mutex> g(mu_);
    HostBlock* b = find(p);
    auto sd = std::make_pair(s, device);
    if (b && b->allocated && std::find(b->streams.begin(), b->streams.end(), sd) == b->streams.end())
      b->streams.push_back(sd);
  }

  void stats(vtrt_cuda_host_stats* out) {
    std::lock_guard<std::mutex> g(mu_);
    out->allocated = allocated_;
    out->reserved = reserved_;
    out->num_host_allocs = num_host_allocs_;
    out->num_allocs = num_allocs_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& ev : pending_) {  // wait for the copies still reading freed blocks
      cudaEventSynchronize(ev.event);
      cudaGetLastError();
      done(ev);
    }
    pending_.clear();
    for (auto& kv : free_) {
      for (HostBlock* b : kv.second) {
        cudaFreeHost(b->ptr);
        cudaGetLastError();
        reserved_ -= static_cast<int64_t>(b->size);
        blocks_.erase(reinterpret_cast<uintptr_t>(b->ptr));
        delete b;
      }
      kv.second.clear();
    }
  }

 private:
  static size_t round(size_t n) {
    size_t s = 512;
    while (s < n) s <<= 1;
    return s;
  }

  struct Pending {
    cudaEvent_t event;
    int device;
    HostBlock* block;
  };

  void done(Pending& ev) {
    event_pool_[ev.device].push_back(ev.event);
    HostBlock* b = ev.block;
    if (--b->events == 0 && !b->allocated) free_[b->size].push_back(b);
  }

  void process_events() {
    if (pending_.empty() || captures_on_this_thread() > 0) return;
    while (!pending_.empty()) {  // events complete roughly in order: stop at the first busy one
      cudaError_t e = cudaEventQuery(pending_.front().event);
      if (e == cudaErrorNotReady) {
        cudaGetLastError();
        break;
      }
      if (e != cudaSuccess) cudaGetLastError();
      done(pending_.front());
      pending_.pop_front();
    }
  }

  std::mutex mu_;
  std::map<uintptr_t, HostBlock*> blocks_;  // every block, by address (interior lookups)
  std::map<size_t, std::vector<HostBlock*>> free_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> event_pool_[kMaxDevices];
  int64_t allocated_ = 0, reserved_ = 0, num_host_allocs_ = 0, num_allocs_ = 0;
};

HostAllocator& host_allocator() {
  static HostAllocator* a = new HostAllocator();  // leaked on purpose: tensors may outlive exit hooks
  return *a;
}

void pinned_deleter(void* p) { host_allocator().free(p); }

}  // namespace

bool host_is_pinned(const void* p) { return host_allocator().is_pinned(p); }

void host_record_stream(const void* p, cudaStream_t s, int device) {
  host_allocator().record_stream(p, s, device);
}

}  // namespace cu
}  // namespace vt

using namespace vt;

extern "C" {

vt_tensor* vtrt_cuda_empty_pinned(const int64_t* sizes, int32_t ndim, vt_dtype dtype) {
  if (!cuda_available()) {
    cu::not_available();
    return nullptr;
  }
  if (!check_shape("pin_memory", sizes, ndim)) return nullptr;
  if (!dtype_valid(dtype)) {
    set_error(VT_ERR_TYPE, "pin_memory: unsupported dtype %s", dtype_name(dtype).c_str());
    return nullptr;
  }
  int64_t strides[VT_MAX_DIMS];
  const int64_t numel = contiguous_strides(sizes, ndim, strides);
  size_t nbytes = static_cast<size_t>(numel) * dtype_size(dtype);
  void* p = cu::host_allocator().malloc(nbytes);
  if (!p) return nullptr;
  vt_tensor* t = vtrt_from_blob(p, sizes, strides, ndim, dtype, vt_device{VT_CPU, 0},
                                cu::pinned_deleter, p);
  if (!t) cu::host_allocator().free(p);
  return t;
}

int32_t vtrt_cuda_is_pinned(const void* ptr) {
  if (!ptr || !cuda_available()) return 0;
  if (cu::host_is_pinned(ptr)) return 1;
  cudaPointerAttributes a;  // pinned by someone else (torch, cudaHostRegister)
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return a.type == cudaMemoryTypeHost;
}

void vtrt_cuda_host_stats_get(vtrt_cuda_host_stats* out) {
  *out = vtrt_cuda_host_stats{};
  if (cuda_available()) cu::host_allocator().stats(out);
}

void vtrt_cuda_host_empty_cache(void) {
  if (cuda_available()) cu::host_allocator().empty_cache();
}

}  // extern "C"
