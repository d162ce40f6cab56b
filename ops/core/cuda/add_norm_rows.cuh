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
    static_assert(K * kQ * sizeof(A) <= 64, "a lane's partials fit column_buffer");
    A* bw = reinterpret_cast<A*>(rowwise::column_buffer());
    A* bb = bw + rowwise::kColumnBytes / sizeof(A);
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const int e = g.slot(0, k, K) * kQ + j;
        if (e < N) {
          bw[g.index * N + e] = pw[k][j];
          bb[g.index * N + e] = pb[k][j];
        }
      }
    __syncthreads();
    for (int e = (int)threadIdx.x; e < N; e += (int)blockDim.x) {
      A sw = bw[e], sb = bb[e];
      for (int i = 1; i < rpb; ++i) {
        sw += bw[i * N + e];
        sb += bb[i * N + e];
      }
      if (part_w) part_w[(int64_t)blockIdx.x * N + e] = sw;
      if (part_b) part_b[(int64_t)blockIdx.x * N + e] = sb;
    }
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
