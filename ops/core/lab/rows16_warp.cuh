// ops/core/lab/rows16_warp.cuh — a lab variant of the 16-bit forward row kernels (rows16_bench.cu
// times it): a warp per row of 2049..4096 elements (layer_norm, rms_norm, softmax, log_softmax),
// the row packed two elements to a register (64 registers for 4096), reductions by warp shuffles
// only (no barrier, no shared memory), 16 loads of 16 bytes per lane issued before any use, exp as
// one fma and one ex2, optionally the next row asked of the L2 (cp.async.bulk.prefetch) on a grid of
// resident blocks. Not in the pack: it lost to the wide plan's kernels.
//
// Measured (H200, 2026-12-02, kernel time by CUDA events, of a device-to-device copy of the same
// bytes, bfloat16; layer_norm / rms_norm / softmax / log_softmax): 8192x4096 0.87 / 0.92 / 0.96 /
// 0.97 against the wide plan at 4 slots per thread 0.95 / 0.96 / 0.98 / 0.98; 10920x3072 and
// 13104x2560 likewise behind. The L2 prefetch of the next row made it slower still (0.76 / 0.81 /
// 0.83 / 0.86), as did the resident grid without it (0.82 / 0.87 / 0.90 / 0.95). 96 registers (20
// warps per SM, 160 KB of row in flight at the loads) spill 20-24 bytes in the norms; at 128 (16
// warps) nothing spills and it is no faster. The per-row shuffle trees are not the limit: one warp
// walks 128 elements per lane through two or three dependent passes, and fewer, longer threads
// hide that worse than the wide plan's 128 threads of 32 elements.
#ifndef VT_CORE_LAB_ROWS16_WARP_CUH_
#define VT_CORE_LAB_ROWS16_WARP_CUH_

#include "../cuda/rowwise.cuh"

namespace rows_warp {

using rowwise::acc_t;
using rowwise::Slot;

constexpr int kSlots = 16;                // 16-byte slots per lane
constexpr int kMaxN = 32 * kSlots * 8;    // 4096: the longest row a warp holds
constexpr int kMinN = kMaxN / 2 + 1;      // shorter rows: the wide plan's warp kernel (tpr <= 32)
constexpr int kWarps = 4;                 // rows (warps) per block
// at least 5 blocks (20 warps, 160 KB of rows) per SM: at most 102 registers a thread, 64 of them row
#ifndef VT_ROWS_WARP_MIN_BLOCKS
#define VT_ROWS_WARP_MIN_BLOCKS 5
#endif
constexpr int kMinBlocks = VT_ROWS_WARP_MIN_BLOCKS;

// bit k: slot k * 32 + lane lies in a row of n elements (the same for every row)
__device__ __forceinline__ unsigned present(int n, int lane) {
  unsigned have = 0;
#pragma unroll
  for (int k = 0; k < kSlots; ++k) have |= ((k * 32 + lane) * 8 < n ? 1u : 0u) << k;
  return have;
}

// the lane's slots of a row, read once (evict-first); absent slots are 0
template <class T>
__device__ __forceinline__ void load_row(Slot (&c)[kSlots], const T* row, int lane, unsigned have) {
  const uint4* p = reinterpret_cast<const uint4*>(row) + lane;
#pragma unroll
  for (int k = 0; k < kSlots; ++k) {
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    if (have >> k & 1u) u = __ldcs(p + 32 * k);
    c[k] = Slot{{u.x, u.y, u.z, u.w}};
  }
}
// slot k of a vector read for every row (a weight: read-only path, a cache hit after the first row)
// (predicated, no branch: an absent slot is 0)
template <class T>
__device__ __forceinline__ Slot load_kept(const T* v, int k, int lane, unsigned have) {
  uint4 u = make_uint4(0u, 0u, 0u, 0u);
  if (have >> k & 1u) u = __ldg(reinterpret_cast<const uint4*>(v) + (k * 32 + lane));
  return Slot{{u.x, u.y, u.z, u.w}};
}
// a slot written once (evict-first), if present
template <class T>
__device__ __forceinline__ void store_slot(T* row, int k, int lane, unsigned have, const Slot& s) {
  if (have >> k & 1u)
    __stcs(reinterpret_cast<uint4*>(row) + (k * 32 + lane), make_uint4(s.w[0], s.w[1], s.w[2], s.w[3]));
}
// asks the L2 for `bytes` (a multiple of 16) at a 16-byte aligned address; no registers wait on it
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr float kLog2e = 1.4426950408889634f;

// The rows of warp `first` of the grid and every gridDim.x * kWarps after it; with `prefetch` the
// next one is asked of the L2 before this one is read. f(r, c) gets row r's slots.
template <class T, class F>
__device__ __forceinline__ void each_row(const T* x, int64_t M, int N, bool prefetch, unsigned have, F f) {
  const int64_t step = (int64_t)gridDim.x * kWarps;
  const int lane = (int)threadIdx.x & 31;
  for (int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); r < M; r += step) {
    if (prefetch && lane == 0 && r + step < M) prefetch_l2(x + (r + step) * N, 2u * (unsigned)N);
    Slot c[kSlots];
    load_row(c, x + r * N, lane, have);
    f(r, c);
  }
}

