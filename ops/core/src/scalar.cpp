// ops/core/src/scalar.cpp — arithmetic of a tensor with a Python number (typed `Scalar`
// arguments), so `x + 1.0` is one op call with no 0-d tensor made for the number.
//
//   add_scalar(self, other, alpha=1)   self + alpha * other      (and add_scalar_, in place)
//   sub_scalar(self, other, alpha=1)   self - alpha * other      (and sub_scalar_)
//   rsub_scalar(self, other, alpha=1)  other - alpha * self
//   mul_scalar(self, other)            self * other              (and mul_scalar_)
//   div_scalar(self, other)            self / other              (and div_scalar_)
//   rdiv_scalar(self, other)           other / self
//   maximum_scalar, minimum_scalar(self, other)   NaN propagates; the gradient goes to self where
//                                      it is the larger (smaller), half of it on ties (as maximum)
//
// The result dtype is torch's (host->result_type_scalar): the number only lifts the category,
// int32 + 1 -> int32, float16 + 1.0 -> float16, int64 + 1.0 -> float32, bool + 1 -> int64; div
// and rdiv are true division (integer results become float32). When the result dtype differs
// from self's, self is read converted. float16/bfloat16 compute in float, with the number in
// float (not rounded to 16 bits first, like torch's CPU kernels). Integer arithmetic wraps.
// The in-place forms need the result dtype to be self's (int64 tensor += 1.0 is a TypeError, as
// in torch). alpha must be an integer when the result is integral (as core::add).
// Supported results: float32/64, float16, bfloat16, int64, int32, uint8, int8 (bool results,
// e.g. bool tensor + True, are refused).
//
// Each op is a meta step (scalar_meta: the result dtype, checks, the output or self) and a CPU
// compute (scalar_cpu). Small contiguous tensors take one flat loop with no set-up: this is the
// path `x + 1.0` takes. Backward rules give self's gradient only (numbers get none).
#include <cmath>

#include "ew.hpp"

