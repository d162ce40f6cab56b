// ops/attention_hopper/bwd_ws.cuh — the warp-specialised variant of our Hopper backward
// (VT_HOPPER_BWD=ws, read at load; bwd_ws_d64.cu and bwd_ws_d128.cu instantiate it), FlashAttention-3's
// division of labour on bwd_wgmma2's arithmetic (the same tiles, products, masks and dQ tiles):
//   warp group 0 (setmaxnreg 24): warp 0 the producer, warp 1 the dQ writer, warps 2-3 idle;
//   warp groups 1-2 (setmaxnreg 240): the consumers, 64 keys each, exactly bwd_wgmma2's 256 threads.
// The producer loads K_j and V_j once by TMA, then Q_i and dO_i by TMA (LSE_i, Dsum_i by its lanes)
// into a 2-stage ring: `full[s]` says a stage landed, `empty[s]` that both consumer groups are done
// with it. Each step the consumers put dQ_i into a shared fp32 tile in their own order (TiledDq,
// bwd_wgmma.cuh) and arrive on `dq_full`; the dQ writer adds it to the tiled accumulator with one
// bulk reduce-add (wgmma3's) and arrives on `dq_empty` once the copy engine has read it. dS goes
// through two shared buffers, so one named barrier a step (both groups' dS written) is the only wait
// between the consumer groups. No cp.async address math, no __syncthreads in the loop.
// A step's last products run in FlashAttention-3's order by default (Order below: dQ's shared store
// under dK's wgmma). GQA/MQA: the CTA of (key block, kv head, b) walks its group's query heads, block
// after block (bwd_wgmma2's walk: dK, dV summed in registers; split over CTAs when the grid is small).
// Every mbarrier wait is bounded while VT_WS_BOUNDED_WAITS is 1 (the default of this first version):
// it traps after 4 s of waiting, so a protocol error is a test error, not a hung GPU.
// Shape legend and launches (dsum_rows, the kernel, dq_convert_tiled): bwd_wgmma.cuh.
#pragma once

#include <algorithm>

#include "bwd_wgmma2.cuh"

#include "cute/atom/copy_traits_sm90_tma.hpp"
#include "cutlass/arch/reg_reconfig.h"

#ifndef VT_WS_BOUNDED_WAITS
#define VT_WS_BOUNDED_WAITS 1
#endif

namespace vt_fmha::ws_bwd {

using namespace cute;
using wgmma_bwd::Offsets;
using wgmma_bwd::Traits;

constexpr int kConsumers = 256;          // two consumer warp groups: bwd_wgmma2's threads
constexpr int kThreads = 128 + kConsumers;  // + the producer warp group
// setmaxnreg's counts: 24 x 128 + 240 x 256 = 64512, the 168 x 384 registers the CTA is launched with
// (more for the producer and the consumers' setmaxnreg.inc would wait for registers that never come)
constexpr int kProducerRegs = 24, kConsumerRegs = 240;
static_assert(kProducerRegs * 128 + kConsumerRegs * kConsumers <= 168 * kThreads, "the CTA's register pool");
constexpr uint64_t kWaitLimitNs = 4000000000ull;       // bar_wait's bound: 4 s
constexpr int kDsBarrier = 1;            // named barrier of the 256 consumer threads (0 is __syncthreads)

// ---- mbarriers (shared::cta, one CTA: no cluster) -----------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void bar_init(uint64_t* b, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(b)) : "memory");
}
// this thread's arrival, and `bytes` more for the phase to wait for (TMA's complete_tx pays them)
__device__ __forceinline__ void bar_arrive_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(b)), "r"(bytes)
               : "memory");
}
// `bytes` more for the current phase to wait for, without arriving (the arrival comes later)
__device__ __forceinline__ void bar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}
// until the phase of parity `parity` completed, or false once it has waited kWaitLimitNs of wall time
// (%globaltimer, read every 64 unsuccessful try_waits: a try_wait suspends for an implementation-defined
// time, so a bound in spins alone would be of unknown length). A real wait here is microseconds.
// kTrap: trap right there (the producer and dQ warps). The consumers pass false and trap after their
// loop instead: a trap inside it cost them ~780 bytes of spills (ptxas -v), none after it.
template <bool kTrap>
__device__ __forceinline__ bool bar_wait(uint64_t* b, int parity) {
  const uint32_t addr = smem_addr(b);
#if VT_WS_BOUNDED_WAITS
  uint64_t t0 = 0;
#endif
  for (uint32_t spins = 1;; ++spins) {
    uint32_t done;
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(addr), "r"(parity)
        : "memory");
    if (done) return true;
#if VT_WS_BOUNDED_WAITS
    if (spins % 64 == 0) {
      uint64_t now;
      asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(now));
      if (t0 == 0) {
        t0 = now;
      } else if (now - t0 > kWaitLimitNs) {
        if constexpr (kTrap) asm volatile("trap;");
        return false;
      }
    }
