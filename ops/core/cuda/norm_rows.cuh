// ops/core/cuda/norm_rows.cuh — the row kernels of layer_norm and rms_norm, forward and backward,
// each built as a warp kernel (a row per group of at most a warp, several rows per block, shuffles
// only) and a block kernel (a row per block). Included by norm.cu, and by ops/core/lab/rowwise_emulate.cpp, which runs
// it on the host.
#ifndef VT_CORE_CUDA_NORM_ROWS_CUH_
#define VT_CORE_CUDA_NORM_ROWS_CUH_

#include "rowwise.cuh"

namespace norm_rows_impl {

using rowwise::acc_t;

// 16-byte slots per thread: 32 elements of a float32 or 16-bit row (rows of up to 1024 elements
// run the warp kernel, longer ones a block of up to kMaxTpr threads per row: a 4096-element row
// takes 128 threads), 8 of a float64 one. 16-bit rows used to take the warp kernel up to 4096
// elements at 16 slots per lane: 118 registers (25% occupancy) and three fully unrolled passes over
// 128 elements that missed the instruction cache (Nsight Compute: "no instruction" stalls were 4.6
// of 10 cycles between issues), 0.54 of the copy ceiling on the H200.
template <class T>
constexpr int fwd_slots() { return sizeof(T) == 4 ? 8 : 4; }
template <class T>
constexpr int fwd_warp_slots() { return fwd_slots<T>(); }

// out = (x - mean) * rstd * w + b (rms: mean = 0, rstd from mean(x^2)); mean/rstd per row.
// Registers: at most 64 for the 16-byte-access kernels (8 blocks of 128 threads per SM), except
// float32 rms_norm: at 64 it spilled 32 bytes of per-row values and ran at 0.87 of the copy ceiling
// on the H200 (02:15 call; layer_norm, no spill, 0.95), so it takes 84.
// kVec: the plan's vec (16-byte accesses only). 16-bit block plans of one chunk pipeline their rows
// (p.pipe, rowwise::RowPipe: launched with plan_pipe's shared memory on a grid of resident blocks).
// A missing weight is a slot of ones and a missing bias one of -0 (x * 1 and x + -0 are x exactly,
// -0 included), so one code path serves all.
template <class T, int K, bool kWarp, bool kVec, bool rms>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, kVec && sizeof(T) <= 4 && !(rms && sizeof(T) == 4) ? 64 : 128)
    norm_rows(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
              acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd, int64_t M, int N, rowwise::Plan p,
              double eps) {
  constexpr int V = rowwise::width<T>();
  static_assert(K == 1 || K % 2 == 0, "the output pass takes slots two at a time");
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  const rowwise::Slot one = rowwise::splat<T>(A(1)), nzero = rowwise::splat<T>(A(-0.0));
  rowwise::Slot c[K];
  // 16-bit rows of one chunk: the next row copied into shared memory while this one is worked on
  constexpr bool kPipe = !kWarp && kVec && sizeof(T) == 2;
  const bool pipe = kPipe && p.pipe;
  const int64_t step = (int64_t)gridDim.x * rpb;
  rowwise::RowPipe<T, K, rowwise::RowGroup<kWarp>> rp(x, M, N, pipe ? (int64_t)blockIdx.x * rpb : M, step, g);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += step) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    const T* xr = x + row * N;
    A s = A(0);  // sum of x (layer) or of x^2 (rms); missing elements are 0
    for (int ch = 0; ch < chunks; ++ch) {
      if (pipe) rp.take(c, r0);  // block plans: the row is live
      else rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
#pragma unroll
      for (int k = 0; k < K; ++k) {  // a sum per slot: K independent chains of adds
        A sk;  // the first term starts the sum (0 + x is an instruction)
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A v = rowwise::get<T>(c[k], j);
          sk = j ? sk + (rms ? v * v : v) : (rms ? v * v : v);
        }
        s += sk;
      }
    }
    s = g.sum(s);
    A mu = A(0), var;
    if constexpr (rms) {
      var = s / (A)N;  // N == 0: nan, as on cpu
    } else {  // the variance around the mean: a second pass (over registers when the row fits)
      mu = N ? s / (A)N : A(0);
      A q = A(0);
      for (int ch = 0; ch < chunks; ++ch) {
        if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int lim = rowwise::valid<V>(g.slot(ch, k, K), n);
          A qk;
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const A d = rowwise::get<T>(c[k], j) - mu;
            const A t = (kVec || j < lim) ? d * d : A(0);
            qk = j ? qk + t : t;
          }
          q += (!kVec || lim >= V) ? qk : A(0);  // vec: a slot is whole or absent
        }
      }
      q = g.sum(q);
      var = N ? q / (A)N : A(0);
    }
    const A rs = A(1) / sqrt(var + (A)eps);  // in A: a float64 slow path here costs registers
    if (live && g.lane == 0) {
      if (!rms) mean[row] = mu;
      rstd[row] = rs;
    }
    T* yr = y + row * N;
    for (int ch = 0; ch < chunks; ++ch) {
      if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
      // weight and bias two slots at a time, loaded before they are used (the same for every row:
      // cache hits)
#pragma unroll
      for (int k0 = 0; k0 < K; k0 += 2) {
        constexpr int G = K < 2 ? K : 2;
        rowwise::Slot wk[G], bk[G];
#pragma unroll
        for (int i = 0; i < G; ++i) {
          const int sl = g.slot(ch, k0 + i, K), lim = rowwise::valid<V>(sl, n);
          wk[i] = w ? rowwise::load_slot_as<T, kVec>(w, sl, lim) : one;
          bk[i] = b ? rowwise::load_slot_as<T, kVec>(b, sl, lim) : nzero;
        }
#pragma unroll
        for (int i = 0; i < G; ++i) {
          const int k = k0 + i, sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
          const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
            const A v = (rowwise::get<T>(c[k], j) - mu) * rs;
            return v * rowwise::get<T>(wk[i], j) + rowwise::get<T>(bk[i], j);
          });
          rowwise::store_slot_as<T, kVec>(yr, sl, lim, o);
        }
      }
    }
  }
}

