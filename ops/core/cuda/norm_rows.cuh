// ops/core/cuda/norm_rows.cuh — the forward row kernel of layer_norm and rms_norm, built as a warp
// kernel (a row per group of at most a warp, several rows per block, shuffles only) and a block
// kernel (a row per block). Included by norm.cu, and by ops/core/lab/rowwise_emulate.cpp, which runs
// it on the host.
#ifndef VT_CORE_CUDA_NORM_ROWS_CUH_
#define VT_CORE_CUDA_NORM_ROWS_CUH_

#include "rowwise.cuh"

namespace norm_rows_impl {

using rowwise::acc_t;

// 16-byte slots per thread. Block kernel: 128 bytes of a float32 row, 64 of a 16-bit or float64
// one. Warp kernel: float32 as the block kernel (rows of up to 1024 elements); 16-bit rows of up to
// 4096 elements, 256 bytes per lane (64 registers).
template <class T>
constexpr int fwd_slots() { return sizeof(T) == 4 ? 8 : 4; }
template <class T>
constexpr int fwd_warp_slots() { return sizeof(T) == 2 ? 16 : fwd_slots<T>(); }
// Weight and bias are loaded next to the row (in flight during the reductions) only when the three
// fit in 48 registers (16-bit rows of 4 slots per thread): at 8 float32 slots the three took 96
// registers and the kernel spilled (ptxas 13.0, sm_90, at the 128-register cap). Otherwise they are
// read in the output pass: the same for every row, so cache hits.
template <class T, int K>
constexpr bool kPrefetchAffine = sizeof(T) <= 4 && 3 * K * 4 <= 48;
// slots of weight and bias the output pass loads at a time when they were not prefetched (16
// registers for the two: no spill at the warp kernel's 16 slots)
template <int K>
constexpr int kAffineGroup = K < 2 ? K : 2;

// out = (x - mean) * rstd * w + b (rms: mean = 0, rstd from mean(x^2)); mean/rstd per row
template <class T, int K, bool kWarp>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp)
    norm_rows(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
              acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd, int64_t M, int N, rowwise::Plan p,
              double eps, bool rms) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::GroupOf<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  constexpr bool kPrefetch = kPrefetchAffine<T, K>;
  rowwise::Slot c[K], wv[kPrefetch ? K : 1], bv[kPrefetch ? K : 1];
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    const T* xr = x + row * N;
    A s = A(0);  // sum of x (layer) or of x^2 (rms); missing elements are 0
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::load_chunk<T, K>(c, xr, g, ch, n, p.vec);
      if constexpr (kPrefetch) {
        if (chunks == 1)  // weight and bias in flight during the reductions
#pragma unroll
          for (int k = 0; k < K; ++k) {
            const int sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
            if (w) wv[k] = rowwise::load_slot<T>(w, sl, lim, p.vec);
            if (b) bv[k] = rowwise::load_slot<T>(b, sl, lim, p.vec);
          }
      }
#pragma unroll
      for (int k = 0; k < K; ++k)
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A v = rowwise::get<T>(c[k], j);
          s += rms ? v * v : v;
        }
    }
    s = g.sum(s);
    A mu = A(0), var;
    if (rms) {
      var = s / (A)N;  // N == 0: nan, as on cpu
    } else {  // the variance around the mean: a second pass (over registers when the row fits)
      mu = N ? s / (A)N : A(0);
      A q = A(0);
      for (int ch = 0; ch < chunks; ++ch) {
        if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, p.vec);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int lim = rowwise::valid<V>(g.slot(ch, k, K), n);
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const A d = rowwise::get<T>(c[k], j) - mu;
            q += j < lim ? d * d : A(0);
          }
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
      if (chunks > 1) rowwise::load_chunk<T, K>(c, xr, g, ch, n, p.vec);
      // weight and bias (unless prefetched) kAffineGroup slots at a time, loaded before they are
      // used: one cache round trip per group, not per slot
#pragma unroll
      for (int k0 = 0; k0 < K; k0 += kAffineGroup<K>) {
        rowwise::Slot wk[kAffineGroup<K>], bk[kAffineGroup<K>];
#pragma unroll
        for (int i = 0; i < kAffineGroup<K>; ++i) {
          const int k = k0 + i, sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
          if (kPrefetch && chunks == 1) {
            wk[i] = wv[kPrefetch ? k : 0];
            bk[i] = bv[kPrefetch ? k : 0];
          } else {
            if (w) wk[i] = rowwise::load_slot<T>(w, sl, lim, p.vec);
            if (b) bk[i] = rowwise::load_slot<T>(b, sl, lim, p.vec);
          }
        }
#pragma unroll
        for (int i = 0; i < kAffineGroup<K>; ++i) {
          const int k = k0 + i, sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
          const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
            A v = (rowwise::get<T>(c[k], j) - mu) * rs;
            if (w) v = v * rowwise::get<T>(wk[i], j);
            if (b) v = v + rowwise::get<T>(bk[i], j);
            return v;
          });
          rowwise::store_slot<T>(yr, sl, lim, p.vec, o);
        }
      }
    }
  }
}

}  // namespace norm_rows_impl

#endif  // VT_CORE_CUDA_NORM_ROWS_CUH_
