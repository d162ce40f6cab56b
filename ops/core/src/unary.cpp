// ops/core/src/unary.cpp — unary math and activations on CPU, with backward rules.
//
//   neg, abs, sign, relu, clamp     float16/bfloat16/float32/float64, int32, int64 (+ int8/uint8
//                                   for abs/sign/clamp); the result keeps the input's dtype
//   exp, log, log1p, sqrt, rsqrt, sin, cos, tanh, sigmoid, gelu, silu, softplus
//                                   floating; integer/bool inputs give float32 (like torch)
//   pow_scalar(self, float exponent), pow(self, Tensor exponent)
//   tanh_backward, sigmoid_backward, gelu_backward, silu_backward, softplus_backward: the fused
//       gradient kernels (grad * f'(x) in one pass) that the activations' backward rules call;
//       their own backward rules (second derivatives) are compositions of ops.
//
// float16/bfloat16 load into float, compute in float and round once on store. Outputs are new
// contiguous tensors of the input's shape (the binary ones: of the broadcast shape).
// Each op is a meta step (checks, output dtype and allocation; shared per shape class:
// float_unary_meta, same_unary_meta, ew::binary_out) and a CPU compute into c.out(0).
// Select-style float code (vmath.hpp, clamp, relu) only vectorises when GCC may evaluate both
// sides of a ?: — i.e. without trapping math. We never enable FP exceptions, so this is safe.
// (A CMake per-file flag would be cleaner; the pragma keeps the change inside this file.)
// -march=native on Intel prefers 256-bit vectors; the transcendental loops here are compute bound
// and run ~1.5x faster with 512-bit ones (a no-op where the CPU has no AVX-512).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#if defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")
#endif
#endif
#include <cmath>
#include <cstring>
#include <limits>

#include "ew.hpp"
#include "vmath.hpp"

namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1/sqrt(2*pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kGeluC = 0.044715;

constexpr vt::types<int64_t, int32_t, bool, uint8_t, int8_t> kIntTypes{};
constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, uint8_t, int8_t> kNumTypes{};
constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, int8_t> kSignedTypes{};

// ---- meta steps, one per shape class (each op's own meta is a one-line wrapper, so its messages
// name it) ------------------------------------------------------------------------------------------
// a floating op: floating self keeps its dtype, integer/bool self gives float32
void float_unary_meta(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  ew::unary_out(c, x, vt::is_floating(x->dtype) ? x->dtype : vt::kFloat32);
}
// self's dtype, which must be one of `types`
template <class Types>
void same_unary_meta(vt::Call& c, Types types) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::dispatch(types, x->dtype, c.op, [](auto) {});
  ew::unary_out(c, x, x->dtype);
}

// ---- computes ---------------------------------------------------------------------------------------
// out = f(x) for a floating f. make(tag<A>) returns the functor A -> A for the compute type A.
// Integer/bool inputs compute in float (the meta step made a float32 output).
template <class Make>
void float_unary(vt::Call& c, Make make) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  if (vt::is_floating(x->dtype)) {
    vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = vt::acc_t<T>;
      auto f = make(vt::type_tag<A>{});
      ew::map1<T, T>(c, out, x, [f](T v) { return T(f((A)v)); });
    });
  } else {
    vt::dispatch(kIntTypes, x->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      auto f = make(vt::type_tag<float>{});
      ew::map1<float, T>(c, out, x, [f](T v) { return f((float)v); });
    });
  }
}

// out = f(x) keeping x's dtype, over `types` (f maps the compute type to itself)
template <class Types, class Make>
void same_unary(vt::Call& c, Types types, Make make) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  vt::dispatch(types, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    auto f = make(vt::type_tag<A>{});
    ew::map1<T, T>(c, out, x, [f](T v) { return T(f((A)v)); });
  });
}

// out = f(a, b) over the broadcast of two floating tensors of one dtype (the fused gradients;
// their meta step is ew::binary_out over kFloatingTypes)
template <class Make>
void float_binary(vt::Call& c, Make make) {
  vt::dispatch(vt::kFloatingTypes, c.out(0)->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    auto f = make(vt::type_tag<A>{});
    ew::map2<T, T, T>(c, [f](T x, T y) { return T(f((A)x, (A)y)); });
  });
}