// out = (x - mean) * rstd * w + b (rms: mean 0, rstd from mean(x^2)); mean/rstd per row, as
// norm_rows. The variance is taken around the mean (a second pass over the registers).
template <class T, bool kRms>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    norm_rows_warp(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                   float* __restrict__ mean, float* __restrict__ rstd, int64_t M, int N, float eps, bool prefetch) {
  const int lane = (int)threadIdx.x & 31;
  const unsigned have = present(N, lane);
  each_row(x, M, N, prefetch, have, [&](int64_t r, Slot (&c)[kSlots]) {
    float s = 0.f;  // absent slots are 0 and add 0
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      float sk;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float v = rowwise::get<T>(c[k], j);
        sk = j ? (kRms ? fmaf(v, v, sk) : sk + v) : (kRms ? v * v : v);
      }
      s += sk;
    }
    // each pass widens the packed slots again (held widened across a reduction, they spill)
#pragma unroll
    for (int k = 0; k < kSlots; ++k) rowwise::opaque(c[k]);
    s = warp_sum(s);
    float mu = 0.f, var;
    if constexpr (kRms) {
      var = s / (float)N;
    } else {
      mu = s / (float)N;
      float q = 0.f;
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        float qk;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float d = rowwise::get_again<T>(c[k], j) - mu;
          qk = j ? fmaf(d, d, qk) : d * d;
        }
        q += (have >> k & 1u) ? qk : 0.f;
      }
#pragma unroll
      for (int k = 0; k < kSlots; ++k) rowwise::opaque(c[k]);
      var = warp_sum(q) / (float)N;
    }
    const float rs = 1.f / sqrtf(var + eps), shift = -mu * rs;
    if (lane == 0) {
      if (!kRms) mean[r] = mu;
      rstd[r] = rs;
    }
    T* yr = y + r * N;
    auto output = [&](auto kw, auto kb) {
      constexpr bool has_w = decltype(kw)::value, has_b = decltype(kb)::value;
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        Slot wk, bk;
        if constexpr (has_w) wk = load_kept(w, k, lane, have);
        if constexpr (has_b) bk = load_kept(b, k, lane, have);
        const Slot o = rowwise::make_slot<T>([&](int j) {
          float v = fmaf(rowwise::get<T>(c[k], j), rs, shift);
          if constexpr (has_w && has_b) v = fmaf(v, rowwise::get<T>(wk, j), rowwise::get<T>(bk, j));
          else if constexpr (has_w) v = v * rowwise::get<T>(wk, j);
          else if constexpr (has_b) v = v + rowwise::get<T>(bk, j);
          return v;
        });
        store_slot(yr, k, lane, have, o);
      }
    };
    using yes = std::true_type;
    using no = std::false_type;
    if (w && b) output(yes{}, yes{});
    else if (w) output(yes{}, no{});
    else if (b) output(no{}, yes{});
    else output(no{}, no{});
  });
}

// y = exp(x - m) / s, or x - (m + log s): m the row max (taken on packed pairs, exact; a NaN
// loses, as in fmax), s the sum of exp(x - m); as softmax_rows, a row of -inf gives nan.
template <class T, bool kLog>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    softmax_rows_warp(const T* __restrict__ x, T* __restrict__ y, int64_t M, int N, bool prefetch) {
  const int lane = (int)threadIdx.x & 31;
  const unsigned have = present(N, lane);
  each_row(x, M, N, prefetch, have, [&](int64_t r, Slot (&c)[kSlots]) {
    uint32_t mp = rowwise::lowest_pair<T>();
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      const uint32_t mk = rowwise::max_pair<T>(rowwise::max_pair<T>(c[k].w[0], c[k].w[1]),
                                               rowwise::max_pair<T>(c[k].w[2], c[k].w[3]));
      mp = (have >> k & 1u) ? rowwise::max_pair<T>(mp, mk) : mp;
    }
    const Slot ms{{mp, 0u, 0u, 0u}};
    const float m = warp_max(fmaxf(rowwise::get<T>(ms, 0), rowwise::get<T>(ms, 1)));
    const float ml = -m * kLog2e;  // exp(v - m) = 2^(v log2 e - m log2 e)
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      float sk;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float e = exp2_approx(fmaf(rowwise::get<T>(c[k], j), kLog2e, ml));
        sk = j ? sk + e : e;
      }
      s += (have >> k & 1u) ? sk : 0.f;
    }
#pragma unroll
    for (int k = 0; k < kSlots; ++k) rowwise::opaque(c[k]);
    s = warp_sum(s);
    const float inv = 1.f / s, shift = m + logf(s);
    T* yr = y + r * N;
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      const Slot o = rowwise::make_slot<T>([&](int j) {
        const float v = rowwise::get_again<T>(c[k], j);
        return kLog ? v - shift : exp2_approx(fmaf(v, kLog2e, ml)) * inv;
      });
      store_slot(yr, k, lane, have, o);
    }
  });
}

}  // namespace rows_warp

#endif  // VT_CORE_LAB_ROWS16_WARP_CUH_
