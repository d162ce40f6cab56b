// checked_math.hpp — int64 arithmetic for sizes, strides and offsets that reports overflow
// instead of wrapping. Every such computation in the runtime goes through these: a bounds check
// whose sum wraps (offset 2^63 - 2^19 plus a span of 2^20) accepts memory far outside the storage,
// and signed overflow is undefined behaviour besides.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vt {

// a + b and a * b into out; false (out unspecified) when the exact result does not fit int64.
[[nodiscard]] inline bool checked_add(int64_t a, int64_t b, int64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}
[[nodiscard]] inline bool checked_mul(int64_t a, int64_t b, int64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

// The product of sizes[0..ndim) (sizes already known non-negative); false on overflow.
[[nodiscard]] inline bool checked_numel(const int64_t* sizes, int32_t ndim, int64_t& out) {
  out = 1;
  for (int32_t i = 0; i < ndim; ++i)
    if (!checked_mul(out, sizes[i], out)) return false;
  return true;
}

// numel elements of esize bytes as a byte count; false when it does not fit int64.
[[nodiscard]] inline bool checked_nbytes(int64_t numel, size_t esize, int64_t& out) {
  return checked_mul(numel, static_cast<int64_t>(esize), out);
}

// The first and last element index [lo, hi] that a non-empty view (sizes all >= 1, any strides)
// starting at element `offset` reaches; false when any step overflows.
[[nodiscard]] inline bool checked_extent(const int64_t* sizes, const int64_t* strides, int32_t ndim,
                                         int64_t offset, int64_t& lo, int64_t& hi) {
  lo = hi = offset;
  for (int32_t i = 0; i < ndim; ++i) {
    int64_t span;
    if (!checked_mul(sizes[i] - 1, strides[i], span)) return false;
    if (!checked_add(span < 0 ? lo : hi, span, span < 0 ? lo : hi)) return false;
  }
  return true;
}

}  // namespace vt