template <class A> VT_VMATH_INLINE A sigmoid(A x) { return A(1) / (A(1) + ew::mexp(-x)); }

// gelu, erf form: x * Phi(x); tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
template <class A> VT_VMATH_INLINE A gelu_erf(A x) { return A(0.5) * x * (A(1) + ew::merf(x * A(kInvSqrt2))); }
template <class A> VT_VMATH_INLINE A gelu_tanh(A x) {
  return A(0.5) * x * (A(1) + ew::mtanh(A(kSqrt2OverPi) * (x + A(kGeluC) * x * x * x)));
}
template <class A> VT_VMATH_INLINE A dgelu_erf(A x) {
  if constexpr (std::is_same<A, float>::value) return vmath::gelu_erf_grad(x);
  else return A(0.5) * (A(1) + ew::merf(x * A(kInvSqrt2))) + x * A(kInvSqrt2Pi) * ew::mexp(A(-0.5) * x * x);
}
template <class A> VT_VMATH_INLINE A dgelu_tanh(A x) {
  const A u = A(kSqrt2OverPi) * (x + A(kGeluC) * x * x * x);
  const A t = ew::mtanh(u);
  const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluC) * x * x);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du;
}

bool gelu_is_tanh(vt::Call& c, int32_t i) {
  const char* s = c.arg(i, "approximate").str();
  if (std::strcmp(s, "none") == 0) return false;
  if (std::strcmp(s, "tanh") == 0) return true;
  c.fail(VT_ERR_VALUE, "approximate must be 'none' or 'tanh', got '%s'", s);
}

// softplus with torch's beta/threshold: x where beta*x > threshold, else log1p(exp(beta*x))/beta
template <class A> A softplus(A x, A beta, A thr) {
  const A bx = beta * x;
  return bx > thr ? x : std::log1p(std::exp(bx)) / beta;
}

// integer power by squaring; negative exponents are refused before we get here
template <class T> T ipow(T base, int64_t e) {
  using U = typename std::make_unsigned<T>::type;
  U r = 1, b = (U)base;
  while (e > 0) {
    if (e & 1) r *= b;
    b *= b;
    e >>= 1;
  }
  return (T)r;
}

}  // namespace

// ---- ops: meta step + CPU compute ---------------------------------------------------------------
#define VT_FLOAT_UNARY(name, expr)                                                  \
  VT_META_FN(name##_meta, "core::" #name) { float_unary_meta(c); }                  \
  VT_COMPUTE(name##_cpu, "core::" #name) {                                          \
    float_unary(c, [](auto tag) {                                                   \
      using A = typename decltype(tag)::type;                                       \
      return [](A x) -> A { return expr; };                                         \
    });                                                                             \
  }

VT_FLOAT_UNARY(exp, ew::mexp(x))
VT_FLOAT_UNARY(log, std::log(x))
VT_FLOAT_UNARY(log1p, std::log1p(x))
VT_FLOAT_UNARY(sqrt, std::sqrt(x))
VT_FLOAT_UNARY(rsqrt, A(1) / std::sqrt(x))
VT_FLOAT_UNARY(sin, std::sin(x))
VT_FLOAT_UNARY(cos, std::cos(x))
VT_FLOAT_UNARY(tanh, ew::mtanh(x))
VT_FLOAT_UNARY(sigmoid, sigmoid(x))
VT_FLOAT_UNARY(silu, x * sigmoid(x))
#undef VT_FLOAT_UNARY

VT_META_FN(gelu_meta, "core::gelu") {
  gelu_is_tanh(c, 1);
  float_unary_meta(c);
}
VT_COMPUTE(gelu_cpu, "core::gelu") {
  if (gelu_is_tanh(c, 1))
    float_unary(c, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return gelu_tanh(v); }; });
  else
    float_unary(c, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return gelu_erf(v); }; });
}

