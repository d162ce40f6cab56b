// ops/core/cuda/softmax_rows.cuh — the row kernels of softmax/log_softmax and their backward
// (dim is the last, the rows contiguous), each built as a warp kernel (a row per group of at most a
// warp, several rows per block, shuffles only) and a block kernel (a row per block). Included by
// nn.cu, and by ops/core/lab/rowwise_emulate.cpp, which runs them on the host.
#ifndef VT_CORE_CUDA_SOFTMAX_ROWS_CUH_
#define VT_CORE_CUDA_SOFTMAX_ROWS_CUH_

#include "rowwise.cuh"

namespace softmax_rows_impl {

using rowwise::acc_t;

// 16-byte slots per thread. Forward: 32 elements of a float32 or 16-bit row, 8 of a float64 one
// (the warp kernel for rows of up to 1024 elements, 256 float64; a block of up to kMaxTpr threads
// per row beyond: a 4096-element row takes 128 threads). 16-bit rows used to hold 64 elements per
// thread (a 4096-element row in 64 threads, 120 registers): 0.73 of the copy ceiling on the H200.
// Backward: 64 bytes of each of its two rows in the block kernel, 128 in the warp kernel (rows of
// up to 1024 float32 / 2048 16-bit elements; 106 registers).
template <class T>
constexpr int fwd_slots() { return sizeof(T) == 4 ? 8 : 4; }
template <class T>
constexpr int fwd_warp_slots() { return fwd_slots<T>(); }
constexpr int kBwdSlots = 4, kBwdWarpSlots = 8;

// y = exp(x - m) / s, or x - (m + log s), with m the row max and s the sum of exp(x - m): three
// passes (max, sum, write) over the registers, or over memory for rows longer than one chunk.
// A row of -inf gives nan (exp(-inf - -inf)), as on cpu. The max ignores NaN (fmax: one
// instruction, where a NaN-propagating max took three); a NaN still makes s, so the whole row, NaN.
// kVec: the plan's vec (16-byte accesses only: a slot is whole or absent). 16-bit block plans of
// one chunk pipeline their rows (p.pipe, rowwise::RowPipe: launched with plan_pipe's shared memory on
// a grid of resident blocks).
template <class T, int K, bool kWarp, bool kVec, bool log>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, kVec && sizeof(T) == 2 ? 64 : 128)
    softmax_rows(const T* __restrict__ x, T* __restrict__ y, int64_t M, int N, rowwise::Plan p) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  rowwise::Slot c[K];
  // 16-bit rows of one chunk: the next row copied into shared memory while this one is worked on
  constexpr bool kPipe = !kWarp && kVec && sizeof(T) == 2;
  const bool pipe = kPipe && p.pipe;
  const int64_t step = (int64_t)gridDim.x * rpb;
  rowwise::RowPipe<T, K, rowwise::RowGroup<kWarp>> rp(x, M, N, pipe ? (int64_t)blockIdx.x * rpb : M, step, g);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += step) {
    const bool live = r0 + g.index < M;
    const int n = live ? N : 0;  // a dead row reads and writes nothing
    const int64_t off = (live ? r0 + g.index : 0) * (int64_t)N;
    const T* xr = x + off;
    A m = A(-INFINITY);
    for (int ch = 0; ch < chunks; ++ch) {
      if (pipe) rp.take(c, r0);  // block plans: the row is live
      else rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int lim = rowwise::valid<V>(g.slot(ch, k, K), n);
        A mk = A(-INFINITY);
#pragma unroll
        for (int j = 0; j < V; ++j) mk = fmax(mk, (kVec || j < lim) ? rowwise::get<T>(c[k], j) : A(-INFINITY));
        m = fmax(m, (!kVec || lim >= V) ? mk : A(-INFINITY));
      }
    }
    m = g.max(m);
    A sum = A(0);
    for (int ch = 0; ch < chunks; ++ch) {
      if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int lim = rowwise::valid<V>(g.slot(ch, k, K), n);
        A sk;  // the first term starts the sum (0 + x is an instruction)
#pragma unroll
        for (int j = 0; j < V; ++j) {  // selects, not branches
          const A e = rowwise::fexp(rowwise::get<T>(c[k], j) - m);
          const A t = (kVec || j < lim) ? e : A(0);
          sk = j ? sk + t : t;
        }
        sum += (!kVec || lim >= V) ? sk : A(0);
      }
    }
    sum = g.sum(sum);
    const A inv = A(1) / sum, shift = m + rowwise::flog(sum);
    T* yr = y + off;
    for (int ch = 0; ch < chunks; ++ch) {
      if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, kVec);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int s = g.slot(ch, k, K), lim = rowwise::valid<V>(s, n);
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          const A v = rowwise::get<T>(c[k], j);
          return log ? v - shift : rowwise::fexp(v - m) * inv;
        });
        rowwise::store_slot_as<T, kVec>(yr, s, lim, o);
      }
    }
  }
}

