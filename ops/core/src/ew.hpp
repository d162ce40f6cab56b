// ew.hpp — what the elementwise family files (binary, unary, compare, pointwise) share: the
// unary/binary maps over fresh outputs, and the small helpers their backward rules use.
//
// Not a public header: packs of users write their loops with vt/loops.hpp directly.
#pragma once

#include "core.hpp"
#include "vt/autograd.hpp"
#include "vt/loops.hpp"

namespace ew {

// out = f(x), out a fresh contiguous tensor of x's shape. Contiguous x: one flat vectorisable loop.
template <class Out, class In, class F>
void map1(const vt::Call& c, const vt_tensor* out, const vt_tensor* x, F f) {
  if (x->numel == 0) return;
  if (vt::is_contiguous(x)) {
    vt::elementwise_contiguous<Out, In>(c.host, x->numel, f, vt::data<Out>(out), vt::data<const In>(x));
  } else {
    vt::check_ndim(c.op, x, "self");
    const vt_tensor* ops[2] = {out, x};
    vt::elementwise<Out, In>(c.host, vt::loop_over<2>(c.op, ops), f);
  }
}

// The output shape of two broadcast operands; `flat` when both are contiguous and of one shape
// (then a single flat loop serves).
struct Bcast {
  int64_t shape[vt::kMaxDims];
  int32_t ndim;
  bool flat;
};
inline Bcast bcast(const vt::Call& c, const vt_tensor* a, const char* an, const vt_tensor* b, const char* bn) {
  Bcast r;
  r.flat = vt::same_shape(a, b) && vt::is_contiguous(a) && vt::is_contiguous(b);
  if (r.flat) {
    r.ndim = a->ndim;
    for (int32_t i = 0; i < a->ndim; ++i) r.shape[i] = a->sizes[i];
  } else {
    r.ndim = vt::broadcast_shape(c.op, a, an, b, bn, r.shape);
  }
  return r;
}

// out (Out) = f(a, b) over the broadcast of a (A) and b (B)
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
template <class A> vt::Tensor mulc(const vt_host* h, const A& a, double v) { return mul(h, a, scalar(h, v, a)); }
template <class A> vt::Tensor addc(const vt_host* h, const A& a, double v) { return add(h, a, scalar(h, v, a)); }
// where(cond, a, 0) with a 0-d zero
template <class C, class A>
vt::Tensor where0(const vt_host* h, const C& cond, const A& a) {
  return vt::call(h, "core::where", {vt::V(P(cond)), vt::V(P(a)), vt::V(scalar(h, 0.0, a))});
}

}  // namespace ew