#endif
  }
}

__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync %0, %1;\n" ::"n"(kDsBarrier), "n"(kConsumers) : "memory"); }

// ---- TMA boxes and shared memory ------------------------------------------------------------------------
// q, k, v, dO as TMA sees them: (T, D, H, B), strides (t, 1, h, b) in elements
using GShape = Shape<int, int, int, int>;
using GStride = Stride<int64_t, _1, int64_t, int64_t>;

template <class E, int D>
struct WsTraits {
  using T = Traits<E, D>;
  static constexpr int Bc = T::Bc, Br = T::Br;
  // one stage of Q / dO: the first stage of Traits' staged layout (lab/bwd_layouts.cu: stage s is
  // this layout shifted by s * Br * D elements)
  using LayoutQ1 = decltype(tile_to_shape(typename T::AtomK{}, Shape<Int<Br>, Int<D>>{}));
  using GTensor = decltype(make_tensor(make_gmem_ptr(static_cast<const E*>(nullptr)), GShape{}, GStride{}));
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GTensor{}, LayoutQ1{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{}, GTensor{}, typename T::LayoutKV{}));
  static constexpr uint32_t kQBytes = Br * D * sizeof(E), kKVBytes = Bc * D * sizeof(E);

  struct alignas(1024) Shared {
    array_aligned<E, cosize_v<typename T::LayoutKV>, 1024> k, v;
    array_aligned<E, cosize_v<typename T::LayoutQ>, 1024> q, dO;  // two stages each
    array_aligned<E, cosize_v<typename T::LayoutdS>, 1024> dS[2];  // alternate steps
    array_aligned<float, Br * D, 1024> dq;                         // TiledDq's order
    float lse[2][Br], dsum[2][Br];
    uint64_t full[2], empty[2], kv_full, dq_full, dq_empty;
  };
  static constexpr int kSmem = sizeof(Shared) + 1024;  // + room to align the dynamic base to 1024
};

template <class E, int D>
struct Params {
  typename WsTraits<E, D>::TmaQ tma_q, tma_do;
  typename WsTraits<E, D>::TmaKV tma_k, tma_v;
  const float* lse;             // unit stride along Tq
  int64_t lse_b, lse_h;
  const float* dsum;            // (B, H, stat_row(Tq))
  float* dq_acc;                // TiledDq: (B, H, nq) tiles of Br x D floats
  void *dk, *dv;                // (B, Hkv, Tk, D) in the layouts the meta step chose
  Strides sdk, sdv;
  int B, H, Hkv, Tq, Tk;        // H query heads, Hkv key/value heads (H for plain attention)
  int splits;                   // CTAs sharing one kv head's group of query heads (GQA; run<> picks)
  int heads;                    // query heads a CTA walks: (H / Hkv) / splits
  float* dkv_part;              // splits > 1: fp32 partial dK (splits, B, Hkv, Tk, D), then as many of dV
  int64_t part_stride;          // B * Hkv * Tk * D: one split's partials
  float scale, scale_log2;
  bool causal;
  int section;                  // (y, b) pairs ordered heaviest first together (tile_of; 1: launch order)
};

