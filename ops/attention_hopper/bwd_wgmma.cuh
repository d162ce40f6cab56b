// ops/attention_hopper/bwd_wgmma.cuh — the tiles, layouts, helpers and launches of our own Hopper
// attention backward (FlashAttention-3's algorithm, written with CuTe on wgmma), bfloat16 and float16,
// D = 64 and 128, causal or not. Its main kernels: bwd_wgmma2.cuh (backward_kernel2: wgmma2, wgmma3)
// and bwd_ws.cuh (the warp-specialised one, the default).
//
// Three launches on the call's stream:
//   1. dsum_rows: Dsum = rowsum(dO * O) in fp32 (the softmax's correction term), and the fp32 dQ
//      accumulator's rows cleared by the same pass (no memset).
//   2. the main kernel: one CTA of two warp groups per (key block of Bc = 128 keys, h, b). K_j and
//      V_j stay in shared memory; the CTA walks the query blocks i that see the block (causal: from
//      the diagonal on), loading Q_i, dO_i, LSE_i, Dsum_i one block ahead with cp.async into a
//      second stage. Every product runs "transposed" (keys as wgmma's M, FA3's swapped S and dP),
//      so each warp group owns 64 keys and its P^T and dS^T stay in registers as the A operand:
//        S^T  = K_j Q_i^T            (SS)      P^T = exp2(S^T * scale * log2e - LSE * log2e)
//        dP^T = V_j dO_i^T           (SS)      dS^T = P^T o (dP^T - Dsum)
//        dV_j += P^T dO_i            (RS)      dK_j += dS^T Q_i          (RS)
//        dQ_i += dS K_j              (SS: dS through shared memory, both warp groups' keys)
//      dQ_i goes to the fp32 accumulator with float2 atomics (red.global.add.v2.f32 on sm_90);
//      dK_j, dV_j (x scale for dK) are stored once at the end. A key block no query sees (causal,
//      Tk > Tq) walks nothing and stores zeros.
//   3. dq_convert: dQ = 16-bit(acc * scale).
// dQ, dK, dV are written through the strides the meta step chose (q's layout; unit stride along D).
// Masking (key >= Tk, query >= Tq, causal key > query: P = 0) runs only on the tiles that need it
// (the diagonal ones and the partial last blocks); rows past Tq and Tk are zero-filled by cp.async.
// Causal is top-left aligned (key j for query i when j <= i), the attention pack's convention.
//
// The first main kernel (cp.async and __syncthreads only, every wgmma batch waited for before the next
// step; VT_HOPPER_BWD=wgmma) was retired on 2026-12-02 for compile time: backward_kernel2 is it without
// the spills. NOTES.md tracks the versions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>

#include "cute/tensor.hpp"
#include "cute/atom/mma_atom.hpp"
#include "cute/arch/mma_sm90.hpp"
#include "cute/atom/mma_traits_sm90_gmma.hpp"
#include "cutlass/numeric_types.h"

#include "fmha.hpp"
#include "vt/cuda/device.cuh"
#include "vt/cuda/launch.cuh"

namespace vt_fmha::wgmma_bwd {

using namespace cute;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 256;  // two consumer warp groups

// ---- tiles and shared-memory layouts ---------------------------------------------------------------
template <class E, int D>
struct Traits {
  static constexpr int Bc = 128;              // keys per CTA (two warp groups of 64)
  static constexpr int Br = D == 64 ? 128 : 64;  // queries per step (FA3's H100 backward tiles)
  static constexpr int kStages = 2;
  using BcT = Int<Bc>;
  using BrT = Int<Br>;
  using DT = Int<D>;

