// ops/core/cuda/add_norm_rows.cuh — the row kernels of add_layer_norm, forward and backward (the
// layout and semantics: add_norm.cu). Included by add_norm.cu, and by ops/core/lab/add_norm_emulate.cpp,
// which runs them on the host.
#ifndef VT_CORE_CUDA_ADD_NORM_ROWS_CUH_
#define VT_CORE_CUDA_ADD_NORM_ROWS_CUH_

#include "rowwise.cuh"

namespace add_norm_impl {

using rowwise::acc_t;

constexpr int kQ = 4;  // elements per slot

template <class T>
struct alignas(kQ * sizeof(T)) Quad {
  T v[kQ];
};

// slot s of a row of n elements as A (missing elements 0); one access when vec and whole
template <class A, class T>
__device__ __forceinline__ void load_quad(A (&d)[kQ], const T* row, int s, int n, bool vec) {
  const int e = s * kQ;
  if (vec && e + kQ <= n) {
    const Quad<T> q = *reinterpret_cast<const Quad<T>*>(row + e);
#pragma unroll
    for (int j = 0; j < kQ; ++j) d[j] = A(q.v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kQ; ++j) d[j] = e + j < n ? A(row[e + j]) : A(0);
  }
}
template <class T, class A>
__device__ __forceinline__ void store_quad(T* row, int s, int n, bool vec, const A (&d)[kQ]) {
  const int e = s * kQ;
  if (vec && e + kQ <= n) {
    Quad<T> q;
#pragma unroll
    for (int j = 0; j < kQ; ++j) q.v[j] = T(d[j]);
    *reinterpret_cast<Quad<T>*>(row + e) = q;
  } else {
#pragma unroll
    for (int j = 0; j < kQ; ++j)
      if (e + j < n) row[e + j] = T(d[j]);
  }
}

// slots per thread. The forward holds a row's sum (and, while it adds, the residual); the backward
// a row's xhat and gw and the grad_weight/grad_bias partials: 3 slots, so miniGPT's rows of 384
// (96 slots) are one chunk of a warp's registers (4 spilled 16-32 bytes at 128 registers), and a
// lane's partials fit rowwise::column_buffer. An A of 8 bytes: 2.
template <class S>
constexpr int fwd_slots() { return sizeof(acc_t<S>) == 8 ? 2 : 4; }
template <class S>
constexpr int bwd_slots() { return sizeof(acc_t<S>) == 8 ? 2 : 3; }

// ---- forward -------------------------------------------------------------------------------------
template <class S, class R, class O, int K, bool kWarp>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, 128)  // at 64 it spilled 40-64 bytes (ptxas, CUDA 13.0)
    add_norm_rows(const S* __restrict__ x, const R* __restrict__ res, const S* __restrict__ w,
                  const S* __restrict__ b, S* sum, O* __restrict__ y, acc_t<S>* __restrict__ mean,
                  acc_t<S>* __restrict__ rstd, int64_t M, int N, rowwise::Plan p, bool vec, double eps) {
  using A = acc_t<S>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  A v[K][kQ];  // the row's sum (one chunk of it)
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    S* sr = sum + row * N;
    // sum, rounded to S as it is stored (the statistics are of the stored sum), and its total
    A s = A(0);
    for (int ch = 0; ch < chunks; ++ch) {
      A t[K][kQ];
#pragma unroll
      for (int k = 0; k < K; ++k) {  // every load issued before any use
        load_quad(v[k], x + row * N, g.slot(ch, k, K), n, vec);
        load_quad(t[k], res + row * N, g.slot(ch, k, K), n, vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int j = 0; j < kQ; ++j) v[k][j] = A(S(v[k][j] + t[k][j]));  // missing elements: 0 + 0
        store_quad(sr, g.slot(ch, k, K), n, vec, v[k]);
        A sk = v[k][0];
#pragma unroll
        for (int j = 1; j < kQ; ++j) sk += v[k][j];
        s += sk;
      }
    }
    s = g.sum(s);
    const A mu = N ? s / (A)N : A(0);
    A q = A(0);  // the variance around the mean: a second pass (over registers when the row fits)
    for (int ch = 0; ch < chunks; ++ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        // longer rows: the sum this thread wrote (sum is not __restrict__, so no read-only-cache loads)
        if (chunks > 1) load_quad(v[k], sr, g.slot(ch, k, K), n, vec);
        const int e = g.slot(ch, k, K) * kQ;
        A qk = A(0);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          const A d = v[k][j] - mu;
          qk += e + j < n ? d * d : A(0);
        }
        q += qk;
      }
    }
    q = g.sum(q);
    const A rs = A(1) / sqrt((N ? q / (A)N : A(0)) + (A)eps);
    if (live && g.lane == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
    for (int ch = 0; ch < chunks; ++ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K);
        if (chunks > 1) load_quad(v[k], sr, sl, n, vec);
        A wk[kQ], bk[kQ], o[kQ];
        if (w) load_quad(wk, w, sl, n, vec);
        if (b) load_quad(bk, b, sl, n, vec);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          const A xh = (v[k][j] - mu) * rs;
          o[j] = (w ? xh * wk[j] : xh) + (b ? bk[j] : A(0));
        }
        store_quad(y + row * N, sl, n, vec, o);
      }
    }
  }
}

