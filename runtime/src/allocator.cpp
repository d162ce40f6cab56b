// allocator.cpp — the CPU caching allocator and the slot where device allocators plug in.
//
// CPU blocks are 64-byte aligned and rounded up to a size class (4 classes per power of two, so at
// most 25% waste); freed blocks go to a per-class free list and are handed out again before the
// system is asked. One mutex guards the lists: it is held for a few instructions and only when
// tensors are created or destroyed, never while a kernel runs.
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "internal.hpp"

namespace vt {

namespace {

constexpr size_t kAlign = 64;

size_t size_class(size_t n) {
  if (n <= 256) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;  // classes at 5/8, 6/8, 7/8, 8/8 of the next power of two
  return (n + step - 1) / step * step;
}

struct CpuCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  vtrt_alloc_stats stats{};

  void* alloc(size_t nbytes) {
    size_t cls = size_class(nbytes == 0 ? 1 : nbytes);
    {
      std::lock_guard<std::mutex> g(mu);
      stats.num_allocs++;
      auto it = free_lists.find(cls);
      if (it != free_lists.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        note_alloc(cls);
        return p;
      }
      stats.num_os_allocs++;
      note_alloc(cls);
      stats.reserved += static_cast<int64_t>(cls);
    }
    void* p = std::aligned_alloc(kAlign, cls);
    if (!p) {
      std::lock_guard<std::mutex> g(mu);
      stats.allocated -= static_cast<int64_t>(cls);
      stats.reserved -= static_cast<int64_t>(cls);
      set_error(VT_ERR_MEMORY, "cpu allocator: out of memory allocating %zu bytes", nbytes);
    }
    return p;
  }

  void free(void* p, size_t nbytes) {
    size_t cls = size_class(nbytes == 0 ? 1 : nbytes);
    std::lock_guard<std::mutex> g(mu);
    stats.allocated -= static_cast<int64_t>(cls);
    free_lists[cls].push_back(p);
  }

  void note_alloc(size_t cls) {
    stats.allocated += static_cast<int64_t>(cls);
    if (stats.allocated > stats.peak_allocated) stats.peak_allocated = stats.allocated;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> g(mu);
    for (auto& [cls, list] : free_lists) {
      for (void* p : list) std::free(p);
      stats.reserved -= static_cast<int64_t>(cls * list.size());
      list.clear();
    }
  }
};

CpuCache& cpu_cache() {
  static CpuCache* cache = new CpuCache();  // leaked on purpose: tensors may die after exit hooks
  return *cache;
}

vtrt_allocator g_device_allocators[4];  // indexed by device type; only VT_CUDA is used today

}  // namespace

void* device_alloc(vt_device device, size_t nbytes) {
  if (device.type == VT_CPU) return cpu_cache().alloc(nbytes);
  if (device.type < 0 || device.type >= 4 || !g_device_allocators[device.type].alloc) {
    set_error(VT_ERR_NOT_IMPL, "no allocator for device %s (is CUDA available?)",
              device_name(device).c_str());
    return nullptr;
  }
  auto& a = g_device_allocators[device.type];
  return a.alloc(a.self, nbytes, device.index, cuda_current_stream(device));
}

void device_free(vt_device device, void* ptr, size_t nbytes) {
  if (device.type == VT_CPU) return cpu_cache().free(ptr, nbytes);
  auto& a = g_device_allocators[device.type];
  if (a.free) a.free(a.self, ptr, nbytes, device.index, cuda_current_stream(device));
}

}  // namespace vt

extern "C" {

vt_status vtrt_set_allocator(int32_t device_type, const vtrt_allocator* allocator) {
  if (device_type <= VT_CPU || device_type >= 4)
    return vt::set_error(VT_ERR_VALUE, "vtrt_set_allocator: device type %d cannot be replaced",
                         device_type);
  vt::g_device_allocators[device_type] = *allocator;
  return VT_OK;
}

vt_status vtrt_alloc_stats_get(vt_device device, vtrt_alloc_stats* out) {
  if (device.type != VT_CPU)
    return vt::set_error(VT_ERR_NOT_IMPL, "allocator stats: only cpu is tracked here, got %s",
                         vt::device_name(device).c_str());
  auto& c = vt::cpu_cache();
  std::lock_guard<std::mutex> g(c.mu);
  *out = c.stats;
  return VT_OK;
}

void vtrt_alloc_reset_peak(vt_device device) {
  if (device.type != VT_CPU) return;
  auto& c = vt::cpu_cache();
  std::lock_guard<std::mutex> g(c.mu);
  c.stats.peak_allocated = c.stats.allocated;
}

void vtrt_alloc_empty_cache(vt_device device) {
  if (device.type == VT_CPU) vt::cpu_cache().empty_cache();
}
}
