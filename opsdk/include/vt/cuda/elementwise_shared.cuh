// vt/cuda/elementwise_shared.cuh — elementwise launchers for a family of ops that share kernels.
//
//   vt::cuda::elementwise_shared<Out, In...>(c, fast, general, out, in...)
//       out = f(in...) as vt::cuda::elementwise does (inputs broadcast to out's shape, any
//       strides), but only the contiguous case runs `fast`, the op's own functor; broadcast and
//       strided operands run `general`, a functor of the whole family that picks the op at run
//       time from a field. A family of K ops over D dtypes then compiles K*D vectorised kernels
//       and D strided ones instead of 2*K*D: the strided kernel is bound by its index arithmetic,
//       so a switch on a kernel argument (the same branch in every thread) costs little there.
//   vt::cuda::elementwise_shared_unrolled<U, Out, In...>(c, fast, general, out, in...)
//       the same with U 16-byte vectors of every operand per thread, all loads issued before the
//       arithmetic, for ops with enough arithmetic per element (GELU on 16-bit floats) that one
//       load in flight per thread leaves the memory system idle. U = 1: the SDK's vectorised kernel.
//   vt::cuda::is_flat(out, in...)
//       whether every operand has out's shape and is contiguous (the vectorised case).
//   vt::cuda::select_op<N, R>(op, f)
//       in device code: f(std::integral_constant<int, I>{}) for the I in [0, N) equal to `op`, as
//       an R: how a `general` functor turns its run-time op into the template argument of the
//       ops' shared arithmetic (R{} when op is out of range).
//
// Both functors must compute the same values: `general` is `fast` with the op chosen late.
#ifndef VT_CUDA_ELEMENTWISE_SHARED_CUH_
#define VT_CUDA_ELEMENTWISE_SHARED_CUH_

#include <algorithm>

#include "vt/cuda/elementwise.cuh"

namespace vt {
namespace cuda {

template <int N, class R, class F, int... I>
__device__ __forceinline__ R select_op_in(int op, const F& f, std::integer_sequence<int, I...>) {
  R r{};
  (void)((op == I ? (r = f(std::integral_constant<int, I>{}), true) : false) || ...);
  return r;
}
template <int N, class R, class F>
__device__ __forceinline__ R select_op(int op, const F& f) {
  return select_op_in<N, R>(op, f, std::make_integer_sequence<int, N>{});
}

namespace detail {

// U vectors of one operand: vectors base, base + kThreads, ... (those below nvec)
template <class T, int V, int U>
struct Regs {
  Vec<T, V> r[U];
};
template <class T, int V, int U>
__device__ __forceinline__ Regs<T, V, U> load_regs(const T* p, int64_t base, int64_t nvec) {
  Regs<T, V, U> x;
#pragma unroll
  for (int j = 0; j < U; ++j)
    if (base + j * kThreads < nvec) x.r[j] = reinterpret_cast<const Vec<T, V>*>(p)[base + j * kThreads];
  return x;
}

// Block b covers vectors [b*U*kThreads, (b+1)*U*kThreads): no grid-stride loop, every load of a
// thread in flight at once. The last n % V elements go one per thread of the first threads.
template <int V, int U, class Out, class F, class... In>
__global__ void __launch_bounds__(kThreads) contiguous_unrolled_kernel(int64_t n, F f, Out* out, const In*... in) {
  const int64_t nvec = n / V;
  const int64_t base = (int64_t)blockIdx.x * U * kThreads + threadIdx.x;
  auto body = [&](const Regs<In, V, U>&... x) {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (base + j * kThreads >= nvec) break;
      Vec<Out, V> o;
#pragma unroll
      for (int e = 0; e < V; ++e) o.v[e] = f(x.r[j].v[e]...);
      reinterpret_cast<Vec<Out, V>*>(out)[base + j * kThreads] = o;
    }
  };
  body(load_regs<In, V, U>(in, base, nvec)...);
  const int64_t t = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (t < n - nvec * V) out[nvec * V + t] = f(in[nvec * V + t]...);
}

}  // namespace detail

template <class... T>
bool is_flat(const vt_tensor* out, T... in) {
  return ((same_shape(in, out) && is_contiguous(in)) && ...) && is_contiguous(out);
}

template <int U, class Out, class... In, class Fast, class General>
void elementwise_shared_unrolled(const Call& c, Fast fast, General general, const vt_tensor* out,
                                 detail::tensor_arg<In>... in) {
  if (out->numel == 0) return;
  constexpr int V = vec_width<Out, In...>();
  const int64_t n = out->numel;
  if (is_flat(out, in...) && detail::aligned_to(out->data, sizeof(Out) * V) &&
      (detail::aligned_to(in->data, sizeof(In) * V) && ...)) {
    if constexpr (U == 1) {
      launch(c, "vt::cuda::elementwise_shared (contiguous)", detail::contiguous_kernel<V, Out, Fast, In...>,
             grid_for((n + V - 1) / V), kThreads, 0, n, fast, data<Out>(out), data<const In>(in)...);
    } else {
      const int64_t per_block = (int64_t)U * kThreads;
      const int64_t blocks = std::max<int64_t>((n / V + per_block - 1) / per_block, 1);
      launch(c, "vt::cuda::elementwise_shared (contiguous)", detail::contiguous_unrolled_kernel<V, U, Out, Fast, In...>,
             (unsigned int)blocks, kThreads, 0, n, fast, data<Out>(out), data<const In>(in)...);
    }
    return;
  }
  // anything else, a misaligned contiguous view too (its loop merges into one dim)
  const vt_tensor* ops[1 + sizeof...(In)] = {out, in...};
  elementwise_strided<Out, In...>(c, loop_over<1 + sizeof...(In)>(c.op, ops), general);
}

template <class Out, class... In, class Fast, class General>
void elementwise_shared(const Call& c, Fast fast, General general, const vt_tensor* out,
                        detail::tensor_arg<In>... in) {
  elementwise_shared_unrolled<1, Out, In...>(c, fast, general, out, in...);
}

}  // namespace cuda
}  // namespace vt

#endif  // VT_CUDA_ELEMENTWISE_SHARED_CUH_