// ---- backward ------------------------------------------------------------------------------------
// With grad_out: xhat = (sum - mean) * rstd, gw = grad_out * w, and
//   g = grad_sum + rstd * (gw - mean(gw) - xhat * mean(gw * xhat));
// without it, g = grad_sum (0 when neither is given). With `fuse` (one chunk, grad_out given and a
// weight or bias), each group also adds grad_out * xhat and grad_out over its rows (G, G + groups,
// ...) into registers; a warp plan's block adds its groups' in shared memory, in group order, and
// writes one partial row per block; a block plan's block is one group.
template <class S, class R, class O, int K, bool kWarp>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, 128)
    add_norm_bwd_rows(const S* __restrict__ gsum, const O* __restrict__ gy, const S* __restrict__ sum,
                      const S* __restrict__ w, const acc_t<S>* __restrict__ mean, const acc_t<S>* __restrict__ rstd,
                      S* __restrict__ g_wide, R* __restrict__ g_other, acc_t<S>* __restrict__ part_w,
                      acc_t<S>* __restrict__ part_b, int64_t M, int N, rowwise::Plan p, bool vec, bool fuse) {
  using A = acc_t<S>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  A cx[K][kQ], cg[K][kQ];  // xhat, grad_out * weight (one chunk of each)
  A pw[K][kQ], pb[K][kQ];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < kQ; ++j) pw[k][j] = pb[k][j] = A(0);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    const A mu = gy ? mean[row] : A(0), rs = gy ? rstd[row] : A(0);
    // chunk ch of xhat and of gw = grad_out * weight; the fused partials on the way (the weight is
    // read per slot where it is used: cache hits, and no registers held for it across rows)
    auto load_row = [&](int ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {  // every row load issued before any use
        load_quad(cx[k], sum + row * N, g.slot(ch, k, K), n, vec);
        load_quad(cg[k], gy + row * N, g.slot(ch, k, K), n, vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        A wk[kQ];
        if (w) load_quad(wk, w, g.slot(ch, k, K), N, vec);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          cx[k][j] = (cx[k][j] - mu) * rs;
          if (fuse) {
            pw[k][j] += cg[k][j] * cx[k][j];
            pb[k][j] += cg[k][j];
          }
          if (w) cg[k][j] *= wk[j];
        }
      }
    };
    A mg = A(0), mgx = A(0);
    if (gy) {
      A s1 = A(0), s2 = A(0);  // the sums of gw and of gw * xhat
      for (int ch = 0; ch < chunks; ++ch) {
        load_row(ch);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          A s1k = A(0), s2k = A(0);
#pragma unroll
          for (int j = 0; j < kQ; ++j) {
            s1k += cg[k][j];
            s2k += cg[k][j] * cx[k][j];
          }
          s1 += s1k;
          s2 += s2k;
        }
      }
      const rowwise::Pair<A> t = g.sum2(s1, s2);
      mg = N ? t.a / (A)N : A(0);  // the cpu's order: sum / N
      mgx = N ? t.b / (A)N : A(0);
    }
    for (int ch = 0; ch < chunks; ++ch) {
      if (gy && chunks > 1) load_row(ch);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K);
        A o[kQ];
        if (gsum) load_quad(o, gsum + row * N, sl, n, vec);
        else
#pragma unroll
          for (int j = 0; j < kQ; ++j) o[j] = A(0);
        if (gy)
