// ops/core/cuda/unary.cu — the CUDA compute of the unary family (src/unary.cpp): the floating math
// and activations, the ops that keep the dtype (neg abs sign relu clamp), pow_scalar and pow, and
// the fused activation gradients (tanh/sigmoid/silu/gelu/softplus_backward).
//
// Only the arithmetic: the meta steps in src/unary.cpp check the arguments and make the outputs.
// The formulas are the cpu's, on CUDA's libm (expf, log1pf, tanhf: within 2 ulp), except where the
// bfloat16 activations would be compute-bound: erf in float is the cpu's own rational
// approximation (vmath.hpp), divisions in the float activations are __fdividef, and float
// tanh-GELU is the equal x * sigmoid(2u). So the devices agree to the dtype's rounding, not bit
// for bit. float16/bfloat16 compute in float and round once on store. Integer/bool inputs of a
// floating op are converted into the float32 output (core::copy_) and computed there in place:
// the cpu's f(float(x)) with no kernels of their own.
// Kernels: every op has its own vectorised kernel per dtype for contiguous operands; strided and
// broadcast operands of a group share one kernel per dtype that picks the op at run time
// (vt/cuda/elementwise_shared.cuh), which halves this file's kernels and compile time.
#include <cmath>
#include <cstring>
#include <limits>

#include "vt/autograd.hpp"
#include "vt/cuda/elementwise_shared.cuh"

namespace {

using vt::cuda::acc_t;

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2*pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;

// ---- float math the activations share ------------------------------------------------------------
// x / y: in float one reciprocal and a product (within 2 ulp for the denominators below, and 0 for
// one past 2^126, where the exact quotient is below float's normal range anyway)
__device__ __forceinline__ float fdiv(float x, float y) { return __fdividef(x, y); }
__device__ __forceinline__ double fdiv(double x, double y) { return x / y; }

// erf in float: the cpu's rational approximation (src/vmath.hpp, Eigen's: 3.3e-7 absolute, one
// division, no branch). CUDA's erff takes about twice the instructions plus a divergent branch,
// which left bfloat16 GELU compute-bound at 0.61 of the copy bandwidth on the H200. A NaN
// becomes -1 in the clamp: every caller multiplies by x, which carries the NaN on.
__device__ __forceinline__ float erf_(float a) {
  const float x = fminf(fmaxf(a, -4.0f), 4.0f);  // erf rounds to +-1 in float beyond 4
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = fmaf(p, x2, 2.77068142495902e-08f);
  p = fmaf(p, x2, -2.10102402082508e-06f);
  p = fmaf(p, x2, -5.69250639462346e-05f);
  p = fmaf(p, x2, -7.34990630326855e-04f);
  p = fmaf(p, x2, -2.95459980854025e-03f);
  p = fmaf(p, x2, -1.60960333262415e-02f);
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = fmaf(q, x2, -2.13374055278905e-04f);
  q = fmaf(q, x2, -1.68282697438203e-03f);
  q = fmaf(q, x2, -7.37332916720468e-03f);
  q = fmaf(q, x2, -1.42647390514189e-02f);
  return __fdividef(p, q);  // |q| >= 0.0142
}
__device__ __forceinline__ double erf_(double x) { return erf(x); }

// x Phi(x) = hx + hx erf(x / sqrt 2), hx = x / 2, with erf_'s polynomials rescaled to take x and
// x^2 directly (two multiplications fewer; 7.6e-7 absolute against double over [-4, 4], as erf_)
__device__ __forceinline__ float gelu_erf(float a) {
  constexpr double s = kInvSqrt2;
  const float hx = 0.5f * a;
  const float z = fminf(fmaxf(a, -5.656854249f), 5.656854249f);  // +-4 sqrt(2)
  const float z2 = z * z;
  float p = (float)(-2.72614225801306e-10 / 64 * s);
  p = fmaf(p, z2, (float)(2.77068142495902e-08 / 32 * s));
  p = fmaf(p, z2, (float)(-2.10102402082508e-06 / 16 * s));
  p = fmaf(p, z2, (float)(-5.69250639462346e-05 / 8 * s));
  p = fmaf(p, z2, (float)(-7.34990630326855e-04 / 4 * s));
  p = fmaf(p, z2, (float)(-2.95459980854025e-03 / 2 * s));
  p = fmaf(p, z2, (float)(-1.60960333262415e-02 * s));
  p = p * z;
  float q = (float)(-1.45660718464996e-05 / 16);
  q = fmaf(q, z2, (float)(-2.13374055278905e-04 / 8));
  q = fmaf(q, z2, (float)(-1.68282697438203e-03 / 4));
  q = fmaf(q, z2, (float)(-7.37332916720468e-03 / 2));
  q = fmaf(q, z2, (float)(-1.42647390514189e-02));
  return fmaf(hx, __fdividef(p, q), hx);
}
__device__ __forceinline__ double gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x * kInvSqrt2)); }

