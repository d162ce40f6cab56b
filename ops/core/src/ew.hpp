// ew.hpp — what the elementwise family files (binary, unary, compare, pointwise, scalar) share:
// meta steps per shape class (unary_out, binary_out), the unary/binary loops their computes run
// into the outputs the meta step made, wrapping integer arithmetic, and the small helpers their
// backward rules use.
//
// Not a public header: packs of users write their loops with vt/loops.hpp directly.
#pragma once

#include "core.hpp"
#include "vt/autograd.hpp"
#include "vt/loops.hpp"

namespace ew {

// ---- meta steps shared by the family: checks, output shape and dtype, the output -----------------
// out = a fresh tensor of x's shape (dtype dt); x's ndim is checked here so the loops need not.
inline void unary_out(vt::Call& c, const vt_tensor* x, vt_dtype dt) {
  vt::check_ndim(c.op, x, "self");
  c.set_out(0, c.empty(x->sizes, x->ndim, dt));
}
// Two operands a (argument 0) and b (argument 1) of one device and dtype, one of `types`; the
// output has their broadcast shape and dtype `dt` (a's dtype when dt is {0, 0, 0}).
template <class Types>
void binary_out(vt::Call& c, const char* an, const char* bn, Types types, vt_dtype dt = {0, 0, 0}) {
  const vt_tensor* a = c.arg(0, an).tensor();
  const vt_tensor* b = c.arg(1, bn).tensor();
  c.check_same_device(a, an, b, bn);
  c.check_same_dtype(a, an, b, bn);
  vt::dispatch(types, a->dtype, c.op, [](auto) {});  // refuse other dtypes here, on every device
  int64_t shape[vt::kMaxDims];
  const int32_t ndim = vt::broadcast_shape(c.op, a, an, b, bn, shape);
  c.set_out(0, c.empty(shape, ndim, dt.bits ? dt : a->dtype));
}

// An op's meta step <name>_meta and CPU compute <name>_cpu, each a one-line call of a template
// shared by its shape class (so messages name the op): VT_EW_OP(eq, compare_meta<Cmp::Eq>, compare<Cmp::Eq>)
#define VT_EW_OP(name, meta, compute)                                                              \
  VT_META_FN(name##_meta, "core::" #name) { meta(c); }                                             \
  VT_COMPUTE(name##_cpu, "core::" #name) { compute(c); }

// ---- arithmetic -----------------------------------------------------------------------------------
// x + y and x * y; integers wrap around on overflow (computed in unsigned arithmetic, no UB)
template <class T>
T wrap_add(T x, T y) {
  if constexpr (std::is_integral<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    return (T)((U)x + (U)y);
  } else {
    return x + y;
  }
}
template <class T>
T wrap_mul(T x, T y) {
  if constexpr (std::is_integral<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    return (T)((U)x * (U)y);
  } else {
    return x * y;
  }
}

// ---- compute loops: into outputs the meta step made ---------------------------------------------
// out = f(x), out contiguous of x's shape. Contiguous x: one flat vectorisable loop.
template <class Out, class In, class F>
void map1(const vt::Call& c, const vt_tensor* out, const vt_tensor* x, F f) {
  if (x->numel == 0) return;
  if (vt::is_contiguous(x)) {
    vt::elementwise_contiguous<Out, In>(c.host, x->numel, f, vt::data<Out>(out), vt::data<const In>(x));
  } else {
    const vt_tensor* ops[2] = {out, x};
    vt::elementwise<Out, In>(c.host, vt::loop_over<2>(c.op, ops), f);
  }
}

// Whether a binary op's operands allow the single flat loop: one shape, both contiguous (the
// output, contiguous of the broadcast shape, then has that shape too).
inline bool flat2(const vt_tensor* a, const vt_tensor* b) {
  return vt::same_shape(a, b) && vt::is_contiguous(a) && vt::is_contiguous(b);
}

// out (Out) = f(a, b) over the broadcast of a (A) and b (B); `flat`: see flat2
template <class Out, class A, class B, class F>
void map2(const vt::Call& c, const vt_tensor* out, const vt_tensor* a, const vt_tensor* b, bool flat, F f) {
  if (out->numel == 0) return;
  if (flat) {
    vt::elementwise_contiguous<Out, A, B>(c.host, out->numel, f, vt::data<Out>(out), vt::data<const A>(a),
                                          vt::data<const B>(b));
  } else {
    const vt_tensor* ops[3] = {out, a, b};
    vt::elementwise<Out, A, B>(c.host, vt::loop_over<3>(c.op, ops), f);
  }
}
// the same over the op's arguments 0 and 1 into output 0
template <class Out, class A, class B, class F>
void map2(const vt::Call& c, F f) {
  const vt_tensor* a = c.args[0].v.t;
  const vt_tensor* b = c.args[1].v.t;
  map2<Out, A, B>(c, c.out(0), a, b, flat2(a, b), f);
}

// ---- for backward rules: every computation is an op call (so it runs anywhere and is itself
// differentiable) ----------------------------------------------------------------------------------
// a new reference to t (a rule handing a gradient on unchanged)
inline vt::Tensor ref(const vt_host* h, vt_tensor* t) {
  h->retain(t);
  return vt::Tensor(h, t);
}
// Helpers take vt_tensor* or vt::Tensor (temporaries too: they live to the end of the full
// expression, so `mul(h, div(h, a, b), c)` is safe).
inline vt_tensor* P(vt_tensor* t) { return t; }
inline vt_tensor* P(const vt_tensor* t) { return const_cast<vt_tensor*>(t); }
inline vt_tensor* P(const vt::Tensor& t) { return t.get(); }

// a str argument (vt::V has no const char* constructor: a pointer would silently become V(bool))
inline vt::V str(const char* s) {
  vt::V r;
  r.v.tag = VT_STR;
  r.v.v.s = s;
  return r;
}

template <class A>
vt::Tensor call1(const vt_host* h, const char* op, const A& a) {
  return vt::call(h, op, {vt::V(P(a))});
}
template <class A, class B>
vt::Tensor call2(const vt_host* h, const char* op, const A& a, const B& b) {
  return vt::call(h, op, {vt::V(P(a)), vt::V(P(b))});
}
// a 0-d tensor holding v, of like's dtype and device
template <class A>
vt::Tensor scalar(const vt_host* h, double v, const A& like) {
  static const int64_t none = 0;
  const vt_tensor* l = P(like);
  return vt::call(h, "core::full", {vt::V(vt_int_list{&none, 0}), vt::V(v), vt::V(l->dtype), vt::V(l->device)});
}
template <class A, class B> vt::Tensor mul(const vt_host* h, const A& a, const B& b) { return call2(h, "core::mul", a, b); }
template <class A, class B> vt::Tensor div(const vt_host* h, const A& a, const B& b) { return call2(h, "core::div", a, b); }
template <class A, class B> vt::Tensor add(const vt_host* h, const A& a, const B& b) { return call2(h, "core::add", a, b); }
template <class A, class B> vt::Tensor sub(const vt_host* h, const A& a, const B& b) { return call2(h, "core::sub", a, b); }
template <class A> vt::Tensor neg(const vt_host* h, const A& a) { return call1(h, "core::neg", a); }
// a Scalar argument as it came (int, float or bool)
inline vt::V sv(const vt_value& v) {
  vt::V r;
  r.v = v;
  return r;
}
// a op v with a Python-number v (core::mul_scalar, ...: no 0-d tensor is made)
template <class A> vt::Tensor scalar_op(const vt_host* h, const char* op, const A& a, vt::V v) {
  return vt::call(h, op, {vt::V(P(a)), v});
}
template <class A> vt::Tensor mulc(const vt_host* h, const A& a, double v) { return scalar_op(h, "core::mul_scalar", a, vt::V(v)); }
template <class A> vt::Tensor addc(const vt_host* h, const A& a, double v) { return scalar_op(h, "core::add_scalar", a, vt::V(v)); }
// where(cond, a, 0) with a 0-d zero
template <class C, class A>
vt::Tensor where0(const vt_host* h, const C& cond, const A& a) {
  return vt::call(h, "core::where", {vt::V(P(cond)), vt::V(P(a)), vt::V(scalar(h, 0.0, a))});
}

}  // namespace ew
