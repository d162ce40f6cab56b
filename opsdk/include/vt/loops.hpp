// vt/loops.hpp — broadcasting and strided N-d loops for CPU kernels.
//
//   vt::broadcast_shape   the output shape of two broadcast operands (error names both shapes)
//   vt::StridedLoop<N>    N operands walked together over one shape, with dims of size 1 dropped,
//                         dims reordered so the first operand is walked in memory order, and
//                         adjacent dims merged where every operand allows it. What remains is an
//                         outer odometer around a 1-d inner loop `inner(ptrs, byte_strides, n)`.
//   vt::elementwise<Out, In...>(host, loop, f)  out = f(in...) in parallel, with a contiguous
//                         inner loop the compiler vectorises (f must be small and inlineable).
//
// Shapes have at most kMaxDims dims so every loop lives on the stack: no allocation per call.
#ifndef VT_LOOPS_HPP_
#define VT_LOOPS_HPP_

#include <algorithm>
#include <cstdlib>
#include <tuple>
#include <utility>

#include "vt/oppack.hpp"

// The per-row loops are "flattened": every call inside them (the functor and whatever it calls) is
// inlined, so the loop vectorises. Without it GCC's unit-growth limits stop inlining in big kernel
// files and a row became one out-of-line call per element (10x slower, only on the paths where the
// loop was instantiated late).
#if defined(__GNUC__) && !defined(__clang__)
#define VT_FLATTEN __attribute__((flatten))
#else
#define VT_FLATTEN
#endif

namespace vt {

constexpr int32_t kMaxDims = 16;

inline void check_ndim(const char* op, const vt_tensor* t, const char* name) {
  if (t->ndim > kMaxDims)
    fail(VT_ERR_VALUE, "[%s] %s has %d dims; at most %d are supported", op, name, t->ndim, kMaxDims);
}

inline bool same_shape(const vt_tensor* a, const vt_tensor* b) {
  if (a->ndim != b->ndim) return false;
  for (int32_t i = 0; i < a->ndim; ++i)
    if (a->sizes[i] != b->sizes[i]) return false;
  return true;
}

// Writes the broadcast shape of a and b (numpy rules, aligned on the right) into `out`
// (kMaxDims entries) and returns its ndim.
inline int32_t broadcast_shape(const char* op, const int64_t* a, int32_t an, const char* aname, const int64_t* b,
                               int32_t bn, const char* bname, int64_t* out) {
  const int32_t n = std::max(an, bn);
  if (n > kMaxDims) fail(VT_ERR_VALUE, "[%s] broadcast result has %d dims; at most %d are supported", op, n, kMaxDims);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t ia = an - n + i, ib = bn - n + i;
    const int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      fail(VT_ERR_VALUE, "[%s] shapes cannot be broadcast: %s %s and %s %s (dim %d: %lld vs %lld)", op, aname,
           shape_str(a, an).c_str(), bname, shape_str(b, bn).c_str(), i, (long long)sa, (long long)sb);
    out[i] = sa == 1 ? sb : sa;
  }
  return n;
}
inline int32_t broadcast_shape(const char* op, const vt_tensor* a, const char* aname, const vt_tensor* b,
                               const char* bname, int64_t* out) {
  return broadcast_shape(op, a->sizes, a->ndim, aname, b->sizes, b->ndim, bname, out);
}

// Element strides of t seen as a tensor of `ndim` dims (t aligned on the right): broadcast dims
// get stride 0. Precondition: t's shape broadcasts to that shape.
inline void broadcast_strides(const vt_tensor* t, int32_t ndim, int64_t* out) {
  for (int32_t d = 0; d < ndim; ++d) {
    const int32_t td = d - (ndim - t->ndim);
    out[d] = (td < 0 || t->sizes[td] == 1) ? 0 : t->strides[td];
  }
}