template <class A> __device__ __forceinline__ A sigmoid(A x) { return fdiv(A(1), A(1) + exp(-x)); }

// ---- floating ops: x -> f(x) in the compute type A; p, q are softplus's beta and threshold -------
enum class Fm { Exp, Log, Log1p, Sqrt, Rsqrt, Sin, Cos, Tanh, Sigmoid, Silu, GeluErf, GeluTanh, Softplus, kCount };

template <Fm OP, class A>
__device__ __forceinline__ A fmath(A x, A p, A q) {
  if constexpr (OP == Fm::Exp) return exp(x);
  else if constexpr (OP == Fm::Log) return log(x);
  else if constexpr (OP == Fm::Log1p) return log1p(x);
  else if constexpr (OP == Fm::Sqrt) return sqrt(x);
  else if constexpr (OP == Fm::Rsqrt) return A(1) / sqrt(x);  // the cpu's two roundings, not rsqrtf
  else if constexpr (OP == Fm::Sin) return sin(x);
  else if constexpr (OP == Fm::Cos) return cos(x);
  else if constexpr (OP == Fm::Tanh) return tanh(x);
  else if constexpr (OP == Fm::Sigmoid) return sigmoid(x);
  else if constexpr (OP == Fm::Silu) return fdiv(x, A(1) + exp(-x));
  else if constexpr (OP == Fm::GeluErf) return gelu_erf(x);
  else if constexpr (OP == Fm::GeluTanh) {  // 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + c x^3)
    const A u2 = A(2 * kSqrt2OverPi) * (x + A(kGeluC) * x * x * x);
    if constexpr (std::is_same<A, float>::value) return fdiv(x, A(1) + exp(-u2));  // no tanhf: half the work
    else return A(0.5) * x * (A(1) + tanh(A(0.5) * u2));
  }
  else {  // softplus: x past the threshold, else log1p(exp(beta x)) / beta
    const A bx = p * x;
    return bx > q ? x : log1p(exp(bx)) / p;
  }
}

template <Fm OP, class T>
struct FloatFn {
  using A = acc_t<T>;
  A p, q;
  __device__ __forceinline__ T operator()(T x) const { return T(fmath<OP>((A)x, p, q)); }
};
template <class T>
struct AnyFloatFn {  // the strided kernel all of them share
  using A = acc_t<T>;
  Fm op;
  A p, q;
  __device__ T operator()(T x) const {
    const A a = (A)x;
    return T(vt::cuda::select_op<(int)Fm::kCount, A>((int)op, [&](auto k) { return fmath<Fm(decltype(k)::value)>(a, p, q); }));
  }
};

// 16-bit floats: 4 vectors in flight per thread. Their activations are bound by arithmetic, not
// bytes: on the H200 bfloat16 GELU (16M elements) ran at 0.84 of the copy rate with one vector
// per thread and 0.91 with four; float32 is bound by bytes either way.
template <class T> constexpr int kUnroll = sizeof(T) == 2 ? 4 : 1;

