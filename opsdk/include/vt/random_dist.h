// vt/random_dist.h — the distributions of core's random ops over one Philox group (vt/philox.h),
// one definition for the CPU and the CUDA kernels, so both devices draw the same numbers from the
// same (seed, counter).
//
//   uniform4(r, low, high, v[4])   4 floats: low + u * (high - low), u = u32_to_unit_float(word)
//   normal4(r, mean, std, v[4])    4 floats: Box-Muller on words (0, 1) and (2, 3)
//   uniform2(r, low, high, v[2])   2 doubles from 53-bit uniforms of words (0, 1) and (2, 3)
//   normal2(r, mean, std, v[2])    2 doubles: one Box-Muller pair
//   bounded32(x, range) / bounded64(lo, hi, range)
//                                  an integer uniform in [0, range) (multiply-shift), for randint
//
// Why the float path is written out by hand: libm's logf/sinf/cosf and CUDA's differ in the last
// bit for some inputs, and a compiler may or may not fuse a*b+c into one rounding (nvcc does by
// default, gcc does with -march=native). So the 32-bit path calls no libm function and leaves no
// product feeding an addition: every multiply-add is an explicit fma, the rest is integer work, +,
// -, *, / and sqrt, which IEEE rounds the same everywhere. That makes float32 results bit-identical
// on CPU and CUDA; float16/bfloat16 are these floats rounded (both sides round to nearest even).
// log is FreeBSD/musl's logf (error < 1 ulp); sin/cos of 2*pi*u reduce exactly on the 24-bit
// integer of u to a quarter turn, then Cephes' sinf/cosf polynomials on [-pi/4, pi/4] (~1 ulp).
// The float64 path uses the platform's log/sin/cos: CPU and CUDA agree to an ulp or two.
#ifndef VT_RANDOM_DIST_H_
#define VT_RANDOM_DIST_H_

#include <stdint.h>

#include "vt/philox.h"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#include <cstring>
#endif

namespace vt {
namespace philox {

// ---- exactly rounded building blocks, the same on host and device ----------------------------------
VT_PHILOX_FN float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
VT_PHILOX_FN double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
VT_PHILOX_FN float sqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}
VT_PHILOX_FN uint32_t bits_of(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
VT_PHILOX_FN float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ln(u32_to_unit_float_open0(x)) = ln(k * 2^-24), k = (x >> 8) + 1 in [1, 2^24].
// k = m * 2^e with m in [sqrt(1/2), sqrt(2)); ln(m) = ln((1 + s) / (1 - s)), s = f / (2 + f),
// f = m - 1, from musl's logf polynomial.
VT_PHILOX_FN float log_unit_open0(uint32_t x) {
  const float kf = (float)((x >> 8) + 1u);  // exact
  uint32_t ix = bits_of(kf) + (0x3f800000u - 0x3f3504f3u);
  const int e = (int)(ix >> 23) - 127;
  ix = (ix & 0x007fffffu) + 0x3f3504f3u;
  const float f = float_of(ix) - 1.0f;  // exact (Sterbenz)
  const float s = f / (2.0f + f);
  const float z = s * s, w = z * z;
  const float t1 = w * fma_rn(w, 0.24279078841f, 0.40000972152f);
  const float r = fma_rn(z, fma_rn(w, 0.28498786688f, 0.66666662693f), t1);
  const float hf = 0.5f * f;  // exact
  const float dk = (float)(e - 24);
  float y = fma_rn(s, fma_rn(hf, f, r), dk * 9.0580006145e-06f);  // s * (f*f/2 + r) + dk * ln2_lo
  y = fma_rn(-hf, f, y) + f;                                       // - f*f/2 + f
  return fma_rn(dk, 6.9313812256e-01f, y);                         // + dk * ln2_hi
}

// sin and cos of 2*pi*u32_to_unit_float(x). j = x >> 8 turns of 2^-24; shifting by an eighth turn
// and splitting off the quadrant q leaves t = angle / (pi/2) - q in [-1/2, 1/2), exactly.
VT_PHILOX_FN void sincos_2pi_unit(uint32_t x, float* sn, float* cs) {
  const uint32_t j = ((x >> 8) + (1u << 21)) & 0xffffffu;
  const uint32_t q = j >> 22;
  const float t = (float)((int32_t)(j & 0x3fffffu) - (1 << 21)) * 2.38418579101562500e-07f;  // * 2^-22
  const float th = t * 1.57079632679489662f;  // |th| <= pi/4
  const float z = th * th;
  const float zth = z * th;
  const float ps = fma_rn(fma_rn(z, -1.9515295891e-4f, 8.3321608736e-3f), z, -1.6666654611e-1f);
  const float s = fma_rn(ps, zth, th);
  const float pc = fma_rn(fma_rn(z, 2.443315711809948e-5f, -1.388731625493765e-3f), z, 4.166664568298827e-2f);
  const float c = fma_rn(pc, z * z, fma_rn(-0.5f, z, 1.0f));
  // rotate by q quarter turns
  const float s1 = (q & 1u) ? c : s, c1 = (q & 1u) ? s : c;
  *sn = (q & 2u) ? -s1 : s1;
  *cs = ((q + 1u) & 2u) ? -c1 : c1;
}

// ---- the distributions of one group -------------------------------------------------------------
VT_PHILOX_FN void uniform4(const Philox4x32& r, float low, float high, float* v) {
  const float span = high - low;
  for (int j = 0; j < 4; ++j) v[j] = fma_rn(u32_to_unit_float(r.x[j]), span, low);
}

VT_PHILOX_FN void normal4(const Philox4x32& r, float mean, float std_, float* v) {
  for (int j = 0; j < 4; j += 2) {
    const float rad = std_ * sqrt_rn(-2.0f * log_unit_open0(r.x[j]));
    float s, c;
    sincos_2pi_unit(r.x[j + 1], &s, &c);
    v[j] = fma_rn(rad, c, mean);
    v[j + 1] = fma_rn(rad, s, mean);
  }
}

VT_PHILOX_FN void uniform2(const Philox4x32& r, double low, double high, double* v) {
  const double span = high - low;
  v[0] = fma_rn(u64_to_unit_double(r.x[0], r.x[1]), span, low);
  v[1] = fma_rn(u64_to_unit_double(r.x[2], r.x[3]), span, low);
}

VT_PHILOX_FN void normal2(const Philox4x32& r, double mean, double std_, double* v) {
  const double rad = std_ * sqrt(-2.0 * log(u64_to_unit_double_open0(r.x[0], r.x[1])));
  const double th = 6.283185307179586477 * u64_to_unit_double(r.x[2], r.x[3]);
  v[0] = fma_rn(rad, cos(th), mean);
  v[1] = fma_rn(rad, sin(th), mean);
}

// uniform integers in [0, range): 32 random bits when range <= 2^32, else 64
VT_PHILOX_FN uint64_t bounded32(uint32_t x, uint64_t range) { return ((uint64_t)x * range) >> 32; }
VT_PHILOX_FN uint64_t bounded64(uint32_t lo, uint32_t hi, uint64_t range) {
  const uint64_t x = ((uint64_t)hi << 32) | lo;
#if defined(__CUDA_ARCH__)
  return __umul64hi(x, range);
#else
  return (uint64_t)(((unsigned __int128)x * range) >> 64);
#endif
}

}  // namespace philox
}  // namespace vt

#endif  // VT_RANDOM_DIST_H_
