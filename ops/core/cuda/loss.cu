// ops/core/cuda/loss.cu — the CUDA compute of cross_entropy, cross_entropy_backward and mse_loss.
// The meta steps and the semantics are src/loss.cpp's.
//
// cross_entropy: input (N, C, d1, ...) or (C,) is P = N * inner positions of C logits (stride 1
// when inner == 1: rows, else stride inner: one thread per position). The forward reads the logits
// once: an online max / sum-of-exp (and the sum of the logits for label smoothing) per position,
// then lse and the loss; it saves only lse. The backward reads the logits once more and writes
//   grad = w * (exp(x - lse) - eps / C) - (k == target ? w * (1 - eps) : 0)
// with w the position's weight (grad_output, / count for 'mean'; 0 where target == ignore_index),
// so the probabilities are never stored. The 'mean' count of kept targets is computed on the
// device (no host round trip). Reductions ('mean'/'sum') add per-position losses in a fixed order
// in float64: the same bits on every run.
// Target values cannot be checked on the host without a sync: a target outside [0, C) that is not
// ignore_index gives a nan loss (and a nan gradient row) instead of the cpu's IndexError, and is
// never used as an index.
//
// mse_loss: 'none' is one elementwise kernel (any strides, broadcast); 'mean'/'sum' write the
// squared differences (float32 / float64) and add them in two fixed-order stages.
#include <cmath>
#include <cstring>

#include "rowwise.cuh"

namespace {

using rowwise::acc_t;

constexpr int kSlots = 4;          // 64 bytes of logits per thread per chunk
constexpr int kFinishThreads = 1024;

enum class Red { None, Mean, Sum };
Red reduction_of(const char* s) {
  if (!std::strcmp(s, "mean")) return Red::Mean;
  if (!std::strcmp(s, "sum")) return Red::Sum;
  return Red::None;
}

// 16-bit floats from double through float (the cpu's vt::convert rounds the same way for these
// values up to double rounding)
template <class T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (vt::cuda::is_reduced_float_v<T>) return T((float)v);
  else return T(v);
}

struct CELayout {
  int64_t N, C, inner;
};
CELayout layout_of(const vt_tensor* x) {
  if (x->ndim == 1) return {1, x->sizes[0], 1};
  CELayout L{x->sizes[0], x->sizes[1], 1};
  for (int32_t d = 2; d < x->ndim; ++d) L.inner *= x->sizes[d];
  return L;
}

// The loss of one position from its lse l, its logits' sum sx and the target's logit.
struct CEParams {
  int64_t ignore;
  double eps;
};
template <class A>
__device__ __forceinline__ A ce_loss(A l, A sx, A xt, int64_t t, int64_t C, CEParams q) {
  if (t == q.ignore) return A(0);
  if (t < 0 || t >= C) return A(NAN);
  const A e = (A)q.eps;
  return (A(1) - e) * (l - xt) + (e != A(0) ? e * (l - sx / (A)C) : A(0));
}

// lse as the cpu computes it: a position whose logits are all -inf gets nan
template <class A>
__device__ __forceinline__ A lse_of(const rowwise::LSE<A>& st, int64_t C) {
  return st.m == A(-INFINITY) && C > 0 ? A(NAN) : st.m + rowwise::flog(st.s);
}

// ---- forward ------------------------------------------------------------------------------------
// Folds chunk ch (K slots in c) of a row of n logits into st. kWhole: slots are whole or absent
// (vec rows), so a slot's mask covers its V elements. The max ignores NaN (fmax); a NaN logit
// still makes the sum, and so lse and the loss, NaN.
template <class T, int K, bool kWhole>
__device__ __forceinline__ void chunk_lse(rowwise::LSE<acc_t<T>>& st, const rowwise::Slot (&c)[K],
                                          const rowwise::Group& g, int ch, int n) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  int lim[K];
  A cm = A(-INFINITY);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    lim[k] = rowwise::valid<V>(g.slot(ch, k, K), n);
    A km = A(-INFINITY);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const A v = rowwise::get<T>(c[k], j);
      km = fmax(km, kWhole || j < lim[k] ? v : A(-INFINITY));
    }
    cm = fmax(cm, kWhole && lim[k] <= 0 ? A(-INFINITY) : km);
  }
  st.add(cm, [&](A nm) {
    A sum = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      A ks = A(0);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A e = rowwise::fexp(rowwise::get<T>(c[k], j) - nm);
        ks += kWhole || j < lim[k] ? e : A(0);
      }
      sum += kWhole && lim[k] <= 0 ? A(0) : ks;
    }
    return sum;
  });
}