VT_META_FN(softplus_meta, "core::softplus") {
  const double beta = c.arg(1, "beta").float_();
  if (beta == 0.0) c.fail(VT_ERR_VALUE, "beta must be nonzero, got %g", beta);
  float_unary_meta(c);
}
VT_COMPUTE(softplus_cpu, "core::softplus") {
  const double beta = c.arg(1, "beta").float_(), thr = c.arg(2, "threshold").float_();
  float_unary(c, [beta, thr](auto tag) {
    using A = typename decltype(tag)::type;
    const A b = (A)beta, t = (A)thr;
    return [b, t](A v) { return softplus(v, b, t); };
  });
}

VT_META_FN(neg_meta, "core::neg") {
  if (vt::same_dtype(c.arg(0, "self").tensor()->dtype, vt::kBool))
    c.fail(VT_ERR_TYPE, "negation of a bool tensor is not supported; use logical_not");
  same_unary_meta(c, kSignedTypes);
}
VT_COMPUTE(neg_cpu, "core::neg") {
  same_unary(c, kSignedTypes, [](auto tag) {
    using A = typename decltype(tag)::type;
    if constexpr (std::is_integral<A>::value)
      return [](A v) { using U = typename std::make_unsigned<A>::type; return (A)(U(0) - (U)v); };  // wraps
    else
      return [](A v) { return -v; };
  });
}

VT_META_FN(abs_meta, "core::abs") { same_unary_meta(c, kNumTypes); }
VT_COMPUTE(abs_cpu, "core::abs") {
  same_unary(c, kNumTypes, [](auto tag) {
    using A = typename decltype(tag)::type;
    if constexpr (std::is_unsigned<A>::value) return [](A v) { return v; };
    else if constexpr (std::is_integral<A>::value)  // abs(INT_MIN) wraps to INT_MIN, as in torch
      return [](A v) { using U = typename std::make_unsigned<A>::type; return v < A(0) ? (A)(U(0) - (U)v) : v; };
    else return [](A v) { return v < A(0) ? A(0) - v : v; };
  });
}

VT_META_FN(sign_meta, "core::sign") { same_unary_meta(c, kNumTypes); }
VT_COMPUTE(sign_cpu, "core::sign") {
  same_unary(c, kNumTypes, [](auto tag) {
    using A = typename decltype(tag)::type;
    return [](A v) { return (A)((A(0) < v) - (v < A(0))); };
  });
}

VT_META_FN(relu_meta, "core::relu") { same_unary_meta(c, vt::kArithTypes); }
VT_COMPUTE(relu_cpu, "core::relu") {
  same_unary(c, vt::kArithTypes, [](auto tag) {
    using A = typename decltype(tag)::type;
    return [](A v) { return v < A(0) ? A(0) : v; };  // NaN stays NaN, like torch
  });
}

// clamp(self, min=None, max=None): NaN stays NaN; min > max gives max everywhere (like torch)
VT_META_FN(clamp_meta, "core::clamp") {
  if (c.arg(1, "min").is_none() && c.arg(2, "max").is_none())
    c.fail(VT_ERR_VALUE, "at least one of min and max must be given");
  same_unary_meta(c, kNumTypes);
}
VT_COMPUTE(clamp_cpu, "core::clamp") {
  const vt::Arg lo_a = c.arg(1, "min"), hi_a = c.arg(2, "max");
  const double lo = lo_a.float_or(-INFINITY), hi = hi_a.float_or(INFINITY);
  const bool has_lo = !lo_a.is_none(), has_hi = !hi_a.is_none();
  same_unary(c, kNumTypes, [&](auto tag) {
    using A = typename decltype(tag)::type;
    A l, h;
    if constexpr (std::is_integral<A>::value) {
      // bounds outside the integer range clamp to it
      const double mn = (double)std::numeric_limits<A>::lowest(), mx = (double)std::numeric_limits<A>::max();
      l = has_lo ? (A)std::min(std::max(std::ceil(lo), mn), mx) : std::numeric_limits<A>::lowest();
      h = has_hi ? (A)std::min(std::max(std::floor(hi), mn), mx) : std::numeric_limits<A>::max();
    } else {
      l = (A)lo;
      h = (A)hi;
    }
    return [l, h](A v) {
      const A t = v < l ? l : v;
      return t > h ? h : t;
    };
  });
}