  // K-major, 128-byte swizzled rows (D * 2 bytes = 128 or 256: one or two atoms along D)
  using AtomK = GMMA::Layout_K_SW128_Atom<E>;
  using LayoutKV = decltype(tile_to_shape(AtomK{}, Shape<BcT, DT>{}));
  using LayoutQ = decltype(tile_to_shape(AtomK{}, Shape<BrT, DT, Int<kStages>>{}));
  // the same bytes read transposed (the MN-major operands): Q^T, dO^T as (D, Br, stage), K^T as (D, Bc)
  using LayoutQt =
      decltype(composition(LayoutQ{}, make_layout(Shape<DT, BrT, Int<kStages>>{}, Stride<BrT, _1, Int<Br * D>>{})));
  using LayoutKt = decltype(composition(LayoutKV{}, make_layout(Shape<DT, BcT>{}, Stride<BcT, _1>{})));
  // dS as dQ's A operand (Br queries x Bc keys), query-major; written through its transpose (keys, queries)
  using LayoutdS = decltype(tile_to_shape(GMMA::Layout_MN_SW128_Atom<E>{}, Shape<BrT, BcT>{}));
  using LayoutdSt = decltype(composition(LayoutdS{}, make_layout(Shape<BcT, BrT>{}, Stride<BrT, _1>{})));

  // S^T = K Q^T and dP^T = V dO^T: M = keys (2 warp groups), N = Br queries, K = D
  using MmaSdP = decltype(make_tiled_mma(
      GMMA::ss_op_selector<E, E, float, Shape<_64, BrT, DT>, GMMA::Major::K, GMMA::Major::K>(),
      Layout<Shape<_2, _1, _1>>{}));
  // dV += P^T dO and dK += dS^T Q: M = keys, N = D, K = Br; A from registers, B MN-major
  using MmadKV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<E, E, float, Shape<_64, DT, BrT>, GMMA::Major::K, GMMA::Major::MN>(),
      Layout<Shape<_2, _1, _1>>{}));
  // dQ = dS K: M = Br queries, N = D, K = Bc keys; the two warp groups split N (Br = 64) or M (Br = 128)
  static constexpr int kDqN = Br == 64 ? D / 2 : D;
  using MmadQ = decltype(make_tiled_mma(
      GMMA::ss_op_selector<E, E, float, Shape<_64, Int<kDqN>, BcT>, GMMA::Major::MN, GMMA::Major::MN>(),
      conditional_t<Br == 64, Layout<Shape<_1, _2, _1>>, Layout<Shape<_2, _1, _1>>>{}));

  struct alignas(1024) Shared {
    array_aligned<E, cosize_v<LayoutKV>, 1024> k, v;
    array_aligned<E, cosize_v<LayoutQ>, 1024> q, dO;
    array_aligned<E, cosize_v<LayoutdS>, 1024> dS;
    float lse[kStages][Br];   // natural-log LSE of the block's queries
    float dsum[kStages][Br];  // rowsum(dO * O)
  };
  static constexpr int kSmem = sizeof(Shared) + 1024;  // + room to align the dynamic base to 1024
};

struct Params {
  const void *q, *k, *v, *dO;
  Strides sq, sk, sv, sdo;      // elements; unit stride along D, row strides multiples of 8
  const float* lse;             // unit stride along Tq
  int64_t lse_b, lse_h;
  const float* dsum;            // (B, H, stat_row(Tq))
  float* dq_acc;                // (B, H, Tq, D) contiguous
  void *dk, *dv;                // (B, H, Tk, D) in the layouts the meta step chose
  Strides sdk, sdv;             // elements; unit stride along D, the others multiples of 8
  int H, Tq, Tk;                // H: query heads (q, dO, lse, dsum, dq_acc)
  int group;                    // query heads a key/value head serves (H / Hkv; 1 unless GQA/MQA)
  int splits;                   // CTAs sharing one group (GQA, backward_kernel2)
  int heads;                    // query heads a CTA walks: group / splits
  float* dkv_part;              // splits > 1: fp32 partial dK (splits, B, Hkv, Tk, D), then as many of dV
  int64_t part_stride;          // B * Hkv * Tk * D: one split's partials
  float scale, scale_log2;
  bool causal;
};

