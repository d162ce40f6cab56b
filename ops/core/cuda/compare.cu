// ops/core/cuda/compare.cu — the CUDA compute of the comparisons (eq ne lt le gt ge and their
// *_scalar forms), the logical ops (logical_and/or/xor/not) and maximum/minimum (src/compare.cpp).
//
// Only the arithmetic: the meta steps in src/compare.cpp check the arguments and make the outputs
// (bool; maximum/minimum: self's dtype). Comparisons are truth tables: u against v has one of
// four outcomes (less, equal, greater, unordered: a NaN), a logical op looks at one of four cases
// (each side zero or not), and each op is a 4-bit mask over them passed to the kernel. So every
// comparison and logical op of one dtype shares one kernel pair, with no branch per element, and
// logical_not is eq_scalar(x, 0). Values as on cpu: floating dtypes compare in their compute type
// (float for the 16-bit floats), *_scalar rounds the number to self's dtype first, an integer
// tensor compares with a float number in float32 and with an int number exactly in int64.
#include "vt/cuda/elementwise.cuh"

namespace {

using vt::cuda::acc_t;

// bit i of a mask: the result for outcome i
constexpr uint8_t kEq = 0b0010, kNe = 0b1101, kLt = 0b0001, kLe = 0b0011, kGt = 0b0100, kGe = 0b0110;
constexpr uint8_t kAnd = 0b1000, kOr = 0b1110, kXor = 0b0110;  // outcome 2 [u != 0] + [v != 0]

// 0 less, 1 equal, 2 greater, 3 unordered
template <class A>
__device__ __forceinline__ int outcome(A u, A v) { return u < v ? 0 : u == v ? 1 : u > v ? 2 : 3; }

template <class T>
struct CmpFn {
  uint8_t mask;
  bool logical;
  __device__ __forceinline__ bool operator()(T x, T y) const {
    using A = acc_t<T>;
    const A u = (A)x, v = (A)y;
    const int i = logical ? 2 * (u != A(0)) + (v != A(0)) : outcome(u, v);
    return (mask >> i) & 1;
  }
};

// x against a number v held in the compare type C
template <class T, class C>
struct CmpScalarFn {
  C v;
  uint8_t mask;
  __device__ __forceinline__ bool operator()(T x) const { return (mask >> outcome((C)(acc_t<T>)x, v)) & 1; }
};

// NaN in, NaN out; else the larger (smaller) of the two, the first on ties
template <class T>
struct MinMaxFn {
  bool is_max;
  __device__ __forceinline__ T operator()(T x, T y) const {
    using A = acc_t<T>;
    const A u = (A)x, v = (A)y;
    if constexpr (!std::is_integral<A>::value)
      if (u != u || v != v) return T(u + v);
    return (is_max ? u < v : v < u) ? y : x;
  }
};

void compare(vt::Call& c, uint8_t mask, bool logical) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  vt::cuda::dispatch(vt::kAllTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise<bool, T, T>(c, CmpFn<T>{mask, logical}, c.out(0), a, b);
  });
}

// x against a number: float `sf` when is_float, else int `si` (as compare.cpp's compare_scalar)
void compare_with(vt::Call& c, const vt_tensor* x, uint8_t mask, bool is_float, double sf, int64_t si) {
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using H = typename decltype(tag)::type;  // the host type, for vt::convert's rounding
    using T = vt::cuda::device_t<H>;
    if constexpr (vt::is_reduced_float_v<H> || std::is_floating_point<H>::value) {
      using A = acc_t<T>;  // the number rounded to self's dtype
      vt::cuda::elementwise<bool, T>(c, CmpScalarFn<T, A>{(A)(vt::acc_t<H>)vt::convert<H>(sf), mask}, c.out(0), x);
    } else if (is_float) {
      vt::cuda::elementwise<bool, T>(c, CmpScalarFn<T, float>{(float)sf, mask}, c.out(0), x);
    } else {
      vt::cuda::elementwise<bool, T>(c, CmpScalarFn<T, int64_t>{si, mask}, c.out(0), x);
    }
  });
}