#pragma unroll
          for (int j = 0; j < kQ; ++j) o[j] += rs * (cg[k][j] - mg - cx[k][j] * mgx);
        store_quad(g_wide + row * N, sl, n, vec, o);
        store_quad(g_other + row * N, sl, n, vec, o);
      }
    }
  }
  if (!fuse) return;
  if constexpr (kWarp) {
    rowwise::write_block_partials<K, kQ>(g, pw, pb, N, rpb, part_w, part_b);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const int e = g.slot(0, k, K) * kQ + j;
        if (e < N) {
          if (part_w) part_w[(int64_t)blockIdx.x * N + e] = pw[k][j];
          if (part_b) part_b[(int64_t)blockIdx.x * N + e] = pb[k][j];
        }
      }
  }
}

// ---- v2, the lean kernels: warp plans of one chunk with whole slots -------------------------------
// Why v1 ran at half the copy rate on miniGPT's rows (16384 x 384 on the H200, float32 sum, bfloat16
// residual and out: forward 38 us, 2.0 TB/s; backward 42 us): ptxas gave its warp kernels 93-106
// registers (float32 + bfloat16: forward 106, backward 96), so 2 blocks of 256 threads an SM: 16
// rows, 37 KiB of loads in flight an SM and none while a row reduces and stores. Their code also
// carries a scalar path beside every 16-byte access (the forward: 2552 SASS instructions, 168 loads
// and 168 branches for 7 slots' worth of vector loads), a 4th slot per lane that rows of 384 never
// use, and (backward) grad_sum loaded only after the row's reduction: a second memory round trip.
// The lean kernels are v1's arithmetic in v1's order at v1's plan (the same tpr, the same slots per
// lane, the same reduction trees: the same bits in the host emulation; on the H200 a rounding step
// or so apart, where nvcc contracts multiply-adds differently), built only for what miniGPT's rows take: a warp plan, one chunk, whole slots
// (vec). K is the slots a lane uses (lean_fwd_slots); accesses are predicated whole slots without a
// scalar path; every operand of a row (grad_sum included) is loaded before any is used; 16-bit
// operands stay packed until used; registers are capped so that more warps share an SM
// (kLeanFwdRegs, kLeanBwdRegs).
//
// a whole slot (vec) or 0
template <class T>
__device__ __forceinline__ Quad<T> load_whole(const T* row, int s, bool on) {
  Quad<T> q{};
  if (on) q = reinterpret_cast<const Quad<T>*>(row)[s];
  return q;
}
template <class T, class A>
__device__ __forceinline__ void store_whole(T* row, int s, bool on, const A (&d)[kQ]) {
  Quad<T> q;
#pragma unroll
  for (int j = 0; j < kQ; ++j) q.v[j] = T(d[j]);
  if (on) reinterpret_cast<Quad<T>*>(row)[s] = q;
}

// p, as a value the compiler must take as new here: a row loop's loads of the weight (the same
// slots every row) are then not hoisted out of the loop and held in registers for all its rows
template <class T>
__device__ __forceinline__ const T* fresh(const T* p) {
#ifndef VT_ROWWISE_EMULATE
  asm volatile("" : "+l"(p));
#endif
  return p;
}

// Registers of the lean kernels (blocks of 256 threads; ptxas of CUDA 13.0, sm_90a, 0 spills): the
// forward at K = 3 48 (5 blocks an SM: 40 rows of miniGPT's 2.3 KiB of loads in flight; v1 had 16),
// at K = 4 64 (4 blocks; it used 60-62); the backward 64 (4 blocks; 3.8 KiB a row: sum, grad_out,
// grad_sum). Uncapped, the backward took 107 with xhat and grad_out * w held widened across the
// reduction; it holds the loaded slots instead and widens them again where they are used.
constexpr int kLeanFwdRegs(int K) { return K == 3 ? 48 : 64; }
constexpr int kLeanBwdRegs = 64;

