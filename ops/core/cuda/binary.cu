// ops/core/cuda/binary.cu — the CUDA compute of add, sub, mul, div (and add_, sub_, mul_, div_).
//
// Only the arithmetic: the meta step in src/binary.cpp checks the arguments and makes the output
// (broadcast shape, dtype; self for the in-place forms). Written on the SDK's launcher
// (vt/cuda/elementwise.cuh): contiguous operands get 16-byte vectorised loads, anything else
// (broadcast, any strides) the strided kernel. float16/bfloat16 compute in float; integers wrap
// (unsigned arithmetic); int / int is true division into float32, as on cpu.
#include "vt/cuda/elementwise.cuh"

namespace {

enum class BinOp { Add, Sub, Mul, Div };

// out = op(x, y); add/sub carry alpha (negated for sub)
template <BinOp OP, class T>
struct BinFn {
  using A = vt::cuda::acc_t<T>;
  A alpha;
  using Out = typename std::conditional<OP == BinOp::Div && std::is_integral<T>::value, float, T>::type;
  __device__ __forceinline__ Out operator()(T x, T y) const {
    if constexpr (OP == BinOp::Div && std::is_integral<T>::value) {
      return (float)x / (float)y;
    } else if constexpr (std::is_integral<T>::value) {
      using U = typename std::make_unsigned<T>::type;
      if constexpr (OP == BinOp::Mul) return (T)((U)x * (U)y);
      else return (T)((U)x + (U)alpha * (U)y);
    } else if constexpr (OP == BinOp::Mul) {
      return T((A)x * (A)y);
    } else if constexpr (OP == BinOp::Div) {
      return T((A)x / (A)y);
    } else {
      return T((A)x + alpha * (A)y);
    }
  }
};

template <BinOp OP>
void binary_cuda(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const vt_tensor* out = c.out(0);
  const double alpha = (OP == BinOp::Add || OP == BinOp::Sub) ? c.arg(2, "alpha").float_() : 1.0;
  vt::cuda::dispatch(vt::kNumberTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using F = BinFn<OP, T>;
    vt::cuda::elementwise<typename F::Out, T, T>(c, F{(typename F::A)(OP == BinOp::Sub ? -alpha : alpha)}, out, a, b);
  });
}

}  // namespace

VT_COMPUTE(add_cuda, "core::add") { binary_cuda<BinOp::Add>(c); }
VT_COMPUTE(sub_cuda, "core::sub") { binary_cuda<BinOp::Sub>(c); }
VT_COMPUTE(mul_cuda, "core::mul") { binary_cuda<BinOp::Mul>(c); }
VT_COMPUTE(div_cuda, "core::div") { binary_cuda<BinOp::Div>(c); }
