// vt/fastmath.hpp — a float32 exp that vectorises, for packs' CPU loops (softmax, losses,
// attention, activations). Header-only, C++17, no dependencies; not part of the C ABI.
//
// glibc's expf is a scalar call, so a loop calling it cannot vectorise; vt::fast_exp is branch-free
// (clamp, Cephes' expf polynomial, then the power of two built from bits), so GCC turns a loop over
// it into SIMD code at whatever width the loop is compiled for (target_clones, -march).
//
// Accuracy (float32, dense sweeps against double): <= 1.02 ulp. exp(-inf) = 0 and results below
// ~1.7e-38 (x < -86.99) flush to 0, which is what masked softmax rows need; x > 88.72 gives +inf;
// NaN gives NaN. Double precision callers should use std::exp.
#pragma once

#include <cstdint>
#include <cstring>

namespace vt {

#if defined(__GNUC__)
// a loop only vectorises when the call is inlined, and GCC's size heuristics sometimes decline
#define VT_FASTMATH_INLINE inline __attribute__((always_inline))
#else
#define VT_FASTMATH_INLINE inline
#endif

// F is float or a GCC vector of floats (float __attribute__((vector_size(N)))), U the unsigned
// 32-bit integer type of the same shape: one definition serves scalar loops the compiler
// vectorises and hand-vectorised ones.
template <class F, class U>
VT_FASTMATH_INLINE F fast_exp_t(F x) {
  const F zero{};
  const F hi = zero + 88.8f, lo = zero - 87.3f;
  // Clamp so that k = round(x / ln2) lies in [-126, 128] (NaN passes both tests unchanged).
  F xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  // t = 1.5 * 2^23 + 126 + k exactly (round to nearest by the float add), so t's low mantissa
  // bits hold k + 126 and (bits(t) << 23) is the float 2^(k-1): exponent field k + 126 in
  // [0, 254]. Field 0 is +0.0, which flushes k = -126 to 0; for k = 128 the product 2y * 2^127
  // overflows to +inf exactly when exp(x) does.
  const F t = xc * 1.44269504088896341f + 12583038.0f;
  const F k = t - 12583038.0f;
  const F r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;  // x - k ln2 in two parts
  F p = zero + 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const F y = p * r * r + r + 1.0f;  // exp(r), r in [-ln2/2, ln2/2]
  U tb;
  std::memcpy(&tb, &t, sizeof tb);
  tb = tb << 23;
  F s;
  std::memcpy(&s, &tb, sizeof s);
  return (y + y) * s;  // NaN: s is 0 and NaN * 0 = NaN
}

VT_FASTMATH_INLINE float fast_exp(float x) { return fast_exp_t<float, uint32_t>(x); }

}  // namespace vt