// ---- small device helpers ---------------------------------------------------------------------------
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem, bool valid) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// generic-proxy shared-memory writes (cp.async, st.shared) made visible to wgmma's async-proxy reads
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// rows [0, valid) of a (rows x D) block at g (row stride `stride` elements) into the swizzled smem
// tensor s (rows, D); rows past `valid` zero-filled. 16-byte chunks: 8 elements stay contiguous under
// the 128-byte swizzle (it permutes 16-byte units).
template <int Rows, int D, class E, class SmemTensor>
__device__ __forceinline__ void load_rows(SmemTensor s, const E* g, int64_t stride, int valid, int tid) {
  constexpr int kChunks = D / 8;
  static_assert((Rows * kChunks) % kThreads == 0, "whole rounds of 16-byte chunks");
  CUTE_UNROLL
  for (int c = tid; c < Rows * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool ok = r < valid;
    cp_async_16(&s(r, col), g + (ok ? r * stride + col : 0), ok);
  }
}

template <class E>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (std::is_same_v<E, cutlass::half_t>) {
    __half2 h = __floats2half2_rn(a, b);
    return reinterpret_cast<uint32_t&>(h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return reinterpret_cast<uint32_t&>(h);
  }
}

// fp32 accumulator -> 16-bit fragment of the same layout (pairs of neighbours packed as wgmma reads them)
template <class E, class Acc>
__device__ __forceinline__ auto to_16bit(Acc const& acc) {
  Tensor out = make_fragment_like<E>(acc);
  Tensor out32 = recast<uint32_t>(out);
  CUTE_UNROLL
  for (int i = 0; i < size(out32); ++i) out32(i) = pack2<E>(acc(2 * i), acc(2 * i + 1));
  return out;
}

// dK_j = scale * sum dS^T Q and dV_j = sum P^T dO of the key block at k0 of kv head hk, batch b (P: either
// kernel's Params): 16-bit through the strides the meta step chose (unit along D, the others multiples
// of 8), or with p.splits > 1 this CTA's fp32 partials ((split, B, Hkv, Tk, D) contiguous; dkv_sum adds
// them in split order); rows past Tk dropped
template <class E, int D, class P, class Acc, class Coords>
__device__ __forceinline__ void store_dkv(const P& p, const Acc& accdK, const Acc& accdV, const Coords& cKV, int k0,
                                          int Tk, int b, int hk, int Hkv, int split) {
  if (p.splits > 1) {
    const int64_t at = split * p.part_stride + ((int64_t)b * Hkv + hk) * Tk * D;
    float* pdk = p.dkv_part + at;
    float* pdv = p.dkv_part + p.splits * p.part_stride + at;
    CUTE_UNROLL
    for (int e = 0; e < size(accdK); e += 2) {
      const int key = k0 + get<0>(cKV(e)), d = get<1>(cKV(e));
      if (key < Tk) {
        *reinterpret_cast<float2*>(pdk + (int64_t)key * D + d) = make_float2(accdK(e) * p.scale, accdK(e + 1) * p.scale);
        *reinterpret_cast<float2*>(pdv + (int64_t)key * D + d) = make_float2(accdV(e), accdV(e + 1));
      }
    }
    return;
  }
  E* gdk = static_cast<E*>(p.dk) + b * p.sdk.b + hk * p.sdk.h;
  E* gdv = static_cast<E*>(p.dv) + b * p.sdv.b + hk * p.sdv.h;
  CUTE_UNROLL
  for (int e = 0; e < size(accdK); e += 2) {
    const int key = k0 + get<0>(cKV(e)), d = get<1>(cKV(e));
    if (key < Tk) {
      *reinterpret_cast<uint32_t*>(gdk + key * p.sdk.t + d) = pack2<E>(accdK(e) * p.scale, accdK(e + 1) * p.scale);
      *reinterpret_cast<uint32_t*>(gdv + key * p.sdv.t + d) = pack2<E>(accdV(e), accdV(e + 1));
    }
  }
}

