// ops/core/cuda/scalar.cu — the CUDA compute of arithmetic with a Python number (src/scalar.cpp):
// add_scalar sub_scalar rsub_scalar mul_scalar div_scalar rdiv_scalar maximum_scalar
// minimum_scalar, and the in-place add_scalar_ sub_scalar_ mul_scalar_ div_scalar_ (self is the
// output the meta step handed over, possibly strided).
//
// Only the arithmetic: the meta step chose the result dtype R (torch's rule) and made the output.
// As on cpu, self (dtype S) is read converted to R's compute type A (float for the 16-bit floats),
// the number and alpha are taken as A on the host, integers wrap, and the host folds the number
// into the two constants of one affine map for add/sub/rsub/mul: out = v*m + b, the product
// rounded on its own (the cpu's x + alpha*k and k - alpha*x, with no fused multiply-add). div and
// rdiv are true divisions, maximum/minimum keep NaN (scalar.cpp's expressions).
// Kernels per (S, R) pair: the affine map's vectorised kernel, one vectorised kernel for the other
// ops (a switch on the op, the same in every thread) and one strided kernel for all of them.
#include "vt/cuda/elementwise_shared.cuh"

namespace {

using vt::cuda::acc_t;

enum class SOp { Affine, Div, RDiv, Max, Min };

// x*y rounded on its own: no contraction into an fma (the cpu's two roundings); integers wrap
template <class A>
__device__ __forceinline__ A mul_rn(A x, A y) {
  if constexpr (std::is_same<A, float>::value) return __fmul_rn(x, y);
  else if constexpr (std::is_same<A, double>::value) return __dmul_rn(x, y);
  else return (A)((typename std::make_unsigned<A>::type)x * (typename std::make_unsigned<A>::type)y);
}
template <class A>
__device__ __forceinline__ A add_wrap(A x, A y) {
  if constexpr (std::is_integral<A>::value)
    return (A)((typename std::make_unsigned<A>::type)x + (typename std::make_unsigned<A>::type)y);
  else return x + y;
}

template <SOp OP, class A>
__device__ __forceinline__ A smath(A v, A m, A b) {
  if constexpr (OP == SOp::Affine) {
    return add_wrap(mul_rn(v, m), b);
  } else if constexpr (OP == SOp::Div) {
    return v / m;
  } else if constexpr (OP == SOp::RDiv) {
    return m / v;
  } else {  // against the number m; NaN in, NaN out
    if constexpr (!std::is_integral<A>::value)
      if (v != v || m != m) return A(v + m);
    return (OP == SOp::Max ? (v < m) : (m < v)) ? m : v;
  }
}

// out (R) = op(self read as A): the affine map alone (its vectorised kernel), or any op chosen at
// run time (the other ops' vectorised kernel and every op's strided one)
template <class R, class S>
struct AffineFn {
  using A = acc_t<R>;
  A m, b;
  __device__ __forceinline__ R operator()(S x) const { return R(smath<SOp::Affine>((A)x, m, b)); }
};
template <class R, class S>
struct AnyScalarFn {
  using A = acc_t<R>;
  SOp op;
  A m, b;
  __device__ R operator()(S x) const {
    const A v = (A)x;
    switch (op) {
      case SOp::Affine: return R(smath<SOp::Affine>(v, m, b));
      case SOp::Div: return R(smath<SOp::Div>(v, m, b));
      case SOp::RDiv: return R(smath<SOp::RDiv>(v, m, b));
      case SOp::Max: return R(smath<SOp::Max>(v, m, b));
      default: return R(smath<SOp::Min>(v, m, b));
    }
  }
};

// ---- host side: the number as A, the (S, R) pair --------------------------------------------------
constexpr vt::types<float, double, int64_t, int32_t, vt::half, vt::bfloat16, uint8_t, int8_t> kResultTypes{};
constexpr vt::types<int64_t, int32_t, bool, uint8_t, int8_t> kToFloatTypes{};

double as_double(const vt_value& v) { return v.tag == VT_FLOAT ? v.v.f : v.tag == VT_INT ? (double)v.v.i : (double)v.v.b; }
int64_t as_int(const vt_value& v) { return v.tag == VT_INT ? v.v.i : v.tag == VT_BOOL ? v.v.b : (int64_t)v.v.f; }
template <class A>
A scalar_as(const vt_value& v) {
  if constexpr (std::is_integral<A>::value) return (A)(typename std::make_unsigned<A>::type)as_int(v);
  else return (A)as_double(v);
}
// x * y and x + y on the host in A, wrapping for integers (ew.hpp's wrap_mul/wrap_add)
template <class A>
A hmul(A x, A y) {
  if constexpr (std::is_integral<A>::value) return (A)((typename std::make_unsigned<A>::type)x * (typename std::make_unsigned<A>::type)y);
  else return x * y;
}

// calls f(tag<S>, tag<R>) with device types for self's dtype s and the result dtype r
template <class F>
void dispatch_sr(const vt::Call& c, vt_dtype s, vt_dtype r, F&& f) {
  if (vt::same_dtype(s, r)) {
    vt::cuda::dispatch(kResultTypes, r, c.op, [&](auto t) { f(t, t); });
  } else if (vt::same_dtype(r, vt::kFloat32)) {
    vt::cuda::dispatch(kToFloatTypes, s, c.op, [&](auto t) { f(t, vt::type_tag<float>{}); });
  } else if (vt::same_dtype(r, vt::kInt64) && vt::same_dtype(s, vt::kBool)) {
    f(vt::type_tag<bool>{}, vt::type_tag<int64_t>{});
  } else {
    c.fail(VT_ERR_NOT_IMPL, "no compute from %s to %s", vt::dtype_name(s), vt::dtype_name(r));
  }
}

enum class Kind { Add, Sub, RSub, Mul, Div, RDiv, Max, Min };

// out = self KIND other (out may be self)
template <Kind K>
void scalar_cuda(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_value s = c.arg(1, "other").scalar();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  dispatch_sr(c, x->dtype, out->dtype, [&](auto stag, auto rtag) {
    using S = typename decltype(stag)::type;
    using R = typename decltype(rtag)::type;
    using A = acc_t<R>;
    const A k = scalar_as<A>(s);
    if constexpr (K == Kind::Add || K == Kind::Sub || K == Kind::RSub || K == Kind::Mul) {
      A m, b;
      if constexpr (K == Kind::Mul) {
        m = k;
        b = std::is_integral<A>::value ? A(0) : A(-0.0);  // x*k + (-0) is x*k, signed zeros too
      } else {
        const A alpha = scalar_as<A>(c.arg(2, "alpha").scalar());
        if constexpr (K == Kind::RSub) {  // other - alpha * self
          m = (A)(A(0) - alpha);
          b = k;
        } else {  // self + alpha * other; sub adds -alpha * other
          m = A(1);
          b = hmul<A>(K == Kind::Sub ? hmul<A>((A)(A(0) - A(1)), alpha) : alpha, k);
        }
      }
      vt::cuda::elementwise_shared<R, S>(c, AffineFn<R, S>{m, b}, AnyScalarFn<R, S>{SOp::Affine, m, b}, out, x);
    } else {
      constexpr SOp op = K == Kind::Div ? SOp::Div : K == Kind::RDiv ? SOp::RDiv : K == Kind::Max ? SOp::Max : SOp::Min;
      const AnyScalarFn<R, S> f{op, k, A(0)};  // m is the number
      vt::cuda::elementwise_shared<R, S>(c, f, f, out, x);
    }
  });
}

VT_COMPUTE(add_scalar_cuda, "core::add_scalar") { scalar_cuda<Kind::Add>(c); }
VT_COMPUTE(sub_scalar_cuda, "core::sub_scalar") { scalar_cuda<Kind::Sub>(c); }
VT_COMPUTE(rsub_scalar_cuda, "core::rsub_scalar") { scalar_cuda<Kind::RSub>(c); }
VT_COMPUTE(mul_scalar_cuda, "core::mul_scalar") { scalar_cuda<Kind::Mul>(c); }
VT_COMPUTE(div_scalar_cuda, "core::div_scalar") { scalar_cuda<Kind::Div>(c); }
VT_COMPUTE(rdiv_scalar_cuda, "core::rdiv_scalar") { scalar_cuda<Kind::RDiv>(c); }
VT_COMPUTE(maximum_scalar_cuda, "core::maximum_scalar") { scalar_cuda<Kind::Max>(c); }
VT_COMPUTE(minimum_scalar_cuda, "core::minimum_scalar") { scalar_cuda<Kind::Min>(c); }

}  // namespace

void register_scalar_cuda(vt::Registrar& r) {
  r.compute("core::add_scalar", VT_CUDA, add_scalar_cuda);
  r.compute("core::sub_scalar", VT_CUDA, sub_scalar_cuda);
  r.compute("core::rsub_scalar", VT_CUDA, rsub_scalar_cuda);
  r.compute("core::mul_scalar", VT_CUDA, mul_scalar_cuda);
  r.compute("core::div_scalar", VT_CUDA, div_scalar_cuda);
  r.compute("core::rdiv_scalar", VT_CUDA, rdiv_scalar_cuda);
  r.compute("core::maximum_scalar", VT_CUDA, maximum_scalar_cuda);
  r.compute("core::minimum_scalar", VT_CUDA, minimum_scalar_cuda);
  r.compute("core::add_scalar_", VT_CUDA, add_scalar_cuda);
  r.compute("core::sub_scalar_", VT_CUDA, sub_scalar_cuda);
  r.compute("core::mul_scalar_", VT_CUDA, mul_scalar_cuda);
  r.compute("core::div_scalar_", VT_CUDA, div_scalar_cuda);
}