// The wide plan's kernel (p.wide: 16-bit rows that one chunk of K slots per thread
// covers, 16-byte slots; rowwise.cuh says why): norm_rows' arithmetic in its order, over fixed slot
// offsets. A missing weight is a slot of ones and a missing bias one of -0, as there.
template <class T, int K, bool kWarp, bool rms>
__global__ void VT_WIDE_KERNEL_BOUNDS(T, K)
    norm_rows_wide(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                   acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd, int64_t M, int N, rowwise::Plan p,
                   double eps) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr, typename rowwise::RowGroup<kWarp>::OfPlan{});
  const rowwise::WideSlots<K> slots(g, N, V);
  const int rpb = g.rows();
  const rowwise::Slot one = rowwise::splat<T>(A(1)), nzero = rowwise::splat<T>(A(-0.0));
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const rowwise::WideSlots<K> at = slots.fresh();
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const unsigned on = at.on(live);
    rowwise::Slot c[K];
    at.load(c, x + row * N, on);
    A s = A(0);  // absent slots are 0 and add 0, as in norm_rows
#pragma unroll
    for (int k = 0; k < K; ++k) {
      A sk;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A v = rowwise::get<T>(c[k], j);
        sk = j ? sk + (rms ? v * v : v) : (rms ? v * v : v);
      }
      s += sk;
    }
    // each pass widens the packed slots again: held widened (64 registers) or as x - mean between
    // passes they spilled