template <int N>
struct StridedLoop {
  int32_t ndim = 0;               // after collapsing; dim 0 is the innermost
  int64_t numel = 0;              // elements of the iteration space
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims][N];   // bytes, [dim][operand]
  char* data[N];

  // Calls inner(char* const ptrs[N], const int64_t byte_strides[N], int64_t n) over the
  // linear range [begin, end) of the iteration space (dim 0 fastest).
  template <class Inner>
  void run(int64_t begin, int64_t end, Inner&& inner) const {
    if (begin >= end) return;
    char* ptr[N];
    for (int k = 0; k < N; ++k) ptr[k] = data[k];
    if (ndim == 0) {  // a single element (all dims were 1)
      const int64_t zero[N] = {};
      inner(ptr, zero, 1);
      return;
    }
    int64_t idx[kMaxDims];
    int64_t rem = begin;
    for (int32_t d = 0; d < ndim; ++d) {
      idx[d] = rem % sizes[d];
      rem /= sizes[d];
      for (int k = 0; k < N; ++k) ptr[k] += idx[d] * strides[d][k];
    }
    for (;;) {
      const int64_t n = std::min(sizes[0] - idx[0], end - begin);
      inner(ptr, strides[0], n);
      begin += n;
      if (begin >= end) return;
      // the row is done: rewind it, then carry into the outer dims
      for (int k = 0; k < N; ++k) ptr[k] -= idx[0] * strides[0][k];
      idx[0] = 0;
      for (int32_t d = 1; d < ndim; ++d) {
        for (int k = 0; k < N; ++k) ptr[k] += strides[d][k];
        if (++idx[d] < sizes[d]) break;
        for (int k = 0; k < N; ++k) ptr[k] -= sizes[d] * strides[d][k];
        idx[d] = 0;
      }
    }
  }
};

// Builds a loop over `shape` (outermost dim first, like a tensor's sizes). elem_strides[k][d] is
// operand k's stride of dim d in elements (0 to broadcast), elem_size[k] its element size.
template <int N>
StridedLoop<N> make_loop(const int64_t* shape, int32_t ndim, char* const* data,
                         const int64_t (*elem_strides)[kMaxDims], const int64_t* elem_size) {
  StridedLoop<N> L;
  for (int k = 0; k < N; ++k) L.data[k] = data[k];
  L.numel = 1;
  for (int32_t d = 0; d < ndim; ++d) L.numel *= shape[d];
  if (L.numel == 0) return L;

  // innermost first; dims of size 1 carry no iteration
  int32_t n = 0;
  for (int32_t d = ndim - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    L.sizes[n] = shape[d];
    for (int k = 0; k < N; ++k) L.strides[n][k] = elem_strides[k][d] * elem_size[k];
    ++n;
  }
  // Reorder so smaller strides are inner (torch's rule: the first operand whose strides on both
  // dims are nonzero decides, so a reduction's 0-stride output defers to its input).
  auto inner_before = [&L](int32_t a, int32_t b) {
    for (int k = 0; k < N; ++k) {
      const int64_t sa = std::llabs(L.strides[a][k]), sb = std::llabs(L.strides[b][k]);
      if (sa == 0 || sb == 0) continue;
      if (sa != sb) return sa < sb;
    }
    return false;
  };
  for (int32_t i = 1; i < n; ++i)
    for (int32_t j = i; j > 0 && inner_before(j, j - 1); --j) {
      std::swap(L.sizes[j], L.sizes[j - 1]);
      for (int k = 0; k < N; ++k) std::swap(L.strides[j][k], L.strides[j - 1][k]);
    }
  // Merge dim r into the current inner dim w when every operand steps through them as one.
  int32_t w = 0;
  for (int32_t r = 1; r < n; ++r) {
    bool merge = true;
    for (int k = 0; k < N; ++k) merge = merge && L.strides[w][k] * L.sizes[w] == L.strides[r][k];
    if (merge) {
      L.sizes[w] *= L.sizes[r];
    } else {
      ++w;
      L.sizes[w] = L.sizes[r];
      for (int k = 0; k < N; ++k) L.strides[w][k] = L.strides[r][k];
    }
  }
  L.ndim = n > 0 ? w + 1 : 0;
  return L;
}