template <Fm OP>
void float_unary(vt::Call& c, double p = 0, double q = 0) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  if (!vt::is_floating(x->dtype)) {  // the meta step made a float32 output: compute there in place
    vt::call(c.host, "core::copy_", {vt::V(out), vt::V(const_cast<vt_tensor*>(x))});
    x = out;
  }
  vt::cuda::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    vt::cuda::elementwise_shared_unrolled<kUnroll<T>, T, T>(c, FloatFn<OP, T>{(A)p, (A)q}, AnyFloatFn<T>{OP, (A)p, (A)q},
                                                           out, x);
  });
}

bool gelu_is_tanh(vt::Call& c, int32_t i) { return std::strcmp(c.arg(i, "approximate").str(), "tanh") == 0; }

// ---- ops that keep the dtype: neg, abs, sign, clamp (relu is clamp(0, +inf)) -----------------------
enum class Sm { Neg, Abs, Sign, Clamp, kCount };

template <Sm OP, class A>
__device__ __forceinline__ A smath(A v, A lo, A hi) {
  if constexpr (OP == Sm::Neg) {
    if constexpr (std::is_integral<A>::value) {  // wraps
      using U = typename std::make_unsigned<A>::type;
      return (A)(U(0) - (U)v);
    } else {
      return -v;
    }
  } else if constexpr (OP == Sm::Abs) {
    if constexpr (std::is_unsigned<A>::value) return v;
    else return v < A(0) ? A(0) - v : v;
  } else if constexpr (OP == Sm::Sign) {
    if constexpr (std::is_unsigned<A>::value) return (A)(v != A(0));
    else return (A)((A(0) < v) - (v < A(0)));
  } else {  // NaN stays NaN; lo > hi gives hi (as torch)
    const A t = v < lo ? lo : v;
    return t > hi ? hi : t;
  }
}

template <Sm OP, class T>
struct SameFn {
  using A = acc_t<T>;
  A lo, hi;
  __device__ __forceinline__ T operator()(T x) const { return T(smath<OP>((A)x, lo, hi)); }
};
template <class T>
struct AnySameFn {
  using A = acc_t<T>;
  Sm op;
  A lo, hi;
  __device__ T operator()(T x) const {
    const A a = (A)x;
    return T(vt::cuda::select_op<(int)Sm::kCount, A>((int)op, [&](auto k) { return smath<Sm(decltype(k)::value)>(a, lo, hi); }));
  }
};

constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, uint8_t, int8_t> kNumTypes{};
constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, int8_t> kSignedTypes{};

// out = op(x) over `types`; lo/hi make the clamp bounds in the compute type A
template <Sm OP, class Types, class Bounds>
void same_unary(vt::Call& c, Types types, Bounds bounds) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  vt::cuda::dispatch(types, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    A lo{}, hi{};
    bounds(vt::type_tag<A>{}, lo, hi);
    vt::cuda::elementwise_shared<T, T>(c, SameFn<OP, T>{lo, hi}, AnySameFn<T>{OP, lo, hi}, out, x);
  });
}
constexpr auto no_bounds = [](auto, auto&, auto&) {};

// clamp's bounds as the cpu makes them: integer bounds round inwards and saturate to the type
template <class A>
void clamp_bounds(bool has_lo, double lo, bool has_hi, double hi, A& l, A& h) {
  if constexpr (std::is_integral<A>::value) {
    const double mn = (double)std::numeric_limits<A>::lowest(), mx = (double)std::numeric_limits<A>::max();
    l = has_lo ? (A)std::min(std::max(std::ceil(lo), mn), mx) : std::numeric_limits<A>::lowest();
    h = has_hi ? (A)std::min(std::max(std::floor(hi), mn), mx) : std::numeric_limits<A>::max();
  } else {
    l = (A)lo;
    h = (A)hi;
  }
}