namespace {

enum class SOp { Add, Sub, RSub, Mul, Div, RDiv, Max, Min };

// the result dtypes a compute exists for
constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, uint8_t, int8_t> kResultTypes{};
// self dtypes that are read converted into a float32 result (or, bool, into an int64 one)
constexpr vt::types<int64_t, int32_t, bool, uint8_t, int8_t> kToFloatTypes{};

double as_double(const vt_value& v) { return v.tag == VT_FLOAT ? v.v.f : v.tag == VT_INT ? (double)v.v.i : (double)v.v.b; }
int64_t as_int(const vt_value& v) { return v.tag == VT_INT ? v.v.i : v.tag == VT_BOOL ? v.v.b : (int64_t)v.v.f; }

// the number as the compute type A (integers exactly from the int value, wrapping like a cast)
template <class A>
A scalar_as(const vt_value& v) {
  if constexpr (std::is_integral<A>::value) return (A)(typename std::make_unsigned<A>::type)as_int(v);
  else return (A)as_double(v);
}

constexpr bool has_alpha(SOp op) { return op == SOp::Add || op == SOp::Sub || op == SOp::RSub; }
constexpr bool is_div(SOp op) { return op == SOp::Div || op == SOp::RDiv; }

// The meta step: the result dtype; alpha; the output (a new tensor of self's shape, or self).
template <SOp OP, bool Inplace = false>
void scalar_meta(vt::Call& c) {
  vt_tensor* x = c.arg(0, "self").tensor();
  const vt_value s = c.arg(1, "other").scalar();
  vt_dtype r = c.host->result_type_scalar(x->dtype, s.tag);
  if (is_div(OP) && vt::is_integral(r, true)) r = vt::kFloat32;  // true division
  if (Inplace) {
    if (!vt::same_dtype(r, x->dtype))
      c.fail(VT_ERR_TYPE, "result type %s can't be cast to the desired output type %s", vt::dtype_name(r),
             vt::dtype_name(x->dtype));
  }
  vt::dispatch(kResultTypes, r, c.op, [](auto) {});  // refuse other dtypes here, on every device
  if constexpr (has_alpha(OP)) {
    const vt_value al = c.arg(2, "alpha").scalar();
    const double alpha = as_double(al);
    if (vt::is_integral(r, true) && alpha != std::trunc(alpha))
      c.fail(VT_ERR_TYPE, "alpha must be an integer for integral dtype %s, got %g", vt::dtype_name(r), alpha);
  }
  if (Inplace) c.set_out_retained(0, x);
  else ew::unary_out(c, x, r);
}

// out (R, compute type A) = f(x) with x read as S
template <class R, class S, class F>
void run(const vt::Call& c, const vt_tensor* out, const vt_tensor* x, F f) {
  using A = vt::acc_t<R>;
  if constexpr (std::is_same<R, S>::value) {
    ew::map1<R, S>(c, out, x, [f](S v) { return R(f((A)v)); });
  } else {
    ew::map1<R, S>(c, out, x, [f](S v) { return R(f(vt::convert<A>(v))); });
  }
}

// calls f(tag<S>, tag<R>) for self's dtype S and the result dtype R (the meta step checked R)
template <class F>
void dispatch_sr(const vt::Call& c, vt_dtype s, vt_dtype r, F&& f) {
  if (vt::same_dtype(s, r)) {
    vt::dispatch(kResultTypes, r, c.op, [&](auto t) { f(t, t); });
  } else if (vt::same_dtype(r, vt::kFloat32)) {
    vt::dispatch(kToFloatTypes, s, c.op, [&](auto t) { f(t, vt::type_tag<float>{}); });
  } else if (vt::same_dtype(r, vt::kInt64) && vt::same_dtype(s, vt::kBool)) {
    f(vt::type_tag<bool>{}, vt::type_tag<int64_t>{});
  } else {
    c.fail(VT_ERR_NOT_IMPL, "no compute from %s to %s", vt::dtype_name(s), vt::dtype_name(r));
  }
}

// The CPU compute: out = self OP other (out may be self).
template <SOp OP>
void scalar_cpu(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_value s = c.arg(1, "other").scalar();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  dispatch_sr(c, x->dtype, out->dtype, [&](auto stag, auto rtag) {
    using S = typename decltype(stag)::type;
    using R = typename decltype(rtag)::type;
    using A = vt::acc_t<R>;
    const A k = scalar_as<A>(s);
    if constexpr (has_alpha(OP)) {
      const vt_value al = c.arg(2, "alpha").scalar();
      const A alpha = scalar_as<A>(al);
      if constexpr (OP == SOp::RSub) {  // other - alpha * self
        if (alpha == A(1)) run<R, S>(c, out, x, [k](A v) { return ew::wrap_add<A>(k, ew::wrap_mul<A>(A(0) - A(1), v)); });
        else run<R, S>(c, out, x, [k, alpha](A v) { return ew::wrap_add<A>(k, ew::wrap_mul<A>(A(0) - alpha, v)); });
      } else {  // self + alpha * other; sub adds -alpha * other (integers wrap exactly like torch)
        const A ka = ew::wrap_mul<A>(OP == SOp::Sub ? ew::wrap_mul<A>(A(0) - A(1), alpha) : alpha, k);
        run<R, S>(c, out, x, [ka](A v) { return ew::wrap_add<A>(v, ka); });
      }
    } else if constexpr (OP == SOp::Mul) {
      run<R, S>(c, out, x, [k](A v) { return ew::wrap_mul<A>(v, k); });
    } else if constexpr (OP == SOp::Div) {
      run<R, S>(c, out, x, [k](A v) { return v / k; });
    } else if constexpr (OP == SOp::RDiv) {
      run<R, S>(c, out, x, [k](A v) { return k / v; });
    } else {  // NaN in, NaN out (the test folds away for integers)
      run<R, S>(c, out, x, [k](A v) { return v != v || k != k ? A(v + k) : (OP == SOp::Max ? (v < k) : (k < v)) ? k : v; });
    }
  });
}

}  // namespace

VT_EW_OP(add_scalar, scalar_meta<SOp::Add>, scalar_cpu<SOp::Add>)
VT_EW_OP(sub_scalar, scalar_meta<SOp::Sub>, scalar_cpu<SOp::Sub>)
VT_EW_OP(rsub_scalar, scalar_meta<SOp::RSub>, scalar_cpu<SOp::RSub>)
VT_EW_OP(mul_scalar, scalar_meta<SOp::Mul>, scalar_cpu<SOp::Mul>)
VT_EW_OP(div_scalar, scalar_meta<SOp::Div>, scalar_cpu<SOp::Div>)
VT_EW_OP(rdiv_scalar, scalar_meta<SOp::RDiv>, scalar_cpu<SOp::RDiv>)
VT_EW_OP(maximum_scalar, scalar_meta<SOp::Max>, scalar_cpu<SOp::Max>)
VT_EW_OP(minimum_scalar, scalar_meta<SOp::Min>, scalar_cpu<SOp::Min>)
// in place: their own meta step (self is the output), the same compute
VT_META_FN(add_scalar__meta, "core::add_scalar_") { scalar_meta<SOp::Add, true>(c); }
VT_META_FN(sub_scalar__meta, "core::sub_scalar_") { scalar_meta<SOp::Sub, true>(c); }
VT_META_FN(mul_scalar__meta, "core::mul_scalar_") { scalar_meta<SOp::Mul, true>(c); }
VT_META_FN(div_scalar__meta, "core::div_scalar_") { scalar_meta<SOp::Div, true>(c); }

