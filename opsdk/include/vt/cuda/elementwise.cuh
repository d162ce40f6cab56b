// vt/cuda/elementwise.cuh — elementwise launchers for CUDA compute functions.
//
//   vt::cuda::elementwise<Out, In...>(c, f, out, in...)
//       out = f(in...) for every element of `out` (a vt_tensor*), each input broadcast to out's
//       shape, any strides. Picks the contiguous kernel with 16-byte vectorised loads and stores
//       when out and every input have out's shape, are contiguous and suitably aligned; otherwise
//       the strided kernel over a vt::StridedLoop built on the host (vt/loops.hpp: size-1 dims
//       dropped, dims merged). `f` is a __device__ functor: f(In...) -> Out; with no inputs it is
//       a generator f() -> Out (a fill). Out/In are device types (float, __half, int64_t, ...).
//   vt::cuda::elementwise_contiguous<Out, In...>(c, n, f, out_ptr, in_ptrs...)
//       the same over plain device arrays of n elements (vectorised when aligned).
//   vt::cuda::elementwise_strided<Out, In...>(c, loop, f)
//       the same over a loop you built with vt::loop_over / vt::make_loop.
//
// A CUDA elementwise op of a pack, in full:
//
//   struct Scale {
//     float k;
//     template <class T> __device__ T operator()(T x) const { return T(vt::cuda::acc_t<T>(x) * k); }
//   };
//   VT_COMPUTE(scale_cuda, "mine::scale") {
//     const vt_tensor* self = c.arg(0, "self").tensor();
//     const float k = (float)c.arg(1, "factor").float_();
//     vt::cuda::dispatch(vt::kFloatingTypes, self->dtype, c.op, [&](auto tag) {
//       using T = typename decltype(tag)::type;
//       vt::cuda::elementwise<T, T>(c, Scale{k}, c.out(0), self);
//     });
//   }
//
// Each call site instantiates two kernels (contiguous and strided) per type combination: keep
// dtype lists short, and share a functor across ops where the arithmetic allows.
#ifndef VT_CUDA_ELEMENTWISE_CUH_
#define VT_CUDA_ELEMENTWISE_CUH_

#include <utility>

#include "vt/cuda/launch.cuh"
#include "vt/loops.hpp"

namespace vt {
namespace cuda {

// V elements of T in one aligned access (16 bytes for V = 16 / sizeof(T)).
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// elements per 16-byte access for the widest of the types (at least 1)
template <class... T>
constexpr int vec_width() {
  size_t m = 1;
  const size_t sizes[] = {sizeof(T)...};
  for (size_t s : sizes) m = s > m ? s : m;
  return m >= 16 ? 1 : (int)(16 / m);
}

// Addresses of linear element i of the loop (dim 0 fastest) for each operand. 32-bit index
// arithmetic when the loop has fewer than 2^32 elements (the common case; 64-bit division is
// several times slower), 64-bit otherwise.
template <int N>
__device__ __forceinline__ void element_ptrs(const StridedLoop<N>& L, int64_t i, char* (&p)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) p[k] = L.data[k];
  if (L.ndim == 0) return;
  const int32_t last = L.ndim - 1;
  if (L.numel <= (int64_t)0xffffffffu) {
    uint32_t r = (uint32_t)i;
    for (int32_t d = 0; d < last; ++d) {
      const uint32_t s = (uint32_t)L.sizes[d];
      const uint32_t idx = r % s;
      r /= s;
#pragma unroll
      for (int k = 0; k < N; ++k) p[k] += (int64_t)idx * L.strides[d][k];
    }
#pragma unroll
    for (int k = 0; k < N; ++k) p[k] += (int64_t)r * L.strides[last][k];
  } else {
    for (int32_t d = 0; d < last; ++d) {
      const int64_t idx = i % L.sizes[d];
      i /= L.sizes[d];
#pragma unroll
      for (int k = 0; k < N; ++k) p[k] += idx * L.strides[d][k];
    }
#pragma unroll
    for (int k = 0; k < N; ++k) p[k] += i * L.strides[last][k];
  }
}

namespace detail {

template <int V, class Out, class F, class... In>
__device__ __forceinline__ void apply_vec(Out* o, const F& f, Vec<In, V>... v) {
  Vec<Out, V> r;
#pragma unroll
  for (int j = 0; j < V; ++j) r.v[j] = f(v.v[j]...);
  *reinterpret_cast<Vec<Out, V>*>(o) = r;
}

// n elements; the first n / V * V in aligned vectors of V, the rest one by one
template <int V, class Out, class F, class... In>  // (nvcc: a kernel's pack comes last)
__global__ void __launch_bounds__(kThreads) contiguous_kernel(int64_t n, F f, Out* out,
                                                              const In*... in) {
  const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  const int64_t nvec = n / V;
  for (int64_t i = start; i < nvec; i += step)
    apply_vec<V>(out + i * V, f, reinterpret_cast<const Vec<In, V>*>(in)[i]...);
  for (int64_t i = nvec * V + start; i < n; i += step) out[i] = f(in[i]...);
}

template <class Out, class... In, class F, size_t... I>
__device__ __forceinline__ void apply_at(char* const* p, const F& f, std::index_sequence<I...>) {
  *reinterpret_cast<Out*>(p[0]) = f(*reinterpret_cast<const In*>(p[I + 1])...);
}

template <class Out, class F, class... In>
__global__ void __launch_bounds__(kThreads) strided_kernel(StridedLoop<1 + sizeof...(In)> L, F f) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* p[1 + sizeof...(In)];
    element_ptrs(L, i, p);
    apply_at<Out, In...>(p, f, std::index_sequence_for<In...>{});
  }
}

