// ops/core/src/random.cpp — normal and uniform factories on CPU, from Philox4x32-10 (philox.h).
//
// normal(size, mean=0, std=1, dtype=None, device=None), uniform(size, low=0, high=1, ...):
// floating dtypes only (None = float32). Element i depends only on (seed, offset, i), so results
// are bit-identical for any thread count; see philox.h for how elements map to counters.
// normal uses Box-Muller on pairs of uniforms: (u1, u2) -> r*cos(2*pi*u2), r*sin(2*pi*u2), r = sqrt(-2 ln u1).
#include <cmath>

#include "philox.h"
#include "vt/oppack.hpp"

namespace {

enum class Dist { Normal, Uniform };

// the E = 4 (32-bit) or 2 (float64) values of one group, as float/double in vals[]
template <Dist D>
inline void group_f32(uint64_t seed, uint64_t counter, float a, float b, float* vals) {
  const vt_core::Philox4x32 r = vt_core::philox_group(seed, counter);
  if constexpr (D == Dist::Uniform) {
    for (int j = 0; j < 4; ++j) vals[j] = a + vt_core::u32_to_unit_float(r.x[j]) * (b - a);
  } else {
    for (int j = 0; j < 4; j += 2) {
      const float rad = std::sqrt(-2.0f * std::log(vt_core::u32_to_unit_float_open0(r.x[j])));
      const float th = 6.2831853071795864f * vt_core::u32_to_unit_float(r.x[j + 1]);
      vals[j] = a + b * rad * std::cos(th);
      vals[j + 1] = a + b * rad * std::sin(th);
    }
  }
}
template <Dist D>
inline void group_f64(uint64_t seed, uint64_t counter, double a, double b, double* vals) {
  const vt_core::Philox4x32 r = vt_core::philox_group(seed, counter);
  if constexpr (D == Dist::Uniform) {
    vals[0] = a + vt_core::u64_to_unit_double(r.x[0], r.x[1]) * (b - a);
    vals[1] = a + vt_core::u64_to_unit_double(r.x[2], r.x[3]) * (b - a);
  } else {
    const double rad = std::sqrt(-2.0 * std::log(vt_core::u64_to_unit_double_open0(r.x[0], r.x[1])));
    const double th = 6.283185307179586477 * vt_core::u64_to_unit_double(r.x[2], r.x[3]);
    vals[0] = a + b * rad * std::cos(th);
    vals[1] = a + b * rad * std::sin(th);
  }
}

// a, b: (mean, std) for normal, (low, high) for uniform
template <Dist D>
void random_factory(vt::Call& c, const char* a_name, const char* b_name) {
  const vt_int_list size = c.arg(0, "size").ints();
  const double a = c.arg(1, a_name).float_();
  const double b = c.arg(2, b_name).float_();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kFloat32);
  c.check_sizes("size", size);
  if (D == Dist::Normal && !(b >= 0.0)) c.fail(VT_ERR_VALUE, "std must be >= 0, got %g", b);
  if (D == Dist::Uniform && !(a <= b)) c.fail(VT_ERR_VALUE, "low must be <= high, got low %g and high %g", a, b);

  vt::Tensor out = c.empty(size.data, (int32_t)size.len, dtype);
  const int64_t n = out->numel;
  vt::dispatch(vt::kFloatingTypes, dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t E = std::is_same<T, double>::value ? 2 : 4;  // elements per Philox group
    const int64_t groups = (n + E - 1) / E;
    uint64_t seed = 0, offset = 0;
    if (groups > 0) c.host->philox_reserve(c.ctx->device, (uint64_t)groups, &seed, &offset);
    T* o = vt::data<T>(out);
    vt::parallel_for(c.host, 0, groups, 2048, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t i0 = g * E;
        const int64_t m = std::min<int64_t>(E, n - i0);  // the last group may be partial
        if constexpr (E == 2) {
          double v[2];
          group_f64<D>(seed, offset + (uint64_t)g, a, b, v);
          for (int64_t j = 0; j < m; ++j) o[i0 + j] = v[j];
        } else {
          float v[4];
          group_f32<D>(seed, offset + (uint64_t)g, (float)a, (float)b, v);
          for (int64_t j = 0; j < m; ++j) o[i0 + j] = vt::convert<T>(v[j]);
        }
      }
    });
  });
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(normal_cpu, "core::normal") { random_factory<Dist::Normal>(c, "mean", "std"); }
VT_KERNEL(uniform_cpu, "core::uniform") { random_factory<Dist::Uniform>(c, "low", "high"); }
