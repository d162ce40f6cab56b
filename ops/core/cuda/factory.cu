// ops/core/cuda/factory.cu — the CUDA compute of arange, linspace and eye (fill_, zeros, ones and
// full are in fill.cu). The meta steps and the semantics are src/factory.cpp's (arange) and
// src/shape.cpp's (linspace, eye).
//
// arange and linspace share one kernel: value i is computed in double as on cpu, from the start
// (a + i * step) for i < half and from the end (b - (n - 1 - i) * step) after, then converted to
// the dtype with the cpu's conversion (through float for float16/bfloat16, truncation for
// integers). arange is all first half; linspace splits at steps / 2 like torch, so its last value
// is exactly `end`. eye: zero fill, then ones on the diagonal (the dtype's bit pattern of 1).
#include <algorithm>
#include <cstring>

#include "vt/cuda/elementwise.cuh"

namespace {

template <class T>
__device__ __forceinline__ T from_double(double x) {
  if constexpr (std::is_same<T, __half>::value) return __float2half_rn((float)x);
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn((float)x);
  else return (T)x;
}

template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads) affine_kernel(T* out, int64_t n, int64_t half, double a, double b, double step) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = from_double<T>(i < half ? a + (double)i * step : b - (double)(n - 1 - i) * step);
}

void affine(const vt::Call& c, const vt_tensor* out, int64_t half, double a, double b, double step) {
  const int64_t n = out->numel;
  if (n == 0) return;
  vt::cuda::dispatch(vt::kArithTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::launch(c, "affine_kernel", affine_kernel<T>, vt::cuda::grid_for(n), vt::cuda::kThreads, 0, vt::data<T>(out), n,
                     half, a, b, step);
  });
}

VT_COMPUTE(arange_cuda, "core::arange") {
  const double start = c.arg(0, "start").float_();
  const double step = c.arg(2, "step").float_();
  const vt_tensor* out = c.out(0);
  affine(c, out, out->numel, start, start, step);
}

VT_COMPUTE(linspace_cuda, "core::linspace") {
  const double start = c.arg(0, "start").float_();
  const double end = c.arg(1, "end").float_();
  const vt_tensor* out = c.out(0);
  const int64_t steps = out->numel;
  const double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0.0;
  // steps == 1: the one value is start (half = 0 and b = start)
  affine(c, out, steps / 2, start, steps == 1 ? start : end, step);
}

template <class U>
__global__ void __launch_bounds__(vt::cuda::kThreads) diagonal_kernel(U* out, int64_t n, int64_t m, U one) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i * m + i] = one;
}

VT_COMPUTE(eye_cuda, "core::eye") {
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const int64_t n = out->sizes[0], m = out->sizes[1], es = vt::element_size(out->dtype);
  vt::cuda::check(c, cudaMemsetAsync(out->data, 0, (size_t)(out->numel * es), vt::cuda::stream(c)), "cudaMemsetAsync");
  uint64_t one = 0;
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = vt::convert<T>(1.0);
    std::memcpy(&one, &v, sizeof(T));
  });
  const int64_t k = std::min(n, m);
  auto go = [&](auto zero) {
    using U = decltype(zero);
    U bits;
    std::memcpy(&bits, &one, sizeof(U));
    vt::cuda::launch(c, "diagonal_kernel", diagonal_kernel<U>, vt::cuda::grid_for(k), vt::cuda::kThreads, 0, vt::data<U>(out), k, m,
                     bits);
  };
  switch (es) {
    case 1: go(uint8_t()); break;
    case 2: go(uint16_t()); break;
    case 4: go(uint32_t()); break;
    default: go(uint64_t()); break;
  }
}

}  // namespace

void register_factory_cuda(vt::Registrar& r) {
  r.compute("core::arange", VT_CUDA, arange_cuda);
  r.compute("core::linspace", VT_CUDA, linspace_cuda);
  r.compute("core::eye", VT_CUDA, eye_cuda);
}