inline bool aligned_to(const void* p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

template <class> using tensor_arg = const vt_tensor*;  // one tensor per input type

}  // namespace detail

template <class Out, class... In, class F>
void elementwise_strided(const Call& c, const StridedLoop<1 + sizeof...(In)>& L, F f) {
  if (L.numel == 0) return;
  launch(c, "vt::cuda::elementwise (strided)", detail::strided_kernel<Out, F, In...>, grid_for(L.numel), kThreads, 0,
         L, f);
}

// Vectorised when every pointer is aligned to a whole vector; else the strided kernel over the
// same elements (a 1-d loop, so its index arithmetic is one division).
template <class Out, class... In, class F>
void elementwise_contiguous(const Call& c, int64_t n, F f, Out* out, const In*... in) {
  if (n == 0) return;
  constexpr int V = vec_width<Out, In...>();
  const bool aligned = detail::aligned_to(out, sizeof(Out) * V) && (detail::aligned_to(in, sizeof(In) * V) && ...);
  if (aligned) {
    launch(c, "vt::cuda::elementwise (contiguous)", detail::contiguous_kernel<V, Out, F, In...>,
           grid_for((n + V - 1) / V), kThreads, 0, n, f, out, in...);
    return;
  }
  constexpr int N = 1 + sizeof...(In);
  StridedLoop<N> L;
  L.ndim = 1;
  L.numel = n;
  L.sizes[0] = n;
  char* data[N] = {(char*)out, (char*)in...};
  const int64_t es[N] = {(int64_t)sizeof(Out), (int64_t)sizeof(In)...};
  for (int k = 0; k < N; ++k) { L.data[k] = data[k]; L.strides[0][k] = es[k]; }
  elementwise_strided<Out, In...>(c, L, f);
}

// out = f(in...) over out's shape, inputs broadcast; see the top of this file.
template <class Out, class... In, class F>
void elementwise(const Call& c, F f, const vt_tensor* out, detail::tensor_arg<In>... in) {
  if (out->numel == 0) return;
  const bool flat = ((same_shape(in, out) && is_contiguous(in)) && ...) && is_contiguous(out);
  if (flat) {
    elementwise_contiguous<Out, In...>(c, out->numel, f, data<Out>(out), data<const In>(in)...);
  } else {
    const vt_tensor* ops[1 + sizeof...(In)] = {out, in...};
    elementwise_strided<Out, In...>(c, loop_over<1 + sizeof...(In)>(c.op, ops), f);
  }
}

}  // namespace cuda
}  // namespace vt

#endif  // VT_CUDA_ELEMENTWISE_CUH_
