// ops/core/src/binary.cpp — add, sub, mul, div on CPU.
//
// Both inputs broadcast (numpy rules) and may have any strides (0 for expanded dims); 0-size
// works. Inputs must share a dtype (the Python layer promotes); float16/bfloat16 compute in
// float32. div is true division like torch: integer inputs give a float32 result.
// Integer add/sub/mul wrap around on overflow (computed in unsigned arithmetic, no UB).
//
// Fast path: same shape and both contiguous -> one flat loop, no loop set-up (the 4-element add
// of the dispatch benchmark takes this path and allocates nothing but its output).
#include <cmath>

#include "vt/loops.hpp"

namespace {

enum class BinOp { Add, Sub, Mul, Div };

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

template <BinOp OP>
void binary(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const double alpha = (OP == BinOp::Add || OP == BinOp::Sub) ? c.arg(2, "alpha").float_() : 1.0;
  c.check_same_device(a, "self", b, "other");
  c.check_same_dtype(a, "self", b, "other");
  const bool int_div = OP == BinOp::Div && vt::is_integral(a->dtype, true);
  const vt_dtype out_dtype = int_div ? vt::kFloat32 : a->dtype;

  const bool flat = vt::same_shape(a, b) && vt::is_contiguous(a) && vt::is_contiguous(b);
  vt::Tensor out;
  if (flat) {
    out = c.empty(a->sizes, a->ndim, out_dtype);
  } else {
    int64_t shape[vt::kMaxDims];
    const int32_t ndim = vt::broadcast_shape(c.op, a, "self", b, "other", shape);
    out = c.empty(shape, ndim, out_dtype);
  }

  vt::dispatch(vt::kArithTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;  // compute type: float for float16/bfloat16
    if constexpr (OP == BinOp::Add || OP == BinOp::Sub) {
      if (std::is_integral<T>::value && alpha != std::trunc(alpha))
        c.fail(VT_ERR_TYPE, "alpha must be an integer for integral dtype %s, got %g", vt::dtype_name(a->dtype), alpha);
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
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(add_cpu, "core::add") { binary<BinOp::Add>(c); }
VT_KERNEL(sub_cpu, "core::sub") { binary<BinOp::Sub>(c); }
VT_KERNEL(mul_cpu, "core::mul") { binary<BinOp::Mul>(c); }
VT_KERNEL(div_cpu, "core::div") { binary<BinOp::Div>(c); }