// One row group per position (inner == 1). Writes lse[p] and the loss: loss_none[p] ('none') or
// per[p] (to be reduced).
template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr)
    ce_fwd_rows(const T* __restrict__ x, const int64_t* __restrict__ tgt, int64_t P, int C, rowwise::Plan p,
                CEParams q, acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  const bool smooth = q.eps != 0.0;
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < P; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < P;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? C : 0;
    const T* xr = x + row * C;
    rowwise::LSE<A> st;
    A sx = A(0);
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::Slot c[K];
      rowwise::load_chunk<T, K>(c, xr, g, ch, n, p.vec);
      if (smooth)  // the logits' sum (label smoothing only); missing elements are 0
#pragma unroll
        for (int k = 0; k < K; ++k)
#pragma unroll
          for (int j = 0; j < V; ++j) sx += rowwise::get<T>(c[k], j);
      // vec rows hold whole slots or none: one mask per slot, not per element (the per-element
      // masks and NaN-propagating max were most of this loop's instructions)
      if (p.vec) chunk_lse<T, K, true>(st, c, g, ch, n);
      else chunk_lse<T, K, false>(st, c, g, ch, n);
    }
    st.combine(g);
    if (smooth) sx = g.sum(sx);
    if (live && g.lane == 0) {
      const A l = lse_of(st, C);
      const int64_t t = tgt[row];
      const A xt = t >= 0 && t < C ? A(xr[t]) : A(0);
      const A v = ce_loss(l, sx, xt, t, C, q);
      lse[row] = l;
      if (loss_none) loss_none[row] = T(v);
      else per[row] = v;
    }
  }
}

// One thread per position, its C logits at stride inner (inner > 1).
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_fwd_cols(const T* __restrict__ x, const int64_t* __restrict__ tgt, CELayout L, CEParams q,
                acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per) {
  using A = acc_t<T>;
  const int64_t P = L.N * L.inner;
  for (int64_t pos = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pos < P; pos += (int64_t)gridDim.x * blockDim.x) {
    const T* base = x + pos / L.inner * L.C * L.inner + pos % L.inner;
    rowwise::LSE<A> st;
    A sx = A(0);
    for (int64_t k = 0; k < L.C; ++k) {
      const A v = A(base[k * L.inner]);
      sx += v;
      st.add(v, [&](A nm) { return rowwise::fexp(v - nm); });
    }
    const A l = lse_of(st, L.C);
    const int64_t t = tgt[pos];
    const A xt = t >= 0 && t < L.C ? A(base[t * L.inner]) : A(0);
    const A v = ce_loss(l, sx, xt, t, L.C, q);
    lse[pos] = l;
    if (loss_none) loss_none[pos] = T(v);
    else per[pos] = v;
  }
}

// The reduced loss: sum of per[0..P) in float64 (fixed order), / the number of kept targets for
// 'mean' (0 / 0 = nan, as torch). One block.
template <class A, class T>
__global__ void __launch_bounds__(kFinishThreads)
    ce_finish(const A* __restrict__ per, const int64_t* __restrict__ tgt, int64_t P, int64_t ignore, bool mean,
              T* __restrict__ out) {
  double s = 0;
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    s += (double)per[i];
    cnt += tgt[i] != ignore;
  }
  s = vt::cuda::block_sum(s);
  cnt = vt::cuda::block_sum(cnt);
  if (threadIdx.x == 0) *out = from_double<T>(mean ? s / (double)cnt : s);
}

// ---- backward -----------------------------------------------------------------------------------
struct CEGrad {
  int64_t ignore;
  Red red;
  double eps;
  const long long* count;  // kept targets ('mean' only)
};

// the position's weight: 0 where ignored, nan for a bad target
template <class T>
__device__ __forceinline__ acc_t<T> ce_weight(const T* go, int64_t pos, int64_t t, int64_t C, const CEGrad& q) {
  using A = acc_t<T>;
  if (t == q.ignore) return A(0);
  if (t < 0 || t >= C) return A(NAN);
  if (q.red == Red::None) return A(go[pos]);
  const A g0 = A(go[0]);
  return q.red == Red::Mean ? g0 * (A)(1.0 / (double)*q.count) : g0;
}