// The CTA's key block kb, y = kv head * splits + part, and b. The grid is (key blocks, y, b) and CTAs
// start in linear order, x fastest. Causal, a key block's work falls with its index (fewer query blocks
// see it), so the linear order is remapped heaviest first within sections of `section` (y, b) pairs, about
// one wave of CTAs: the last CTAs to start are then the lightest instead of one pair's heavy block, and the
// CTAs running together share few pairs' Q and dO in L2 (our causal forward orders its tiles likewise,
// fmha_run.cuh). section == 1: the launch order.
struct Tile {
  int kb, y, b;
};
__device__ __forceinline__ Tile tile_of(int section) {
  const int nkb = gridDim.x, ny = gridDim.y, pairs = ny * gridDim.z;
  const int L = blockIdx.x + nkb * (blockIdx.y + ny * blockIdx.z);
  const int per = section * nkb, sec = L / per, r = L - sec * per;
  const int width = min(section, pairs - sec * section);  // the last section may hold fewer pairs
  const int pair = sec * section + r % width;
  return {r / width, pair % ny, pair / ny};
}

// P^T = exp2(S^T * scale * log2e - LSE * log2e) in place, masked (P = 0) past Tk, past Tq and above
// the causal diagonal when kMask; bwd_wgmma2's softmax
template <bool kMask, class Acc, class Coords>
__device__ __forceinline__ void softmax_t(Acc& accS, Coords const& cS, const float* lse, float scale_log2, int k0,
                                          int q0, int Tk, int Tq, bool causal) {
  CUTE_UNROLL
  for (int e = 0; e < size(accS); ++e) {
    const int key = get<0>(cS(e)), query = get<1>(cS(e));
    float pv = exp2f(accS(e) * scale_log2 - lse[query] * wgmma_bwd::kLog2e);
    if constexpr (kMask) {
      const int gk = k0 + key, gq = q0 + query;
      if (gk >= Tk || gq >= Tq || (causal && gk > gq)) pv = 0.f;
    }
    accS(e) = pv;
  }
}

// ---- the kernel ---------------------------------------------------------------------------------------
// The order of a step's last three products. kOrderFa3 (FlashAttention-3's): dS to shared memory, dV,
// the consumers' barrier, dQ, then dK, so dQ's shared store runs under dK's wgmma; kOrderDvFirst: the
// same with dV issued before the dS store; kOrderFirst (ws1, until 2026-12-02): dV, dK, dS store,
// barrier, dQ, wait for all, dQ store.
enum Order { kOrderFirst = 0, kOrderFa3 = 1, kOrderDvFirst = 2 };

