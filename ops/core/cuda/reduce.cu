// ops/core/cuda/reduce.cu — the CUDA computes of the reductions: sum, mean, var, std, max_dim,
// min_dim, max, min, argmax, argmin, logsumexp, norm (cumsum is in cumsum.cu; sum_to_size is
// its meta step calling core::sum, so it runs here too).
//
// Only the arithmetic: the meta steps in src/reduce.cpp check the arguments and make the outputs.
// Each op is an Op of reduce_impl.cuh (accumulator, element step, combine, store) run by its row /
// column kernels; every result is the same bits run to run (fixed reduction trees, no atomics).
// Accumulators follow the cpu compute: float for float32/float16/bfloat16 sums, means, variances
// and logsumexp (torch's choice too), double for float64 and for every norm, int64 for integer
// sums. Input/output dtype pairs the kernels do not take directly (an integer sum into a float
// result, a float32 sum into float64, logsumexp of integers) are reduced from a copy converted by
// core::to_dtype into the accumulator's dtype, which gives the cpu's values.
// NaN: sums and variances propagate it; max/min/argmax/argmin take the first NaN (its value and
// index), like the cpu and torch; ties keep the first index.
#include <cmath>

#include "reduce_impl.cuh"

namespace {

using vtred::ST;
using vtred::to_acc;

constexpr vt::types<float, vt::half, vt::bfloat16> kFloat32ish{};  // summed in float
constexpr vt::types<bool, uint8_t, int8_t, int32_t, int64_t> kIntegerTypes{};

// ---- sum / mean --------------------------------------------------------------------------------------
template <class Acc>
struct SumOp {
  using A = Acc;
  void* out;
  ST dt;
  double scale;  // mean: 1 / R
  static constexpr bool kBatch = false;
  __device__ __forceinline__ A identity() const { return A(0); }
  template <class In>
  __device__ __forceinline__ A reduce(A a, In v, int64_t) const { return vtred::add(a, to_acc<A>(v)); }
  __device__ __forceinline__ A combine(A a, A b) const { return vtred::add(a, b); }
  __device__ __forceinline__ void store(int64_t o, A a) const {
    if constexpr (std::is_integral<A>::value) vtred::put(out, dt, o, (int64_t)a);
    else vtred::put(out, dt, o, (double)a * scale);  // R == 0: 0 * inf = nan, as on cpu
  }
};

// x converted to dtype d by core::to_dtype (owned by `own`)
const vt_tensor* converted(const vt::Call& c, const vt_tensor* x, vt_dtype d, vt::Tensor& own) {
  own = vt::call(c.host, "core::to_dtype", {vt::V(const_cast<vt_tensor*>(x)), vt::V(d)});
  return own.get();
}

template <bool Mean>
void sum_cuda_impl(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const ST od = vt::scalar_type(out->dtype);
  const ST xt = vt::scalar_type(x->dtype);
  vt::Tensor own;
  if (vt::is_floating(out->dtype)) {
    const bool wide = xt == ST::Float64 || od == ST::Float64 || !vt::is_floating(x->dtype);
    if (wide) {
      if (xt != ST::Float64) x = converted(c, x, vt::kFloat64, own);
      const vtred::Geom g = vtred::make_geom(x, reduced);
      vtred::run<SumOp<double>, double>(c, SumOp<double>{out->data, od, Mean ? 1.0 / (double)g.R : 1.0}, x, g);
      return;
    }
    const vtred::Geom g = vtred::make_geom(x, reduced);
    vt::cuda::dispatch(kFloat32ish, x->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      vtred::run<SumOp<float>, T>(c, SumOp<float>{out->data, od, Mean ? 1.0 / (double)g.R : 1.0}, x, g);
    });
    return;
  }
  // integer result (mean never gets here: its meta step wants a floating one)
  if (vt::is_floating(x->dtype)) x = converted(c, x, vt::kInt64, own);  // the cpu truncates each element
  const vtred::Geom g = vtred::make_geom(x, reduced);
  vt::cuda::dispatch(kIntegerTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vtred::run<SumOp<int64_t>, T>(c, SumOp<int64_t>{out->data, od, 1.0}, x, g);
  });
}