#pragma unroll
    for (int k = 0; k < K; ++k) rowwise::opaque(c[k]);
    s = g.sum(s);
    A mu = A(0), var;
    if constexpr (rms) {
      var = s / (A)N;
    } else {
      mu = N ? s / (A)N : A(0);
      A q = A(0);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        A qk;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A d = rowwise::get<T>(c[k], j) - mu;
          qk = j ? qk + d * d : d * d;
        }
        q += (on >> k & 1u) ? qk : A(0);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) rowwise::opaque(c[k]);
      q = g.sum(q);
      var = N ? q / (A)N : A(0);
    }
    const A rs = A(1) / sqrt(var + (A)eps);
    if (live && g.lane == 0) {
      if (!rms) mean[row] = mu;
      rstd[row] = rs;
    }
    // y a slot at a time, its weight and bias slots loaded there (two at a time spilled); the
    // output pass is built per affine kind (a missing weight is 1, a missing bias -0: exact), so
    // the loads are predicated on the slot's presence alone, without branches
    T* yr = y + row * N;
    auto output = [&](auto kw, auto kb) {
      constexpr bool has_w = decltype(kw)::value, has_b = decltype(kb)::value;
      uint32_t last = __float_as_uint(rs);  // each slot's weight loads wait for the slot before
#pragma unroll
      for (int k = 0; k < K; ++k) {
        rowwise::Slot wk = one, bk = nzero;
        if constexpr (has_w) wk = at.load_kept(w, k, on, last);
        if constexpr (has_b) bk = at.load_kept(b, k, on, last);
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          const A v = (rowwise::get<T>(c[k], j) - mu) * rs;
          return v * rowwise::get<T>(wk, j) + rowwise::get<T>(bk, j);
        });
        at.store(yr, k, on, o);
        last = o.w[0];
      }
    };
    using yes = std::true_type;
    using no = std::false_type;
    const bool has_b = !rms && b;  // rms_norm has no bias
    if (w && has_b) output(yes{}, yes{});
    else if (w) output(yes{}, no{});
    else if (has_b) output(no{}, yes{});
    else output(no{}, no{});
  }
}

template <class T>
using NormRowsKernel = void (*)(const T*, const T*, const T*, T*, acc_t<T>*, acc_t<T>*, int64_t, int, rowwise::Plan,
                                double);

// the plan for M rows of N and the kernel that runs it (norm.cu launches it; the lab emulates it)
template <class T>
rowwise::Plan plan(const vt::Call& c, int64_t M, int64_t N, bool aligned) {
  return rowwise::plan_forward<T>(c, M, N, aligned, fwd_slots<T>(), fwd_warp_slots<T>());
}
template <class T, bool kRms>
NormRowsKernel<T> kernel_for(const rowwise::Plan& p) {
  constexpr int K = fwd_slots<T>(), Kw = fwd_warp_slots<T>();
  if constexpr (sizeof(T) == 2)
    if (p.wide) {  // K: rowwise::wide_slots()
      if (rowwise::wide_slots() == 4) return p.warp ? norm_rows_wide<T, 4, true, kRms> : norm_rows_wide<T, 4, false, kRms>;
      return p.warp ? norm_rows_wide<T, rowwise::kWideSlots, true, kRms> : norm_rows_wide<T, rowwise::kWideSlots, false, kRms>;
    }
  if (p.warp) return p.vec ? norm_rows<T, Kw, true, true, kRms> : norm_rows<T, Kw, true, false, kRms>;
  return p.vec ? norm_rows<T, K, false, true, kRms> : norm_rows<T, K, false, false, kRms>;
}

// ---- backward ------------------------------------------------------------------------------------
// 16-byte slots per thread: two rows and grad_weight/grad_bias partials of A for 16 elements (8 of
// float64): a 4096-element row takes 256 threads.
template <class T>
constexpr int bwd_slots() { return sizeof(T) == 2 ? 2 : 4; }