template <class E, int D, int kOrder>
__global__ void __launch_bounds__(kThreads, 1) backward_ws_kernel(const __grid_constant__ Params<E, D> p) {
  using W = WsTraits<E, D>;
  using T = Traits<E, D>;
  constexpr int Bc = T::Bc, Br = T::Br;
  extern __shared__ char smem_raw[];
  const uint32_t misalign = smem_addr(smem_raw) & 1023u;
  auto& sh = *reinterpret_cast<typename W::Shared*>(smem_raw + ((1024u - misalign) & 1023u));

  // y = kv head * splits + part; the CTA walks query heads first_head = y * p.heads on (GQA: the kv head's
  // group, or a split's share of it; plain attention: the one head, = kv head)
  const Tile tile = tile_of(p.section);
  const int kb = tile.kb, y = tile.y, b = tile.b;
  const int k0 = kb * Bc;
  const int Tq = p.Tq, Tk = p.Tk;
  const int nq = (Tq + Br - 1) / Br;
  const int i_first = p.causal ? k0 / Br : 0;  // causal: the first query block reaching k0
  // the walk (bwd_wgmma2's): step n is query block i_first + n % blocks of query head first_head + n / blocks
  const int blocks = max(nq - i_first, 0), steps = p.heads * blocks;
  auto query_block = [&](int n) { return i_first + n % blocks; };
  const int first_head = y * p.heads;

  if (threadIdx.x == 0) {
    bar_init(&sh.full[0], 32), bar_init(&sh.full[1], 32);  // the producer warp's lanes
    bar_init(&sh.empty[0], kConsumers), bar_init(&sh.empty[1], kConsumers);
    bar_init(&sh.kv_full, 1);
    bar_init(&sh.dq_full, kConsumers);
    bar_init(&sh.dq_empty, 1);
  }
  // the inits visible to the async proxy (TMA's complete_tx) as well, then to every thread
  if (threadIdx.x == 0) asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  __syncthreads();

  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<kProducerRegs>();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0 && steps > 0) {
      // the producer: K_j, V_j once; Q_i, dO_i (TMA) and LSE_i, Dsum_i (lanes) into stage n % 2
      // head (h, b) of an operand as TMA's coordinates: (rows, D)
      auto head_view = [&](auto const& tma, int rows, int heads, int head) {
        return tma.get_tma_tensor(make_shape(rows, D, heads, p.B))(_, _, head, b);
      };
      if (lane == 0) {
        const int hk = y / p.splits;  // the key/value head
        Tensor gK = local_tile(head_view(p.tma_k, Tk, p.Hkv, hk), Shape<Int<Bc>, Int<D>>{}, make_coord(kb, _0{}));
        Tensor gV = local_tile(head_view(p.tma_v, Tk, p.Hkv, hk), Shape<Int<Bc>, Int<D>>{}, make_coord(kb, _0{}));
        Tensor sK = make_tensor(make_smem_ptr(sh.k.data()), typename T::LayoutKV{});
        Tensor sV = make_tensor(make_smem_ptr(sh.v.data()), typename T::LayoutKV{});
        auto tk = p.tma_k.get_slice(0);
        auto tv = p.tma_v.get_slice(0);
        bar_arrive_expect_tx(&sh.kv_full, 2 * W::kKVBytes);
        copy(p.tma_k.with(sh.kv_full), tk.partition_S(gK), tk.partition_D(sK));
        copy(p.tma_v.with(sh.kv_full), tv.partition_S(gV), tv.partition_D(sV));
      }
      Tensor sQ = make_tensor(make_smem_ptr(sh.q.data()), typename T::LayoutQ{});  // (Br, D, stage)
      Tensor sdO = make_tensor(make_smem_ptr(sh.dO.data()), typename T::LayoutQ{});
      auto tq = p.tma_q.get_slice(0);
      auto tdo = p.tma_do.get_slice(0);
      Tensor tQsQ = tq.partition_D(sQ);  // (TMA, m, n, stage)
      Tensor tdOsdO = tdo.partition_D(sdO);
#pragma unroll 1
      for (int n = 0; n < steps; ++n) {
        const int s = n & 1, hq = first_head + n / blocks, i = query_block(n), q0 = i * Br;
        if (n >= 2) bar_wait<true>(&sh.empty[s], ((n >> 1) - 1) & 1);
        // the TMA copies first (their bytes announced, no arrival yet), then the stats while they fly;
        // every lane's arrival releases its own stores, and the phase waits for all 32 and the bytes
        if (lane == 0) {
          Tensor gQ = local_tile(head_view(p.tma_q, Tq, p.H, hq), Shape<Int<Br>, Int<D>>{}, make_coord(i, _0{}));
          Tensor gdO = local_tile(head_view(p.tma_do, Tq, p.H, hq), Shape<Int<Br>, Int<D>>{}, make_coord(i, _0{}));
          bar_expect_tx(&sh.full[s], 2 * W::kQBytes);
          copy(p.tma_q.with(sh.full[s]), tq.partition_S(gQ), tQsQ(_, _, _, s));
          copy(p.tma_do.with(sh.full[s]), tdo.partition_S(gdO), tdOsdO(_, _, _, s));
        }
        const float* glse = p.lse + b * p.lse_b + hq * p.lse_h;
        const float* gdsum = p.dsum + ((int64_t)b * p.H + hq) * stat_row(Tq);
        for (int r = lane; r < Br; r += 32) {
          const bool ok = q0 + r < Tq;
          sh.lse[s][r] = ok ? glse[q0 + r] : 0.f;
          sh.dsum[s][r] = ok ? gdsum[q0 + r] : 0.f;
        }
        bar_arrive(&sh.full[s]);
      }
    } else if (warp == 1 && steps > 0) {
      // the dQ writer: each step's shared tile added to the accumulator by the copy engine
#pragma unroll 1
      for (int n = 0; n < steps; ++n) {
        bar_wait<true>(&sh.dq_full, n & 1);
        if (lane == 0) {
          const int64_t tile = ((int64_t)b * p.H + first_head + n / blocks) * nq + query_block(n);
          wgmma_bwd::bulk_reduce_add_f32(p.dq_acc + tile * (Br * D), sh.dq.data(), Br * D * sizeof(float));
          wgmma_bwd::bulk_wait_read();  // the tile read out: the consumers may write the next one
          bar_arrive(&sh.dq_empty);
        }
        __syncwarp();
      }
      if (lane == 0) wgmma_bwd::bulk_wait_all();  // every add done before the CTA (and its smem) goes
    }
    return;
  }

  cutlass::arch::warpgroup_reg_alloc<kConsumerRegs>();
  const int tid = threadIdx.x - 128;  // bwd_wgmma2's thread index: the MMA slices and TiledDq's slots

  typename T::MmaSdP mma_sdp;
  typename T::MmadKV mma_dkv;
  typename T::MmadQ mma_dq;
  auto thr_sdp = mma_sdp.get_thread_slice(tid);
  auto thr_dkv = mma_dkv.get_thread_slice(tid);
  auto thr_dq = mma_dq.get_thread_slice(tid);

  Tensor accdK = partition_fragment_C(mma_dkv, Shape<Int<Bc>, Int<D>>{});
  Tensor accdV = partition_fragment_C(mma_dkv, Shape<Int<Bc>, Int<D>>{});
  clear(accdK);
  clear(accdV);

  if (steps > 0) {
    Tensor sK = make_tensor(make_smem_ptr(sh.k.data()), typename T::LayoutKV{});
    Tensor sV = make_tensor(make_smem_ptr(sh.v.data()), typename T::LayoutKV{});
    Tensor sQ = make_tensor(make_smem_ptr(sh.q.data()), typename T::LayoutQ{});
    Tensor sdO = make_tensor(make_smem_ptr(sh.dO.data()), typename T::LayoutQ{});
    Tensor sQt = make_tensor(make_smem_ptr(sh.q.data()), typename T::LayoutQt{});
    Tensor sdOt = make_tensor(make_smem_ptr(sh.dO.data()), typename T::LayoutQt{});
    Tensor sKt = make_tensor(make_smem_ptr(sh.k.data()), typename T::LayoutKt{});

    Tensor tSrK = thr_sdp.partition_fragment_A(sK);       // (MMA, 1, D/16)
    Tensor tSrV = thr_sdp.partition_fragment_A(sV);
    Tensor tSrQ = thr_sdp.partition_fragment_B(sQ);       // (MMA, 1, D/16, stage)
    Tensor tSrdO = thr_sdp.partition_fragment_B(sdO);
    Tensor tdVrdOt = thr_dkv.partition_fragment_B(sdOt);  // (MMA, 1, Br/16, stage)
    Tensor tdKrQt = thr_dkv.partition_fragment_B(sQt);
    Tensor tdQrKt = thr_dq.partition_fragment_B(sKt);
    Tensor cS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));  // (key, query)
    float2* dq_tile = reinterpret_cast<float2*>(sh.dq.data());

    bool waited = bar_wait<false>(&sh.kv_full, 0);  // false: a wait timed out (trap after the loop)