// The wide plan's kernel (p.wide: 16-bit rows that one chunk of K slots per thread
// covers, 16-byte slots; rowwise.cuh says why): softmax_rows' arithmetic in its order over fixed
// slot offsets, its max taken on packed pairs (max.bf16x2 / max.f16x2: exact, a NaN loses as in
// fmax) and widened once per thread.
template <class T, int K, bool kWarp, bool log>
__global__ void VT_WIDE_KERNEL_BOUNDS(T, K)
    softmax_rows_wide(const T* __restrict__ x, T* __restrict__ y, int64_t M, int N, rowwise::Plan p) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr, typename rowwise::RowGroup<kWarp>::OfPlan{});
  const rowwise::WideSlots<K> slots(g, N, V);
  const int rpb = g.rows();
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const rowwise::WideSlots<K> at = slots.fresh();
    const bool live = r0 + g.index < M;
    const int64_t off = (live ? r0 + g.index : 0) * (int64_t)N;
    const unsigned on = at.on(live);
    rowwise::Slot c[K];
    at.load(c, x + off, on);
    uint32_t mp = rowwise::lowest_pair<T>();
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t mk = rowwise::max_pair<T>(rowwise::max_pair<T>(c[k].w[0], c[k].w[1]),
                                               rowwise::max_pair<T>(c[k].w[2], c[k].w[3]));
      mp = (on >> k & 1u) ? rowwise::max_pair<T>(mp, mk) : mp;
    }
    const rowwise::Slot ms{{mp, 0u, 0u, 0u}};
    A m = g.max(fmax(rowwise::get<T>(ms, 0), rowwise::get<T>(ms, 1)));
    // each pass widens the packed slots again: exp(x - max) held from the sum for the output (64
    // registers) spilled
#pragma unroll
    for (int k = 0; k < K; ++k) rowwise::opaque(c[k]);
    A sum = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      A sk;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A e = rowwise::fexp(rowwise::get<T>(c[k], j) - m);
        sk = j ? sk + e : e;
      }
      sum += (on >> k & 1u) ? sk : A(0);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) rowwise::opaque(c[k]);
    sum = g.sum(sum);
    const A inv = A(1) / sum, shift = m + rowwise::flog(sum);
    T* yr = y + off;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
        const A v = rowwise::get_again<T>(c[k], j);
        return log ? v - shift : rowwise::fexp(v - m) * inv;
      });
      at.store(yr, k, on, o);
    }
  }
}

