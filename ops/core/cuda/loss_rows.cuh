// ops/core/cuda/loss_rows.cuh — cross_entropy's CUDA kernels (device code only): the forward (rows
// and strided positions; the fused variant also writes the gradient for grad_output 1), the
// backward, and the fused backward's in-place scale by grad_output. loss.cu launches them (its
// header says what each computes); ops/core/lab/loss_emulate.cpp runs them on the host.
#pragma once

#include <cmath>

#include "rowwise.cuh"

namespace loss_rows {

using rowwise::acc_t;

constexpr int kSlots = 4;       // 64 bytes of logits per thread per chunk
constexpr int kCachedSlots = 8;  // the fused forward with its row in shared memory: 128 bytes in flight
constexpr int kPipedSlots = 4;   // ce_fwd_rows_piped: slots per thread per step of its statistics pass

// The fused forward's copy of its row (block plans: one row per block), slot s at [s]: dynamic
// shared memory sized by the launch. Each thread reads back only the slots it wrote (the same
// slot <-> thread map in both passes), so the passes need no barrier.
#ifdef VT_ROWWISE_EMULATE
inline thread_local rowwise::Slot* emu_row_cache = nullptr;  // loss_emulate.cpp's per-block buffer
inline rowwise::Slot* row_cache() { return emu_row_cache; }
#else
__device__ __forceinline__ rowwise::Slot* row_cache() {
  extern __shared__ rowwise::Slot ce_row_cache[];
  return ce_row_cache;
}
#endif

enum class Red { None, Mean, Sum };

// input (N, C, d1, ...) as N * inner positions of C logits at stride inner
struct CELayout {
  int64_t N, C, inner;
};

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

// The gradient's parameters (backward, and the fused forward).
struct CEGrad {
  int64_t ignore;
  Red red;
  double eps;
  const long long* count;  // kept targets ('mean' only)
};

// the position's weight: 0 where ignored, nan for a bad target; go == nullptr: grad_output 1
// (the fused forward), the same arithmetic as a grad_output tensor holding 1
template <class T>
__device__ __forceinline__ acc_t<T> ce_weight(const T* go, int64_t pos, int64_t t, int64_t C, const CEGrad& q) {
  using A = acc_t<T>;
  if (t == q.ignore) return A(0);
  if (t < 0 || t >= C) return A(NAN);
  if (q.red == Red::None) return go ? A(go[pos]) : A(1);
  const A g0 = go ? A(go[0]) : A(1);
  return q.red == Red::Mean ? g0 * (A)(1.0 / (double)*q.count) : g0;
}

// Writes a row's gradient (K slots per chunk, as the forward read it): w * (exp(x - l) - eC),
// less w * keep at the target; zeros where ignored. The backward and the fused forward share it;
// kLastFirst: chunks in reverse order (the fused forward's second pass, whose last chunks are
// the likeliest to be in L2 still).
template <class T, int K, bool kLastFirst>
__device__ __forceinline__ void grad_row(const T* __restrict__ xr, T* __restrict__ ir, const rowwise::Group& g,
                                         int chunks, int n, bool vec, acc_t<T> l, acc_t<T> w, acc_t<T> eC,
                                         acc_t<T> keep, int64_t t, bool ign) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  for (int i = 0; i < chunks; ++i) {
    const int ch = kLastFirst ? chunks - 1 - i : i;
    rowwise::Slot c[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int s = g.slot(ch, k, K);
      c[k] = rowwise::load_slot<T>(xr, s, rowwise::valid<V>(s, n), vec);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int s = g.slot(ch, k, K);
      const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
        A v = w * (rowwise::fexp(rowwise::get<T>(c[k], j) - l) - eC);
        if (s * V + j == t) v -= w * keep;
        return ign ? A(0) : v;
      });
      rowwise::store_slot<T>(ir, s, rowwise::valid<V>(s, n), vec, o);
    }
  }
}

