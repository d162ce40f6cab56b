// ops/core/src/random.cpp — random factories and in-place fills, from Philox4x32-10 (philox.h):
// normal, uniform, randint, randperm, normal_, uniform_. None is differentiable.
// Each op is a meta step (argument checks, the output: a new tensor on ctx->device, or self) and a
// CPU compute that reserves the Philox numbers it uses and fills the output.
//
// normal(size, mean=0, std=1, dtype=None, device=None), uniform(size, low=0, high=1, ...):
// floating dtypes only (None = float32). Element i depends only on (seed, offset, i), so results
// are bit-identical for any thread count; see philox.h for how elements map to counters.
// The numbers of one group come from vt/random_dist.h, which the CUDA computes (cuda/random.cu)
// share: the same seed draws the same float32 numbers on cpu and cuda, bit for bit.
// normal uses Box-Muller on pairs of uniforms: (u1, u2) -> r*cos(2*pi*u2), r*sin(2*pi*u2), r = sqrt(-2 ln u1).
#include <cmath>

#include <climits>
#include <vector>

#include "core.hpp"
#include "vt/philox.h"
#include "vt/random_dist.h"
#include "vt/autograd.hpp"

namespace {

enum class Dist { Normal, Uniform };

// Fills the contiguous tensor `out` with element i from (seed, offset + i / E): the distribution's
// numbers in logical order. a, b: (mean, std) for normal, (low, high) for uniform.
template <Dist D>
void fill_random(vt::Call& c, const vt_tensor* out, double a, double b) {
  const int64_t n = out->numel;
  vt::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto tag) {
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
        const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)g);
        if constexpr (E == 2) {
          double v[2];
          if constexpr (D == Dist::Uniform) vt::philox::uniform2(r, a, b, v);
          else vt::philox::normal2(r, a, b, v);
          for (int64_t j = 0; j < m; ++j) o[i0 + j] = v[j];
        } else {
          float v[4];
          if constexpr (D == Dist::Uniform) vt::philox::uniform4(r, (float)a, (float)b, v);
          else vt::philox::normal4(r, (float)a, (float)b, v);
          for (int64_t j = 0; j < m; ++j) o[i0 + j] = vt::convert<T>(v[j]);
        }
      }
    });
  });
}

template <Dist D>
void check_params(vt::Call& c, double a, double b) {
  if (D == Dist::Normal && !(b >= 0.0)) c.fail(VT_ERR_VALUE, "std must be >= 0, got %g", b);
  if (D == Dist::Uniform && !(a <= b)) c.fail(VT_ERR_VALUE, "low must be <= high, got low %g and high %g", a, b);
}

// the meta step of normal/uniform: a new floating tensor of `size`
template <Dist D>
void random_factory_meta(vt::Call& c, const char* a_name, const char* b_name) {
  const vt_int_list size = c.arg(0, "size").ints();
  const double a = c.arg(1, a_name).float_();
  const double b = c.arg(2, b_name).float_();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kFloat32);
  c.check_sizes("size", size);
  check_params<D>(c, a, b);
  if (!vt::is_floating(dtype))
    c.fail(VT_ERR_TYPE, "dtype must be a floating type, got %s", vt::dtype_name(dtype));
  c.set_out(0, c.empty(size.data, (int32_t)size.len, dtype));
}

// the meta step of normal_/uniform_: self, which must be floating
template <Dist D>
void random_inplace_meta(vt::Call& c, const char* a_name, const char* b_name) {
  vt_tensor* self = c.arg(0, "self").tensor();
  check_params<D>(c, c.arg(1, a_name).float_(), c.arg(2, b_name).float_());
  if (!vt::is_floating(self->dtype))
    c.fail(VT_ERR_TYPE, "self must have a floating dtype, got %s", vt::dtype_name(self->dtype));
  c.set_out_retained(0, self);
}

// The compute of all four: out (a fresh tensor, or self) gets in logical (row-major) order the
// numbers a fresh tensor of its shape would get, whatever its strides.
template <Dist D>
void random_cpu(vt::Call& c) {
  const vt_tensor* out = c.out(0);
  const double a = c.arg(1, D == Dist::Normal ? "mean" : "low").float_();
  const double b = c.arg(2, D == Dist::Normal ? "std" : "high").float_();
  if (vt::is_contiguous(out)) {
    fill_random<D>(c, out, a, b);
  } else {
    vt::Tensor tmp = c.empty_like(out);
    fill_random<D>(c, tmp, a, b);
    vt::Tensor r = vt::call(c.host, "core::copy_", {c.out(0), tmp.get()});
  }
}

}  // namespace

VT_META_FN(normal_meta, "core::normal") { random_factory_meta<Dist::Normal>(c, "mean", "std"); }
VT_META_FN(uniform_meta, "core::uniform") { random_factory_meta<Dist::Uniform>(c, "low", "high"); }
VT_META_FN(normal__meta, "core::normal_") { random_inplace_meta<Dist::Normal>(c, "mean", "std"); }
VT_META_FN(uniform__meta, "core::uniform_") { random_inplace_meta<Dist::Uniform>(c, "low", "high"); }
// one compute per distribution serves the factory and the in-place form
VT_COMPUTE(normal_cpu, "core::normal") { random_cpu<Dist::Normal>(c); }
VT_COMPUTE(uniform_cpu, "core::uniform") { random_cpu<Dist::Uniform>(c); }

