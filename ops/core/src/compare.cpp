// ops/core/src/compare.cpp — comparisons, logical ops, maximum/minimum on CPU.
//
//   eq, ne, lt, le, gt, ge (self, other) -> bool       both broadcast; one dtype (Python promotes)
//   eq_scalar, ..., ge_scalar (self, Scalar other) -> bool   against a Python number (torch's promotion)
//   logical_and/or/xor (self, other), logical_not(self) -> bool   nonzero is true
//   maximum, minimum (self, other) -> self's dtype     NaN propagates (like torch); differentiable:
//       the gradient goes to the larger (smaller) input, split evenly on ties.
// Comparisons and logical ops have no backward rule: bool outputs never require grad.
// Each op is a meta step (checks, broadcast shape, output) and a CPU compute into c.out(0).
#include <cmath>

#include "ew.hpp"

namespace {

enum class Cmp { Eq, Ne, Lt, Le, Gt, Ge, And, Or, Xor, Max, Min };

template <Cmp OP>
constexpr bool kMinMax = OP == Cmp::Max || OP == Cmp::Min;

// x OP y in the compute type A (comparisons and logical ops)
template <Cmp OP, class A>
inline bool cmp(A u, A v) {
  switch (OP) {
    case Cmp::Eq: return u == v;
    case Cmp::Ne: return u != v;
    case Cmp::Lt: return u < v;
    case Cmp::Le: return u <= v;
    case Cmp::Gt: return u > v;
    case Cmp::Ge: return u >= v;
    case Cmp::And: return u != A(0) && v != A(0);
    case Cmp::Or: return u != A(0) || v != A(0);
    default: return (u != A(0)) != (v != A(0));
  }
}

// The meta step: one device and dtype, the broadcast shape; bool out (maximum/minimum: self's dtype)
template <Cmp OP>
void compare_meta(vt::Call& c) {
  ew::binary_out(c, "self", "other", vt::kAllTypes, kMinMax<OP> ? vt_dtype{0, 0, 0} : vt::kBool);
}

// The CPU compute
template <Cmp OP>
void compare(vt::Call& c) {
  vt::dispatch(vt::kAllTypes, c.args[0].v.t->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    if constexpr (kMinMax<OP>) {
      if constexpr (std::is_same<T, bool>::value) {
        ew::map2<T, T, T>(c, [](T x, T y) { return OP == Cmp::Max ? (x || y) : (x && y); });
      } else {
        ew::map2<T, T, T>(c, [](T x, T y) {
          const A u = (A)x, v = (A)y;
          if constexpr (std::is_floating_point<A>::value)
            if (u != u || v != v) return T(u + v);  // NaN in, NaN out
          return OP == Cmp::Max ? (u < v ? y : x) : (v < u ? y : x);
        });
      }
    } else {
      ew::map2<bool, T, T>(c, [](T x, T y) { return cmp<OP, A>((A)x, (A)y); });
    }
  });
}

// ---- comparisons with a Python number: self OP other -> bool ---------------------------------------
// Compared in the type torch would promote to (host->result_type_scalar): an int tensor with a
// float gives float32, so `x < 2.5` compares float(x) with 2.5f; floating tensors compare with the
// number rounded to their dtype. Integer tensors with an int number compare exactly, in int64.
void compare_scalar_meta(vt::Call& c) {
  ew::unary_out(c, c.arg(0, "self").tensor(), vt::kBool);
}

template <Cmp OP>
void compare_scalar(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_value s = c.arg(1, "other").scalar();
  const vt_tensor* out = c.out(0);
  const double sf = s.tag == VT_FLOAT ? s.v.f : s.tag == VT_INT ? (double)s.v.i : (double)s.v.b;
  const int64_t si = s.tag == VT_INT ? s.v.i : (int64_t)s.v.b;
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (vt::is_reduced_float_v<T> || std::is_floating_point<T>::value) {
      const vt::acc_t<T> v = (vt::acc_t<T>)vt::convert<T>(sf);  // the number rounded to self's dtype
      ew::map1<bool, T>(c, out, x, [v](T a) { return cmp<OP>((vt::acc_t<T>)a, v); });
    } else if (s.tag == VT_FLOAT) {
      const float v = (float)sf;
      ew::map1<bool, T>(c, out, x, [v](T a) { return cmp<OP>((float)a, v); });
    } else {
      ew::map1<bool, T>(c, out, x, [si](T a) { return cmp<OP>((int64_t)a, si); });
    }
  });
}

}  // namespace