// ---- pow ----------------------------------------------------------------------------------------
// integer power by squaring (unsigned: wraps); negative exponents never get here
template <class T>
__device__ __forceinline__ T ipow(T base, int64_t e) {
  using U = typename std::make_unsigned<T>::type;
  U r = 1, b = (U)base;
  while (e > 0) {
    if (e & 1) r *= b;
    b *= b;
    e >>= 1;
  }
  return (T)r;
}

// x ** e for a floating x: the cpu's special exponents are exact products (mode picks, at run time)
enum class PowMode { General, Square, Cube, One, Half, Inverse };
template <class T>
struct PowScalarFn {
  using A = acc_t<T>;
  PowMode mode;
  A e;
  __device__ __forceinline__ T operator()(T x) const {
    const A v = (A)x;
    switch (mode) {
      case PowMode::Square: return T(v * v);
      case PowMode::Cube: return T(v * v * v);
      case PowMode::One: return T(v);
      case PowMode::Half: return T(sqrt(v));
      case PowMode::Inverse: return T(A(1) / v);
      default: return T(pow(v, e));
    }
  }
};
template <class T>
struct IpowFn {
  int64_t e;
  __device__ __forceinline__ T operator()(T x) const { return ipow(x, e); }
};
// x ** y elementwise; integer y < 0 gives 0 except for bases 1 and -1 (as the cpu)
template <class T>
struct PowFn {
  __device__ __forceinline__ T operator()(T x, T y) const {
    if constexpr (std::is_integral<T>::value) {
      if (y >= 0) return ipow(x, (int64_t)y);
      return x == 1 ? T(1) : x == -1 ? ((y & 1) ? T(-1) : T(1)) : T(0);
    } else {
      using A = acc_t<T>;
      return T(pow((A)x, (A)y));
    }
  }
};

// ---- fused gradients: (grad g, saved x or y) -> g * f'(.); p, q are softplus's beta, threshold ---
enum class Bm { Tanh, Sigmoid, Silu, GeluErf, GeluTanh, Softplus, kCount };

template <Bm OP, class A>
__device__ __forceinline__ A bmath(A g, A x, A p, A q) {
  if constexpr (OP == Bm::Tanh) {  // x is the output y: 1 - y^2
    return g * (A(1) - x * x);
  } else if constexpr (OP == Bm::Sigmoid) {  // x is the output y: y (1 - y)
    return g * x * (A(1) - x);
  } else if constexpr (OP == Bm::Silu) {
    const A s = sigmoid(x);
    return g * s * (A(1) + x * (A(1) - s));
  } else if constexpr (OP == Bm::GeluErf) {  // Phi(x) + x phi(x)
    return g * (A(0.5) * (A(1) + erf_(x * A(kInvSqrt2))) + x * A(kInvSqrt2Pi) * exp(A(-0.5) * x * x));
  } else if constexpr (OP == Bm::GeluTanh) {
    const A t = tanh(A(kSqrt2OverPi) * (x + A(kGeluC) * x * x * x));
    const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluC) * x * x);
    return g * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du);
  } else {  // softplus: sigmoid(beta x), 1 past the threshold
    return p * x > q ? g : g * sigmoid(p * x);
  }
}

template <Bm OP, class T>
struct BwdFn {
  using A = acc_t<T>;
  A p, q;
  __device__ __forceinline__ T operator()(T g, T x) const { return T(bmath<OP>((A)g, (A)x, p, q)); }
};
template <class T>
struct AnyBwdFn {
  using A = acc_t<T>;
  Bm op;
  A p, q;
  __device__ T operator()(T g, T x) const {
    const A ga = (A)g, xa = (A)x;
    return T(vt::cuda::select_op<(int)Bm::kCount, A>((int)op, [&](auto k) { return bmath<Bm(decltype(k)::value)>(ga, xa, p, q); }));
  }
};