// self ** exponent. Integer self: the exponent must be a non-negative integer (the Python layer
// casts to float first otherwise).
constexpr vt::types<int64_t, int32_t, uint8_t, int8_t> kPowIntTypes{};
VT_META_FN(pow_scalar_meta, "core::pow_scalar") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const double p = c.arg(1, "exponent").float_();
  if (!vt::is_floating(x->dtype)) {
    if (p != std::trunc(p))
      c.fail(VT_ERR_TYPE, "an integer tensor (%s) to a non-integer power (%g): cast self to a float dtype first",
             vt::dtype_name(x->dtype), p);
    if (p < 0) c.fail(VT_ERR_VALUE, "integers to negative integer powers are not allowed (exponent %g)", p);
    vt::dispatch(kPowIntTypes, x->dtype, c.op, [](auto) {});
  }
  ew::unary_out(c, x, x->dtype);
}
VT_COMPUTE(pow_scalar_cpu, "core::pow_scalar") {
  const double p = c.arg(1, "exponent").float_();
  if (vt::is_floating(c.out(0)->dtype)) {
    // the common exponents get their own loops (no per-element test, and they vectorise)
    if (p == 2.0) same_unary(c, vt::kFloatingTypes, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return v * v; }; });
    else if (p == 3.0) same_unary(c, vt::kFloatingTypes, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return v * v * v; }; });
    else if (p == 1.0) same_unary(c, vt::kFloatingTypes, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return v; }; });
    else if (p == 0.5) same_unary(c, vt::kFloatingTypes, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return std::sqrt(v); }; });
    else if (p == -1.0) same_unary(c, vt::kFloatingTypes, [](auto tag) { using A = typename decltype(tag)::type; return [](A v) { return A(1) / v; }; });
    else same_unary(c, vt::kFloatingTypes, [p](auto tag) {
      using A = typename decltype(tag)::type;
      const A e = (A)p;
      return [e](A v) { return std::pow(v, e); };
    });
    return;
  }
  const int64_t e = (int64_t)p;
  same_unary(c, kPowIntTypes, [e](auto tag) {
    using A = typename decltype(tag)::type;
    return [e](A v) { return ipow(v, e); };
  });
}

constexpr vt::types<float, double, vt::half, vt::bfloat16, int64_t, int32_t> kPowTypes{};
VT_META_FN(pow_meta, "core::pow") { ew::binary_out(c, "self", "exponent", kPowTypes); }
VT_COMPUTE(pow_cpu, "core::pow") {
  vt::dispatch(kPowTypes, c.out(0)->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    if constexpr (std::is_integral<T>::value) {
      // negative exponents: torch errors; we give 0 except for bases 1 and -1 (no error path inside the loop)
      ew::map2<T, T, T>(c, [](T x, T y) {
        if (y >= 0) return ipow(x, (int64_t)y);
        return x == 1 ? T(1) : x == -1 ? ((y & 1) ? T(-1) : T(1)) : T(0);
      });
    } else {
      ew::map2<T, T, T>(c, [](T x, T y) { return T(std::pow((A)x, (A)y)); });
    }
  });
}