// The gradient of position pos of an (N, C, inner) input (its C elements at stride inner), weight w.
template <class T>
__device__ __forceinline__ void grad_col(const T* __restrict__ x, T* __restrict__ gi, int64_t pos, const CELayout& L,
                                         int64_t t, acc_t<T> l, acc_t<T> w, const CEGrad& q) {
  using A = acc_t<T>;
  const A eC = (A)(q.eps / (double)(L.C > 1 ? L.C : 1)), keep = (A)(1.0 - q.eps);
  const bool ign = t == q.ignore;
  const int64_t off = pos / L.inner * L.C * L.inner + pos % L.inner;
  for (int64_t k = 0; k < L.C; ++k) {
    A v = w * (rowwise::fexp(A(x[off + k * L.inner]) - l) - eC);
    if (k == t) v -= w * keep;
    gi[off + k * L.inner] = ign ? T(0.0f) : T(v);
  }
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
// per[p] (to be reduced); kGrad (cross_entropy_fused): also the row's gradient gi for
// grad_output 1, in a second pass over the row, from memory again (L2), last chunk first (rows
// that fit shared memory take ce_fwd_rows_cached instead).
template <class T, int K, bool kGrad>
__global__ void __launch_bounds__(rowwise::kMaxTpr)
    ce_fwd_rows(const T* __restrict__ x, const int64_t* __restrict__ tgt, int64_t P, int C, rowwise::Plan p,
                CEParams q, acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per,
                T* __restrict__ gi, CEGrad gq) {
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
    if constexpr (kGrad) {
      const A eC = (A)(gq.eps / (double)(C > 1 ? C : 1)), keep = (A)(1.0 - gq.eps);
      const int64_t t = tgt[row];
      grad_row<T, K, true>(xr, gi + row * C, g, chunks, n, p.vec, lse_of(st, C), ce_weight<T>(nullptr, row, t, C, gq),
                           eC, keep, t, t == gq.ignore);
    }
  }
}

// The fused forward with its row in shared memory, pipelined over the rows a block takes (a
// persistent grid: block b takes rows b, b + gridDim.x, ...; block plans, one row per block): while
// a thread writes row r's gradient from the slots it cached, it loads the same slots of row r + 1,
// folds them into that row's statistics and caches them in their place (a thread reads and writes
// only its own slots, so this needs no barrier), so reads and writes of the logits overlap within a
// block and every logit is read from memory once. One block per SM at fp32 rows of 50304 (201 KB).
template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr, 1)
    ce_fwd_rows_cached(const T* __restrict__ x, const int64_t* __restrict__ tgt, int64_t P, int C, rowwise::Plan p,
                       CEParams q, acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per,
                       T* __restrict__ gi, CEGrad gq) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int chunks = (int)p.chunks, n = C;
  const bool smooth = q.eps != 0.0;
  const A eC = (A)(gq.eps / (double)(C > 1 ? C : 1)), keep = (A)(1.0 - gq.eps);
  rowwise::Slot* cache = row_cache();
  int64_t row = blockIdx.x;
  if (row >= P) return;  // the whole block
  // the first row's statistics, its slots cached
  rowwise::LSE<A> st;
  A sx = A(0);
  // folds chunk ch (slots c of row xr) into (st, sx) and caches it
  auto first_pass = [&](rowwise::Slot (&c)[K], int ch, rowwise::LSE<A>& s, A& sum) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int sl = g.slot(ch, k, K);
      if (rowwise::valid<V>(sl, n) > 0) cache[sl] = c[k];
    }
    if (smooth)
#pragma unroll
      for (int k = 0; k < K; ++k)
#pragma unroll
        for (int j = 0; j < V; ++j) sum += rowwise::get<T>(c[k], j);
    if (p.vec) chunk_lse<T, K, true>(s, c, g, ch, n);
    else chunk_lse<T, K, false>(s, c, g, ch, n);
  };
  for (int ch = 0; ch < chunks; ++ch) {
    rowwise::Slot c[K];
    rowwise::load_chunk<T, K>(c, x + row * C, g, ch, n, p.vec);
    first_pass(c, ch, st, sx);
  }
  for (;;) {
    st.combine(g);
    if (smooth) sx = g.sum(sx);
    const A l = lse_of(st, C);
    const int64_t t = tgt[row];
    if (g.lane == 0) {
      const A xt = t >= 0 && t < C ? A(x[row * C + t]) : A(0);
      const A v = ce_loss(l, sx, xt, t, C, q);
      lse[row] = l;
      if (loss_none) loss_none[row] = T(v);
      else per[row] = v;
    }
    const int64_t next = row + gridDim.x;
    const bool more = next < P;  // the same in the whole block
    const A w = ce_weight<T>(nullptr, row, t, C, gq);
    const bool ign = t == gq.ignore;
    T* ir = gi + row * C;
    rowwise::LSE<A> st2;
    A sx2 = A(0);
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::Slot c[K];
      if (more) rowwise::load_chunk<T, K>(c, x + next * C, g, ch, n, p.vec);  // in flight while row's slots go out
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K);
        const int lim = rowwise::valid<V>(sl, n);
        const rowwise::Slot in = lim > 0 ? cache[sl] : rowwise::Slot{{0u, 0u, 0u, 0u}};
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          A v = w * (rowwise::fexp(rowwise::get<T>(in, j) - l) - eC);
          if (sl * V + j == t) v -= w * keep;
          return ign ? A(0) : v;
        });
        rowwise::store_slot<T>(ir, sl, lim, p.vec, o);
      }
      if (more) first_pass(c, ch, st2, sx2);
    }
    if (!more) return;
    row = next;
    st = st2;
    sx = sx2;
  }
}

