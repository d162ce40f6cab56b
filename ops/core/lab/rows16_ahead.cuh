// ops/core/lab/rows16_ahead.cuh — a lab variant of the 16-bit forward row kernels (rows16_bench.cu
// times it): a block of R threads per row, K 16-byte slots per thread, each block working through
// rows b, b + gridDim.x, ... with the next row's loads issued into registers before the current
// row's arithmetic (K more registers), on a grid of resident blocks trimmed so that every block
// takes the same number of rows. Not in the pack: it lost to the wide plan's kernels.
//
// The idea was Little's law: a thread that loads, then reduces and writes, has no bytes in flight
// while it reduces and writes; reading ahead keeps them in flight. Measured (H200, 2026-12-02,
// kernel time, of a copy of the same bytes, bfloat16 8192x4096; layer_norm / rms_norm / softmax /
// log_softmax): K = 2, R = 256 at 64 registers 0.93 / 0.94 / 0.88 / 0.95, at 48 0.88 / 0.89 / 0.87 /
// 0.94, at 40 (spills) 0.83-0.94;
// K = 4, R = 128 0.40-0.89 (spills); K = 1, R = 512 0.80 / 0.93 / 0.91 / 0.90; the wide plan at 4
// slots per thread, a block per row and no read-ahead, 0.95 / 0.96 / 0.98 / 0.98. Shorter rows
// (fewer slots per thread than K * R holds) ran far slower (768 elements: 0.25-0.38). Bytes in
// flight were not what held the 16-bit rows back.
#ifndef VT_CORE_LAB_ROWS16_AHEAD_CUH_
#define VT_CORE_LAB_ROWS16_AHEAD_CUH_

#include "../cuda/rowwise.cuh"

namespace rows_ahead {

using rowwise::acc_t;
using rowwise::Slot;

// K slots per thread, R threads per row (a block): a 4096-element row is 512 slots
constexpr int kSlots = 2, kThreads = 256;
constexpr int kMaxN = kSlots * kThreads * 8;  // 4096
// threads per SM the launch bounds ask for (registers: 65536 / this, rounded down to 8)
#ifndef VT_ROWS_AHEAD_THREADS_PER_SM
#define VT_ROWS_AHEAD_THREADS_PER_SM 1024
#endif
constexpr int min_blocks(int R) { return VT_ROWS_AHEAD_THREADS_PER_SM / R; }

// The slots of thread t in every row: bit k of `have` says slot k * R + t lies in the row.
template <int K, int R>
struct Slots {
  unsigned have = 0;
  __device__ __forceinline__ explicit Slots(int N) {
#pragma unroll
    for (int k = 0; k < K; ++k) have |= ((k * R + (int)threadIdx.x) * 8 < N ? 1u : 0u) << k;
  }
  __device__ __forceinline__ bool on(int k) const { return have >> k & 1u; }
  // row r's slots into c, predicated (absent: 0), evict-first: each byte is read once
  template <class T>
  __device__ __forceinline__ void load(Slot (&c)[K], const T* x, int64_t r, int N, bool live) const {
    const uint4* p = reinterpret_cast<const uint4*>(x + r * N) + threadIdx.x;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      uint4 u = make_uint4(0u, 0u, 0u, 0u);
      if (live && on(k)) u = __ldcs(p + k * R);
      c[k] = Slot{{u.x, u.y, u.z, u.w}};
    }
  }
  // slot k of a vector read for every row (a weight: the read-only path, a cache hit after the first)
  template <class T>
  __device__ __forceinline__ Slot kept(const T* v, int k) const {
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    if (on(k)) u = __ldg(reinterpret_cast<const uint4*>(v) + (k * R + threadIdx.x));
    return Slot{{u.x, u.y, u.z, u.w}};
  }
  template <class T>
  __device__ __forceinline__ void store(T* y, int64_t r, int N, int k, const Slot& s) const {
    if (on(k)) __stcs(reinterpret_cast<uint4*>(y + r * N) + (k * R + threadIdx.x), make_uint4(s.w[0], s.w[1], s.w[2], s.w[3]));
  }
};