// ---- fused gradient kernels: grad * f'(.) --------------------------------------------------------
VT_META_FN(tanh_backward_meta, "core::tanh_backward") { ew::binary_out(c, "grad", "output", vt::kFloatingTypes); }
VT_COMPUTE(tanh_backward_cpu, "core::tanh_backward") {  // (grad, output): grad * (1 - y^2)
  float_binary(c, [](auto tag) {
    using A = typename decltype(tag)::type;
    return [](A g, A y) { return g * (A(1) - y * y); };
  });
}
VT_META_FN(sigmoid_backward_meta, "core::sigmoid_backward") { ew::binary_out(c, "grad", "output", vt::kFloatingTypes); }
VT_COMPUTE(sigmoid_backward_cpu, "core::sigmoid_backward") {  // (grad, output): grad * y (1 - y)
  float_binary(c, [](auto tag) {
    using A = typename decltype(tag)::type;
    return [](A g, A y) { return g * y * (A(1) - y); };
  });
}
VT_META_FN(silu_backward_meta, "core::silu_backward") { ew::binary_out(c, "grad", "self", vt::kFloatingTypes); }
VT_COMPUTE(silu_backward_cpu, "core::silu_backward") {  // (grad, self): grad * s (1 + x (1 - s))
  float_binary(c, [](auto tag) {
    using A = typename decltype(tag)::type;
    return [](A g, A x) {
      const A s = sigmoid(x);
      return g * s * (A(1) + x * (A(1) - s));
    };
  });
}
VT_META_FN(gelu_backward_meta, "core::gelu_backward") {
  gelu_is_tanh(c, 2);
  ew::binary_out(c, "grad", "self", vt::kFloatingTypes);
}
VT_COMPUTE(gelu_backward_cpu, "core::gelu_backward") {
  // two loops, not a flag tested per element (that kept the loop from vectorising: 5x slower)
  if (gelu_is_tanh(c, 2))
    float_binary(c, [](auto tag) {
      using A = typename decltype(tag)::type;
      return [](A g, A x) { return g * dgelu_tanh(x); };
    });
  else
    float_binary(c, [](auto tag) {
      using A = typename decltype(tag)::type;
      return [](A g, A x) { return g * dgelu_erf(x); };
    });
}
VT_META_FN(softplus_backward_meta, "core::softplus_backward") { ew::binary_out(c, "grad", "self", vt::kFloatingTypes); }
VT_COMPUTE(softplus_backward_cpu, "core::softplus_backward") {  // grad * sigmoid(beta x), 1 past threshold
  const double beta = c.arg(2, "beta").float_(), thr = c.arg(3, "threshold").float_();
  float_binary(c, [beta, thr](auto tag) {
    using A = typename decltype(tag)::type;
    const A b = (A)beta, t = (A)thr;
    return [b, t](A g, A x) { return b * x > t ? g : g * sigmoid(b * x); };
  });
}

// ---- backward rules -------------------------------------------------------------------------------
// Shorthands: go = incoming gradient, x = saved input, y = saved output.
using ew::P;
#define H g.host
#define GO g.grad_out(0)