// One wgmma batch: C (+)= A B over all k blocks, committed, not waited for.
template <bool kZero, class Mma, class TA, class TB, class TC>
__device__ __forceinline__ void gemm(Mma& mma, TA const& a, TB const& b, TC& c) {
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  if constexpr (kZero) mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  warpgroup_fence_operand(c);
}

// ---- pre-pass and conversion -----------------------------------------------------------------------
// Dsum[b, h, t] = sum_d dO * O in fp32, into rows of stat_row(Tq) floats, and the fp32 dQ accumulator
// cleared (no memset launch: the pass writes those bytes while it streams O and dO), D floats a row
// for zrows >= rows rows (more when the accumulator is kept in whole query tiles, TiledDq).
// Eight threads a row, 16-byte loads; each thread walks kRows rows spaced a block's width apart, all
// loads issued before the first sum (bytes in flight). The sum's order is the one-warp-a-row kernel's it
// replaced (same bits): thread c of a row holds the pair sums of elements 8c + 2j, 8c + 2j + 1 (j < 4;
// at D = 128 plus those of chunk c + 8, as that kernel's lanes added d and d + 64), reduced over the
// row's threads by xor 4, 2, 1 (that kernel's lane xor 16, 8, 4), then in-thread as its xor 2, 1.
template <int D>
struct DsumPlan {
  static constexpr int kRowThreads = 8;
  static constexpr int kChunks = D / 64;           // 16-byte chunks a thread reads of each of O and dO, a row
  static constexpr int kRows = D == 64 ? 4 : 2;    // rows a thread walks: 8 loads of 16 bytes in flight
  static constexpr int kBlock = 256;
  static constexpr int kRowsPerBlock = kBlock / kRowThreads * kRows;
};

template <class E, int D>
__global__ void __launch_bounds__(DsumPlan<D>::kBlock) dsum_rows(const E* out, Strides so, const E* dO, Strides sdo,
                                                                  int H, int Tq, int rows, int zrows, float* dsum,
                                                                  float* dq_acc) {
  using P = DsumPlan<D>;
  const int c = threadIdx.x % P::kRowThreads;
  const int first = blockIdx.x * P::kRowsPerBlock + threadIdx.x / P::kRowThreads;
  constexpr int kStep = P::kBlock / P::kRowThreads;  // rows between a thread's rows (one block-wide sweep)
  uint4 o[P::kRows][P::kChunks], g[P::kRows][P::kChunks];
  CUTE_UNROLL
  for (int r = 0; r < P::kRows; ++r) {
    const int row = first + r * kStep;
    if (row < rows) {
      const int t = row % Tq, bh = row / Tq;
      const int b = bh / H, h = bh % H;
      const E* orow = out + b * so.b + h * so.h + t * so.t;
      const E* grow = dO + b * sdo.b + h * sdo.h + t * sdo.t;
      CUTE_UNROLL
      for (int m = 0; m < P::kChunks; ++m) {
        o[r][m] = *reinterpret_cast<const uint4*>(orow + 8 * (c + 8 * m));
        g[r][m] = *reinterpret_cast<const uint4*>(grow + 8 * (c + 8 * m));
      }
    }
  }
  CUTE_UNROLL
  for (int r = 0; r < P::kRows; ++r) {
    const int row = first + r * kStep;
    if (row >= zrows) break;  // the same for the row's eight threads (their shuffles stay within it)
    float4* acc = reinterpret_cast<float4*>(dq_acc + (int64_t)row * D);
    CUTE_UNROLL
    for (int m = 0; m < D / 32; ++m) acc[c + 8 * m] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row >= rows) continue;
    float v[4] = {0.f, 0.f, 0.f, 0.f};
    CUTE_UNROLL
    for (int m = 0; m < P::kChunks; ++m) {
      const E* oe = reinterpret_cast<const E*>(&o[r][m]);
      const E* ge = reinterpret_cast<const E*>(&g[r][m]);
      CUTE_UNROLL
      for (int j = 0; j < 4; ++j) v[j] += float(oe[2 * j]) * float(ge[2 * j]) + float(oe[2 * j + 1]) * float(ge[2 * j + 1]);
    }
    const unsigned lanes = 0xffu << (threadIdx.x % 32 / P::kRowThreads * P::kRowThreads);
    CUTE_UNROLL
    for (int w = P::kRowThreads / 2; w > 0; w /= 2) {
      CUTE_UNROLL
      for (int j = 0; j < 4; ++j) v[j] += __shfl_xor_sync(lanes, v[j], w);
    }
    const float a0 = v[0] + v[2], a1 = v[1] + v[3];
    const int t = row % Tq, bh = row / Tq;
    if (c == 0) dsum[(int64_t)bh * stat_row(Tq) + t] = a0 + a1;
  }
}

