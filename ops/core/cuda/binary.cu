// ops/core/cuda/binary.cu — add, sub, mul, div for CUDA tensors (float32, float64, int64).
//
// Same semantics and messages as src/binary.cpp: broadcasting, any strides, 0-size, matching
// dtypes, true division (int64 / int64 -> float32), integer wrap-around. Launched on ctx->stream.
// Shapes: out is the broadcast of self and other; a loop of 3 operands (out, self, other).
// Kernels first, then the launcher, then the VT_KERNEL entry points.
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

template <BinOp OP>
void binary_cuda(vt::Call& c) {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const double alpha = (OP == BinOp::Add || OP == BinOp::Sub) ? c.arg(2, "alpha").float_() : 1.0;
  c.check_same_device(a, "self", b, "other");
  vt_cuda::check_on_cuda(c, a, "self");
  c.check_same_dtype(a, "self", b, "other");
  vt::check_ndim(c.op, a, "self");
  vt::check_ndim(c.op, b, "other");
  const bool int_div = OP == BinOp::Div && vt::is_integral(a->dtype, true);

  const bool flat = vt::same_shape(a, b) && vt::is_contiguous(a) && vt::is_contiguous(b);
  vt::Tensor out;
  if (flat) {
    out = c.empty(a->sizes, a->ndim, int_div ? vt::kFloat32 : a->dtype);
  } else {
    int64_t shape[vt::kMaxDims];
    const int32_t ndim = vt::broadcast_shape(c.op, a, "self", b, "other", shape);
    out = c.empty(shape, ndim, int_div ? vt::kFloat32 : a->dtype);
  }
  const int64_t n = out->numel;
  if (n > 0) {
    const cudaStream_t s = vt_cuda::stream_of(c);
    vt::dispatch(vt::types<float, double, int64_t>{}, a->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      using Out = typename std::conditional<OP == BinOp::Div && std::is_integral<T>::value, float, T>::type;
      if (std::is_integral<T>::value && alpha != std::trunc(alpha))
        c.fail(VT_ERR_TYPE, "alpha must be an integer for integral dtype %s, got %g", vt::dtype_name(a->dtype), alpha);
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
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(add_cuda, "core::add") { binary_cuda<BinOp::Add>(c); }
VT_KERNEL(sub_cuda, "core::sub") { binary_cuda<BinOp::Sub>(c); }
VT_KERNEL(mul_cuda, "core::mul") { binary_cuda<BinOp::Mul>(c); }
VT_KERNEL(div_cuda, "core::div") { binary_cuda<BinOp::Div>(c); }