// ---- backward rules: d/dself only -----------------------------------------------------------------
// The incoming gradient is passed on as is where the derivative is 1 (a new reference, as torch).
namespace {
// -v for a number, keeping its kind
vt::V negated(const vt_value& v) {
  if (v.tag == VT_FLOAT) return vt::V(-v.v.f);
  return vt::V((int64_t)(0 - (uint64_t)as_int(v)));
}
}  // namespace

VT_BACKWARD(add_scalar_backward, "core::add_scalar") { g.set_grad(0, ew::ref(g.host, g.grad_out(0))); }
// rsub: d(other - alpha x) = -alpha
VT_BACKWARD(rsub_scalar_backward, "core::rsub_scalar") {
  g.set_grad(0, ew::scalar_op(g.host, "core::mul_scalar", g.grad_out(0), negated(g.arg(2))));
}
// mul: g * other;  div: g / other (mul_, div_: the same, self's old value is not needed)
VT_BACKWARD(mul_scalar_backward, "core::mul_scalar") {
  g.set_grad(0, ew::scalar_op(g.host, "core::mul_scalar", g.grad_out(0), ew::sv(g.arg(1))));
}
VT_BACKWARD(div_scalar_backward, "core::div_scalar") {
  g.set_grad(0, ew::scalar_op(g.host, "core::div_scalar", g.grad_out(0), ew::sv(g.arg(1))));
}
// rdiv: d(c / x) = -c / x^2 = -out / x
VT_BACKWARD(rdiv_scalar_backward, "core::rdiv_scalar") {
  const vt_host* h = g.host;
  g.set_grad(0, ew::neg(h, ew::div(h, ew::mul(h, g.grad_out(0), g.out(0)), g.saved(0))));
}

// maximum: w = [x > s] + 0.5 [x == s];  dself = g w   (minimum: x < s)
namespace {
void minmax_scalar_backward(vt::Grad& g, const char* strict) {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  vt_tensor* x = g.saved(0);
  const vt::V s = ew::sv(g.arg(1));
  auto as_grad = [&](vt::Tensor m) { return vt::call(h, "core::to_dtype", {vt::V(m), vt::V(go->dtype)}); };
  vt::Tensor w = ew::add(h, as_grad(ew::scalar_op(h, strict, x, s)),
                         ew::mulc(h, as_grad(ew::scalar_op(h, "core::eq_scalar", x, s)), 0.5));
  g.set_grad(0, ew::mul(h, go, w));
}
}  // namespace
VT_BACKWARD(maximum_scalar_backward, "core::maximum_scalar") { minmax_scalar_backward(g, "core::gt_scalar"); }
VT_BACKWARD(minimum_scalar_backward, "core::minimum_scalar") { minmax_scalar_backward(g, "core::lt_scalar"); }

using core::OpDef;

const OpDef kScalarOps[] = {
    {"core::add_scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", add_scalar_meta, add_scalar_cpu, add_scalar_backward},
    {"core::sub_scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", sub_scalar_meta, sub_scalar_cpu, add_scalar_backward},
    {"core::rsub_scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", rsub_scalar_meta, rsub_scalar_cpu, rsub_scalar_backward},
    {"core::mul_scalar(Tensor self, Scalar other) -> Tensor", mul_scalar_meta, mul_scalar_cpu, mul_scalar_backward},
    {"core::div_scalar(Tensor self, Scalar other) -> Tensor", div_scalar_meta, div_scalar_cpu, div_scalar_backward},
    {"core::rdiv_scalar(Tensor self, Scalar other) -> Tensor", rdiv_scalar_meta, rdiv_scalar_cpu, rdiv_scalar_backward, 0b1, 0b1},
    {"core::maximum_scalar(Tensor self, Scalar other) -> Tensor", maximum_scalar_meta, maximum_scalar_cpu, maximum_scalar_backward, 0b1},
    {"core::minimum_scalar(Tensor self, Scalar other) -> Tensor", minimum_scalar_meta, minimum_scalar_cpu, minimum_scalar_backward, 0b1},
    // in-place forms: the same compute, into self
    {"core::add_scalar_(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", add_scalar__meta, add_scalar_cpu, add_scalar_backward},
    {"core::sub_scalar_(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", sub_scalar__meta, sub_scalar_cpu, add_scalar_backward},
    {"core::mul_scalar_(Tensor self, Scalar other) -> Tensor", mul_scalar__meta, mul_scalar_cpu, mul_scalar_backward},
    {"core::div_scalar_(Tensor self, Scalar other) -> Tensor", div_scalar__meta, div_scalar_cpu, div_scalar_backward},
};
VT_OP_TABLE(kScalarOps)