VT_BACKWARD(neg_backward, "core::neg") { g.set_grad(0, ew::neg(H, GO)); }
VT_BACKWARD(abs_backward, "core::abs") { g.set_grad(0, ew::mul(H, GO, ew::call1(H, "core::sign", g.saved(0)))); }
VT_BACKWARD(exp_backward, "core::exp") { g.set_grad(0, ew::mul(H, GO, g.out(0))); }
VT_BACKWARD(log_backward, "core::log") { g.set_grad(0, ew::div(H, GO, g.saved(0))); }
VT_BACKWARD(log1p_backward, "core::log1p") { g.set_grad(0, ew::div(H, GO, ew::addc(H, g.saved(0), 1.0))); }
VT_BACKWARD(sqrt_backward, "core::sqrt") { g.set_grad(0, ew::div(H, GO, ew::mulc(H, g.out(0), 2.0))); }
VT_BACKWARD(rsqrt_backward, "core::rsqrt") {  // d x^-1/2 = -1/2 y^3
  vt::Tensor y3 = vt::call(H, "core::pow_scalar", {vt::V(g.out(0)), vt::V(3.0)});
  g.set_grad(0, ew::mul(H, GO, ew::mulc(H, y3, -0.5)));
}
VT_BACKWARD(sin_backward, "core::sin") { g.set_grad(0, ew::mul(H, GO, ew::call1(H, "core::cos", g.saved(0)))); }
VT_BACKWARD(cos_backward, "core::cos") {
  g.set_grad(0, ew::neg(H, ew::mul(H, GO, ew::call1(H, "core::sin", g.saved(0)))));
}
VT_BACKWARD(tanh_backward, "core::tanh") { g.set_grad(0, ew::call2(H, "core::tanh_backward", GO, g.out(0))); }
VT_BACKWARD(sigmoid_backward, "core::sigmoid") {
  g.set_grad(0, ew::call2(H, "core::sigmoid_backward", GO, g.out(0)));
}
VT_BACKWARD(relu_backward, "core::relu") {  // the gradient passes where y > 0
  vt_tensor* y = g.out(0);
  g.set_grad(0, ew::where0(H, ew::scalar_op(H, "core::gt_scalar", y, vt::V(0.0)), GO));
}
VT_BACKWARD(gelu_backward, "core::gelu") {
  g.set_grad(0, vt::call(H, "core::gelu_backward", {vt::V(GO), vt::V(g.saved(0)), ew::str(g.arg(1).v.s)}));
}
VT_BACKWARD(silu_backward, "core::silu") { g.set_grad(0, ew::call2(H, "core::silu_backward", GO, g.saved(0))); }
VT_BACKWARD(softplus_backward, "core::softplus") {
  g.set_grad(0, vt::call(H, "core::softplus_backward",
                         {vt::V(GO), vt::V(g.saved(0)), vt::V(g.arg(1).v.f), vt::V(g.arg(2).v.f)}));
}
VT_BACKWARD(clamp_backward, "core::clamp") {  // the gradient passes where min <= x <= max
  vt_tensor* x = g.saved(0);
  vt::Tensor mask;
  if (g.arg(1).tag != VT_NONE) mask = ew::scalar_op(H, "core::ge_scalar", x, vt::V(g.arg(1).v.f));
  if (g.arg(2).tag != VT_NONE) {
    vt::Tensor m2 = ew::scalar_op(H, "core::le_scalar", x, vt::V(g.arg(2).v.f));
    mask = mask ? ew::call2(H, "core::logical_and", mask, m2) : std::move(m2);
  }
  g.set_grad(0, ew::where0(H, mask, GO));
}
VT_BACKWARD(pow_scalar_backward, "core::pow_scalar") {  // p x^(p-1)
  const double p = g.arg(1).v.f;
  vt_tensor* x = g.saved(0);
  if (p == 0.0) {
    g.set_grad(0, vt::call(H, "core::zeros", {vt::V::sizes(x), vt::V(x->dtype), vt::V(x->device)}));
    return;
  }
  vt::Tensor xp = vt::call(H, "core::pow_scalar", {vt::V(x), vt::V(p - 1.0)});
  g.set_grad(0, ew::mul(H, GO, ew::mulc(H, xp, p)));
}
// a^b:  da = g b a^(b-1),  db = g a^b log(a), 0 where a == 0 and b >= 0 (torch's convention)
VT_BACKWARD(pow_backward, "core::pow") {
  vt_tensor* a = g.saved(0);
  vt_tensor* b = g.saved(1);
  if (g.needs(0)) {
    vt::Tensor t = ew::mul(H, b, ew::call2(H, "core::pow", a, ew::addc(H, b, -1.0)));
    g.set_grad(0, g.sum_to(ew::mul(H, GO, t), a));
  }
  if (g.needs(1)) {
    vt::Tensor t = ew::mul(H, GO, ew::mul(H, g.out(0), ew::call1(H, "core::log", a)));
    vt::Tensor zero = ew::scalar(H, 0.0, a);
    vt::Tensor mask = ew::call2(H, "core::logical_and", ew::scalar_op(H, "core::eq_scalar", a, vt::V(0.0)),
                                ew::scalar_op(H, "core::ge_scalar", b, vt::V(0.0)));
    vt::Tensor r = vt::call(H, "core::where", {vt::V(mask), vt::V(zero), vt::V(t)});
    g.set_grad(1, g.sum_to(std::move(r), b));
  }
}

