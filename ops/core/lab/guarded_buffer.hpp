// ops/core/lab/guarded_buffer.hpp — the host emulations' buffers (rowwise_emulate.cpp,
// loss_emulate.cpp): elements at a 16-byte aligned address (plus `shift` elements, for misaligned
// rows) between guard bytes, so a kernel writing out of bounds is caught; and conversions between
// an element type and double for the references.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

constexpr size_t kGuard = 64;  // bytes on each side of a buffer
constexpr unsigned char kGuardByte = 0xa5;

template <class T>
struct Buf {
  std::vector<unsigned char> raw;
  T* p;
  size_t n;
  explicit Buf(size_t count, int shift = 0)
      : raw(2 * kGuard + 16 + (count + shift) * sizeof(T), kGuardByte), n(count) {
    const uintptr_t a = ((uintptr_t)raw.data() + kGuard + 15) & ~(uintptr_t)15;
    p = reinterpret_cast<T*>(a) + shift;
    std::memset((void*)p, 0, count * sizeof(T));
  }
  bool guards_intact() const {
    const unsigned char* lo = reinterpret_cast<const unsigned char*>(p);
    const unsigned char* hi = lo + n * sizeof(T);
    for (const unsigned char* q = raw.data(); q < lo; ++q)
      if (*q != kGuardByte) return false;
    for (const unsigned char* q = hi; q < raw.data() + raw.size(); ++q)
      if (*q != kGuardByte) return false;
    return true;
  }
  bool same_bits(const Buf& o) const { return std::memcmp(p, o.p, n * sizeof(T)) == 0; }
};

template <class T> double to_d(T v) { return (double)(float)v; }
template <> inline double to_d(double v) { return v; }
template <> inline double to_d(float v) { return v; }
template <class T> T from_d(double v) { return T((float)v); }
template <> inline double from_d(double v) { return v; }