#pragma unroll 1
    for (int n = 0; n < steps && waited; ++n) {
      const int s = n & 1, q0 = query_block(n) * Br;
      if (!bar_wait<false>(&sh.full[s], (n >> 1) & 1)) {
        waited = false;
        break;
      }

      Tensor accS = partition_fragment_C(mma_sdp, Shape<Int<Bc>, Int<Br>>{});  // ((2, 2, Br/8), 1, 1)
      Tensor accdP = partition_fragment_C(mma_sdp, Shape<Int<Bc>, Int<Br>>{});
      wgmma_bwd::gemm<true>(mma_sdp, tSrK, tSrQ(_, _, _, s), accS);
      wgmma_bwd::gemm<true>(mma_sdp, tSrV, tSrdO(_, _, _, s), accdP);

      // P^T while dP^T's wgmma is in flight; masked only where a key past Tk, a query past Tq or the
      // diagonal lies (bwd_wgmma2's test)
      const bool masked = (p.causal && k0 + Bc - 1 > q0) || q0 + Br > Tq || k0 + Bc > Tk;
      warpgroup_wait<1>();
      warpgroup_fence_operand(accS);
      if (masked) softmax_t<true>(accS, cS, sh.lse[s], p.scale_log2, k0, q0, Tk, Tq, p.causal);
      else softmax_t<false>(accS, cS, sh.lse[s], p.scale_log2, k0, q0, Tk, Tq, p.causal);
      warpgroup_wait<0>();
      warpgroup_fence_operand(accdP);
      const float* dsum = sh.dsum[s];
      CUTE_UNROLL
      for (int e = 0; e < size(accdP); ++e) accdP(e) = accS(e) * (accdP(e) - dsum[get<1>(cS(e))]);
      Tensor rP = wgmma_bwd::to_16bit<E>(accS);
      Tensor rdS = wgmma_bwd::to_16bit<E>(accdP);

      // the accumulator's values as the register A operand over Br/16 k blocks (bwd_wgmma2's ALayout)
      using ALayout = Layout<Shape<Shape<_2, _2, _2>, _1, Int<Br / 16>>, Stride<Stride<_1, _2, _4>, _0, _8>>;
      static_assert(size(decltype(rP.layout()){}) == size(ALayout{}), "P^T fragment as the A operand");
      Tensor tdVrP = make_tensor(rP.data(), ALayout{});
      Tensor tdKrdS = make_tensor(rdS.data(), ALayout{});
      warpgroup_fence_operand(rP);
      warpgroup_fence_operand(rdS);
      if constexpr (kOrder != kOrderFa3) wgmma_bwd::gemm<false>(mma_dkv, tdVrP, tdVrdOt(_, _, _, s), accdV);
      if constexpr (kOrder == kOrderFirst) wgmma_bwd::gemm<false>(mma_dkv, tdKrdS, tdKrQt(_, _, _, s), accdK);

      // dS (both groups' keys) into this step's buffer, 4-byte pairs of neighbouring queries; the other
      // buffer may still be read by the other group's dQ wgmma of the previous step
      {
        // the store offsets from a thread index the compiler cannot see through: hoisted out of the
        // loop, D = 64's 32 swizzled offsets stayed live and spilled (ptxas -v); recomputed, they cost a
        // few integer ops a step
        int opaque_tid = tid;
        asm volatile("" : "+r"(opaque_tid));
        Tensor cSt = mma_sdp.get_thread_slice(opaque_tid).partition_C(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
        Tensor rdS32 = recast<uint32_t>(rdS);
        E* dS = sh.dS[n & 1].data();
        CUTE_UNROLL
        for (int j = 0; j < size(rdS32); ++j) {
          const auto kq = cSt(2 * j);
          *reinterpret_cast<uint32_t*>(dS + Offsets<typename T::LayoutdSt>{}(get<0>(kq), get<1>(kq))) = rdS32(j);
        }
      }
      if constexpr (kOrder == kOrderFa3) wgmma_bwd::gemm<false>(mma_dkv, tdVrP, tdVrdOt(_, _, _, s), accdV);
      wgmma_bwd::fence_async_shared();
      consumers_sync();
      Tensor accdQ = partition_fragment_C(mma_dq, Shape<Int<Br>, Int<D>>{});
      // this step's dS buffer as dQ's A operand (MMA, 1, Bc/16): built here, not picked from two (a
      // dynamically indexed pair lands in local memory)
      Tensor sdS = make_tensor(make_smem_ptr(sh.dS[n & 1].data()), typename T::LayoutdS{});
      wgmma_bwd::gemm<true>(mma_dq, thr_dq.partition_fragment_A(sdS), tdQrKt, accdQ);
      if constexpr (kOrder != kOrderFirst) {
        wgmma_bwd::gemm<false>(mma_dkv, tdKrdS, tdKrQt(_, _, _, s), accdK);
        warpgroup_wait<1>();  // dV and dQ done (wgmma batches complete in order); dK in flight
        warpgroup_fence_operand(accdQ);
      } else {
        warpgroup_wait<0>();
        warpgroup_fence_operand(rP);
        warpgroup_fence_operand(rdS);
        bar_arrive(&sh.empty[s]);  // stage s's Q, dO, LSE, Dsum read for the last time
      }

      // dQ_i's share into the shared tile once the writer has sent the previous one
      if (n > 0 && !bar_wait<false>(&sh.dq_empty, (n - 1) & 1)) {
        warpgroup_wait<0>();  // dK may be in flight (kOrder != kOrderFirst); the epilogue reads its registers
        waited = false;
        break;
      }
      static_assert(size<1>(decltype(accdQ){}) == 1 && size<2>(decltype(accdQ){}) == 1, "one atom per warp group");
      CUTE_UNROLL
      for (int e = 0; e < size(accdQ); e += 2) dq_tile[e / 2 * kConsumers + tid] = make_float2(accdQ(e), accdQ(e + 1));
      wgmma_bwd::fence_async_shared();  // the st.shared visible to the bulk copy's (async proxy) reads
      bar_arrive(&sh.dq_full);
      if constexpr (kOrder != kOrderFirst) {
        warpgroup_wait<0>();  // dK done: its Q^T and the register dS^T free
        warpgroup_fence_operand(rP);
        warpgroup_fence_operand(rdS);
        bar_arrive(&sh.empty[s]);  // stage s's Q, dO, LSE, Dsum read for the last time
      }
    }
#if VT_WS_BOUNDED_WAITS
    if (!waited) asm volatile("trap;");
#endif
  }

  // dK_j, dV_j summed over the walked query heads (bwd_wgmma.cuh's store_dkv); (y, b) recomputed here rather
  // than held through the loop: held, they cost the D = 64 consumers 8-22 bytes of spill (ptxas -v); the
  // asm hides that it is the same computation as at the top
  Tensor cKV = thr_dkv.partition_C(make_identity_tensor(Shape<Int<Bc>, Int<D>>{}));
  int section = p.section;
  asm volatile("" : "+r"(section));
  const Tile mine = tile_of(section);
  wgmma_bwd::store_dkv<E, D>(p, accdK, accdV, cKV, k0, Tk, mine.b, mine.y / p.splits, p.Hkv, mine.y % p.splits);
}