// second derivatives: the fused kernels' own rules. f(g, y) = g * d(y); df/dg = f(gg, y).
VT_BACKWARD(tanh_backward_backward, "core::tanh_backward") {  // d/dy: -2 g y
  vt_tensor* gr = g.saved(0);
  vt_tensor* y = g.saved(1);
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::call2(H, "core::tanh_backward", GO, y), gr));
  if (g.needs(1)) g.set_grad(1, g.sum_to(ew::mulc(H, ew::mul(H, GO, ew::mul(H, gr, y)), -2.0), y));
}
VT_BACKWARD(sigmoid_backward_backward, "core::sigmoid_backward") {  // d/dy: g (1 - 2y)
  vt_tensor* gr = g.saved(0);
  vt_tensor* y = g.saved(1);
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::call2(H, "core::sigmoid_backward", GO, y), gr));
  if (g.needs(1)) {
    vt::Tensor d = ew::addc(H, ew::mulc(H, y, -2.0), 1.0);
    g.set_grad(1, g.sum_to(ew::mul(H, ew::mul(H, GO, gr), d), y));
  }
}
VT_BACKWARD(silu_backward_backward, "core::silu_backward") {  // silu'' = s(1-s)(2 + x(1-2s))
  vt_tensor* gr = g.saved(0);
  vt_tensor* x = g.saved(1);
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::call2(H, "core::silu_backward", GO, x), gr));
  if (g.needs(1)) {
    vt::Tensor s = ew::call1(H, "core::sigmoid", x);
    vt::Tensor f = ew::addc(H, ew::mul(H, x, ew::addc(H, ew::mulc(H, s, -2.0), 1.0)), 2.0);
    vt::Tensor t = ew::call2(H, "core::sigmoid_backward", ew::mul(H, GO, gr), s);  // gg gr s (1-s)
    g.set_grad(1, g.sum_to(ew::mul(H, t, f), x));
  }
}
VT_BACKWARD(gelu_backward_backward, "core::gelu_backward") {
  vt_tensor* gr = g.saved(0);
  vt_tensor* x = g.saved(1);
  const char* approx = g.arg(2).v.s;
  if (g.needs(0))
    g.set_grad(0, g.sum_to(vt::call(H, "core::gelu_backward", {vt::V(GO), vt::V(x), ew::str(approx)}), gr));
  if (!g.needs(1)) return;
  vt::Tensor x2 = ew::mul(H, x, x);
  vt::Tensor d2;
  if (std::strcmp(approx, "tanh") != 0) {  // erf: phi(x) (2 - x^2)
    vt::Tensor phi = ew::mulc(H, ew::call1(H, "core::exp", ew::mulc(H, x2, -0.5)), kInvSqrt2Pi);
    d2 = ew::mul(H, phi, ew::addc(H, ew::neg(H, x2), 2.0));
  } else {  // u = k(x + c x^3), t = tanh u: (1 - t^2) [u' + x/2 (u'' - 2 t u'^2)]
    vt::Tensor u = ew::mulc(H, ew::add(H, x, ew::mulc(H, ew::mul(H, x2, x), kGeluC)), kSqrt2OverPi);
    vt::Tensor t = ew::call1(H, "core::tanh", u);
    vt::Tensor du = ew::mulc(H, ew::addc(H, ew::mulc(H, x2, 3 * kGeluC), 1.0), kSqrt2OverPi);
    vt::Tensor ddu = ew::mulc(H, x, 6 * kGeluC * kSqrt2OverPi);
    vt::Tensor inner = ew::sub(H, ddu, ew::mulc(H, ew::mul(H, t, ew::mul(H, du, du)), 2.0));
    vt::Tensor br = ew::add(H, du, ew::mul(H, ew::mulc(H, x, 0.5), inner));
    vt::Tensor one_m_t2 = ew::addc(H, ew::neg(H, ew::mul(H, t, t)), 1.0);
    d2 = ew::mul(H, one_m_t2, br);
  }
  g.set_grad(1, g.sum_to(ew::mul(H, ew::mul(H, GO, gr), d2), x));
}
VT_BACKWARD(softplus_backward_backward, "core::softplus_backward") {  // beta s (1-s), 0 past threshold
  vt_tensor* gr = g.saved(0);
  vt_tensor* x = g.saved(1);
  const double beta = g.arg(2).v.f, thr = g.arg(3).v.f;
  if (g.needs(0))
    g.set_grad(0, g.sum_to(vt::call(H, "core::softplus_backward", {vt::V(GO), vt::V(x), vt::V(beta), vt::V(thr)}), gr));
  if (!g.needs(1)) return;
  vt::Tensor bx = ew::mulc(H, x, beta);
  vt::Tensor s = ew::call1(H, "core::sigmoid", bx);
  vt::Tensor t = ew::mulc(H, ew::call2(H, "core::sigmoid_backward", ew::mul(H, GO, gr), s), beta);
  vt::Tensor mask = ew::scalar_op(H, "core::le_scalar", bx, vt::V(thr));
  g.set_grad(1, g.sum_to(ew::where0(H, mask, t), x));
}
#undef H
#undef GO