// ---- var / std: Welford per thread, Chan's formula between partials -------------------------------
template <class F>
struct VarOp {
  struct A {
    F mean, m2, n;
  };
  void* out;
  ST dt;
  double denom;  // max(0, R - correction)
  bool sqrt_, empty;
  static constexpr bool kBatch = false;
  __device__ __forceinline__ A identity() const { return A{F(0), F(0), F(0)}; }
  template <class In>
  __device__ __forceinline__ A reduce(A a, In v, int64_t) const {
    const F x = to_acc<F>(v);
    a.n += F(1);
    const F d = x - a.mean;
    a.mean += d / a.n;
    a.m2 += d * (x - a.mean);
    return a;
  }
  __device__ __forceinline__ A combine(A a, A b) const {
    if (b.n == F(0)) return a;
    if (a.n == F(0)) return b;
    const F n = a.n + b.n, d = b.mean - a.mean, fb = b.n / n;
    return A{a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb, n};
  }
  __device__ __forceinline__ void store(int64_t o, A a) const {
    double v = empty ? (double)NAN : (double)a.m2 / denom;
    if (sqrt_) v = sqrt(v);
    vtred::put(out, dt, o, v);
  }
};

template <bool Std>
void var_cuda_impl(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int64_t correction = c.arg(2, "correction").int_();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const vtred::Geom g = vtred::make_geom(x, reduced);
  const double denom = std::max<double>(0.0, (double)g.R - (double)correction);
  const ST od = vt::scalar_type(out->dtype);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
    vtred::run<VarOp<F>, T>(c, VarOp<F>{out->data, od, denom, Std, g.R == 0}, x, g);
  });
}

// ---- max / min / argmax / argmin: the first NaN wins, ties keep the first index -------------------
template <class T, bool Max>
struct ExtOp {
  using Val = vt::cuda::acc_t<T>;
  struct A {
    Val v;
    int64_t i;  // -1: no element yet
  };
  T* values;         // may be null (argmax/argmin)
  int64_t* indices;  // may be null (max()/min())
  static constexpr bool kBatch = true;
  __device__ __forceinline__ static bool isnan_(Val v) {
    if constexpr (std::is_floating_point<Val>::value) return v != v;
    else return false;
  }
  // y (a later element) replaces x: strictly more extreme, or the first NaN
  __device__ __forceinline__ static bool takes(Val y, Val x) {
    return (Max ? y > x : y < x) || (isnan_(y) && !isnan_(x));
  }
  // b replaces a (partials in any order): b is the extreme, or equally extreme with a smaller index
  __device__ __forceinline__ static bool better(const A& b, const A& a) {
    if (b.i < 0) return false;
    if (a.i < 0) return true;
    const bool bn = isnan_(b.v), an = isnan_(a.v);
    if (bn || an) return bn && (!an || b.i < a.i);
    if (b.v == a.v) return b.i < a.i;
    return Max ? b.v > a.v : b.v < a.v;
  }
  __device__ __forceinline__ A identity() const { return A{Val(0), -1}; }
  // elements come in increasing index order within a thread: ties keep the one held
  template <class In>
  __device__ __forceinline__ A reduce(A a, In v, int64_t r) const {
    const Val x = to_acc<Val>(v);
    return (a.i < 0 || takes(x, a.v)) ? A{x, r} : a;
  }
  // four vectors: a pairwise tree over their 4V elements (left wins ties), then the one held
  template <int V, class In>
  __device__ __forceinline__ A batch(A a, const vt::cuda::Vec<In, V> (&v)[4], int64_t r, int64_t step) const {
    constexpr int N = 4 * V;
    Val x[N];
    int q[N];
#pragma unroll
    for (int j = 0; j < N; ++j) {
      x[j] = to_acc<Val>(v[j / V].v[j % V]);
      q[j] = j;
    }
#pragma unroll
    for (int w = 1; w < N; w *= 2)
#pragma unroll
      for (int j = 0; j < N; j += 2 * w)
        if (takes(x[j + w], x[j])) {
          x[j] = x[j + w];
          q[j] = q[j + w];
        }
    return (a.i < 0 || takes(x[0], a.v)) ? A{x[0], r + (q[0] / V) * step + q[0] % V} : a;
  }
  __device__ __forceinline__ A combine(A a, A b) const { return better(b, a) ? b : a; }
  __device__ __forceinline__ void store(int64_t o, A a) const {
    if (values) {
      if constexpr (std::is_same<T, __half>::value) values[o] = __float2half_rn(a.v);
      else if constexpr (std::is_same<T, __nv_bfloat16>::value) values[o] = __float2bfloat16_rn(a.v);
      else values[o] = a.v;
    }
    if (indices) indices[o] = a.i;
  }
};

// Every variant: values and/or indices over the dims in `reduced`.
template <bool Max>
void extreme(vt::Call& c, const vt_tensor* x, const bool* reduced, const vt_tensor* values, const vt_tensor* indices) {
  const vtred::Geom g = vtred::make_geom(x, reduced);
  vt::cuda::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const ExtOp<T, Max> op{values ? vt::data<T>(values) : nullptr, indices ? vt::data<int64_t>(indices) : nullptr};
    vtred::run<ExtOp<T, Max>, T>(c, op, x, g);
  });
}