// ---- host side ----------------------------------------------------------------------------------------
// TMA's view of a 4-d operand (B, H, T, D) with strides s (elements; unit along D)
template <class E>
auto tma_view(const void* data, int B, int H, int T, int D, const Strides& s) {
  return make_tensor(make_gmem_ptr(static_cast<const E*>(data)), GShape{T, D, H, B}, GStride{s.t, _1{}, s.h, s.b});
}

template <class E, int D, int kOrder>
void run(vt::Call& c, const Backward& bw) {
  using W = WsTraits<E, D>;
  using T = Traits<E, D>;
  constexpr int kSmem = W::kSmem;
  static_assert(kSmem <= 227 * 1024, "shared memory within the H200's 227 KiB a CTA");
  const Problem& pr = bw.p;
  cudaStream_t st = vt::cuda::stream(c);
  const int row = stat_row(pr.Tq);
  const int64_t rows = (int64_t)pr.B * pr.H * pr.Tq;
  const int nq = (pr.Tq + T::Br - 1) / T::Br;
  const int64_t zrows = (int64_t)pr.B * pr.H * nq * T::Br;  // the accumulator in whole tiles (TiledDq)
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
    opt_in[dev] = cudaFuncSetAttribute(backward_ws_kernel<E, D, kOrder>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  });
  vt::cuda::check(c, opt_in[dev], "the hopper ws backward's shared-memory opt-in");

  using Plan = wgmma_bwd::DsumPlan<D>;
  wgmma_bwd::dsum_rows<E, D><<<(unsigned)((zrows + Plan::kRowsPerBlock - 1) / Plan::kRowsPerBlock), Plan::kBlock, 0, st>>>(
      static_cast<const E*>(bw.out), bw.so, static_cast<const E*>(bw.grad_out), bw.sgo, pr.H, pr.Tq, (int)rows,
      (int)zrows, dsum, acc);
  vt::cuda::check_launch(c, "the hopper backward's rowsum(dO * O)");

  Params<E, D> p{};
  // the boxes: one stage of Q / dO (Br x D), K / V (Bc x D), 128-byte swizzled as wgmma reads them
  p.tma_q = make_tma_copy(SM90_TMA_LOAD{}, tma_view<E>(bw.q, pr.B, pr.H, pr.Tq, D, bw.sq), typename W::LayoutQ1{});
  p.tma_do = make_tma_copy(SM90_TMA_LOAD{}, tma_view<E>(bw.grad_out, pr.B, pr.H, pr.Tq, D, bw.sgo), typename W::LayoutQ1{});
  p.tma_k = make_tma_copy(SM90_TMA_LOAD{}, tma_view<E>(bw.k, pr.B, pr.Hkv, pr.Tk, D, bw.sk), typename T::LayoutKV{});
  p.tma_v = make_tma_copy(SM90_TMA_LOAD{}, tma_view<E>(bw.v, pr.B, pr.Hkv, pr.Tk, D, bw.sv), typename T::LayoutKV{});
  p.lse = bw.lse, p.lse_b = bw.slse.b, p.lse_h = bw.slse.h;
  p.dsum = dsum, p.dq_acc = acc, p.dk = bw.dk, p.dv = bw.dv;
  p.sdk = bw.sdk, p.sdv = bw.sdv;
  p.B = pr.B, p.H = pr.H, p.Hkv = pr.Hkv, p.Tq = pr.Tq, p.Tk = pr.Tk;
  p.scale = pr.scale, p.scale_log2 = pr.scale * wgmma_bwd::kLog2e, p.causal = pr.causal;
  // one CTA per (key block, kv head, b) walking the kv head's group, split as bwd_wgmma.cuh's plan_group says
  const vt::Tensor part_t = wgmma_bwd::plan_group<D, T::Bc>(c, pr, p);  // held until the kernels are queued
  const dim3 grid((pr.Tk + T::Bc - 1) / T::Bc, pr.Hkv * p.splits, pr.B);
  // causal: heaviest first within sections of about one wave of CTAs (SMs / key blocks pairs). H200,
  // 2026-12-02 16:55 and 17:28, causal bf16 backward TF/s by section (pairs): 8x16x2048x128 (16 key
  // blocks) 64: 348, 32: 370, 16: 379, 8: 380-382; 2x16x8192x128 (64 key blocks) 8: 542, 2: 549, 1: 528;
  // 4x32/8x2048x128 (GQA, 4 heads a pair) 8: 404, 2: 355. Each shape's best is the one-wave section.
  const int64_t pairs = (int64_t)grid.y * grid.z;
  p.section = pr.causal ? (int)std::clamp<int64_t>(vt::cuda::sm_count(c) / grid.x, 1, pairs) : 1;
  backward_ws_kernel<E, D, kOrder><<<grid, kThreads, kSmem, st>>>(p);
  vt::cuda::check_launch(c, "the hopper ws backward");
  wgmma_bwd::sum_group_partials<E, D>(c, bw, p, st);

  wgmma_bwd::dq_convert_tiled<E, D><<<vt::cuda::grid_for(nacc / 4), 256, 0, st>>>(
      acc, nacc / 4, nq, pr.scale, pr.H, pr.Tq, bw.sdq, static_cast<E*>(bw.dq));
  vt::cuda::check_launch(c, "the hopper backward's dQ conversion");
}

}  // namespace vt_fmha::ws_bwd

// One head dim's warp-specialised backwards, bfloat16 and float16: VT_HOPPER_BWD=ws (the default) in the
// order measured fastest at that head dim (H200, 2026-12-02 13:45, bf16: at D = 128 FlashAttention-3's,
// 3-10% over the first order; at D = 64 dV first, 1-3% over FlashAttention-3's, which spills 78 bytes
// there), ws2 (dV first at both) and ws1 (the first order), for A/B timing
#define VT_WS_BACKWARD_ORDER(D, NAME, ORDER)                                                  \
  void vt_fmha::backward_##NAME##_d##D(vt::Call& c, const Backward& b) {                    \
    if (b.p.fp16) ws_bwd::run<cutlass::half_t, D, ws_bwd::ORDER>(c, b);                     \
    else ws_bwd::run<cutlass::bfloat16_t, D, ws_bwd::ORDER>(c, b);                          \
  }
#define VT_WS_BACKWARD(D, DEFAULT_ORDER)                 \
  VT_WS_BACKWARD_ORDER(D, ws, DEFAULT_ORDER)             \
  VT_WS_BACKWARD_ORDER(D, ws2, kOrderDvFirst)            \
  VT_WS_BACKWARD_ORDER(D, ws1, kOrderFirst)
