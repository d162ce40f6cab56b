// gradops.hpp — short names for the op calls that the nn/linear-algebra backward rules make.
//
// Backward rules compute only through host->call (vt::call), so they run on every device and are
// differentiable themselves. These wrappers name the core ops they rely on:
//   core::mul/mul_scalar/add/sub/sum/matmul (elementwise, reduction, linear-algebra families)
//   and core::transpose/reshape (view family), plus this family's own ops.
// What it is not: kernels. Nothing here touches tensor memory.
#pragma once

#include <string>
#include <vector>

#include "vt/autograd.hpp"

namespace gops {

using vt::Tensor;
using vt::V;

// a new reference to an existing tensor (to hand an argument on as a result)
inline Tensor retained(const vt_host* h, vt_tensor* t) {
  h->retain(t);
  return Tensor(h, t);
}
inline V str(const char* s) {
  V r;
  r.v.tag = VT_STR;
  r.v.v.s = s;
  return r;
}
// a float argument's value (an int is accepted, like Python)
inline double num(const vt_value& v) { return v.tag == VT_INT ? (double)v.v.i : v.v.f; }
inline V ints(const std::vector<int64_t>& l) { return V(l); }
inline std::vector<int64_t> shape(const vt_tensor* t) { return std::vector<int64_t>(t->sizes, t->sizes + t->ndim); }

inline Tensor mul(const vt_host* h, vt_tensor* a, vt_tensor* b) { return vt::call(h, "core::mul", {a, b}); }
inline Tensor add(const vt_host* h, vt_tensor* a, vt_tensor* b) { return vt::call(h, "core::add", {a, b, 1.0}); }
inline Tensor sub(const vt_host* h, vt_tensor* a, vt_tensor* b) { return vt::call(h, "core::sub", {a, b, 1.0}); }
inline Tensor matmul(const vt_host* h, vt_tensor* a, vt_tensor* b) { return vt::call(h, "core::matmul", {a, b}); }
// the last two dims swapped (a view)
inline Tensor mT(const vt_host* h, vt_tensor* t) { return vt::call(h, "core::transpose", {t, -2, -1}); }
inline Tensor reshape(const vt_host* h, vt_tensor* t, const std::vector<int64_t>& s) {
  return vt::call(h, "core::reshape", {t, V(s)});
}
// t * v with a Python-number v (core::mul_scalar: no 0-d tensor is made; a new tensor even when
// v == 1, so callers may always take ownership)
inline Tensor scale(const vt_host* h, vt_tensor* t, double v) { return vt::call(h, "core::mul_scalar", {t, v}); }
// sum over `dims` keeping them (size 1)
inline Tensor sum_keep(const vt_host* h, vt_tensor* t, const std::vector<int64_t>& dims) {
  return vt::call(h, "core::sum", {t, V(dims), true, V::none()});
}

}  // namespace gops