template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr)
    ce_bwd_rows(const T* __restrict__ x, const int64_t* __restrict__ tgt, const acc_t<T>* __restrict__ lse,
                const T* __restrict__ go, T* __restrict__ gi, int64_t P, int C, rowwise::Plan p, CEGrad q) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  const A eC = (A)(q.eps / (double)(C > 1 ? C : 1)), keep = (A)(1.0 - q.eps);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < P; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < P;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? C : 0;
    const int64_t t = tgt[row];
    const bool ign = t == q.ignore;
    const A w = ce_weight(go, row, t, C, q), l = lse[row];
    const T* xr = x + row * C;
    T* ir = gi + row * C;
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::Slot c[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int s = g.slot(ch, k, K);
        c[k] = rowwise::load_slot<T>(xr, s, rowwise::valid<V>(s, n), p.vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int s = g.slot(ch, k, K);
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          A v = w * (rowwise::fexp(rowwise::get<T>(c[k], j) - l) - eC);
          if (s * V + j == t) v -= w * keep;
          return ign ? A(0) : v;
        });
        rowwise::store_slot<T>(ir, s, rowwise::valid<V>(s, n), p.vec, o);
      }
    }
  }
}

template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_bwd_cols(const T* __restrict__ x, const int64_t* __restrict__ tgt, const acc_t<T>* __restrict__ lse,
                const T* __restrict__ go, T* __restrict__ gi, CELayout L, CEGrad q) {
  using A = acc_t<T>;
  const int64_t P = L.N * L.inner;
  const A eC = (A)(q.eps / (double)(L.C > 1 ? L.C : 1)), keep = (A)(1.0 - q.eps);
  for (int64_t pos = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pos < P; pos += (int64_t)gridDim.x * blockDim.x) {
    const int64_t off = pos / L.inner * L.C * L.inner + pos % L.inner;
    const int64_t t = tgt[pos];
    const bool ign = t == q.ignore;
    const A w = ce_weight(go, pos, t, L.C, q), l = lse[pos];
    for (int64_t k = 0; k < L.C; ++k) {
      A v = w * (rowwise::fexp(A(x[off + k * L.inner]) - l) - eC);
      if (k == t) v -= w * keep;
      gi[off + k * L.inner] = ign ? T(0.0f) : T(v);
    }
  }
}

// the number of targets != ignore (one block)
__global__ void __launch_bounds__(kFinishThreads)
    ce_count(const int64_t* __restrict__ tgt, int64_t P, int64_t ignore, long long* __restrict__ out) {
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) cnt += tgt[i] != ignore;
  cnt = vt::cuda::block_sum(cnt);
  if (threadIdx.x == 0) *out = cnt;
}

// ---- mse_loss -----------------------------------------------------------------------------------
template <class T>
__device__ __forceinline__ acc_t<T> sqdiff(T a, T b) {
  const acc_t<T> d = acc_t<T>(a) - acc_t<T>(b);
  return d * d;
}
template <class T>
struct SqDiffT {  // 'none': stored in T
  __device__ __forceinline__ T operator()(T a, T b) const { return T(sqdiff(a, b)); }
};
template <class T>
struct SqDiffA {  // to be reduced: kept in the compute type
  __device__ __forceinline__ acc_t<T> operator()(T a, T b) const { return sqdiff(a, b); }
};

// stage 1: block b adds elements b*256 + t, + gridDim*256, ... in float64
template <class A>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    sum_partials(const A* __restrict__ v, int64_t n, double* __restrict__ part) {
  double s = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)v[i];
  s = vt::cuda::block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// stage 2 (one block): out = sum of part[0..G) (/ n for 'mean'; 0 / 0 = nan, as torch)
template <class T>
__global__ void __launch_bounds__(kFinishThreads)
    sum_finish(const double* __restrict__ part, int64_t G, int64_t n, bool mean, T* __restrict__ out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < G; i += blockDim.x) s += part[i];
  s = vt::cuda::block_sum(s);
  if (threadIdx.x == 0) *out = from_double<T>(mean ? s / (double)n : s);
}

}  // namespace

namespace {

VT_COMPUTE(cross_entropy_cuda, "core::cross_entropy") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* t = c.arg(1, "target").tensor();
  const CEParams q{c.arg(2, "ignore_index").int_(), c.arg(3, "label_smoothing").float_()};
  const Red red = reduction_of(c.arg(4, "reduction").str());
  const CELayout L = layout_of(x);
  const int64_t P = L.N * L.inner;
  const vt_tensor* loss = c.out(0);
  const vt_tensor* lse = c.out(1);
  rowwise::Contig xc(c, x), tc(c, t);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    A* lp = vt::data<A>(lse);
    vt::Tensor per;
    if (red != Red::None) {
      const int64_t sz[1] = {P};
      per = c.empty(sz, 1, vt::dtype_of<A>());
    }
    T* lo = red == Red::None ? vt::data<T>(loss) : nullptr;
    A* pp = red == Red::None ? nullptr : vt::data<A>(per);
    if (P > 0 && L.inner == 1) {
      const rowwise::Plan p = rowwise::plan_rows(c, P, L.C, rowwise::width<T>(), kSlots, rowwise::aligned16(xp));
      vt::cuda::launch(c, "ce_fwd_rows", ce_fwd_rows<T, kSlots>, p.blocks, p.threads, 0, xp, tp, P, (int)L.C, p, q, lp,
                       lo, pp);
    } else if (P > 0) {
      vt::cuda::launch(c, "ce_fwd_cols", ce_fwd_cols<T>, vt::cuda::grid_for(P), vt::cuda::kThreads, 0, xp, tp, L, q,
                       lp, lo, pp);
    }
    if (red != Red::None)
      vt::cuda::launch(c, "ce_finish", ce_finish<A, T>, 1, kFinishThreads, 0, pp, tp, P, q.ignore, red == Red::Mean,
                       vt::data<T>(loss));
  });
}