// gi = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w, xhat = (x - mean) * rstd (rms:
// no mean(gw) term). With `fuse` (the row in registers: one chunk), group G = blockIdx.x * rpb +
// index also adds g * xhat and g over its rows (G, G + groups, ...) and writes them as partial row
// G. A group's slots are the same columns in every row, so with one chunk the weight is loaded once
// (a missing one is a slot of ones), and (kPipe) the group's next row (g, x, mean, rstd) is loaded
// while this one is computed: a group works through 16 rows one after another, and without this
// only one row per group was ever in flight. The two row sums share one reduction.
template <class T, int K, bool kWarp, bool kVec, bool rms>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, 128)
    norm_bwd_rows(const T* __restrict__ go, const T* __restrict__ x, const T* __restrict__ w,
                  const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd, T* __restrict__ gi,
                  acc_t<T>* __restrict__ part_w, acc_t<T>* __restrict__ part_b, int64_t M, int N, rowwise::Plan p,
                  bool fuse) {
  constexpr int V = rowwise::width<T>();
  // the next row in flight: 16-bit rows (2 slots per thread); float32/float64 (4) spilled with it
  constexpr bool kPipe = sizeof(T) == 2;
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  const int64_t step = (int64_t)gridDim.x * rpb;
  rowwise::Slot cg[K], cx[K], cw[K];
  auto load_w = [&](int ch) {
    if (w) {
      rowwise::load_chunk<T, K>(cw, w, g, ch, N, kVec);
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k) cw[k] = rowwise::splat<T>(A(1));
    }
  };
  A pw[K][V], pb[K][V];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < V; ++j) pw[k][j] = pb[k][j] = A(0);
  // the sums of gw and of gw * xhat over chunk ch in registers (missing elements have g = 0)
  auto sums = [&](int ch, A mu, A rs, A& s1, A& s2) {
#pragma unroll
    for (int k = 0; k < K; ++k) {  // sums per slot: independent chains of adds
      A s1k, s2k;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A gw = rowwise::get<T>(cg[k], j) * rowwise::get<T>(cw[k], j);
        const A t = gw * ((rowwise::get<T>(cx[k], j) - mu) * rs);
        s1k = j ? s1k + gw : gw;
        s2k = j ? s2k + t : t;
      }
      s1 += s1k;
      s2 += s2k;
    }
  };
  auto reduce = [&](A& s1, A& s2) {
    if constexpr (rms) {
      s2 = g.sum(s2);
    } else {
      const rowwise::Pair<A> t = g.sum2(s1, s2);
      s1 = t.a;
      s2 = t.b;
    }
  };
  // gi over chunk ch in registers, and the fused partials
  auto output = [&](int ch, int n, T* ir, A mu, A rs, A mg, A mgx) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
      const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
        const A gw = rowwise::get<T>(cg[k], j) * rowwise::get<T>(cw[k], j);
        const A xh = (rowwise::get<T>(cx[k], j) - mu) * rs;
        return rs * (gw - mg - xh * mgx);
      });
      if (fuse) {
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A gv = rowwise::get<T>(cg[k], j);
          pw[k][j] += gv * ((rowwise::get<T>(cx[k], j) - mu) * rs);
          pb[k][j] += gv;
        }
      }
      rowwise::store_slot_as<T, kVec>(ir, sl, lim, o);
    }
  };
  if (kPipe && chunks == 1) {
    load_w(0);
    rowwise::Slot ng[K], nx[K];  // the group's next row
    A nmu = A(0), nrs = A(0);
    auto fetch = [&](int64_t r0) {
      const bool live = r0 + g.index < M;
      const int64_t row = live ? r0 + g.index : 0;
      const int n = live ? N : 0;
      rowwise::load_chunk<T, K>(ng, go + row * N, g, 0, n, kVec);
      rowwise::load_chunk<T, K>(nx, x + row * N, g, 0, n, kVec);
      nmu = rms ? A(0) : mean[row];
      nrs = rstd[row];
    };
    int64_t r0 = (int64_t)blockIdx.x * rpb;
    if (r0 < M) fetch(r0);
    for (; r0 < M; r0 += step) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        cg[k] = ng[k];
        cx[k] = nx[k];
        rowwise::opaque(cw[k]);  // widened per use, not once for all rows
      }
      const A mu = nmu, rs = nrs;
      if (r0 + step < M) fetch(r0 + step);
      const bool live = r0 + g.index < M;
      const int64_t row = live ? r0 + g.index : 0;
      const int n = live ? N : 0;
      A s1 = A(0), s2 = A(0);
      sums(0, mu, rs, s1, s2);
      reduce(s1, s2);
      const A mg = rms ? A(0) : s1 / (A)N, mgx = s2 / (A)N;  // the cpu's order: sum / N