// out = grad * f'(arg 1) over the broadcast of arguments 0 and 1 (one floating dtype)
template <Bm OP>
void fused_backward(vt::Call& c, double p = 0, double q = 0) {
  const vt_tensor* out = c.out(0);
  vt::cuda::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    vt::cuda::elementwise_shared_unrolled<kUnroll<T>, T, T, T>(c, BwdFn<OP, T>{(A)p, (A)q}, AnyBwdFn<T>{OP, (A)p, (A)q},
                                                              out, c.arg(0, "grad").tensor(), c.arg(1, "self").tensor());
  });
}

// ---- computes -----------------------------------------------------------------------------------
VT_COMPUTE(exp_cuda, "core::exp") { float_unary<Fm::Exp>(c); }
VT_COMPUTE(log_cuda, "core::log") { float_unary<Fm::Log>(c); }
VT_COMPUTE(log1p_cuda, "core::log1p") { float_unary<Fm::Log1p>(c); }
VT_COMPUTE(sqrt_cuda, "core::sqrt") { float_unary<Fm::Sqrt>(c); }
VT_COMPUTE(rsqrt_cuda, "core::rsqrt") { float_unary<Fm::Rsqrt>(c); }
VT_COMPUTE(sin_cuda, "core::sin") { float_unary<Fm::Sin>(c); }
VT_COMPUTE(cos_cuda, "core::cos") { float_unary<Fm::Cos>(c); }
VT_COMPUTE(tanh_cuda, "core::tanh") { float_unary<Fm::Tanh>(c); }
VT_COMPUTE(sigmoid_cuda, "core::sigmoid") { float_unary<Fm::Sigmoid>(c); }
VT_COMPUTE(silu_cuda, "core::silu") { float_unary<Fm::Silu>(c); }
VT_COMPUTE(gelu_cuda, "core::gelu") {
  if (gelu_is_tanh(c, 1)) float_unary<Fm::GeluTanh>(c);
  else float_unary<Fm::GeluErf>(c);
}
VT_COMPUTE(softplus_cuda, "core::softplus") {
  float_unary<Fm::Softplus>(c, c.arg(1, "beta").float_(), c.arg(2, "threshold").float_());
}

VT_COMPUTE(neg_cuda, "core::neg") { same_unary<Sm::Neg>(c, kSignedTypes, no_bounds); }
VT_COMPUTE(abs_cuda, "core::abs") { same_unary<Sm::Abs>(c, kNumTypes, no_bounds); }
VT_COMPUTE(sign_cuda, "core::sign") { same_unary<Sm::Sign>(c, kNumTypes, no_bounds); }
VT_COMPUTE(relu_cuda, "core::relu") {  // clamp(min=0): NaN stays NaN, -0 stays -0, as the cpu's v < 0 ? 0 : v
  same_unary<Sm::Clamp>(c, vt::kArithTypes, [](auto tag, auto& lo, auto& hi) {
    using A = typename decltype(tag)::type;
    clamp_bounds<A>(true, 0.0, false, INFINITY, lo, hi);
  });
}
VT_COMPUTE(clamp_cuda, "core::clamp") {
  const vt::Arg lo_a = c.arg(1, "min"), hi_a = c.arg(2, "max");
  const double lo = lo_a.float_or(-INFINITY), hi = hi_a.float_or(INFINITY);
  const bool has_lo = !lo_a.is_none(), has_hi = !hi_a.is_none();
  same_unary<Sm::Clamp>(c, kNumTypes, [&](auto tag, auto& l, auto& h) {
    using A = typename decltype(tag)::type;
    clamp_bounds<A>(has_lo, lo, has_hi, hi, l, h);
  });
}

