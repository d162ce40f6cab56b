// ops/core/src/binary.cpp — add, sub, mul, div and their in-place forms on CPU, with backward rules.
//
// Both inputs broadcast (numpy rules) and may have any strides (0 for expanded dims); 0-size
// works. Inputs must share a dtype (the Python layer promotes); float16/bfloat16 compute in
// float32. div is true division like torch: integer inputs give a float32 result.
// Integer add/sub/mul wrap around on overflow (computed in unsigned arithmetic, no UB).
// In-place forms (add_, sub_, mul_, div_) write into self, which must already have the broadcast
// shape; other must have self's dtype (div_ needs a floating self).
//
// Each op is a meta step (binary_meta: checks, broadcast shape, output) and a compute
// (binary_cpu). Fast path: same shape and all contiguous -> one flat loop, no loop set-up (the
// 4-element add of the dispatch benchmark takes this path and allocates nothing but its output).
#include <cmath>

#include "ew.hpp"

namespace {

enum class BinOp { Add, Sub, Mul, Div };

using ew::wrap_add;  // integer add/mul wrap around (unsigned arithmetic), as torch's do
using ew::wrap_mul;

// out (Out) = f(a, b) over the broadcast of a and b (both T)
template <class Out, class T, class F>
void run_binary(vt::Call& c, const vt_tensor* out, const vt_tensor* a, const vt_tensor* b, bool flat, F f) {
  if (flat) {
    vt::elementwise_contiguous<Out, T, T>(c.host, out->numel, f, vt::data<Out>(out), vt::data<const T>(a),
                                          vt::data<const T>(b));
  } else {
    const vt_tensor* ops[3] = {out, a, b};
    vt::elementwise<Out, T, T>(c.host, vt::loop_over<3>(c.op, ops), f);
  }
}

// The meta step (every device): matching devices and dtypes, the broadcast output shape (for the
// in-place forms: other must broadcast to self), the output dtype (true division of integers
// gives float32), and the output itself.
template <BinOp OP, bool Inplace = false>
void binary_meta(vt::Call& c) {
  vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  c.check_same_device(a, "self", b, "other");
  c.check_same_dtype(a, "self", b, "other");
  vt::dispatch(vt::kNumberTypes, a->dtype, c.op, [](auto) {});  // refuse other dtypes here, on every device
  if constexpr (OP == BinOp::Add || OP == BinOp::Sub) {
    const double alpha = c.arg(2, "alpha").float_();
    if (vt::is_integral(a->dtype, true) && alpha != std::trunc(alpha))
      c.fail(VT_ERR_TYPE, "alpha must be an integer for integral dtype %s, got %g", vt::dtype_name(a->dtype), alpha);
  }
  const bool int_div = OP == BinOp::Div && vt::is_integral(a->dtype, true);
  int64_t shape[vt::kMaxDims];
  const int32_t ndim = vt::broadcast_shape(c.op, a, "self", b, "other", shape);
  if (Inplace) {
    if (int_div)
      c.fail(VT_ERR_TYPE, "result type float32 can't be cast to self's dtype %s", vt::dtype_name(a->dtype));
    bool ok = ndim == a->ndim;
    for (int32_t i = 0; ok && i < ndim; ++i) ok = shape[i] == a->sizes[i];
    if (!ok)
      c.fail(VT_ERR_VALUE, "other of shape %s cannot be broadcast to self of shape %s", vt::shape_str(b).c_str(),
             vt::shape_str(a).c_str());
    c.set_out_retained(0, a);
  } else {
    c.set_out(0, c.empty(shape, ndim, int_div ? vt::kFloat32 : a->dtype));
  }
}

// The CPU compute: out = self op other (out may be self).
template <BinOp OP>
void binary_cpu(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const double alpha = (OP == BinOp::Add || OP == BinOp::Sub) ? c.arg(2, "alpha").float_() : 1.0;
  const bool flat = vt::same_shape(a, b) && vt::same_shape(a, out) && vt::is_contiguous(a) &&
                    vt::is_contiguous(b) && vt::is_contiguous(out);
  vt::dispatch(vt::kNumberTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;  // compute type: float for float16/bfloat16
    if constexpr (OP == BinOp::Add || OP == BinOp::Sub) {
      // sub is add with -alpha; for integers -alpha wraps exactly like torch's
      const A al = (A)(OP == BinOp::Sub ? -alpha : alpha);
      if (al == (A)1)
        run_binary<T, T>(c, out, a, b, flat, [](T x, T y) { return T(wrap_add<A>((A)x, (A)y)); });
      else
        run_binary<T, T>(c, out, a, b, flat, [al](T x, T y) { return T(wrap_add<A>((A)x, wrap_mul<A>(al, (A)y))); });
    } else if constexpr (OP == BinOp::Mul) {
      run_binary<T, T>(c, out, a, b, flat, [](T x, T y) { return T(wrap_mul<A>((A)x, (A)y)); });
    } else if constexpr (std::is_integral<T>::value) {  // true division of integers -> float32
      run_binary<float, T>(c, out, a, b, flat, [](T x, T y) { return (float)x / (float)y; });
    } else {
      run_binary<T, T>(c, out, a, b, flat, [](T x, T y) { return T((A)x / (A)y); });
    }
  });
}

}  // namespace

