// flash32.cuh — what the float32 kernels of provider "flash" share (flash32_fwd.cu, flash32_bwd.cu):
// the thread layout, the swizzled shared-memory tile, its two loaders, and the register-tiled
// product on CUDA cores (FFMA in float32: no tensor cores, no TF32, so results are float32-accurate).
// Not here: the 16-bit tensor-core kernels (flash_fwd.cu, flash_bwd.cu), the score and dropout
// rules and the kernel arguments (flash_cuda.cuh).
//
// Every float32 kernel: 256 threads as a 16 x 16 grid, ty = tid / 16 and tx = tid % 16. A 64 x N
// result tile (N = 64 for scores, N = D for O, dQ, dK, dV) gives thread (ty, tx) rows 4 ty .. 4 ty + 3
// and N / 16 columns: 4 tx + 64 g .. + 3 (g < N / 64) when N >= 64, 4 x 4 (N = 64) or 4 x 8 (N = 128)
// accumulators; 2 tx, 2 tx + 1 at N = 32 (D 32: 4 x 2). The 16 threads of one row group are one
// half-warp, so row reductions are 4 xor-shuffles (1, 2, 4, 8).
#pragma once

#include "flash_cuda.cuh"

namespace flashcu {
namespace f32 {

constexpr int kThreads = 256;
constexpr int kRows = 64;  // queries of a forward / dQ block, keys of a dK/dV block, and the loop step
// CTAs an SM should hold (__launch_bounds__' register cap, 65536 / (256 n)), ptxas -v on sm_90:
// 2 keeps the forward at 125 (D 64) / 123 (D 128) registers without spills (3 spills 276 bytes at
// D 64) and the D 64 backward at 127 (it would take 203 and one CTA an SM); the D 128 backward's
// shared memory (176-208 KiB) fits one CTA anyway, so it keeps its 194-232 registers. D 32 at 2:
// forward 123, backward 127, no spills (3 would spill 56-252 bytes at the 80-register cap).
template <int D> constexpr int kFwdCtas = 2;
template <int D> constexpr int kBwdCtas = D == 128 ? 1 : 2;

// A K x N tile, "k-major": element (k, n) at k N + 4 ((n / 4) ^ ((k / 4) % 8)) + n % 4. The XOR
// swizzle of the 16-byte chunks lets the three access patterns below run without bank conflicts:
// a float4 of 4 n at one k (the product's reads), a float4 of 4 n written by 16 threads at 16
// different k = 4 tx + c (a transposed result written back), and 32 threads writing 32 consecutive
// n of one k (the transposing loader).
template <int N>
__device__ __forceinline__ int at(int k, int n) {
  static_assert(N >= 32, "a row of at least 8 chunks: the XOR keeps a chunk within its row");
  return k * N + (((n >> 2) ^ ((k >> 2) & 7)) << 2) + (n & 3);
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float2 ld2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ void st4(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = float4{a, b, c, d};
}

// Rows [t0, t0 + 64) of one (b, h) of a (.., T, D) operand transposed into a D x 64 tile
// (k = d, n = row), rows >= T as zeros: 32 consecutive rows a warp, 16 bytes each.
template <int D>
__device__ __forceinline__ void load_t(float* tile, const float* base, int64_t st, int t0, int T_) {
  for (int idx = threadIdx.x; idx < kRows * (D / 4); idx += kThreads) {
    const int r = idx % kRows, d = 4 * (idx / kRows);
    const float4 x = t0 + r < T_ ? ld4(base + (int64_t)(t0 + r) * st + d) : float4{0.f, 0.f, 0.f, 0.f};
    tile[at<kRows>(d, r)] = x.x;
    tile[at<kRows>(d + 1, r)] = x.y;
    tile[at<kRows>(d + 2, r)] = x.z;
    tile[at<kRows>(d + 3, r)] = x.w;
  }
}

// The same rows as they are: a 64 x D tile (k = row, n = d).
template <int D>
__device__ __forceinline__ void load_r(float* tile, const float* base, int64_t st, int t0, int T_) {
  for (int idx = threadIdx.x; idx < kRows * (D / 4); idx += kThreads) {
    const int r = idx / (D / 4), d = 4 * (idx % (D / 4));
    const float4 x = t0 + r < T_ ? ld4(base + (int64_t)(t0 + r) * st + d) : float4{0.f, 0.f, 0.f, 0.f};
    *reinterpret_cast<float4*>(tile + at<D>(r, d)) = x;
  }
}

// acc[r][c] += sum_k A(k, 4 ty + r) B(k, col(c)): A a K x 64 tile, B a K x N tile, col(4 g + c) =
// 4 tx + 64 g + c (N = 64, 128) or col(c) = 2 tx + c (N = 32). Per k a thread reads 1 + N / 64
// float4s (A's broadcast within the half-warp; at N = 32 a float4 and a float2) for 4 N / 16 FFMAs.
template <int K, int N>
__device__ __forceinline__ void mm(float (&acc)[4][N / 16], const float* A, const float* B, int ty, int tx) {
  static_assert(N == 32 || N % 64 == 0, "columns 2 tx + c (N = 32) or in groups of 4 tx + 64 g (N = 64, 128)");
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float4 a = ld4(A + at<kRows>(k, 4 * ty));
    const float av[4] = {a.x, a.y, a.z, a.w};
    if constexpr (N == 32) {  // one 128-byte row of B: the half-warp's float2s cover it once
      const float2 b = ld2(B + at<N>(k, 2 * tx));
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        acc[r][0] = fmaf(av[r], b.x, acc[r][0]);
        acc[r][1] = fmaf(av[r], b.y, acc[r][1]);
      }
    } else {
#pragma unroll
      for (int g = 0; g < N / 64; ++g) {
        const float4 b = ld4(B + at<N>(k, 4 * tx + 64 * g));
        const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[r][4 * g + c] = fmaf(av[r], bv[c], acc[r][4 * g + c]);
      }
    }
  }
}

// A thread's 4 x 4 block x[r][c] (rows 4 ty + r, columns 4 tx + c of a 64 x 64 tile) written
// transposed into a 64 x 64 tile (k = column, n = row): the A operand of the next product.
__device__ __forceinline__ void store_t(float* tile, const float (&x)[4][4], int ty, int tx) {
#pragma unroll
  for (int c = 0; c < 4; ++c) st4(tile + at<kRows>(4 * tx + c, 4 * ty), x[0][c], x[1][c], x[2][c], x[3][c]);
}

// Rows t0 + 4 ty + r < T_ of an output head (rows st elements apart, unit stride along D) from acc
// (times s), 16 bytes a store (8 at D = 32: mm's columns 2 tx, 2 tx + 1).
template <int D>
__device__ __forceinline__ void store_rows(float* out, int64_t st, const float (&acc)[4][D / 16], float s, int t0,
                                           int T_, int ty, int tx) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int t = t0 + 4 * ty + r;
    if (t >= T_) continue;
    if constexpr (D == 32) {
      *reinterpret_cast<float2*>(out + (int64_t)t * st + 2 * tx) = float2{acc[r][0] * s, acc[r][1] * s};
    } else {
#pragma unroll
      for (int g = 0; g < D / 64; ++g)
        st4(out + (int64_t)t * st + 4 * tx + 64 * g, acc[r][4 * g] * s, acc[r][4 * g + 1] * s, acc[r][4 * g + 2] * s,
            acc[r][4 * g + 3] * s);
    }
  }
}

}  // namespace f32
}  // namespace flashcu