VT_COMPUTE(cross_entropy_backward_cuda, "core::cross_entropy_backward") {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* x = c.arg(1, "input").tensor();
  const vt_tensor* t = c.arg(2, "target").tensor();
  const vt_tensor* lse = c.arg(3, "lse").tensor();
  CEGrad q{c.arg(4, "ignore_index").int_(), reduction_of(c.arg(6, "reduction").str()),
           c.arg(5, "label_smoothing").float_(), nullptr};
  const CELayout L = layout_of(x);
  const int64_t P = L.N * L.inner;
  const vt_tensor* gin = c.out(0);
  if (x->numel == 0) return;
  rowwise::Contig xc(c, x), tc(c, t), gc(c, go), lc(c, lse);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  vt::Tensor count;
  if (q.red == Red::Mean) {
    const int64_t one[1] = {1};
    count = c.empty(one, 1, vt::kInt64);
    q.count = vt::data<const long long>(count);
    vt::cuda::launch(c, "ce_count", ce_count, 1, kFinishThreads, 0, tp, P, q.ignore, vt::data<long long>(count));
  }
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    const T* gp = vt::data<const T>(gc.t);
    const A* lp = vt::data<const A>(lc.t);
    T* ip = vt::data<T>(gin);
    if (L.inner == 1) {
      const rowwise::Plan p = rowwise::plan_rows(c, P, L.C, rowwise::width<T>(), kSlots,
                                                 rowwise::aligned16(xp) && rowwise::aligned16(ip));
      vt::cuda::launch(c, "ce_bwd_rows", ce_bwd_rows<T, kSlots>, p.blocks, p.threads, 0, xp, tp, lp, gp, ip, P,
                       (int)L.C, p, q);
    } else {
      vt::cuda::launch(c, "ce_bwd_cols", ce_bwd_cols<T>, vt::cuda::grid_for(P), vt::cuda::kThreads, 0, xp, tp, lp, gp,
                       ip, L, q);
    }
  });
}

VT_COMPUTE(mse_loss_cuda, "core::mse_loss") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* y = c.arg(1, "target").tensor();
  const Red red = reduction_of(c.arg(2, "reduction").str());
  const vt_tensor* out = c.out(0);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    if (red == Red::None) {
      vt::cuda::elementwise<T, T, T>(c, SqDiffT<T>{}, out, x, y);
      return;
    }
    int64_t shape[vt::kMaxDims];
    const int32_t nd = vt::broadcast_shape(c.op, x, "input", y, "target", shape);
    vt::Tensor sq = c.empty(shape, nd, vt::dtype_of<A>());
    const int64_t n = sq->numel;
    vt::cuda::elementwise<A, T, T>(c, SqDiffA<T>{}, sq, x, y);
    const int64_t G = std::min<int64_t>(1024, (n + 4095) / 4096);
    const int64_t gs[1] = {std::max<int64_t>(G, 1)};
    vt::Tensor part = c.empty(gs, 1, vt::kFloat64);
    if (G > 0)
      vt::cuda::launch(c, "sum_partials", sum_partials<A>, (unsigned)G, vt::cuda::kThreads, 0, vt::data<const A>(sq), n,
                       vt::data<double>(part));
    vt::cuda::launch(c, "sum_finish", sum_finish<T>, 1, kFinishThreads, 0, vt::data<const double>(part), G, n,
                     red == Red::Mean, vt::data<T>(out));
  });
}

}  // namespace

void register_loss_cuda(vt::Registrar& r) {
  r.compute("core::cross_entropy", VT_CUDA, cross_entropy_cuda);
  r.compute("core::cross_entropy_backward", VT_CUDA, cross_entropy_backward_cuda);
  r.compute("core::mse_loss", VT_CUDA, mse_loss_cuda);
}