// randint: element i = low + bounded(word i); 4 elements per group for ranges up to 2^32, else 2.
VT_META_FN(randint_meta, "core::randint") {
  const int64_t low = c.arg(0, "low").int_();
  const int64_t high = c.arg(1, "high").int_();
  const vt_int_list size = c.arg(2, "size").ints();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kInt64);
  c.check_sizes("size", size);
  if (!(low < high)) c.fail(VT_ERR_VALUE, "low must be < high, got low %lld and high %lld", (long long)low, (long long)high);
  if (vt::scalar_type(dtype) == vt::ScalarType::Bool) c.fail(VT_ERR_TYPE, "dtype bool is not supported");
  vt::dispatch(vt::kAllTypes, dtype, c.op, [](auto) {});
  c.set_out(0, c.empty(size.data, (int32_t)size.len, dtype));
}

VT_COMPUTE(randint_cpu, "core::randint") {
  const int64_t low = c.arg(0, "low").int_();
  const int64_t high = c.arg(1, "high").int_();
  const vt_tensor* out = c.out(0);
  const uint64_t range = (uint64_t)high - (uint64_t)low;
  const bool wide = range > (1ull << 32);
  const int64_t E = wide ? 2 : 4, n = out->numel;
  const int64_t groups = (n + E - 1) / E;
  uint64_t seed = 0, offset = 0;
  if (groups > 0) c.host->philox_reserve(c.ctx->device, (uint64_t)groups, &seed, &offset);
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    vt::parallel_for(c.host, 0, groups, 2048, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)g);
        const int64_t i0 = g * E, m = std::min<int64_t>(E, n - i0);
        for (int64_t j = 0; j < m; ++j) {
          const uint64_t u = wide ? vt::philox::bounded64(r.x[2 * j], r.x[2 * j + 1], range) : vt::philox::bounded32(r.x[j], range);
          o[i0 + j] = vt::convert<T>((int64_t)((uint64_t)low + u));
        }
      }
    });
  });
}

// randperm: Fisher-Yates from the top, step i (n-1 .. 1) swapping with j = bounded(i + 1) drawn
// from 64 random bits of group i / 2. Serial (the swaps depend on each other); O(n).
VT_META_FN(randperm_meta, "core::randperm") {
  const int64_t n = c.arg(0, "n").int_();
  const vt_dtype dtype = c.arg(1, "dtype").dtype_or(vt::kInt64);
  if (n < 0) c.fail(VT_ERR_VALUE, "n must be >= 0, got %lld", (long long)n);
  const vt::ScalarType st = vt::scalar_type(dtype);
  if (st != vt::ScalarType::Int64 && st != vt::ScalarType::Int32 && st != vt::ScalarType::Float32 &&
      st != vt::ScalarType::Float64)
    c.fail(VT_ERR_TYPE, "dtype must be int64, int32, float32 or float64, got %s", vt::dtype_name(dtype));
  if (st == vt::ScalarType::Int32 && n > INT32_MAX) c.fail(VT_ERR_VALUE, "n = %lld does not fit int32", (long long)n);
  c.set_out(0, c.empty(&n, 1, dtype));
}

VT_COMPUTE(randperm_cpu, "core::randperm") {
  const vt_tensor* out = c.out(0);
  const int64_t n = out->numel;
  const int64_t groups = (n + 1) / 2;
  uint64_t seed = 0, offset = 0;
  if (groups > 0) c.host->philox_reserve(c.ctx->device, (uint64_t)groups, &seed, &offset);
  vt::dispatch(vt::types<int64_t, int32_t, float, double>{}, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    std::vector<int64_t> p((size_t)n);
    for (int64_t i = 0; i < n; ++i) p[(size_t)i] = i;
    vt::philox::Philox4x32 r{};
    for (int64_t i = n - 1; i >= 1; --i) {
      if (i == n - 1 || (i & 1) == 1) r = vt::philox::philox_group(seed, offset + (uint64_t)(i / 2));
      const int w = (int)(i & 1) * 2;
      const int64_t j = (int64_t)vt::philox::bounded64(r.x[w], r.x[w + 1], (uint64_t)i + 1);
      std::swap(p[(size_t)i], p[(size_t)j]);
    }
    for (int64_t i = 0; i < n; ++i) o[i] = (T)p[(size_t)i];
  });
}

using core::OpDef;

vt::BackwardFn overwrite_backward;  // pointwise.cpp: the old values' gradient is zero

const OpDef kRandomOps[] = {
    {"core::normal(int[] size, float mean=0.0, float std=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", normal_meta,
     normal_cpu},
    {"core::uniform(int[] size, float low=0.0, float high=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", uniform_meta,
     uniform_cpu},
    {"core::normal_(Tensor self, float mean=0.0, float std=1.0) -> Tensor", normal__meta, normal_cpu, overwrite_backward},
    {"core::uniform_(Tensor self, float low=0.0, float high=1.0) -> Tensor", uniform__meta, uniform_cpu, overwrite_backward},
    {"core::randint(int low, int high, int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", randint_meta, randint_cpu},
    {"core::randperm(int n, ScalarType? dtype=None, Device? device=None) -> Tensor", randperm_meta, randperm_cpu},
};
VT_OP_TABLE(kRandomOps)