// dQ = 16-bit(acc * scale): acc contiguous (B, H, Tq, D), dQ through the strides the meta step chose
// (unit along D, the others multiples of 8: 8-byte stores stay aligned); four elements a thread a
// round (16-byte loads, 8-byte stores)
template <class E, int D>
__global__ void dq_convert(const float* acc, int64_t quads, float scale, int H, int Tq, Strides sdq, E* dq) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += (int64_t)gridDim.x * blockDim.x) {
    const float4 a = reinterpret_cast<const float4*>(acc)[i];
    const int64_t row = i / (D / 4);
    const int d = (int)(i % (D / 4)) * 4, t = (int)(row % Tq);
    const int64_t bh = row / Tq, b = bh / H, h = bh % H;
    *reinterpret_cast<uint2*>(dq + b * sdq.b + h * sdq.h + t * sdq.t + d) =
        make_uint2(pack2<E>(a.x * scale, a.y * scale), pack2<E>(a.z * scale, a.w * scale));
  }
}

// The dQ accumulator in whole query tiles (VT_HOPPER_BWD=wgmma3, bwd_wgmma2.cuh): tile (b, h, i) is Br x D
// floats at ((b * H + h) * nq + i) * Br * D, in the order the main kernel's threads hold them (float2 slot
// j * kThreads + tid holds values 2j, 2j + 1 of thread tid's dQ accumulator), so each step's tile goes
// from shared memory to the accumulator as ONE bulk reduce-add, written there without bank conflicts.
// Rows past Tq add zeros (P is masked there) and are skipped here.
template <class E, int D>
struct TiledDq {
  using T = Traits<E, D>;
  static constexpr int kFloats = T::Br * D;  // one tile
  static constexpr int kSlots = kFloats / 2;  // float2 slots
  // (query in the tile, d) of float2 slot s: values 2j, 2j + 1 of thread tid (d, d + 1)
  __host__ __device__ static auto coord(int s) {
    const int tid = s % kThreads, j = s / kThreads;
    auto thr = typename T::MmadQ{}.get_thread_slice(tid);
    Tensor cdQ = thr.partition_C(make_identity_tensor(Shape<Int<T::Br>, Int<D>>{}));
    return cdQ(2 * j);
  }
};

// Slots 2k and 2k + 1 (threads tid and tid + 1, tid even) are columns d .. d + 3 of one query
// (lab/bwd_layouts.cu checks it): one 16-byte load and one 8-byte store a pair.
template <class E, int D>
__global__ void dq_convert_tiled(const float* acc, int64_t pairs, int nq, float scale, int H, int Tq, Strides sdq,
                                 E* dq) {
  using TD = TiledDq<E, D>;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t tile = i / (TD::kSlots / 2);
    const auto qd = TD::coord((int)(i % (TD::kSlots / 2)) * 2);
    const int query = (int)(tile % nq) * Traits<E, D>::Br + get<0>(qd), d = get<1>(qd);
    if (query >= Tq) continue;
    const float4 a = reinterpret_cast<const float4*>(acc)[i];
    const int64_t bh = tile / nq, b = bh / H, h = bh % H;
    *reinterpret_cast<uint2*>(dq + b * sdq.b + h * sdq.h + query * sdq.t + d) =
        make_uint2(pack2<E>(a.x * scale, a.y * scale), pack2<E>(a.z * scale, a.w * scale));
  }
}

