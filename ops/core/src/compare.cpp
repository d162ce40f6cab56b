// ops/core/src/compare.cpp — comparisons, logical ops, maximum/minimum on CPU.
//
//   eq, ne, lt, le, gt, ge (self, other) -> bool       both broadcast; one dtype (Python promotes)
//   logical_and/or/xor (self, other), logical_not(self) -> bool   nonzero is true
//   maximum, minimum (self, other) -> self's dtype     NaN propagates (like torch); differentiable:
//       the gradient goes to the larger (smaller) input, split evenly on ties.
// Comparisons and logical ops have no backward rule: bool outputs never require grad.
#include <cmath>

#include "ew.hpp"

namespace {

enum class Cmp { Eq, Ne, Lt, Le, Gt, Ge, And, Or, Xor, Max, Min };

template <Cmp OP>
void compare(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  c.check_same_device(a, "self", b, "other");
  c.check_same_dtype(a, "self", b, "other");
  const ew::Bcast bc = ew::bcast(c, a, "self", b, "other");
  constexpr bool minmax = OP == Cmp::Max || OP == Cmp::Min;
  vt::Tensor out = c.empty(bc.shape, bc.ndim, minmax ? a->dtype : vt::kBool);
  vt::dispatch(vt::kAllTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    if constexpr (minmax) {
      if constexpr (std::is_same<T, bool>::value) {
        ew::map2<T, T, T>(c, out, a, b, bc.flat, [](T x, T y) { return OP == Cmp::Max ? (x || y) : (x && y); });
      } else {
        ew::map2<T, T, T>(c, out, a, b, bc.flat, [](T x, T y) {
          const A u = (A)x, v = (A)y;
          if constexpr (std::is_floating_point<A>::value)
            if (u != u || v != v) return T(u + v);  // NaN in, NaN out
          return OP == Cmp::Max ? (u < v ? y : x) : (v < u ? y : x);
        });
      }
    } else {
      ew::map2<bool, T, T>(c, out, a, b, bc.flat, [](T x, T y) {
        const A u = (A)x, v = (A)y;
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
      });
    }
  });
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(eq_cpu, "core::eq") { compare<Cmp::Eq>(c); }
VT_KERNEL(ne_cpu, "core::ne") { compare<Cmp::Ne>(c); }
VT_KERNEL(lt_cpu, "core::lt") { compare<Cmp::Lt>(c); }
VT_KERNEL(le_cpu, "core::le") { compare<Cmp::Le>(c); }
VT_KERNEL(gt_cpu, "core::gt") { compare<Cmp::Gt>(c); }
VT_KERNEL(ge_cpu, "core::ge") { compare<Cmp::Ge>(c); }
VT_KERNEL(logical_and_cpu, "core::logical_and") { compare<Cmp::And>(c); }
VT_KERNEL(logical_or_cpu, "core::logical_or") { compare<Cmp::Or>(c); }
VT_KERNEL(logical_xor_cpu, "core::logical_xor") { compare<Cmp::Xor>(c); }
VT_KERNEL(maximum_cpu, "core::maximum") { compare<Cmp::Max>(c); }
VT_KERNEL(minimum_cpu, "core::minimum") { compare<Cmp::Min>(c); }

VT_KERNEL(logical_not_cpu, "core::logical_not") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::Tensor out = c.empty(x->sizes, x->ndim, vt::kBool);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    ew::map1<bool, T>(c, out, x, [](T v) { return (A)v == A(0); });
  });
  c.set_out(0, std::move(out));
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
    {"core::eq(Tensor self, Tensor other) -> Tensor", nullptr, eq_cpu},
    {"core::ne(Tensor self, Tensor other) -> Tensor", nullptr, ne_cpu},
    {"core::lt(Tensor self, Tensor other) -> Tensor", nullptr, lt_cpu},
    {"core::le(Tensor self, Tensor other) -> Tensor", nullptr, le_cpu},
    {"core::gt(Tensor self, Tensor other) -> Tensor", nullptr, gt_cpu},
    {"core::ge(Tensor self, Tensor other) -> Tensor", nullptr, ge_cpu},
    {"core::logical_and(Tensor self, Tensor other) -> Tensor", nullptr, logical_and_cpu},
    {"core::logical_or(Tensor self, Tensor other) -> Tensor", nullptr, logical_or_cpu},
    {"core::logical_xor(Tensor self, Tensor other) -> Tensor", nullptr, logical_xor_cpu},
    {"core::logical_not(Tensor self) -> Tensor", nullptr, logical_not_cpu},
    {"core::maximum(Tensor self, Tensor other) -> Tensor", nullptr, maximum_cpu, maximum_backward, 0b11},
    {"core::minimum(Tensor self, Tensor other) -> Tensor", nullptr, minimum_cpu, minimum_backward, 0b11},
};
VT_OP_TABLE(kCompareOps)