template <bool Max>
void ext_dim_cuda(vt::Call& c) {  // max_dim/min_dim: (values, indices)
  const vt_tensor* x = c.arg(0, "self").tensor();
  bool reduced[vt::kMaxDims];
  red::dim_mask(x, c.arg(1, "dim").int_(), reduced);
  extreme<Max>(c, x, reduced, c.out(0), c.out(1));
}

template <bool Max>
void ext_all_cuda(vt::Call& c) {  // max()/min(): a 0-d value
  const vt_tensor* x = c.arg(0, "self").tensor();
  bool reduced[vt::kMaxDims];
  red::all_dims(x, reduced);
  extreme<Max>(c, x, reduced, c.out(0), nullptr);
}

template <bool Max>
void arg_cuda(vt::Call& c) {  // argmax/argmin: dim=None -> the index into the flattened tensor
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt::Arg dim_a = c.arg(1, "dim");
  bool reduced[vt::kMaxDims];
  if (dim_a.is_none()) red::all_dims(x, reduced);
  else red::dim_mask(x, dim_a.int_(), reduced);
  extreme<Max>(c, x, reduced, nullptr, c.out(0));
}

// ---- logsumexp: a running (max m, sum s of exp(x - m)) ---------------------------------------------
template <class F>
struct LseOp {
  struct A {
    F m, s;
  };
  void* out;
  ST dt;
  static constexpr bool kBatch = true;
  __device__ __forceinline__ A identity() const { return A{-F(INFINITY), F(0)}; }
  template <class In>
  __device__ __forceinline__ A reduce(A a, In v, int64_t) const {
    const F x = to_acc<F>(v);
    if (x > a.m) {  // a new max (also +inf over a finite one): rescale what was summed
      a.s = a.s * exp(a.m - x) + F(1);
      a.m = x;
    } else if (x > -F(INFINITY) && a.m < F(INFINITY)) {  // finite m (a nan m fails both tests)
      a.s += exp(x - a.m);
    } else if (x != x) {  // nan wins and stays
      a.m = x;
    }
    return a;
  }
  // four vectors: one rescale to their max, then independent exps (the element steps where a NaN
  // or +inf is involved)
  template <int V, class In>
  __device__ __forceinline__ A batch(A a, const vt::cuda::Vec<In, V> (&v)[4], int64_t r, int64_t step) const {
    constexpr int N = 4 * V;
    F x[N];
    F bm = -F(INFINITY);
    bool nan = false;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      x[j] = to_acc<F>(v[j / V].v[j % V]);
      bm = x[j] > bm ? x[j] : bm;
      nan = nan || x[j] != x[j];
    }
    if (nan || bm == F(INFINITY) || !(a.m < F(INFINITY))) {
#pragma unroll
      for (int j = 0; j < N; ++j) a = reduce(a, v[j / V].v[j % V], r + (j / V) * step + j % V);
      return a;
    }
    if (bm == -F(INFINITY)) return a;  // all -inf: adds nothing
    if (bm > a.m) {
      a.s *= exp(a.m - bm);
      a.m = bm;
    }
    F s = F(0);
#pragma unroll
    for (int j = 0; j < N; ++j) s += exp(x[j] - a.m);
    a.s += s;
    return a;
  }
  __device__ __forceinline__ A combine(A a, A b) const {  // the cpu's LseAcc::combine
    if (a.m != a.m) return a;
    if (b.m != b.m) return b;
    const F m = a.m > b.m ? a.m : b.m;
    if (isinf(m)) return A{m, a.s};  // all -inf so far (s is 0), or +inf (the result)
    return A{m, a.s * exp(a.m - m) + b.s * exp(b.m - m)};
  }
  __device__ __forceinline__ void store(int64_t o, A a) const {
    const double m = (double)a.m;
    vtred::put(out, dt, o, (m != m || isinf(m)) ? m : m + log((double)a.s));
  }
};

void logsumexp_cuda_impl(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const ST od = vt::scalar_type(out->dtype);
  vt::Tensor own;
  if (!vt::is_floating(x->dtype)) x = converted(c, x, vt::kFloat64, own);  // cpu: in double, into float32
  const vtred::Geom g = vtred::make_geom(x, reduced);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
    vtred::run<LseOp<F>, T>(c, LseOp<F>{out->data, od}, x, g);
  });
}

