// allocator.cpp — the CPU caching allocator and the slots where device allocators plug in
// (the CUDA caching allocator is cuda_allocator.cpp).
//
// CPU blocks are 64-byte aligned and rounded up to a size class (4 classes per power of two, so at
// most 25% waste); freed blocks go to a per-class free list and are handed out again before the
// system is asked. Small blocks are cached per thread first (no lock); the shared lists behind
// them take a mutex, held for a few instructions and never while a kernel runs. Stats are atomics.
#include <cstdlib>
#include <atomic>
#include <mutex>

#include "device.hpp"
#include "internal.hpp"

namespace vt {

namespace {

constexpr size_t kAlign = 64;

// Size classes: 64, 128, 192, 256 bytes, then 4 per power of two (5/8, 6/8, 7/8, 8/8 of it).
// class_index() numbers them densely so the free lists are a flat array, no hashing.
constexpr int kClasses = 4 + 4 * 56;

int class_index(size_t n, size_t* cls) {
  if (n <= 256) {
    size_t c = (n + kAlign - 1) / kAlign;
    *cls = c * kAlign;
    return static_cast<int>(c - 1);
  }
  int lg = 64 - __builtin_clzll(n - 1);  // n <= 2^lg
  size_t step = (size_t{1} << lg) / 8;
  size_t c = (n + step - 1) / step;  // in (4, 8]
  *cls = c * step;
  return 4 + 4 * (lg - 9) + static_cast<int>(c - 5);
}

// Blocks up to this size are also cached per thread, so the common case (a small tensor made and
// dropped on one thread) takes no lock; larger ones go straight to the shared lists.
constexpr size_t kThreadCacheMax = 1 << 20;
constexpr size_t kThreadCachePerClass = 16;

size_t class_size(int idx) {
  if (idx < 4) return static_cast<size_t>(idx + 1) * kAlign;
  int lg = (idx - 4) / 4 + 9;
  return static_cast<size_t>((idx - 4) % 4 + 5) * ((size_t{1} << lg) / 8);
}

struct CpuCache {
  std::mutex mu;  // guards free_lists and the os counters
  std::vector<void*> free_lists[kClasses];
  std::atomic<int64_t> allocated{0}, peak{0}, num_allocs{0};
  int64_t reserved = 0, num_os_allocs = 0;

  void note_alloc(size_t cls) {
    int64_t now = allocated.fetch_add(static_cast<int64_t>(cls), std::memory_order_relaxed) +
                  static_cast<int64_t>(cls);
    int64_t p = peak.load(std::memory_order_relaxed);
    while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
    }
    num_allocs.fetch_add(1, std::memory_order_relaxed);
  }

  void* alloc_shared(int idx, size_t cls, size_t nbytes) {
    {
      std::lock_guard<std::mutex> g(mu);
      auto& list = free_lists[idx];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        return p;
      }
      num_os_allocs++;
      reserved += static_cast<int64_t>(cls);
    }
    void* p = std::aligned_alloc(kAlign, cls);
    if (!p) {
      std::lock_guard<std::mutex> g(mu);
      reserved -= static_cast<int64_t>(cls);
      num_os_allocs--;
      set_error(VT_ERR_MEMORY, "cpu allocator: out of memory allocating %zu bytes", nbytes);
    }
    return p;
  }

  void free_shared(int idx, void* p) {
    std::lock_guard<std::mutex> g(mu);
    free_lists[idx].push_back(p);
  }

  void empty_cache();
};

CpuCache& cpu_cache();

// The per-thread front: a few blocks per small class. Returned to the shared lists when the
// thread exits or the cache is emptied.
struct ThreadCache {
  std::vector<void*> lists[kClasses];
  uint64_t flush_epoch = 0;
  ~ThreadCache() { flush(); }
  void flush() {
    for (int i = 0; i < kClasses; ++i) {
      for (void* p : lists[i]) cpu_cache().free_shared(i, p);
      lists[i].clear();
    }
  }
};
thread_local ThreadCache t_cache;
std::atomic<uint64_t> g_flush_epoch{0};  // empty_cache() bumps it; threads flush when they see it

void* cpu_alloc(size_t nbytes) {
  CpuCache& c = cpu_cache();
  size_t cls;
  int idx = class_index(nbytes == 0 ? 1 : nbytes, &cls);
  void* p = nullptr;
  if (cls <= kThreadCacheMax && !t_cache.lists[idx].empty()) {
    p = t_cache.lists[idx].back();
    t_cache.lists[idx].pop_back();
  } else {
    p = c.alloc_shared(idx, cls, nbytes);
    if (!p) return nullptr;
  }
  c.note_alloc(cls);
  return p;
}

void cpu_free(void* p, size_t nbytes) {
  CpuCache& c = cpu_cache();
  size_t cls;
  int idx = class_index(nbytes == 0 ? 1 : nbytes, &cls);
  c.allocated.fetch_sub(static_cast<int64_t>(cls), std::memory_order_relaxed);
  uint64_t epoch = g_flush_epoch.load(std::memory_order_relaxed);
  if (t_cache.flush_epoch != epoch) {
    t_cache.flush();
    t_cache.flush_epoch = epoch;
  }
  auto& list = t_cache.lists[idx];
  if (cls <= kThreadCacheMax && list.size() < kThreadCachePerClass) {
    list.push_back(p);
  } else {
    c.free_shared(idx, p);
  }
}