template <class S, class R, class O, int K>
__global__ void VT_ROW_KERNEL_BOUNDS(true, kLeanFwdRegs(K))
    add_norm_rows_lean(const S* __restrict__ x, const R* __restrict__ res, const S* __restrict__ w,
                       const S* __restrict__ b, S* __restrict__ sum, O* __restrict__ y, acc_t<S>* __restrict__ mean,
                       acc_t<S>* __restrict__ rstd, int64_t M, int N, int tpr, double eps) {
  using A = acc_t<S>;
  const rowwise::RowGroup<true> g(tpr, rowwise::RowGroup<true>::OfPlan{});
  const int rpb = g.rows();
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    auto on = [&](int k) { return (g.slot(0, k, K) + 1) * kQ <= n; };  // whole or absent
    Quad<S> qx[K];
    Quad<R> qr[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {  // every load issued before any use
      qx[k] = load_whole(x + row * N, g.slot(0, k, K), on(k));
      qr[k] = load_whole(res + row * N, g.slot(0, k, K), on(k));
    }
    A v[K][kQ];  // the row's sum, rounded to S as stored
    A s = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int j = 0; j < kQ; ++j) v[k][j] = A(S(A(qx[k].v[j]) + A(qr[k].v[j])));
      store_whole(sum + row * N, g.slot(0, k, K), on(k), v[k]);
      A sk = v[k][0];
#pragma unroll
      for (int j = 1; j < kQ; ++j) sk += v[k][j];
      s += sk;
    }
    s = g.sum(s);
    const A mu = N ? s / (A)N : A(0);
    A q = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int e = g.slot(0, k, K) * kQ;
      A qk = A(0);
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const A d = v[k][j] - mu;
        qk += e + j < n ? d * d : A(0);
      }
      q += qk;
    }
    q = g.sum(q);
    const A rs = A(1) / sqrt((N ? q / (A)N : A(0)) + (A)eps);
    if (live && g.lane == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int sl = g.slot(0, k, K);
      Quad<S> qw{}, qb{};
      if (w) qw = load_whole(w, sl, on(k));
      if (b) qb = load_whole(b, sl, on(k));
      A o[kQ];
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const A xh = (v[k][j] - mu) * rs;
        o[j] = (w ? xh * A(qw.v[j]) : xh) + (b ? A(qb.v[j]) : A(0));
      }
      store_whole(y + row * N, sl, on(k), o);
    }
  }
}

// add_norm_bwd_rows' warp plan of one chunk with whole slots, in its order (its comment says what).
// The fused partials are added in the block's column buffer, where v1 adds its groups' registers at
// the end: each lane adds its own columns of its group's row there, row after row (v1's order), so
// no registers hold them (24 at K = 3: ptxas spilled 150-300 bytes at 80 registers with them).
template <class S, class R, class O, int K>
__global__ void VT_ROW_KERNEL_BOUNDS(true, kLeanBwdRegs)
    add_norm_bwd_rows_lean(const S* __restrict__ gsum, const O* __restrict__ gy, const S* __restrict__ sum,
                           const S* __restrict__ w, const acc_t<S>* __restrict__ mean,
                           const acc_t<S>* __restrict__ rstd, S* __restrict__ g_wide, R* __restrict__ g_other,
                           acc_t<S>* __restrict__ part_w, acc_t<S>* __restrict__ part_b, int64_t M, int N, int tpr,
                           bool fuse) {
  using A = acc_t<S>;
  using Col = Quad<A>;  // a slot's 4 columns of partials
  const rowwise::RowGroup<true> g(tpr, rowwise::RowGroup<true>::OfPlan{});
  const int rpb = g.rows();
  Col* cw = reinterpret_cast<Col*>(reinterpret_cast<A*>(rowwise::column_buffer()) + g.index * N);
  Col* cb = reinterpret_cast<Col*>(reinterpret_cast<A*>(rowwise::column_buffer()) + rowwise::kColumnBytes / sizeof(A) +
                                   g.index * N);
  auto column = [&](int k) { return (g.slot(0, k, K) + 1) * kQ <= N; };  // this lane's slot k is in a row
  if (fuse)
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (column(k)) cw[g.slot(0, k, K)] = cb[g.slot(0, k, K)] = Col{};
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    auto on = [&](int k) { return (g.slot(0, k, K) + 1) * kQ <= n; };
    // every operand of the row in flight before any is used: sum, grad_out, grad_sum, mean, rstd
    Quad<S> qs[K], qgs[K];
    Quad<O> qg[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int sl = g.slot(0, k, K);
      if (gy) {
        qs[k] = load_whole(sum + row * N, sl, on(k));
        qg[k] = load_whole(gy + row * N, sl, on(k));
      }
      qgs[k] = Quad<S>{};
      if (gsum) qgs[k] = load_whole(gsum + row * N, sl, on(k));
    }
    const A mu = gy ? mean[row] : A(0), rs = gy ? rstd[row] : A(0);
    // xhat and grad_out * weight of slot k, element j, from the loaded slots (so the row is held as
    // loaded through the reduction, 16-bit grad_out packed; qw: the weight's slot or none)
    auto xhat = [&](int k, int j) { return (A(qs[k].v[j]) - mu) * rs; };
    auto weighted = [&](int k, int j, const Quad<S>& qw) {
      const A gv = A(qg[k].v[j]);
      return w ? gv * A(qw.v[j]) : gv;
    };
    auto weight = [&](int k) {
      Quad<S> qw{};
      if (w) qw = load_whole(fresh(w), g.slot(0, k, K), column(k));
      return qw;
    };
    A mg = A(0), mgx = A(0);
    if (gy) {
      A s1 = A(0), s2 = A(0);  // the sums of gw and of gw * xhat
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(0, k, K);
        const Quad<S> qw = weight(k);
        if (fuse && column(k)) {
          Col pw = cw[sl], pb = cb[sl];
#pragma unroll
          for (int j = 0; j < kQ; ++j) {
            const A gv = A(qg[k].v[j]);
            pw.v[j] += gv * xhat(k, j);
            pb.v[j] += gv;
          }
          cw[sl] = pw;
          cb[sl] = pb;
        }
        A s1k = A(0), s2k = A(0);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          const A gw = weighted(k, j, qw);
          s1k += gw;
          s2k += gw * xhat(k, j);
        }
        s1 += s1k;
        s2 += s2k;
      }
      const rowwise::Pair<A> t = g.sum2(s1, s2);
      mg = N ? t.a / (A)N : A(0);
      mgx = N ? t.b / (A)N : A(0);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int sl = g.slot(0, k, K);
      A o[kQ];