// A loop over ts[0]'s shape with every other operand broadcast to it (ts[0] is usually the output).
template <int N>
StridedLoop<N> loop_over(const char* op, const vt_tensor* const (&ts)[N]) {
  int64_t strides[N][kMaxDims];
  int64_t esize[N];
  char* data[N];
  const int32_t ndim = ts[0]->ndim;
  for (int k = 0; k < N; ++k) {
    check_ndim(op, ts[k], "an operand");
    broadcast_strides(ts[k], ndim, strides[k]);
    esize[k] = element_size(ts[k]->dtype);
    data[k] = static_cast<char*>(ts[k]->data);
  }
  return make_loop<N>(ts[0]->sizes, ndim, data, strides, esize);
}

namespace detail {
// One inner row of out = f(in...). The contiguous branch is the one that vectorises; the binary
// "one side broadcast" branches keep `x + scalar`-like rows vectorised too.
template <class Out, class... In, class F, size_t... I>
VT_FLATTEN inline void elementwise_row(char* const* ptrs, const int64_t* st, int64_t n, F& f, std::index_sequence<I...>) {
  char* const p0 = ptrs[0];
  char* const pin[sizeof...(In) + 1] = {ptrs[I + 1]..., nullptr};
  const int64_t sin[sizeof...(In) + 1] = {st[I + 1]..., 0};
  const bool out_contig = st[0] == (int64_t)sizeof(Out);
  if (out_contig && ((sin[I] == (int64_t)sizeof(In)) && ...)) {
    Out* o = reinterpret_cast<Out*>(p0);
    for (int64_t i = 0; i < n; ++i) o[i] = f(reinterpret_cast<const In*>(pin[I])[i]...);
    return;
  }
  if constexpr (sizeof...(In) == 2) {
    using A = typename std::tuple_element<0, std::tuple<In...>>::type;
    using B = typename std::tuple_element<1, std::tuple<In...>>::type;
    if (out_contig && sin[0] == (int64_t)sizeof(A) && sin[1] == 0) {
      Out* o = reinterpret_cast<Out*>(p0);
      const A* a = reinterpret_cast<const A*>(pin[0]);
      const B b = *reinterpret_cast<const B*>(pin[1]);
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b);
      return;
    }
    if (out_contig && sin[0] == 0 && sin[1] == (int64_t)sizeof(B)) {
      Out* o = reinterpret_cast<Out*>(p0);
      const A a = *reinterpret_cast<const A*>(pin[0]);
      const B* b = reinterpret_cast<const B*>(pin[1]);
      for (int64_t i = 0; i < n; ++i) o[i] = f(a, b[i]);
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    *reinterpret_cast<Out*>(p0 + i * st[0]) = f(*reinterpret_cast<const In*>(pin[I] + i * sin[I])...);
}
}  // namespace detail

// out = f(in...) over a loop whose operand 0 has type Out and operands 1.. types In...
template <class Out, class... In, class F>
void elementwise(const vt_host* host, const StridedLoop<1 + sizeof...(In)>& L, F f) {
  parallel_for(host, 0, L.numel, kGrain, [&](int64_t b, int64_t e) {
    L.run(b, e, [&](char* const* p, const int64_t* s, int64_t n) {
      detail::elementwise_row<Out, In...>(p, s, n, f, std::index_sequence_for<In...>{});
    });
  });
}

// The same over plain contiguous arrays of n elements: the fast path for the common case, with
// no loop set-up at all.
namespace detail {
// the pointers arrive as plain parameters so the compiler keeps them in registers and vectorises
template <class Out, class... In, class F>
VT_FLATTEN inline void contiguous_range(int64_t b, int64_t e, F& f, Out* out, const In*... in) {
  for (int64_t i = b; i < e; ++i) out[i] = f(in[i]...);
}
}  // namespace detail

template <class Out, class... In, class F>
void elementwise_contiguous(const vt_host* host, int64_t n, F f, Out* out, const In*... in) {
  parallel_for(host, 0, n, kGrain, [&](int64_t b, int64_t e) { detail::contiguous_range(b, e, f, out, in...); });
}

}  // namespace vt

#endif  // VT_LOOPS_HPP_