#pragma unroll
      for (int k = 0; k < K; ++k) {  // widened again, not held widened through the reduction
        rowwise::opaque(cg[k]);
        rowwise::opaque(cx[k]);
      }
      output(0, n, gi + row * N, mu, rs, mg, mgx);
    }
  } else {  // rows longer than a chunk (each pass reads them again), or no room for the next row
    if (chunks == 1) load_w(0);
    for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += step) {
      const bool live = r0 + g.index < M;
      const int64_t row = live ? r0 + g.index : 0;
      const int n = live ? N : 0;
      const T *gr = go + row * N, *xr = x + row * N;
      const A mu = rms ? A(0) : mean[row], rs = rstd[row];
      A s1 = A(0), s2 = A(0);
      for (int ch = 0; ch < chunks; ++ch) {
        rowwise::load_chunk<T, K>(cg, gr, g, ch, n, kVec);  // every load in flight before any use
        rowwise::load_chunk<T, K>(cx, xr, g, ch, n, kVec);
        if (chunks > 1) load_w(ch);
        sums(ch, mu, rs, s1, s2);
      }
      reduce(s1, s2);
      const A mg = rms ? A(0) : s1 / (A)N, mgx = s2 / (A)N;
      for (int ch = 0; ch < chunks; ++ch) {
        if (chunks > 1) {
          rowwise::load_chunk<T, K>(cg, gr, g, ch, n, kVec);
          rowwise::load_chunk<T, K>(cx, xr, g, ch, n, kVec);
          load_w(ch);
        }
        output(ch, n, gi + row * N, mu, rs, mg, mgx);
      }
    }
  }
  if (!fuse) return;
  if constexpr (kWarp) {
    rowwise::write_block_partials<K, V>(g, pw, pb, N, rpb, part_w, part_b);
    return;
  }
  const int64_t grp = (int64_t)blockIdx.x * rpb + g.index;  // every group writes its row (zeros if it had none)
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int e = g.slot(0, k, K) * V + j;
      if (e < N) {
        if (part_w) part_w[grp * N + e] = pw[k][j];
        if (part_b) part_b[grp * N + e] = pb[k][j];
      }
    }
}

template <class T>
using NormBwdRowsKernel = void (*)(const T*, const T*, const T*, const acc_t<T>*, const acc_t<T>*, T*, acc_t<T>*,
                                   acc_t<T>*, int64_t, int, rowwise::Plan, bool);

// the backward's plan (before norm.cu sets the fused grid) and the kernel that runs it
template <class T>
rowwise::Plan bwd_plan(const vt::Call& c, int64_t M, int64_t N, bool aligned) {
  return rowwise::plan_rows(c, M, N, rowwise::width<T>(), bwd_slots<T>(), aligned);
}
// rows each group adds into its grad_weight/grad_bias partial row (a warp's rows are short, so
// more partial rows cost little and keep more warps busy)
constexpr int64_t kRowsPerBlockGroup = 16, kRowsPerWarpGroup = 4;
constexpr int64_t kMaxGroups = 4096;
// With fuse: a fixed number of groups (from M alone) each adding its rows; sets the grid and returns
// the partial rows: one per block (a warp plan's block adds its groups' in shared memory; a block
// plan's block is one group).
inline int64_t fuse_groups(rowwise::Plan& p, int64_t M) {
  const int64_t rpb = p.rows_per_block();
  const int64_t per = p.tpr > 32 ? kRowsPerBlockGroup : kRowsPerWarpGroup;
  const int64_t groups = std::min<int64_t>(kMaxGroups, (M + per - 1) / per);
  p.blocks = (unsigned)((groups + rpb - 1) / rpb);
  return (int64_t)p.blocks;
}
template <class T, bool kRms>
NormBwdRowsKernel<T> bwd_kernel_for(const rowwise::Plan& p) {
  constexpr int K = bwd_slots<T>();
  if (p.warp) return p.vec ? norm_bwd_rows<T, K, true, true, kRms> : norm_bwd_rows<T, K, true, false, kRms>;
  return p.vec ? norm_bwd_rows<T, K, false, true, kRms> : norm_bwd_rows<T, K, false, false, kRms>;
}

}  // namespace norm_rows_impl

#endif  // VT_CORE_CUDA_NORM_ROWS_CUH_