void compare_scalar(vt::Call& c, uint8_t mask) {
  const vt_value s = c.arg(1, "other").scalar();
  const double sf = s.tag == VT_FLOAT ? s.v.f : s.tag == VT_INT ? (double)s.v.i : (double)s.v.b;
  const int64_t si = s.tag == VT_INT ? s.v.i : (int64_t)s.v.b;
  compare_with(c, c.arg(0, "self").tensor(), mask, s.tag == VT_FLOAT, sf, si);
}

void minmax(vt::Call& c, bool is_max) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  vt::cuda::dispatch(vt::kAllTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise<T, T, T>(c, MinMaxFn<T>{is_max}, c.out(0), a, b);
  });
}

VT_COMPUTE(eq_cuda, "core::eq") { compare(c, kEq, false); }
VT_COMPUTE(ne_cuda, "core::ne") { compare(c, kNe, false); }
VT_COMPUTE(lt_cuda, "core::lt") { compare(c, kLt, false); }
VT_COMPUTE(le_cuda, "core::le") { compare(c, kLe, false); }
VT_COMPUTE(gt_cuda, "core::gt") { compare(c, kGt, false); }
VT_COMPUTE(ge_cuda, "core::ge") { compare(c, kGe, false); }
VT_COMPUTE(logical_and_cuda, "core::logical_and") { compare(c, kAnd, true); }
VT_COMPUTE(logical_or_cuda, "core::logical_or") { compare(c, kOr, true); }
VT_COMPUTE(logical_xor_cuda, "core::logical_xor") { compare(c, kXor, true); }
VT_COMPUTE(eq_scalar_cuda, "core::eq_scalar") { compare_scalar(c, kEq); }
VT_COMPUTE(ne_scalar_cuda, "core::ne_scalar") { compare_scalar(c, kNe); }
VT_COMPUTE(lt_scalar_cuda, "core::lt_scalar") { compare_scalar(c, kLt); }
VT_COMPUTE(le_scalar_cuda, "core::le_scalar") { compare_scalar(c, kLe); }
VT_COMPUTE(gt_scalar_cuda, "core::gt_scalar") { compare_scalar(c, kGt); }
VT_COMPUTE(ge_scalar_cuda, "core::ge_scalar") { compare_scalar(c, kGe); }
VT_COMPUTE(logical_not_cuda, "core::logical_not") {  // x == 0
  compare_with(c, c.arg(0, "self").tensor(), kEq, false, 0.0, 0);
}
VT_COMPUTE(maximum_cuda, "core::maximum") { minmax(c, true); }
VT_COMPUTE(minimum_cuda, "core::minimum") { minmax(c, false); }

}  // namespace

void register_compare_cuda(vt::Registrar& r) {
  r.compute("core::eq", VT_CUDA, eq_cuda);
  r.compute("core::ne", VT_CUDA, ne_cuda);
  r.compute("core::lt", VT_CUDA, lt_cuda);
  r.compute("core::le", VT_CUDA, le_cuda);
  r.compute("core::gt", VT_CUDA, gt_cuda);
  r.compute("core::ge", VT_CUDA, ge_cuda);
  r.compute("core::logical_and", VT_CUDA, logical_and_cuda);
  r.compute("core::logical_or", VT_CUDA, logical_or_cuda);
  r.compute("core::logical_xor", VT_CUDA, logical_xor_cuda);
  r.compute("core::eq_scalar", VT_CUDA, eq_scalar_cuda);
  r.compute("core::ne_scalar", VT_CUDA, ne_scalar_cuda);
  r.compute("core::lt_scalar", VT_CUDA, lt_scalar_cuda);
  r.compute("core::le_scalar", VT_CUDA, le_scalar_cuda);
  r.compute("core::gt_scalar", VT_CUDA, gt_scalar_cuda);
  r.compute("core::ge_scalar", VT_CUDA, ge_scalar_cuda);
  r.compute("core::logical_not", VT_CUDA, logical_not_cuda);
  r.compute("core::maximum", VT_CUDA, maximum_cuda);
  r.compute("core::minimum", VT_CUDA, minimum_cuda);
}