// dK, dV (blockIdx.y 0, 1) = 16-bit(sum over the splits of the fp32 partials (splits, B, Hkv, Tk, D)),
// in split order; through the strides the meta step chose (unit along D, the others multiples of 8:
// the 8-byte stores stay aligned). Four elements a thread a round.
template <class E>
__global__ void dkv_sum(const float* part, int64_t quads, int64_t part_stride, int splits, int Hkv, int Tk, int D,
                        Strides sdk, E* dk, Strides sdv, E* dv) {
  const bool is_v = blockIdx.y == 1;
  const float* src = part + (is_v ? splits * part_stride : 0);
  const Strides so = is_v ? sdv : sdk;
  E* out = is_v ? dv : dk;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += (int64_t)gridDim.x * blockDim.x) {
    float4 a = reinterpret_cast<const float4*>(src)[i];
    for (int s = 1; s < splits; ++s) {
      const float4 b = reinterpret_cast<const float4*>(src + s * part_stride)[i];
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
    }
    const int64_t row = i * 4 / D, bh = row / Tk;
    const int d = (int)(i * 4 % D), t = (int)(row % Tk);
    const int64_t b = bh / Hkv, h = bh % Hkv;
    *reinterpret_cast<uint2*>(out + b * so.b + h * so.h + t * so.t + d) = make_uint2(pack2<E>(a.x, a.y), pack2<E>(a.z, a.w));
  }
}

// ---- host side ----------------------------------------------------------------------------------------
// GQA/MQA: one CTA per (key block, kv head, b) walks the kv head's group of query heads; when that grid
// would not give every SM a CTA (MQA at small B x Tk) `splits` CTAs share a group, the smallest divisor
// of the group that does (or the whole group). Sets p.splits, p.heads (P: either kernel's Params) and,
// split, the fp32 partials' scratch, returned to be held until the kernels are queued.
template <int D, int Bc, class P>
vt::Tensor plan_group(vt::Call& c, const Problem& pr, P& p) {
  const int group = pr.group();
  const int64_t ctas = (int64_t)((pr.Tk + Bc - 1) / Bc) * pr.Hkv * pr.B;
  int splits = 1;
  while (splits < group && ctas * splits < vt::cuda::sm_count(c)) {
    ++splits;
    while (group % splits) ++splits;
  }
  p.splits = splits, p.heads = group / splits;
  vt::Tensor part_t;
  if (splits > 1) {
    p.part_stride = (int64_t)pr.B * pr.Hkv * pr.Tk * D;
    const int64_t n = 2 * splits * p.part_stride;
    part_t = c.empty(&n, 1, vt::kFloat32);
    p.dkv_part = static_cast<float*>(part_t->data);
  }
  return part_t;
}

// split (p.splits > 1): dK, dV = the CTAs' partials added in split order (deterministic, like the unsplit
// walk), 16-bit through the meta step's strides
template <class E, int D, class P>
void sum_group_partials(vt::Call& c, const Backward& bw, const P& p, cudaStream_t st) {
  if (p.splits == 1) return;
  const int64_t quads = p.part_stride / 4;
  dkv_sum<E><<<dim3(vt::cuda::grid_for(quads), 2), 256, 0, st>>>(p.dkv_part, quads, p.part_stride, p.splits,
                                                                bw.p.Hkv, bw.p.Tk, D, bw.sdk, static_cast<E*>(bw.dk),
                                                                bw.sdv, static_cast<E*>(bw.dv));
  vt::cuda::check_launch(c, "the hopper backward's dK, dV sum over a split group");
}