#pragma unroll
      for (int j = 0; j < kQ; ++j) o[j] = A(qgs[k].v[j]);
      if (gy) {
        const Quad<S> qw = weight(k);  // again: a cache hit
#pragma unroll
        for (int j = 0; j < kQ; ++j) o[j] += rs * (weighted(k, j, qw) - mg - xhat(k, j) * mgx);
      }
      store_whole(g_wide + row * N, sl, on(k), o);
      store_whole(g_other + row * N, sl, on(k), o);
    }
  }
  if (!fuse) return;
  // the block's groups' partials, added in group order: one partial row per block (v1's)
  __syncthreads();
  rowwise::add_block_partials(N, rpb, part_w, part_b);
}

// Whether the lean kernels take plan p (they are built for float32, bfloat16 and float16 sums), and
// the forward's K: the slots a lane of the plan uses, 3 or 4 (v1's 4 less the slots no lane has;
// fewer, as in the plans of few rows, leave the rest absent). The backward's plans use at most its
// K = 3 (bwd_slots).
template <class S>
constexpr bool lean_built() { return sizeof(acc_t<S>) == 4; }
inline bool lean_takes(const rowwise::Plan& p) { return p.warp && p.vec && p.chunks == 1; }
inline int lean_fwd_slots(const rowwise::Plan& p, int64_t N) {
  const int64_t nslot = (N + kQ - 1) / kQ;
  return (nslot + p.tpr - 1) / p.tpr <= 3 ? 3 : 4;
}

// the plans for M rows of N (add_norm.cu launches them; the lab emulates them)
template <class S>
rowwise::Plan fwd_plan(const vt::Call& c, int64_t M, int64_t N, bool vec) {
  return rowwise::plan_rows(c, M, N, kQ, fwd_slots<S>(), vec);
}
template <class S>
rowwise::Plan bwd_plan(const vt::Call& c, int64_t M, int64_t N, bool vec) {
  return rowwise::plan_rows(c, M, N, kQ, bwd_slots<S>(), vec);
}
// With fuse: a fixed number of row groups (from M alone; norm_rows.cuh's numbers) each adding its
// rows into registers; sets the grid and returns the partial rows: one per block.
constexpr int64_t kRowsPerBlockGroup = 16, kRowsPerWarpGroup = 4, kMaxGroups = 4096;
inline int64_t fuse_groups(rowwise::Plan& p, int64_t M) {
  const int64_t per = p.tpr > 32 ? kRowsPerBlockGroup : kRowsPerWarpGroup;
  const int64_t groups = std::min<int64_t>(kMaxGroups, (M + per - 1) / per);
  p.blocks = (unsigned)((groups + p.rows_per_block() - 1) / p.rows_per_block());
  return (int64_t)p.blocks;
}

}  // namespace add_norm_impl

#endif  // VT_CORE_CUDA_ADD_NORM_ROWS_CUH_