VT_EW_OP(eq, compare_meta<Cmp::Eq>, compare<Cmp::Eq>)
VT_EW_OP(ne, compare_meta<Cmp::Ne>, compare<Cmp::Ne>)
VT_EW_OP(lt, compare_meta<Cmp::Lt>, compare<Cmp::Lt>)
VT_EW_OP(le, compare_meta<Cmp::Le>, compare<Cmp::Le>)
VT_EW_OP(gt, compare_meta<Cmp::Gt>, compare<Cmp::Gt>)
VT_EW_OP(ge, compare_meta<Cmp::Ge>, compare<Cmp::Ge>)
VT_EW_OP(logical_and, compare_meta<Cmp::And>, compare<Cmp::And>)
VT_EW_OP(logical_or, compare_meta<Cmp::Or>, compare<Cmp::Or>)
VT_EW_OP(logical_xor, compare_meta<Cmp::Xor>, compare<Cmp::Xor>)
VT_EW_OP(maximum, compare_meta<Cmp::Max>, compare<Cmp::Max>)
VT_EW_OP(minimum, compare_meta<Cmp::Min>, compare<Cmp::Min>)
VT_EW_OP(eq_scalar, compare_scalar_meta, compare_scalar<Cmp::Eq>)
VT_EW_OP(ne_scalar, compare_scalar_meta, compare_scalar<Cmp::Ne>)
VT_EW_OP(lt_scalar, compare_scalar_meta, compare_scalar<Cmp::Lt>)
VT_EW_OP(le_scalar, compare_scalar_meta, compare_scalar<Cmp::Le>)
VT_EW_OP(gt_scalar, compare_scalar_meta, compare_scalar<Cmp::Gt>)
VT_EW_OP(ge_scalar, compare_scalar_meta, compare_scalar<Cmp::Ge>)

VT_META_FN(logical_not_meta, "core::logical_not") { ew::unary_out(c, c.arg(0, "self").tensor(), vt::kBool); }
VT_COMPUTE(logical_not_cpu, "core::logical_not") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    ew::map1<bool, T>(c, c.out(0), x, [](T v) { return (A)v == A(0); });
  });
}

// maximum: w = [a > b] + 0.5 [a == b];  da = g w,  db = g (1 - w)   (minimum: a < b)
namespace {
void minmax_backward(vt::Grad& g, const char* strict) {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  vt_tensor* a = g.saved(0);
  vt_tensor* b = g.saved(1);
  vt::Tensor w = ew::add(h, vt::call(h, "core::to_dtype", {vt::V(ew::call2(h, strict, a, b)), vt::V(go->dtype)}),
                         ew::mulc(h, vt::call(h, "core::to_dtype", {vt::V(ew::call2(h, "core::eq", a, b)), vt::V(go->dtype)}), 0.5));
  if (g.needs(0)) g.set_grad(0, g.sum_to(ew::mul(h, go, w), a));
  if (g.needs(1)) {
    vt::Tensor one_m_w = ew::addc(h, ew::neg(h, w), 1.0);
    g.set_grad(1, g.sum_to(ew::mul(h, go, one_m_w), b));
  }
}
}  // namespace

VT_BACKWARD(maximum_backward, "core::maximum") { minmax_backward(g, "core::gt"); }
VT_BACKWARD(minimum_backward, "core::minimum") { minmax_backward(g, "core::lt"); }

using core::OpDef;

const OpDef kCompareOps[] = {
    {"core::eq(Tensor self, Tensor other) -> Tensor", eq_meta, eq_cpu},
    {"core::ne(Tensor self, Tensor other) -> Tensor", ne_meta, ne_cpu},
    {"core::lt(Tensor self, Tensor other) -> Tensor", lt_meta, lt_cpu},
    {"core::le(Tensor self, Tensor other) -> Tensor", le_meta, le_cpu},
    {"core::gt(Tensor self, Tensor other) -> Tensor", gt_meta, gt_cpu},
    {"core::ge(Tensor self, Tensor other) -> Tensor", ge_meta, ge_cpu},
    {"core::eq_scalar(Tensor self, Scalar other) -> Tensor", eq_scalar_meta, eq_scalar_cpu},
    {"core::ne_scalar(Tensor self, Scalar other) -> Tensor", ne_scalar_meta, ne_scalar_cpu},
    {"core::lt_scalar(Tensor self, Scalar other) -> Tensor", lt_scalar_meta, lt_scalar_cpu},
    {"core::le_scalar(Tensor self, Scalar other) -> Tensor", le_scalar_meta, le_scalar_cpu},
    {"core::gt_scalar(Tensor self, Scalar other) -> Tensor", gt_scalar_meta, gt_scalar_cpu},
    {"core::ge_scalar(Tensor self, Scalar other) -> Tensor", ge_scalar_meta, ge_scalar_cpu},
    {"core::logical_and(Tensor self, Tensor other) -> Tensor", logical_and_meta, logical_and_cpu},
    {"core::logical_or(Tensor self, Tensor other) -> Tensor", logical_or_meta, logical_or_cpu},
    {"core::logical_xor(Tensor self, Tensor other) -> Tensor", logical_xor_meta, logical_xor_cpu},
    {"core::logical_not(Tensor self) -> Tensor", logical_not_meta, logical_not_cpu},
    {"core::maximum(Tensor self, Tensor other) -> Tensor", maximum_meta, maximum_cpu, maximum_backward, 0b11},
    {"core::minimum(Tensor self, Tensor other) -> Tensor", minimum_meta, minimum_cpu, minimum_backward, 0b11},
};
VT_OP_TABLE(kCompareOps)
