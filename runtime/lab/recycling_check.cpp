// recycling_check.cpp — runtime/src/recycling.hpp against the standard containers it stands in
// for: random inserts, finds and erases on PtrMap next to std::unordered_map, and a std::set on
// CachedAlloc next to one on std::allocator, checked after every step (tests/test_recycling.py).
#include <cstdio>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "recycling.hpp"

namespace {

int failures = 0;
#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::printf("FAILED line %d: %s\n", __LINE__, #cond);             \
      if (++failures > 10) return;                                      \
    }                                                                   \
  } while (0)

void check_ptr_map(std::mt19937_64& rng) {
  vt::PtrMap<long> map;
  std::unordered_map<const void*, long> ref;
  // addresses like a device allocator's: 512-byte aligned, in a few segments, reused often
  auto addr = [&]() { return reinterpret_cast<const void*>(uintptr_t{0x7f0000000000} + (rng() % 3000) * 512); };
  for (int step = 0; step < 200000; ++step) {
    const void* k = addr();
    const int op = rng() % 3;
    if (op == 0 && !ref.count(k)) {
      map.insert(k, step);
      ref[k] = step;
    } else if (op == 1) {
      CHECK(map.erase(k) == (ref.erase(k) == 1));
    } else {
      long* v = map.find(k);
      auto it = ref.find(k);
      CHECK((v != nullptr) == (it != ref.end()));
      if (v && it != ref.end()) CHECK(*v == it->second);
    }
    CHECK(map.size() == ref.size());
  }
  size_t seen = 0;
  map.for_each([&](const void* k, long v) {
    ++seen;
    auto it = ref.find(k);
    if (it == ref.end() || it->second != v) ++failures;
  });
  CHECK(seen == ref.size());
  for (const auto& kv : ref) CHECK(map.erase(kv.first));
  CHECK(map.size() == 0);
  std::printf("PtrMap: 200000 random steps agree with std::unordered_map\n");
}

void check_cached_set(std::mt19937_64& rng) {
  vt::NodeCache cache;
  {
    std::set<long, std::less<long>, vt::CachedAlloc<long>> a(std::less<long>{}, vt::CachedAlloc<long>(&cache));
    std::set<long, std::less<long>, vt::CachedAlloc<long>> b(std::less<long>{}, vt::CachedAlloc<long>(&cache));
    std::set<long> ref_a, ref_b;
    for (int step = 0; step < 100000; ++step) {
      const long x = static_cast<long>(rng() % 5000);
      const bool to_a = rng() % 2;
      auto& s = to_a ? a : b;
      auto& r = to_a ? ref_a : ref_b;
      if (rng() % 2) {
        CHECK(s.insert(x).second == r.insert(x).second);
      } else {
        CHECK(s.erase(x) == r.erase(x));
      }
      if (step % 1000 == 0) {
        CHECK(std::vector<long>(a.begin(), a.end()) == std::vector<long>(ref_a.begin(), ref_a.end()));
        CHECK(std::vector<long>(b.begin(), b.end()) == std::vector<long>(ref_b.begin(), ref_b.end()));
      }
    }
    CHECK(cache.spare.size() <= vt::CachedAlloc<long>::kKeep);
    CHECK(cache.node_size > sizeof(long));  // a tree node: the value and its links
  }
  std::printf("CachedAlloc: two sets sharing one cache agree with std::set (%zu nodes spare)\n",
              cache.spare.size());
}

}  // namespace

int main() {
  std::mt19937_64 rng(2026);
  check_ptr_map(rng);
  check_cached_set(rng);
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}