// The fused forward for 16-bit rows of 16-byte slots whose two copies fit shared memory (a bfloat16
// row of 50304 logits is 98 KB): row r's statistics and gradient come from one buffer while row
// r + gridDim.x is copied into the other with cp.async, the whole row issued before row r's work
// starts. ce_fwd_rows_cached (one buffer; the next row's chunk loaded into registers while the
// current chunk's gradient is written) had at most one chunk (64 KB) in flight per SM and none
// during a row's reductions: 0.70 of the copy ceiling for 16384 x 50304 bfloat16 on the H200.
// A persistent grid of one block per SM (p: a block plan, tpr == blockDim.x). A thread copies,
// reads and writes only its own slots s = lane (mod tpr) of a row, so the buffers need no barrier
// (the reductions' barriers are the only ones). The statistics pass takes K slots per step, then
// the row's last slots one per thread; the gradient pass one slot at a time.
template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr, 1)
    ce_fwd_rows_piped(const T* __restrict__ x, const int64_t* __restrict__ tgt, int64_t P, int C, rowwise::Plan p,
                      CEParams q, acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per,
                      T* __restrict__ gi, CEGrad gq) {
  constexpr int V = rowwise::width<T>();
  static_assert(V == 8, "16-bit rows only");
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int n = C, nslot = C / V;  // 16-byte rows: C % V == 0
  const int full = nslot / (K * g.tpr);  // steps of K slots that every thread has whole
  const bool smooth = q.eps != 0.0;
  const A eC = (A)(gq.eps / (double)(C > 1 ? C : 1)), keep = (A)(1.0 - gq.eps);
  rowwise::Slot* const buf0 = row_cache();
  rowwise::Slot* const buf1 = buf0 + nslot;
  auto prefetch = [&](rowwise::Slot* b, int64_t r) {
    const uint4* src = reinterpret_cast<const uint4*>(x + r * C);
    for (int s = g.lane; s < nslot; s += g.tpr) rowwise::copy_async16(b + s, src + s);
    rowwise::copy_async_commit();
  };
  int64_t row = blockIdx.x;
  if (row >= P) return;  // the whole block
  prefetch(buf0, row);
  int64_t t = tgt[row];
  for (int it = 0;; ++it) {
    const rowwise::Slot* cur = it & 1 ? buf1 : buf0;
    const int64_t next = row + gridDim.x;
    const bool more = next < P;  // the same in the whole block
    if (more) {
      prefetch(it & 1 ? buf0 : buf1, next);  // the buffer of the row before, which this thread has done with
      rowwise::copy_async_wait<1>();
    } else {
      rowwise::copy_async_wait<0>();
    }
    // the next row's target and this row's target logit in flight during the statistics pass
    // (loaded after it, they were two dependent global loads on every row's path)
    const int64_t t_next = more ? tgt[next] : 0;
    const A xt = g.lane == 0 && t >= 0 && t < C ? A(x[row * C + t]) : A(0);
    rowwise::LSE<A> st;
    A sx = A(0);
    for (int ch = 0; ch < full; ++ch) {
      rowwise::Slot c[K];
#pragma unroll
      for (int k = 0; k < K; ++k) c[k] = cur[g.slot(ch, k, K)];
      if (smooth)
#pragma unroll
        for (int k = 0; k < K; ++k)
#pragma unroll
          for (int j = 0; j < V; ++j) sx += rowwise::get<T>(c[k], j);
      chunk_lse<T, K, true>(st, c, g, ch, n);
    }
    for (int ch = full * K; ch * g.tpr < nslot; ++ch) {  // the rest: a slot per thread (or none)
      const int s = g.slot(ch, 0, 1);
      rowwise::Slot c[1] = {s < nslot ? cur[s] : rowwise::Slot{{0u, 0u, 0u, 0u}}};
      if (smooth)
#pragma unroll
        for (int j = 0; j < V; ++j) sx += rowwise::get<T>(c[0], j);
      chunk_lse<T, 1, true>(st, c, g, ch, n);
    }
    st.combine(g);
    if (smooth) sx = g.sum(sx);
    const A l = lse_of(st, C);
    if (g.lane == 0) {
      const A v = ce_loss(l, sx, xt, t, C, q);
      lse[row] = l;
      if (loss_none) loss_none[row] = T(v);
      else per[row] = v;
    }
    const A w = ce_weight<T>(nullptr, row, t, C, gq);
    const bool ign = t == gq.ignore;
    uint4* ir = reinterpret_cast<uint4*>(gi + row * C);
#pragma unroll 4
    for (int s = g.lane; s < nslot; s += g.tpr) {
      const rowwise::Slot in = cur[s];
      A v[V];
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = w * (rowwise::fexp(rowwise::get<T>(in, j) - l) - eC);
      // the target's element (grad_row's arithmetic): one slot of the row, so a branch, not a test
      // per element
      const int64_t tj = t - (int64_t)s * V;
      if (tj >= 0 && tj < V) {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j == tj) v[j] -= w * keep;
      }
      const rowwise::Slot o = rowwise::make_slot<T>([&](int j) { return ign ? A(0) : v[j]; });
      ir[s] = make_uint4(o.w[0], o.w[1], o.w[2], o.w[3]);
    }
    if (!more) return;
    row = next;
    t = t_next;
  }
}