// ---- norm: p = 2, 1, 0 (count of nonzeros), inf, -inf, any other p; in double ---------------------
enum class NormKind : int { Two, One, Zero, P, Inf, NegInf };

struct NormOp {
  using A = double;
  void* out;
  ST dt;
  NormKind kind;
  double p;
  static constexpr bool kBatch = false;
  __device__ __forceinline__ static double nan_max(double a, double b) { return (a != a || b != b) ? NAN : fmax(a, b); }
  __device__ __forceinline__ static double nan_min(double a, double b) { return (a != a || b != b) ? NAN : fmin(a, b); }
  __device__ __forceinline__ A identity() const { return kind == NormKind::NegInf ? INFINITY : 0.0; }
  template <class In>
  __device__ __forceinline__ A reduce(A a, In v, int64_t) const {
    const double x = fabs(to_acc<double>(v));
    switch (kind) {
      case NormKind::Two: return a + x * x;
      case NormKind::One: return a + x;
      case NormKind::Zero: return a + (x != 0.0 ? 1.0 : 0.0);  // nan counts, as on cpu
      case NormKind::P: return a + pow(x, p);
      case NormKind::Inf: return nan_max(a, x);
      default: return nan_min(a, x);
    }
  }
  __device__ __forceinline__ A combine(A a, A b) const {
    if (kind == NormKind::Inf) return nan_max(a, b);
    if (kind == NormKind::NegInf) return nan_min(a, b);
    return a + b;
  }
  __device__ __forceinline__ void store(int64_t o, A a) const {
    vtred::put(out, dt, o, kind == NormKind::Two ? sqrt(a) : kind == NormKind::P ? pow(a, 1.0 / p) : a);
  }
};

void norm_cuda_impl(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const double p = c.arg(1, "p").float_();
  const vt_tensor* out = c.out(0);
  const NormKind kind = p == 2.0 ? NormKind::Two : p == 1.0 ? NormKind::One : p == 0.0 ? NormKind::Zero
                      : std::isinf(p) ? (p > 0 ? NormKind::Inf : NormKind::NegInf) : NormKind::P;
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(2, "dim").ints(), reduced);
  const vtred::Geom g = vtred::make_geom(x, reduced);
  const NormOp op{out->data, vt::scalar_type(out->dtype), kind, p};
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vtred::run<NormOp, T>(c, op, x, g);
  });
}

}  // namespace

VT_COMPUTE(sum_cuda, "core::sum") { sum_cuda_impl<false>(c); }
VT_COMPUTE(mean_cuda, "core::mean") { sum_cuda_impl<true>(c); }
VT_COMPUTE(var_cuda, "core::var") { var_cuda_impl<false>(c); }
VT_COMPUTE(std_cuda, "core::std") { var_cuda_impl<true>(c); }
VT_COMPUTE(max_dim_cuda, "core::max_dim") { ext_dim_cuda<true>(c); }
VT_COMPUTE(min_dim_cuda, "core::min_dim") { ext_dim_cuda<false>(c); }
VT_COMPUTE(max_cuda, "core::max") { ext_all_cuda<true>(c); }
VT_COMPUTE(min_cuda, "core::min") { ext_all_cuda<false>(c); }
VT_COMPUTE(argmax_cuda, "core::argmax") { arg_cuda<true>(c); }
VT_COMPUTE(argmin_cuda, "core::argmin") { arg_cuda<false>(c); }
VT_COMPUTE(logsumexp_cuda, "core::logsumexp") { logsumexp_cuda_impl(c); }
VT_COMPUTE(norm_cuda, "core::norm") { norm_cuda_impl(c); }

vt::KernelFn cumsum_cuda;  // cumsum.cu

void register_reduce_cuda(vt::Registrar& r) {
  r.compute("core::sum", VT_CUDA, sum_cuda);
  r.compute("core::mean", VT_CUDA, mean_cuda);
  r.compute("core::var", VT_CUDA, var_cuda);
  r.compute("core::std", VT_CUDA, std_cuda);
  r.compute("core::max_dim", VT_CUDA, max_dim_cuda);
  r.compute("core::min_dim", VT_CUDA, min_dim_cuda);
  r.compute("core::max", VT_CUDA, max_cuda);
  r.compute("core::min", VT_CUDA, min_cuda);
  r.compute("core::argmax", VT_CUDA, argmax_cuda);
  r.compute("core::argmin", VT_CUDA, argmin_cuda);
  r.compute("core::logsumexp", VT_CUDA, logsumexp_cuda);
  r.compute("core::norm", VT_CUDA, norm_cuda);
  r.compute("core::cumsum", VT_CUDA, cumsum_cuda);
}
