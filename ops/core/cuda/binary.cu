// ops/core/cuda/binary.cu — add, sub, mul, div for CUDA tensors (float32, float64, int64).
//
// Only the arithmetic: the meta step in src/binary.cpp checks and makes the output (broadcast
// shape, dtype; self for the in-place forms). Any strides, integer wrap-around, true division
// (int64 / int64 -> float32). Launched on ctx->stream.
#include <cmath>

#include "strided.cuh"

namespace {

enum class BinOp { Add, Sub, Mul, Div };

// out = op(x, y); Add/Sub carry alpha (already negated for Sub). Integers wrap (unsigned math).
template <BinOp OP, class T, class Out>
struct BinFn {
  T alpha;
  __device__ __forceinline__ Out operator()(T x, T y) const {
    if constexpr (OP == BinOp::Div) {
      if constexpr (std::is_integral<T>::value) return (float)x / (float)y;
      else return x / y;
    } else if constexpr (std::is_integral<T>::value) {
      using U = typename std::make_unsigned<T>::type;
      if constexpr (OP == BinOp::Mul) return (T)((U)x * (U)y);
      else return (T)((U)x + (U)alpha * (U)y);
    } else {
      if constexpr (OP == BinOp::Mul) return x * y;
      else return x + alpha * y;
    }
  }
};

template <class Out, class T, class F>
__global__ void binary_contiguous_kernel(Out* out, const T* a, const T* b, int64_t n, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = f(a[i], b[i]);
}

template <class Out, class T, class F>
__global__ void binary_strided_kernel(vt::StridedLoop<3> L, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += (int64_t)gridDim.x * blockDim.x) {
    char* p[3];
    vt_cuda::element_ptrs(L, i, p);
    *reinterpret_cast<Out*>(p[0]) = f(*reinterpret_cast<const T*>(p[1]), *reinterpret_cast<const T*>(p[2]));
  }
}

// The compute: core::add's meta step (src/binary.cpp) checked the arguments and made `out`
// (possibly self, for the in-place forms).
template <BinOp OP>
void binary_cuda(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const vt_tensor* out = c.out(0);
  const double alpha = (OP == BinOp::Add || OP == BinOp::Sub) ? c.arg(2, "alpha").float_() : 1.0;
  const int64_t n = out->numel;
  if (n == 0) return;
  const bool flat = vt::same_shape(a, b) && vt::same_shape(a, out) && vt::is_contiguous(a) &&
                    vt::is_contiguous(b) && vt::is_contiguous(out);
  const cudaStream_t s = vt_cuda::stream_of(c);
  vt::dispatch(vt::types<float, double, int64_t>{}, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Out = typename std::conditional<OP == BinOp::Div && std::is_integral<T>::value, float, T>::type;
    const BinFn<OP, T, Out> f{(T)(OP == BinOp::Sub ? -alpha : alpha)};
    if (flat) {
      binary_contiguous_kernel<Out, T><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(
          vt::data<Out>(out), vt::data<const T>(a), vt::data<const T>(b), n, f);
    } else {
      const vt_tensor* ops[3] = {out, a, b};
      binary_strided_kernel<Out, T><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(vt::loop_over<3>(c.op, ops), f);
    }
    vt_cuda::check_launch(c, c.op);
  });
}

}  // namespace

VT_COMPUTE(add_cuda, "core::add") { binary_cuda<BinOp::Add>(c); }
VT_COMPUTE(sub_cuda, "core::sub") { binary_cuda<BinOp::Sub>(c); }
VT_COMPUTE(mul_cuda, "core::mul") { binary_cuda<BinOp::Mul>(c); }
VT_COMPUTE(div_cuda, "core::div") { binary_cuda<BinOp::Div>(c); }