void CpuCache::empty_cache() {
  g_flush_epoch.fetch_add(1, std::memory_order_relaxed);
  t_cache.flush();  // this thread's now; other threads' on their next free
  t_cache.flush_epoch = g_flush_epoch.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(mu);
  for (int i = 0; i < kClasses; ++i) {
    for (void* p : free_lists[i]) std::free(p);
    reserved -= static_cast<int64_t>(class_size(i) * free_lists[i].size());
    free_lists[i].clear();
  }
}

CpuCache& cpu_cache() {
  static CpuCache* cache = new CpuCache();  // leaked on purpose: tensors may die after exit hooks
  return *cache;
}

vtrt_allocator g_device_allocators[kDeviceSlots];  // by device slot (device.hpp); cpu's is above

// The allocator of a device with memory, or null (+ error) when it has none. CUDA's is installed
// the first time CUDA is asked about, so ask here before giving up.
vtrt_allocator* allocator_for(vt_device device) {
  int slot = device_slot(device.type);
  if (slot < 0 || !kDevices[slot].has_memory) {
    set_error(VT_ERR_NOT_IMPL, "device %s has no memory to allocate", device_name(device).c_str());
    return nullptr;
  }
  vtrt_allocator* a = &g_device_allocators[slot];
  if (!a->alloc && device.type == VT_CUDA) cuda_available();
  if (!a->alloc) {
    set_error(VT_ERR_NOT_IMPL, "no allocator for device %s (is CUDA available?)",
              device_name(device).c_str());
    return nullptr;
  }
  return a;
}

}  // namespace

void* device_alloc(vt_device device, size_t nbytes) {
  if (device.type == VT_CPU) return cpu_alloc(nbytes);
  vtrt_allocator* a = allocator_for(device);
  return a ? a->alloc(a->self, nbytes, device.index, cuda_current_stream(device)) : nullptr;
}

void device_free(vt_device device, void* ptr, size_t nbytes) {
  if (device.type == VT_CPU) return cpu_free(ptr, nbytes);
  int slot = device_slot(device.type);
  if (slot < 0) return;
  auto& a = g_device_allocators[slot];
  // the CUDA allocator frees onto the block's own stream; the current one is only a hint
  if (a.free) a.free(a.self, ptr, nbytes, device.index, cuda_current_stream(device));
}

}  // namespace vt

extern "C" {

vt_status vtrt_set_allocator(int32_t device_type, const vtrt_allocator* allocator) {
  int slot = vt::device_slot(device_type);
  if (device_type == VT_CPU || slot < 0 || !vt::kDevices[slot].has_memory)
    return vt::set_error(VT_ERR_VALUE, "vtrt_set_allocator: device type %d cannot be replaced",
                         device_type);
  vt::g_device_allocators[slot] = *allocator;
  return VT_OK;
}

vt_status vtrt_alloc_stats_get(vt_device device, vtrt_alloc_stats* out) {
  if (device.type == VT_CUDA) {  // the caching allocator's counters, in this struct's terms
    if (vtrt_cuda_device_count() == 0)
      return vt::set_error(VT_ERR_NOT_IMPL, "allocator stats of %s: %s",
                           vt::device_name(device).c_str(), vtrt_cuda_unavailable_reason());
    vtrt_cuda_memory_stats s;
    if (vtrt_cuda_memory_stats_get(device.index, &s) != VT_OK) return vtrt_last_status();
    out->allocated = s.allocated_bytes[0].current;
    out->reserved = s.reserved_bytes[0].current;
    out->peak_allocated = s.allocated_bytes[0].peak;
    out->num_allocs = s.allocation[0].allocated;
    out->num_os_allocs = s.num_device_alloc;
    return VT_OK;
  }
  if (device.type != VT_CPU)
    return vt::set_error(VT_ERR_NOT_IMPL, "allocator stats: %s has no allocator",
                         vt::device_name(device).c_str());
  auto& c = vt::cpu_cache();
  std::lock_guard<std::mutex> g(c.mu);
  out->allocated = c.allocated.load(std::memory_order_relaxed);
  out->peak_allocated = c.peak.load(std::memory_order_relaxed);
  out->num_allocs = c.num_allocs.load(std::memory_order_relaxed);
  out->num_os_allocs = c.num_os_allocs;
  out->reserved = c.reserved;
  return VT_OK;
}

void vtrt_alloc_reset_peak(vt_device device) {
  if (device.type == VT_CUDA) {
    if (vtrt_cuda_reset_peak_memory_stats(device.index) != VT_OK) vtrt_clear_error();
    return;
  }
  if (device.type != VT_CPU) return;
  auto& c = vt::cpu_cache();
  c.peak.store(c.allocated.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void vtrt_alloc_empty_cache(vt_device device) {
  if (device.type == VT_CPU) vt::cpu_cache().empty_cache();
  if (device.type == VT_CUDA && vtrt_cuda_empty_cache(device.index) != VT_OK) vtrt_clear_error();
}
}
