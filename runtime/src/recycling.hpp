// recycling.hpp — containers that allocate nothing in steady state, for the CUDA caching
// allocator's hot path (cuda_allocator.cpp). A reused block is split on malloc and merged back
// on free: with std::set and std::unordered_map that is a heap allocation and a free for every
// tree node and hash node touched (about six per malloc+free pair), a third of the pair's cost.
// Everything here is used under the owning allocator's mutex: no locking of its own.
#ifndef VT_RUNTIME_RECYCLING_HPP_
#define VT_RUNTIME_RECYCLING_HPP_

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

namespace vt {

// Freed nodes of one size kept for reuse, shared by the std::set instances of one allocator.
struct NodeCache {
  std::vector<void*> spare;
  size_t node_size = 0;  // fixed by the first single-node request
  NodeCache() = default;
  NodeCache(const NodeCache&) = delete;
  NodeCache& operator=(const NodeCache&) = delete;
  ~NodeCache() {
    for (void* p : spare) ::operator delete(p);
  }
};

// A std allocator drawing single nodes from a NodeCache (at most kKeep kept spare).
template <class T>
struct CachedAlloc {
  using value_type = T;
  static constexpr size_t kKeep = 4096;
  NodeCache* cache;
  explicit CachedAlloc(NodeCache* c) noexcept : cache(c) {}
  template <class U>
  CachedAlloc(const CachedAlloc<U>& o) noexcept : cache(o.cache) {}
  T* allocate(size_t n) {
    if (n == 1 && (cache->node_size == 0 || cache->node_size == sizeof(T))) {
      cache->node_size = sizeof(T);
      if (!cache->spare.empty()) {
        void* p = cache->spare.back();
        cache->spare.pop_back();
        return static_cast<T*>(p);
      }
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n == 1 && cache->node_size == sizeof(T) && cache->spare.size() < kKeep) {
      cache->spare.push_back(p);  // capacity grows to kKeep once, then never reallocates
      return;
    }
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const CachedAlloc<U>& o) const noexcept { return cache == o.cache; }
  template <class U>
  bool operator!=(const CachedAlloc<U>& o) const noexcept { return cache != o.cache; }
};

// Pointer -> value, open addressing with linear probing; grows (rehashing) only when 3/4 full.
template <class V>
class PtrMap {
 public:
  V* find(const void* key) {
    if (slots_.empty()) return nullptr;
    for (size_t i = hash(key) & mask();; i = (i + 1) & mask()) {
      Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == nullptr) return nullptr;
    }
  }
  // key must not be present
  void insert(const void* key, V value) {
    if ((used_ + 1) * 4 > slots_.size() * 3) rehash(live_ * 2 + 16 > slots_.size() ? slots_.size() * 2 : slots_.size());
    for (size_t i = hash(key) & mask();; i = (i + 1) & mask()) {
      Slot& s = slots_[i];
      if (s.key == nullptr || s.key == tomb()) {
        if (s.key == nullptr) ++used_;
        s.key = key;
        s.value = value;
        ++live_;
        return;
      }
    }
  }
  // removes key; false when absent
  bool erase(const void* key) {
    if (slots_.empty()) return false;
    for (size_t i = hash(key) & mask();; i = (i + 1) & mask()) {
      Slot& s = slots_[i];
      if (s.key == key) {
        s.key = tomb();
        --live_;
        return true;
      }
      if (s.key == nullptr) return false;
    }
  }
  template <class F>
  void for_each(F f) const {
    for (const Slot& s : slots_)
      if (s.key != nullptr && s.key != tomb()) f(s.key, s.value);
  }
  size_t size() const { return live_; }

 private:
  struct Slot {
    const void* key = nullptr;  // nullptr: never used; tomb(): erased
    V value{};
  };
  static const void* tomb() { return reinterpret_cast<const void*>(uintptr_t{1}); }
  size_t mask() const { return slots_.size() - 1; }
  static size_t hash(const void* p) {  // a multiplicative mix of the address (its low bits are zeros)
    uint64_t x = reinterpret_cast<uintptr_t>(p);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
  void rehash(size_t capacity) {  // capacity: a power of two
    if (capacity < 16) capacity = 16;
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    used_ = live_ = 0;
    for (const Slot& s : old)
      if (s.key != nullptr && s.key != tomb()) insert(s.key, s.value);
  }
  std::vector<Slot> slots_;
  size_t used_ = 0;  // live + erased slots (probe chains end only at never-used slots)
  size_t live_ = 0;
};

}  // namespace vt

#endif  // VT_RUNTIME_RECYCLING_HPP_