// One thread per position, its C logits at stride inner (inner > 1).
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_fwd_cols(const T* __restrict__ x, const int64_t* __restrict__ tgt, CELayout L, CEParams q,
                acc_t<T>* __restrict__ lse, T* __restrict__ loss_none, acc_t<T>* __restrict__ per,
                T* __restrict__ gi, CEGrad gq) {
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
    if (gi) grad_col(x, gi, pos, L, t, l, ce_weight<T>(nullptr, pos, t, L.C, gq), gq);
  }
}

// ---- backward -----------------------------------------------------------------------------------

template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr)
    ce_bwd_rows(const T* __restrict__ x, const int64_t* __restrict__ tgt, const acc_t<T>* __restrict__ lse,
                const T* __restrict__ go, T* __restrict__ gi, int64_t P, int C, rowwise::Plan p, CEGrad q) {
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  const A eC = (A)(q.eps / (double)(C > 1 ? C : 1)), keep = (A)(1.0 - q.eps);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < P; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < P;
    const int64_t row = live ? r0 + g.index : 0;
    const int64_t t = tgt[row];
    grad_row<T, K, false>(x + row * C, gi + row * C, g, chunks, live ? C : 0, p.vec, lse[row],
                          ce_weight(go, row, t, C, q), eC, keep, t, t == q.ignore);
  }
}

template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_bwd_cols(const T* __restrict__ x, const int64_t* __restrict__ tgt, const acc_t<T>* __restrict__ lse,
                const T* __restrict__ go, T* __restrict__ gi, CELayout L, CEGrad q) {
  const int64_t P = L.N * L.inner;
  for (int64_t pos = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pos < P; pos += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = tgt[pos];
    grad_col(x, gi, pos, L, t, lse[pos], ce_weight(go, pos, t, L.C, q), q);
  }
}

// grad *= s in place, s = *go (a scalar loss: every element) or go[position] ('none'), skipping
// the work where s is exactly 1 (x * 1 == x): for the usual loss.backward() the kernel reads one
// value and returns. Position of element e: e / (C * inner) * inner + e % inner.
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_scale_scalar(const T* __restrict__ go, T* __restrict__ g, int64_t n, bool vec) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const A s = A(*go);
  if (s == A(1)) return;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x, first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t nv = vec ? n / V : 0;
  uint4* gv = reinterpret_cast<uint4*>(g);
  for (int64_t i = first; i < nv; i += stride) {
    const uint4 u = gv[i];
    const rowwise::Slot in{{u.x, u.y, u.z, u.w}};
    const rowwise::Slot o = rowwise::make_slot<T>([&](int j) { return s * rowwise::get<T>(in, j); });
    gv[i] = make_uint4(o.w[0], o.w[1], o.w[2], o.w[3]);
  }
  for (int64_t i = nv * V + first; i < n; i += stride) g[i] = T(s * A(g[i]));
}

template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    ce_scale_positions(const T* __restrict__ go, T* __restrict__ g, int64_t n, CELayout L) {
  using A = acc_t<T>;
  const int64_t row = L.C * L.inner;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const A s = A(go[e / row * L.inner + e % L.inner]);
    if (s != A(1)) g[e] = T(s * A(g[e]));
  }
}

}  // namespace loss_rows