using core::OpDef;

const OpDef kUnaryOps[] = {
    {"core::neg(Tensor self) -> Tensor", neg_meta, neg_cpu, neg_backward},
    {"core::abs(Tensor self) -> Tensor", abs_meta, abs_cpu, abs_backward, 0b1},
    {"core::sign(Tensor self) -> Tensor", sign_meta, sign_cpu, nullptr},  // derivative 0: not differentiable
    {"core::exp(Tensor self) -> Tensor", exp_meta, exp_cpu, exp_backward, 0, 0b1},
    {"core::log(Tensor self) -> Tensor", log_meta, log_cpu, log_backward, 0b1},
    {"core::log1p(Tensor self) -> Tensor", log1p_meta, log1p_cpu, log1p_backward, 0b1},
    {"core::sqrt(Tensor self) -> Tensor", sqrt_meta, sqrt_cpu, sqrt_backward, 0, 0b1},
    {"core::rsqrt(Tensor self) -> Tensor", rsqrt_meta, rsqrt_cpu, rsqrt_backward, 0, 0b1},
    {"core::sin(Tensor self) -> Tensor", sin_meta, sin_cpu, sin_backward, 0b1},
    {"core::cos(Tensor self) -> Tensor", cos_meta, cos_cpu, cos_backward, 0b1},
    {"core::tanh(Tensor self) -> Tensor", tanh_meta, tanh_cpu, tanh_backward, 0, 0b1},
    {"core::sigmoid(Tensor self) -> Tensor", sigmoid_meta, sigmoid_cpu, sigmoid_backward, 0, 0b1},
    {"core::relu(Tensor self) -> Tensor", relu_meta, relu_cpu, relu_backward, 0, 0b1},
    {"core::gelu(Tensor self, str approximate='none') -> Tensor", gelu_meta, gelu_cpu, gelu_backward, 0b1},
    {"core::silu(Tensor self) -> Tensor", silu_meta, silu_cpu, silu_backward, 0b1},
    {"core::softplus(Tensor self, float beta=1.0, float threshold=20.0) -> Tensor", softplus_meta, softplus_cpu, softplus_backward, 0b1},
    {"core::clamp(Tensor self, float? min=None, float? max=None) -> Tensor", clamp_meta, clamp_cpu, clamp_backward, 0b1},
    {"core::pow_scalar(Tensor self, float exponent) -> Tensor", pow_scalar_meta, pow_scalar_cpu, pow_scalar_backward, 0b1},
    {"core::pow(Tensor self, Tensor exponent) -> Tensor", pow_meta, pow_cpu, pow_backward, 0b11, 0b1},
    {"core::tanh_backward(Tensor grad, Tensor output) -> Tensor", tanh_backward_meta, tanh_backward_cpu, tanh_backward_backward, 0b11},
    {"core::sigmoid_backward(Tensor grad, Tensor output) -> Tensor", sigmoid_backward_meta, sigmoid_backward_cpu, sigmoid_backward_backward, 0b11},
    {"core::silu_backward(Tensor grad, Tensor self) -> Tensor", silu_backward_meta, silu_backward_cpu, silu_backward_backward, 0b11},
    {"core::gelu_backward(Tensor grad, Tensor self, str approximate='none') -> Tensor", gelu_backward_meta, gelu_backward_cpu, gelu_backward_backward, 0b11},
    {"core::softplus_backward(Tensor grad, Tensor self, float beta=1.0, float threshold=20.0) -> Tensor", softplus_backward_meta, softplus_backward_cpu, softplus_backward_backward, 0b11},
};
VT_OP_TABLE(kUnaryOps)