// Kernel: backward_kernel2 (bwd_wgmma2.cuh) without or with dQ's bulk reduce-add; kTiledDq: the kernel keeps dQ in whole query tiles (TiledDq) and a shared
// tile of its own after Traits' Shared.
template <class E, int D, void (*Kernel)(const Params), bool kTiledDq = false>
void run(vt::Call& c, const Backward& bw) {
  using T = Traits<E, D>;
  constexpr int kSmem = T::kSmem + (kTiledDq ? TiledDq<E, D>::kFloats * (int)sizeof(float) : 0);
  const Problem& pr = bw.p;
  cudaStream_t st = vt::cuda::stream(c);
  const int row = stat_row(pr.Tq);
  const int64_t rows = (int64_t)pr.B * pr.H * pr.Tq;
  const int nq = (pr.Tq + T::Br - 1) / T::Br;
  const int64_t zrows = kTiledDq ? (int64_t)pr.B * pr.H * nq * T::Br : rows;  // accumulator rows of D floats
  const int64_t nsum = (int64_t)pr.B * pr.H * row, nacc = zrows * D;
  vt::Tensor sum_t = c.empty(&nsum, 1, vt::kFloat32), acc_t = c.empty(&nacc, 1, vt::kFloat32);
  float* dsum = static_cast<float*>(sum_t->data);
  float* acc = static_cast<float*>(acc_t->data);

  // the > 48 KiB shared-memory opt-in, once per device (the dispatcher made the call's device current)
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static cudaError_t opt_in[kMaxDevices];
  const int dev = c.ctx->device.index;
  if (dev < 0 || dev >= kMaxDevices) c.fail(VT_ERR_RUNTIME, "cuda device index %d out of range", dev);
  std::call_once(once[dev], [&] {
    opt_in[dev] = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  });
  vt::cuda::check(c, opt_in[dev], "the hopper backward's shared-memory opt-in");

  using Plan = DsumPlan<D>;
  dsum_rows<E, D><<<(unsigned)((zrows + Plan::kRowsPerBlock - 1) / Plan::kRowsPerBlock), Plan::kBlock, 0, st>>>(
      static_cast<const E*>(bw.out), bw.so, static_cast<const E*>(bw.grad_out), bw.sgo, pr.H, pr.Tq, (int)rows,
      (int)zrows, dsum, acc);
  vt::cuda::check_launch(c, "the hopper backward's rowsum(dO * O)");

  Params p{};
  p.q = bw.q, p.k = bw.k, p.v = bw.v, p.dO = bw.grad_out;
  p.sq = bw.sq, p.sk = bw.sk, p.sv = bw.sv, p.sdo = bw.sgo;
  p.lse = bw.lse, p.lse_b = bw.slse.b, p.lse_h = bw.slse.h;
  p.dsum = dsum, p.dq_acc = acc, p.dk = bw.dk, p.dv = bw.dv;
  p.sdk = bw.sdk, p.sdv = bw.sdv;
  p.H = pr.H, p.Tq = pr.Tq, p.Tk = pr.Tk, p.group = pr.group();
  p.scale = pr.scale, p.scale_log2 = pr.scale * kLog2e, p.causal = pr.causal;
  // one CTA per (key block, key/value head, b); under GQA it walks the group (plan_group)
  const vt::Tensor part_t = plan_group<D, T::Bc>(c, pr, p);  // held until the kernels are queued
  const dim3 grid((pr.Tk + T::Bc - 1) / T::Bc, pr.Hkv * p.splits, pr.B);
  Kernel<<<grid, kThreads, kSmem, st>>>(p);
  vt::cuda::check_launch(c, "the hopper backward");
  sum_group_partials<E, D>(c, bw, p, st);

  if constexpr (kTiledDq)
    dq_convert_tiled<E, D><<<vt::cuda::grid_for(nacc / 4), 256, 0, st>>>(acc, nacc / 4, nq, pr.scale, pr.H, pr.Tq,
                                                                         bw.sdq, static_cast<E*>(bw.dq));
  else
    dq_convert<E, D><<<vt::cuda::grid_for(nacc / 4), 256, 0, st>>>(acc, nacc / 4, pr.scale, pr.H, pr.Tq, bw.sdq,
                                                                     static_cast<E*>(bw.dq));
  vt::cuda::check_launch(c, "the hopper backward's dQ conversion");
}

}  // namespace vt_fmha::wgmma_bwd
