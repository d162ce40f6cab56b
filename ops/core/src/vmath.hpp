// vmath.hpp — float exp, tanh, erf and sigmoid written so that a loop calling them vectorises:
// branch-free (both sides computed, then selected), no libm calls, bit tricks through memcpy.
// glibc's expf/tanhf/erff are scalar calls (tanhf ~35 ns/element here), which made the
// activations 5-35x slower than torch's SLEEF-based kernels.
//
// Accuracy (float32): exp and tanh within ~2 ulp (Cephes polynomials); erf within 1.5e-7
// absolute (Abramowitz & Stegun 7.1.26, the same formula torch's vectorised erf uses).
// exp flushes results below 2^-126 to 0. NaN in gives NaN out. double keeps libm (ew::mexp etc.
// dispatch on the type), so float64 results stay correctly rounded.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace vmath {

inline float bits_to_float(int32_t i) { float f; std::memcpy(&f, &i, 4); return f; }

inline float exp(float x) {
  const float hi = 88.7228391f, lo = -87.3365447f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);  // NaN passes through
  // k = round(x / ln2) by the 1.5 * 2^23 trick; r = x - k ln2 in two parts
  const float shift = 12582912.0f;
  const float k = (xc * 1.44269504088896341f + shift) - shift;
  const float r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const float y = p * r * r + r + 1.0f;
  // 2^k split in two halves so k = 128 does not overflow the exponent field
  const int32_t ki = (int32_t)k;
  const int32_t k1 = ki >> 1, k2 = ki - k1;
  const float s = y * bits_to_float((k1 + 127) << 23) * bits_to_float((k2 + 127) << 23);
  return x > hi ? INFINITY : (x < lo ? 0.0f : s);
}

inline float tanh(float x) {
  const float ax = x < 0 ? -x : x;
  // small |x|: odd polynomial (Cephes tanhf)
  const float z = x * x;
  float p = -5.70498872745E-3f;
  p = p * z + 2.06390887954E-2f;
  p = p * z - 5.37397155531E-2f;
  p = p * z + 1.33314422036E-1f;
  p = p * z - 3.33332819422E-1f;
  const float small = p * z * x + x;
  // large |x|: 1 - 2 / (exp(2|x|) + 1), with x's sign
  const float e = vmath::exp(2.0f * (ax > 44.0f ? 44.0f : ax));
  const float big = 1.0f - 2.0f / (e + 1.0f);
  const float sb = x < 0 ? -big : big;
  return ax < 0.625f ? small : (x != x ? x : sb);
}

inline float erf(float x) {
  const float ax = x < 0 ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float r = 1.0f - p * t * vmath::exp(-ax * ax);
  return x < 0 ? -r : r;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + vmath::exp(-x)); }

}  // namespace vmath

namespace ew {
// float: the vectorisable versions above; double: libm
template <class A> inline A mexp(A x) { if constexpr (std::is_same<A, float>::value) return vmath::exp(x); else return std::exp(x); }
template <class A> inline A mtanh(A x) { if constexpr (std::is_same<A, float>::value) return vmath::tanh(x); else return std::tanh(x); }
template <class A> inline A merf(A x) { if constexpr (std::is_same<A, float>::value) return vmath::erf(x); else return std::erf(x); }
}  // namespace ew