// backward from the saved output y: gi = y * (g - sum(g * y)), or g - exp(y) * sum(g) for log.
// Built like the forward (kVec, log); the block kernel holds 4 slots of each row (64 registers for
// 16-byte accesses, 78 before).
template <class T, int K, bool kWarp, bool kVec, bool log>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, kVec && !kWarp && sizeof(T) <= 4 ? 64 : 128)
    softmax_bwd_rows(const T* __restrict__ go, const T* __restrict__ y, T* __restrict__ gi, int64_t M, int N,
                     rowwise::Plan p) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  rowwise::Slot cg[K], cy[K];
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int n = live ? N : 0;
    const int64_t off = (live ? r0 + g.index : 0) * (int64_t)N;
    const T *gr = go + off, *yr = y + off;
    A s = A(0);  // missing elements load as 0 and add nothing
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::load_chunk<T, K>(cg, gr, g, ch, n, kVec);
      rowwise::load_chunk<T, K>(cy, yr, g, ch, n, kVec);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        A sk;  // a sum per slot: independent chains of adds
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A a = rowwise::get<T>(cg[k], j), t = log ? a : a * rowwise::get<T>(cy[k], j);
          sk = j ? sk + t : t;
        }
        s += sk;
      }
    }
    s = g.sum(s);
    T* ir = gi + off;
    for (int ch = 0; ch < chunks; ++ch) {
      if (chunks > 1) {
        rowwise::load_chunk<T, K>(cg, gr, g, ch, n, kVec);
        rowwise::load_chunk<T, K>(cy, yr, g, ch, n, kVec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          const A a = rowwise::get<T>(cg[k], j), b = rowwise::get<T>(cy[k], j);
          return log ? a - rowwise::fexp(b) * s : b * (a - s);
        });
        rowwise::store_slot_as<T, kVec>(ir, sl, lim, o);
      }
    }
  }
}

template <class T>
using SoftmaxRowsKernel = void (*)(const T*, T*, int64_t, int, rowwise::Plan);

// the forward's plan for M rows of N and the kernel that runs it (nn.cu launches it; the lab
// emulates it)
template <class T>
rowwise::Plan plan(const vt::Call& c, int64_t M, int64_t N, bool aligned) {
  return rowwise::plan_forward<T>(c, M, N, aligned, fwd_slots<T>(), fwd_warp_slots<T>(), true);
}
template <class T, bool kLog>
SoftmaxRowsKernel<T> kernel_for(const rowwise::Plan& p) {
  constexpr int K = fwd_slots<T>(), Kw = fwd_warp_slots<T>();
  if constexpr (sizeof(T) == 2)
    if (p.wide) {  // K: p.wide_k (4 or kWideSlots)
      if (p.wide_k == 4) return p.warp ? softmax_rows_wide<T, 4, true, kLog> : softmax_rows_wide<T, 4, false, kLog>;
      return p.warp ? softmax_rows_wide<T, rowwise::kWideSlots, true, kLog> : softmax_rows_wide<T, rowwise::kWideSlots, false, kLog>;
    }
  if (p.warp) return p.vec ? softmax_rows<T, Kw, true, true, kLog> : softmax_rows<T, Kw, true, false, kLog>;
  return p.vec ? softmax_rows<T, K, false, true, kLog> : softmax_rows<T, K, false, false, kLog>;
}

template <class T>
using SoftmaxBwdRowsKernel = void (*)(const T*, const T*, T*, int64_t, int, rowwise::Plan);

// the backward's plan and kernel
template <class T>
rowwise::Plan bwd_plan(const vt::Call& c, int64_t M, int64_t N, bool aligned) {
  return rowwise::plan_rows(c, M, N, rowwise::width<T>(), kBwdSlots, aligned, kBwdWarpSlots);
}
template <class T, bool kLog>
SoftmaxBwdRowsKernel<T> bwd_kernel_for(const rowwise::Plan& p) {
  constexpr int K = kBwdSlots, Kw = kBwdWarpSlots;
  if (p.warp) return p.vec ? softmax_bwd_rows<T, Kw, true, true, kLog> : softmax_bwd_rows<T, Kw, true, false, kLog>;
  return p.vec ? softmax_bwd_rows<T, K, false, true, kLog> : softmax_bwd_rows<T, K, false, false, kLog>;
}

}  // namespace softmax_rows_impl

#endif  // VT_CORE_CUDA_SOFTMAX_ROWS_CUH_