VT_META_FN(add_meta, "core::add") { binary_meta<BinOp::Add>(c); }
VT_META_FN(sub_meta, "core::sub") { binary_meta<BinOp::Sub>(c); }
VT_META_FN(mul_meta, "core::mul") { binary_meta<BinOp::Mul>(c); }
VT_META_FN(div_meta, "core::div") { binary_meta<BinOp::Div>(c); }
VT_META_FN(add__meta, "core::add_") { binary_meta<BinOp::Add, true>(c); }
VT_META_FN(sub__meta, "core::sub_") { binary_meta<BinOp::Sub, true>(c); }
VT_META_FN(mul__meta, "core::mul_") { binary_meta<BinOp::Mul, true>(c); }
VT_META_FN(div__meta, "core::div_") { binary_meta<BinOp::Div, true>(c); }
VT_COMPUTE(add_cpu, "core::add") { binary_cpu<BinOp::Add>(c); }
VT_COMPUTE(sub_cpu, "core::sub") { binary_cpu<BinOp::Sub>(c); }
VT_COMPUTE(mul_cpu, "core::mul") { binary_cpu<BinOp::Mul>(c); }
VT_COMPUTE(div_cpu, "core::div") { binary_cpu<BinOp::Div>(c); }

// ---- backward rules -----------------------------------------------------------------------------
// a + alpha*b:  da = g,  db = alpha*g  (sub: -alpha), each summed back over broadcast dims.
// The incoming gradient is passed on as is (a new reference, no copy), as torch does: the engine
// must not accumulate in place into a gradient it received.
namespace {
void add_sub_backward(vt::Grad& g, double alpha, bool inplace) {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) {
    if (inplace) g.set_grad(0, ew::ref(g.host, go));
    else g.set_grad(0, g.sum_to(ew::ref(g.host, go), g.saved(0)));
  }
  if (g.needs(1)) {
    vt::Tensor r = alpha == 1.0 ? ew::ref(g.host, go) : ew::mulc(g.host, go, alpha);
    g.set_grad(1, g.sum_to(std::move(r), g.saved(1)));
  }
}
}  // namespace

VT_BACKWARD(add_backward, "core::add") { add_sub_backward(g, g.arg(2).v.f, false); }
VT_BACKWARD(sub_backward, "core::sub") { add_sub_backward(g, -g.arg(2).v.f, false); }
VT_BACKWARD(add__backward, "core::add_") { add_sub_backward(g, g.arg(2).v.f, true); }
VT_BACKWARD(sub__backward, "core::sub_") { add_sub_backward(g, -g.arg(2).v.f, true); }

// a * b:  da = g*b,  db = g*a
VT_BACKWARD(mul_backward, "core::mul") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::mul(g.host, go, g.saved(1)), g.saved(0)));
  if (g.needs(1)) g.set_grad(1, g.sum_to(ew::mul(g.host, go, g.saved(0)), g.saved(1)));
}
// self *= other: self's old value is gone, so only self's gradient exists
VT_BACKWARD(mul__backward, "core::mul_") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(1))
    vt::fail(VT_ERR_NOT_IMPL, "[core::mul_] the gradient for 'other' needs self's value before the in-place "
             "multiply, which is gone; use mul (out-of-place) when other requires grad");
  if (g.needs(0)) g.set_grad(0, ew::mul(g.host, go, g.saved(1)));
}

// a / b:  da = g/b,  db = -g*a/b^2
VT_BACKWARD(div_backward, "core::div") {
  vt_tensor* go = g.grad_out(0);
  vt_tensor* b = g.saved(1);
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::div(g.host, go, b), g.saved(0)));
  if (g.needs(1)) {
    vt::Tensor t = ew::div(g.host, ew::div(g.host, ew::mul(g.host, go, g.saved(0)), b), b);
    g.set_grad(1, g.sum_to(ew::call1(g.host, "core::neg", t), b));
  }
}
// self /= other:  dself = g/other,  dother = -g*out/other  (out is self's new value)
VT_BACKWARD(div__backward, "core::div_") {
  vt_tensor* go = g.grad_out(0);
  vt_tensor* b = g.saved(1);
  if (g.needs(0)) g.set_grad(0, ew::div(g.host, go, b));
  if (g.needs(1)) {
    vt::Tensor t = ew::div(g.host, ew::mul(g.host, go, g.out(0)), b);
    g.set_grad(1, g.sum_to(ew::call1(g.host, "core::neg", t), b));
  }
}

using core::OpDef;

const OpDef kBinaryOps[] = {
    {"core::add(Tensor self, Tensor other, float alpha=1.0) -> Tensor", add_meta, add_cpu, add_backward, 0b11},
    {"core::sub(Tensor self, Tensor other, float alpha=1.0) -> Tensor", sub_meta, sub_cpu, sub_backward, 0b11},
    {"core::mul(Tensor self, Tensor other) -> Tensor", mul_meta, mul_cpu, mul_backward, 0b11},
    {"core::div(Tensor self, Tensor other) -> Tensor", div_meta, div_cpu, div_backward, 0b11},
    // in-place forms: the same compute, into self
    {"core::add_(Tensor self, Tensor other, float alpha=1.0) -> Tensor", add__meta, add_cpu, add__backward, 0b10},
    {"core::sub_(Tensor self, Tensor other, float alpha=1.0) -> Tensor", sub__meta, sub_cpu, sub__backward, 0b10},
    {"core::mul_(Tensor self, Tensor other) -> Tensor", mul__meta, mul_cpu, mul__backward, 0b10},
    {"core::div_(Tensor self, Tensor other) -> Tensor", div__meta, div_cpu, div__backward, 0b10, 0b1},
};
VT_OP_TABLE(kBinaryOps)
