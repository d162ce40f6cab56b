// vmath.hpp — float exp, tanh, erf and sigmoid written so that a loop calling them vectorises:
// branch-free (both sides computed, then selected), no libm calls, bit tricks through memcpy.
// glibc's expf/tanhf/erff are scalar calls (tanhf ~35 ns/element here), which made the
// activations 5-35x slower than torch's SLEEF-based kernels. The files that use them ask GCC for
// 512-bit vectors where the CPU has them (-march=native alone prefers 256 on Intel): see unary.cpp.
//
// Accuracy (float32, measured over dense sweeps against double):
//   exp   is vt::fast_exp (opsdk/include/vt/fastmath.hpp, <= 1.02 ulp), shared by every pack.
//   tanh  <= 4.6 ulp (Eigen's rational approximation: one division, no exp); tanh(+-inf) = +-1,
//         |x| < 4e-4 returns x (so tanh(-0) = -0).
//   erf   <= 5.6 ulp, 3.3e-7 absolute (Eigen's rational approximation); erf(+-inf) = +-1.
// double keeps libm (ew::mexp etc. dispatch on the type), so float64 results stay correctly rounded.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vt/fastmath.hpp"

// Forced inline: a loop only vectorises if the call is inlined, and GCC's size heuristics declined
// to inline exp in some of its many instantiations (the single-thread path then ran scalar calls,
// 10x slower).
#if defined(__GNUC__)
#define VT_VMATH_INLINE inline __attribute__((always_inline))
#else
#define VT_VMATH_INLINE inline
#endif

namespace vmath {

VT_VMATH_INLINE float bits_to_float(int32_t i) { float f; std::memcpy(&f, &i, 4); return f; }
VT_VMATH_INLINE int32_t float_to_bits(float f) { int32_t i; std::memcpy(&i, &f, 4); return i; }

// exp is the SDK's one approximation (vt/fastmath.hpp)
VT_VMATH_INLINE float exp(float x) { return vt::fast_exp(x); }

// Eigen's generic_fast_tanh_float: an odd rational approximation on [-7.905, 7.905] (beyond it
// tanh rounds to +-1 in float).
VT_VMATH_INLINE float tanh(float x) {
  const float c = 7.90531110763549805f;
  float xc = x > c ? c : x;
  xc = xc < -c ? -c : xc;  // NaN passes
  const float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  const float r = p / q;
  return std::fabs(x) < 0.0004f ? x : r;
}

// Eigen's generic_fast_erf_float: an odd rational approximation on [-4, 4] (beyond it erf rounds
// to +-1 in float). One division, no exp; accurate in relative terms near 0 as well.
VT_VMATH_INLINE float erf(float a) {
  float x = a > 4.0f ? 4.0f : a;
  x = x < -4.0f ? -4.0f : x;  // NaN passes
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

VT_VMATH_INLINE float sigmoid(float x) { return 1.0f / (1.0f + vmath::exp(-x)); }

// d/dx of gelu's erf form, x Phi(x): Phi(x) + x phi(x)
VT_VMATH_INLINE float gelu_erf_grad(float x) {
  const float cdf = 0.5f * (1.0f + vmath::erf(x * 0.70710678118654752440f));
  return cdf + x * 0.39894228040143267794f * vmath::exp(-0.5f * x * x);
}

}  // namespace vmath

namespace ew {
// float: the vectorisable versions above; double: libm
template <class A> VT_VMATH_INLINE A mexp(A x) { if constexpr (std::is_same<A, float>::value) return vmath::exp(x); else return std::exp(x); }
template <class A> VT_VMATH_INLINE A mtanh(A x) { if constexpr (std::is_same<A, float>::value) return vmath::tanh(x); else return std::tanh(x); }
template <class A> VT_VMATH_INLINE A merf(A x) { if constexpr (std::is_same<A, float>::value) return vmath::erf(x); else return std::erf(x); }
}  // namespace ew