constexpr vt::types<int64_t, int32_t, uint8_t, int8_t> kPowIntTypes{};
VT_COMPUTE(pow_scalar_cuda, "core::pow_scalar") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  const double p = c.arg(1, "exponent").float_();
  if (vt::is_floating(out->dtype)) {
    const PowMode mode = p == 2.0 ? PowMode::Square : p == 3.0 ? PowMode::Cube : p == 1.0 ? PowMode::One
                       : p == 0.5 ? PowMode::Half : p == -1.0 ? PowMode::Inverse : PowMode::General;
    vt::cuda::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      vt::cuda::elementwise<T, T>(c, PowScalarFn<T>{mode, (acc_t<T>)p}, out, x);
    });
  } else {  // the meta step checked: a non-negative integer exponent
    vt::cuda::dispatch(kPowIntTypes, out->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      vt::cuda::elementwise<T, T>(c, IpowFn<T>{(int64_t)p}, out, x);
    });
  }
}

constexpr vt::types<float, double, vt::half, vt::bfloat16, int64_t, int32_t> kPowTypes{};
VT_COMPUTE(pow_cuda, "core::pow") {
  const vt_tensor* out = c.out(0);
  vt::cuda::dispatch(kPowTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise<T, T, T>(c, PowFn<T>{}, out, c.arg(0, "self").tensor(), c.arg(1, "exponent").tensor());
  });
}

VT_COMPUTE(tanh_backward_cuda, "core::tanh_backward") { fused_backward<Bm::Tanh>(c); }
VT_COMPUTE(sigmoid_backward_cuda, "core::sigmoid_backward") { fused_backward<Bm::Sigmoid>(c); }
VT_COMPUTE(silu_backward_cuda, "core::silu_backward") { fused_backward<Bm::Silu>(c); }
VT_COMPUTE(gelu_backward_cuda, "core::gelu_backward") {
  if (gelu_is_tanh(c, 2)) fused_backward<Bm::GeluTanh>(c);
  else fused_backward<Bm::GeluErf>(c);
}
VT_COMPUTE(softplus_backward_cuda, "core::softplus_backward") {
  fused_backward<Bm::Softplus>(c, c.arg(2, "beta").float_(), c.arg(3, "threshold").float_());
}

}  // namespace

void register_unary_cuda(vt::Registrar& r) {
  r.compute("core::exp", VT_CUDA, exp_cuda);
  r.compute("core::log", VT_CUDA, log_cuda);
  r.compute("core::log1p", VT_CUDA, log1p_cuda);
  r.compute("core::sqrt", VT_CUDA, sqrt_cuda);
  r.compute("core::rsqrt", VT_CUDA, rsqrt_cuda);
  r.compute("core::sin", VT_CUDA, sin_cuda);
  r.compute("core::cos", VT_CUDA, cos_cuda);
  r.compute("core::tanh", VT_CUDA, tanh_cuda);
  r.compute("core::sigmoid", VT_CUDA, sigmoid_cuda);
  r.compute("core::silu", VT_CUDA, silu_cuda);
  r.compute("core::gelu", VT_CUDA, gelu_cuda);
  r.compute("core::softplus", VT_CUDA, softplus_cuda);
  r.compute("core::neg", VT_CUDA, neg_cuda);
  r.compute("core::abs", VT_CUDA, abs_cuda);
  r.compute("core::sign", VT_CUDA, sign_cuda);
  r.compute("core::relu", VT_CUDA, relu_cuda);
  r.compute("core::clamp", VT_CUDA, clamp_cuda);
  r.compute("core::pow_scalar", VT_CUDA, pow_scalar_cuda);
  r.compute("core::pow", VT_CUDA, pow_cuda);
  r.compute("core::tanh_backward", VT_CUDA, tanh_backward_cuda);
  r.compute("core::sigmoid_backward", VT_CUDA, sigmoid_backward_cuda);
  r.compute("core::silu_backward", VT_CUDA, silu_backward_cuda);
  r.compute("core::gelu_backward", VT_CUDA, gelu_backward_cuda);
  r.compute("core::softplus_backward", VT_CUDA, softplus_backward_cuda);
}