// Runs f(r, c) over the block's rows r = blockIdx.x, blockIdx.x + gridDim.x, ... < M with c row r's
// slots; row r + gridDim.x is loaded before f works on row r.
template <class T, int K, int R, class F>
__device__ __forceinline__ void each_row(const T* x, int64_t M, int N, const Slots<K, R>& at, F f) {
  Slot c[K], next[K];
  const int64_t step = gridDim.x;
  int64_t r = blockIdx.x;
  at.load(next, x, r, N, r < M);
  for (; r < M; r += step) {
#pragma unroll
    for (int k = 0; k < K; ++k) c[k] = next[k];
    at.load(next, x, r + step, N, r + step < M);
    f(r, c);
  }
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr float kLog2e = 1.4426950408889634f;

// out = (x - mean) * rstd * w + b (rms: mean 0, rstd from mean(x^2)); mean/rstd per row, as
// norm_rows; the variance around the mean (a second pass over the registers).
template <class T, int K, int R, bool kRms>
__global__ void __launch_bounds__(R, min_blocks(R))
    norm_rows_ahead(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                    float* __restrict__ mean, float* __restrict__ rstd, int64_t M, int N, float eps) {
  const rowwise::RowGroup<false> g(R, typename rowwise::RowGroup<false>::OfPlan{});
  const Slots<K, R> at(N);
  each_row(x, M, N, at, [&](int64_t r, Slot (&c)[K]) {
    float s = 0.f;  // absent slots are 0 and add 0
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float sk;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float v = rowwise::get<T>(c[k], j);
        sk = j ? (kRms ? fmaf(v, v, sk) : sk + v) : (kRms ? v * v : v);
      }
      s += sk;
    }
    s = g.sum(s);
    float mu = 0.f, var;
    if constexpr (kRms) {
      var = s / (float)N;
    } else {
      mu = s / (float)N;
      float q = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float qk;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float d = rowwise::get<T>(c[k], j) - mu;
          qk = j ? fmaf(d, d, qk) : d * d;
        }
        q += at.on(k) ? qk : 0.f;
      }
      var = g.sum(q) / (float)N;
    }
    const float rs = 1.f / sqrtf(var + eps), shift = -mu * rs;
    if (threadIdx.x == 0) {
      if (!kRms) mean[r] = mu;
      rstd[r] = rs;
    }
    auto output = [&](auto kw, auto kb) {
      constexpr bool has_w = decltype(kw)::value, has_b = decltype(kb)::value;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        Slot wk, bk;
        if constexpr (has_w) wk = at.kept(w, k);
        if constexpr (has_b) bk = at.kept(b, k);
        const Slot o = rowwise::make_slot<T>([&](int j) {
          float v = fmaf(rowwise::get<T>(c[k], j), rs, shift);
          if constexpr (has_w && has_b) v = fmaf(v, rowwise::get<T>(wk, j), rowwise::get<T>(bk, j));
          else if constexpr (has_w) v = v * rowwise::get<T>(wk, j);
          else if constexpr (has_b) v = v + rowwise::get<T>(bk, j);
          return v;
        });
        at.store(y, r, N, k, o);
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

// y = exp(x - m) / s, or x - (m + log s): m the row max (on packed pairs, exact; a NaN loses, as
// in fmax), s the sum of exp(x - m), each exp one fma and one ex2; a row of -inf gives nan.
template <class T, int K, int R, bool kLog>
__global__ void __launch_bounds__(R, min_blocks(R))
    softmax_rows_ahead(const T* __restrict__ x, T* __restrict__ y, int64_t M, int N) {
  const rowwise::RowGroup<false> g(R, typename rowwise::RowGroup<false>::OfPlan{});
  const Slots<K, R> at(N);
  each_row(x, M, N, at, [&](int64_t r, Slot (&c)[K]) {
    uint32_t mp = rowwise::lowest_pair<T>();
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t mk = rowwise::max_pair<T>(rowwise::max_pair<T>(c[k].w[0], c[k].w[1]),
                                               rowwise::max_pair<T>(c[k].w[2], c[k].w[3]));
      mp = at.on(k) ? rowwise::max_pair<T>(mp, mk) : mp;
    }
    const Slot ms{{mp, 0u, 0u, 0u}};
    const float m = g.max(fmaxf(rowwise::get<T>(ms, 0), rowwise::get<T>(ms, 1)));
    const float ml = -m * kLog2e;  // exp(v - m) = 2^(v log2 e - m log2 e)
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float sk;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float e = exp2_approx(fmaf(rowwise::get<T>(c[k], j), kLog2e, ml));
        sk = j ? sk + e : e;
      }
      s += at.on(k) ? sk : 0.f;
    }
    s = g.sum(s);
    const float inv = 1.f / s, shift = m + logf(s);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const Slot o = rowwise::make_slot<T>([&](int j) {
        const float v = rowwise::get<T>(c[k], j);
        return kLog ? v - shift : exp2_approx(fmaf(v, kLog2e, ml)) * inv;
      });
      at.store(y, r, N, k, o);
    }
  });
}

// The grid for M rows when `resident` blocks fit the GPU at once: every block takes the same
// number of rows, ceil(M / resident) (the last block perhaps fewer).
inline unsigned grid_for(int64_t M, int64_t resident) {
  const int64_t per = (M + resident - 1) / std::max<int64_t>(1, resident);
  return (unsigned)std::max<int64_t>(1, (M + per - 1) / per);
}

}  // namespace rows_ahead

#endif  // VT_CORE_LAB_ROWS16_AHEAD_CUH_
