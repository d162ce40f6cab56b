// vt/half.hpp — float16 and bfloat16 storage types for CPU kernels, with no dependencies.
//
// These are storage types, not arithmetic types: kernels load them into float, compute in float
// and store back (`vt::acc_t<T>` names the compute type). Conversions round to nearest even, keep
// infinities and turn every NaN into a quiet NaN. They assume IEEE float arithmetic in the default
// rounding mode without flush-to-zero (do not build packs with -ffast-math: the float16 subnormal
// path relies on a float addition rounding exactly).
//
// NOT for device code: CUDA kernels use __half / __nv_bfloat16 from the CUDA headers.
#ifndef VT_HALF_HPP_
#define VT_HALF_HPP_

#include <cstdint>
#include <cstring>

namespace vt {

namespace detail {
inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
}  // namespace detail

// IEEE binary16: 1 sign, 5 exponent, 10 mantissa bits. After Fabian Giesen's public-domain
// float_to_half_fast3_rtne / half_to_float_fast5 (branch-light, exact for every input).
inline uint16_t float_to_half_bits(float f) {
  uint32_t u = detail::float_bits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t out;
  if (u >= (127u + 16u) << 23) {                 // |f| >= 65536, inf or nan
    out = u > 0x7f800000u ? 0x7e00 : 0x7c00;
  } else if (u < 113u << 23) {                   // |f| < 2^-14: half subnormal or zero
    // Adding 0.5f lines the 10 half mantissa bits up at the bottom of the float; the float adder
    // does the round-to-nearest-even for us.
    const float magic = 0.5f;
    out = (uint16_t)(detail::float_bits(detail::bits_float(u) + magic) - detail::float_bits(magic));
  } else {                                       // normal half (may round up into inf)
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += ((uint32_t)(15 - 127) << 23) + 0xfffu + mant_odd;
    out = (uint16_t)(u >> 13);
  }
  return (uint16_t)(out | (sign >> 16));
}

inline float half_bits_to_float(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t u = (uint32_t)(h & 0x7fff) << 13;
  const uint32_t exp = shifted_exp & u;
  u += (uint32_t)(127 - 15) << 23;
  float f;
  if (exp == shifted_exp) {                      // inf / nan: exponent all ones
    u += (uint32_t)(128 - 16) << 23;
    f = detail::bits_float(u);
  } else if (exp == 0) {                         // zero / subnormal: renormalise via float math
    u += 1u << 23;
    f = detail::bits_float(u) - detail::bits_float(113u << 23);
  } else {
    f = detail::bits_float(u);
  }
  return detail::bits_float(detail::float_bits(f) | ((uint32_t)(h & 0x8000) << 16));
}

// bfloat16 is the top half of a float32, so the conversion is a rounding shift.
inline uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t u = detail::float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040);  // quiet nan
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bfloat16_bits_to_float(uint16_t b) { return detail::bits_float((uint32_t)b << 16); }

// The storage structs. Explicit from float (a rounding step), implicit to float (exact).
struct half {
  uint16_t bits;
  half() = default;
  explicit half(float f) : bits(float_to_half_bits(f)) {}
  operator float() const { return half_bits_to_float(bits); }
  static half from_bits(uint16_t b) { half h; h.bits = b; return h; }
};
struct bfloat16 {
  uint16_t bits;
  bfloat16() = default;
  explicit bfloat16(float f) : bits(float_to_bfloat16_bits(f)) {}
  operator float() const { return bfloat16_bits_to_float(bits); }
  static bfloat16 from_bits(uint16_t b) { bfloat16 h; h.bits = b; return h; }
};
static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2, "16-bit storage types");

}  // namespace vt

#endif  // VT_HALF_HPP_
