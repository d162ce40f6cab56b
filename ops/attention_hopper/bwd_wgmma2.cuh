// ops/attention_hopper/bwd_wgmma2.cuh — the zero-spill variant of our Hopper backward
// (VT_HOPPER_BWD=wgmma2, read at load; bwd_wgmma2_d64.cu and bwd_wgmma2_d128.cu instantiate it).
// The algorithm, tiles, shared memory, launches and synchronisation are bwd_wgmma.cuh's
// backward_kernel (the one the H200 validated, still the default); what differs, each for registers:
//   - shared-memory addresses as element offsets from the 1024-aligned base (plain E* arithmetic, so
//     LDS/STS with 32-bit addresses), not through cute's swizzled generic pointers;
//   - P^T = exp2(...) computed while dP^T's wgmma is still in flight (wait_group 1, then 0);
//   - the cp.async loops rolled (their addresses no longer compete with the accumulators);
//   - dS^T stored to shared memory as 4-byte pairs of neighbouring queries.
// backward_kernel2<E, D, true> (VT_HOPPER_BWD=wgmma3) also adds dQ with one bulk reduce-add of a
// shared tile a step instead of atomics from registers (below, and TiledDq in bwd_wgmma.cuh).
// GQA/MQA (p.group = H / Hkv > 1): the CTA of (key block, kv head hk, b) walks the query blocks of
// each of the group's query heads hk * group + g in turn, one flat walk of steps n = (g, block), so
// dK and dV sum over the group in the same registers (no scratch, no atomics: deterministic) and the
// query-block prefetch crosses from one head to the next like from one block to the next. When that
// grid is too small for the SMs (MQA at small B x Tk; run<> decides), p.splits CTAs share a group,
// each walking group / splits heads and storing fp32 partial dK, dV that dkv_sum adds in order.
// The offsets: a GMMA smem layout (ComposedLayout<Swizzle, smem_ptr_flag_bits<16>, L>) keeps its
// swizzle in BYTES, for the pointer cute makes of it; evaluated as an integer it would apply the
// byte swizzle to element offsets (Swizzle<3,4,3> where elements need Swizzle<3,3,3>). Commit 8b4988a
// did exactly that for Q, dO, K, V and dS, and its gradients were wrong on the H200; Offsets<L> below
// is cute's own conversion to element units (lab/bwd_layouts.cu checks it against cute's pointers).
#pragma once

#include "bwd_wgmma.cuh"

namespace vt_fmha::wgmma_bwd {

// layout L as element offsets from a 1024-aligned base: the swizzle recast from bytes to elements
template <class L>
using Offsets = decltype(as_position_independent_swizzle_layout(L{}));

// rows [0, valid) of a (Rows x D) block at g (row stride `stride` elements) into shared memory at
// base + at(row, d); rows past `valid` zero-filled. 16-byte chunks (8 elements stay contiguous under
// the 128-byte swizzle: it permutes 16-byte units). Rolled: unrolled, its addresses compete with the
// accumulators for registers (spills).
template <int Rows, int D, class E, class At>
__device__ __forceinline__ void load_rows_at(E* base, At at, const E* g, int64_t stride, int valid, int tid) {
  constexpr int kChunks = D / 8;
  static_assert((Rows * kChunks) % kThreads == 0, "whole rounds of 16-byte chunks");
#pragma unroll 1
  for (int round = 0; round < Rows * kChunks / kThreads; ++round) {
    const int c = tid + round * kThreads;
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool ok = r < valid;
    cp_async_16(base + at(r, col), g + (ok ? r * stride + col : 0), ok);
  }
}

// dQ's bulk reduce-add (kBulkDq): a whole shared tile added into global memory by the copy engine
// (bulk_group completion: this thread waits for its own groups; nothing can wait forever)
__device__ __forceinline__ void bulk_reduce_add_f32(float* g, const float* smem, uint32_t bytes) {
  const uint32_t src = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(g), "r"(src),
               "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// kBulkDq (VT_HOPPER_BWD=wgmma3): dQ_i through a shared fp32 tile in the threads' own order
// (TiledDq, bwd_wgmma.cuh: conflict-free 8-byte stores) and one bulk reduce-add of the tile per step,
// issued by thread 0, instead of 16 float2 atomics a thread a step (FlashAttention-3's dQ path).
template <class E, int D, bool kBulkDq>
__global__ void __launch_bounds__(kThreads, 1) backward_kernel2(const Params p) {
  using T = Traits<E, D>;
  constexpr int Bc = T::Bc, Br = T::Br;
  extern __shared__ char smem_raw[];
  // the 128-byte swizzle repeats every 1024 bytes: wgmma's descriptors and Offsets<> assume atoms
  // 1024-aligned. Pointer arithmetic on smem_raw (not through an integer) keeps the accesses in the
  // shared space.
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023u;
  auto& sh = *reinterpret_cast<typename T::Shared*>(smem_raw + ((1024u - misalign) & 1023u));
  // kBulkDq's fp32 dQ tile right after Shared (1024-aligned: Shared is); run<> sizes the launch for it
  float2* dq_tile = reinterpret_cast<float2*>(&sh + 1);

  const int tid = threadIdx.x;
  // blockIdx.y = kv head * splits + part: the CTA walks query heads first_head = blockIdx.y * p.heads
  // on (p.heads = group / splits), i.e. from kv head * group + part * p.heads. The kv head is re-read
  // from blockIdx where used, first_head held (ptxas at D = 64: 0 spills so; 8-12 bytes of spill with
  // the kv head and the head count held, or first_head re-read each step)
  const int kb = blockIdx.x, b = blockIdx.z;
  const int k0 = kb * Bc;
  const int Tq = p.Tq, Tk = p.Tk;
  const int nq = (Tq + Br - 1) / Br;
  // causal: query block i sees key block kb when its last query reaches k0
  const int i_first = p.causal ? k0 / Br : 0;
  // the walk: step n is query block i_first + n % blocks of query head first_head + n / blocks
  const int blocks = nq - i_first, steps = p.heads * blocks;
  const int first_head = blockIdx.y * p.heads;
  auto query_head = [&](int n) { return first_head + n / blocks; };
  auto query_block = [&](int n) { return i_first + n % blocks; };

  Tensor sK = make_tensor(make_smem_ptr(sh.k.data()), typename T::LayoutKV{});
  Tensor sV = make_tensor(make_smem_ptr(sh.v.data()), typename T::LayoutKV{});
  Tensor sQ = make_tensor(make_smem_ptr(sh.q.data()), typename T::LayoutQ{});
  Tensor sdO = make_tensor(make_smem_ptr(sh.dO.data()), typename T::LayoutQ{});
  Tensor sQt = make_tensor(make_smem_ptr(sh.q.data()), typename T::LayoutQt{});
  Tensor sdOt = make_tensor(make_smem_ptr(sh.dO.data()), typename T::LayoutQt{});
  Tensor sKt = make_tensor(make_smem_ptr(sh.k.data()), typename T::LayoutKt{});
  Tensor sdS = make_tensor(make_smem_ptr(sh.dS.data()), typename T::LayoutdS{});

  // Q_i, dO_i, LSE_i, Dsum_i of step n's query block and head into stage s (one cp.async group per call)
  auto load_query_block = [&](int n, int s) {
    const int hq = query_head(n), q0 = query_block(n) * Br, valid = min(Br, Tq - q0);
    const E* gq = static_cast<const E*>(p.q) + b * p.sq.b + hq * p.sq.h;
    const E* gdo = static_cast<const E*>(p.dO) + b * p.sdo.b + hq * p.sdo.h;
    const float* glse = p.lse + b * p.lse_b + hq * p.lse_h;
    const float* gdsum = p.dsum + ((int64_t)b * p.H + hq) * stat_row(Tq);
    auto at = [s](int r, int d) { return Offsets<typename T::LayoutQ>{}(r, d, s); };
    load_rows_at<Br, D>(sh.q.data(), at, gq + q0 * p.sq.t, p.sq.t, valid, tid);
    load_rows_at<Br, D>(sh.dO.data(), at, gdo + q0 * p.sdo.t, p.sdo.t, valid, tid);
    if (tid < Br) {
      cp_async_4(&sh.lse[s][tid], glse + (tid < valid ? q0 + tid : 0), tid < valid);
    } else if (tid < 2 * Br) {
      const int r = tid - Br;
      cp_async_4(&sh.dsum[s][r], gdsum + (r < valid ? q0 + r : 0), r < valid);
    }
    cp_async_commit();
  };

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

  if (i_first < nq) {
    const int kvalid = min(Bc, Tk - k0);
    const int h = blockIdx.y / p.splits;  // the key/value head
    const E* gk = static_cast<const E*>(p.k) + b * p.sk.b + h * p.sk.h + k0 * p.sk.t;
    const E* gv = static_cast<const E*>(p.v) + b * p.sv.b + h * p.sv.h + k0 * p.sv.t;
    auto at = [](int r, int d) { return Offsets<typename T::LayoutKV>{}(r, d); };
    load_rows_at<Bc, D>(sh.k.data(), at, gk, p.sk.t, kvalid, tid);
    load_rows_at<Bc, D>(sh.v.data(), at, gv, p.sv.t, kvalid, tid);
    load_query_block(0, 0);  // one group: K, V and the first query block

    // operand views (descriptors over shared memory)
    Tensor tSrK = thr_sdp.partition_fragment_A(sK);    // (MMA, 1, D/16)
    Tensor tSrV = thr_sdp.partition_fragment_A(sV);
    Tensor tSrQ = thr_sdp.partition_fragment_B(sQ);    // (MMA, 1, D/16, stage)
    Tensor tSrdO = thr_sdp.partition_fragment_B(sdO);
    Tensor tdVrdOt = thr_dkv.partition_fragment_B(sdOt);  // (MMA, 1, Br/16, stage)
    Tensor tdKrQt = thr_dkv.partition_fragment_B(sQt);
    Tensor tdQrdS = thr_dq.partition_fragment_A(sdS);   // (MMA, 1, Bc/16)
    Tensor tdQrKt = thr_dq.partition_fragment_B(sKt);
    // (key, query) and (query, d) of each accumulator element
    Tensor cS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
    Tensor cdQ = thr_dq.partition_C(make_identity_tensor(Shape<Int<Br>, Int<D>>{}));

    for (int n = 0; n < steps; ++n) {
      const int s = n & 1;
      const int q0 = query_block(n) * Br;
      cp_async_wait_all();
      fence_async_shared();
      if constexpr (kBulkDq) {
        if (tid == 0) bulk_wait_read();  // step i-1's dQ tile read out before anyone writes it again
      }
      __syncthreads();  // stage s landed for everyone; everyone is done with step i-1 (stage s^1, dS)
      if (n + 1 < steps) load_query_block(n + 1, s ^ 1);

      Tensor accS = partition_fragment_C(mma_sdp, Shape<Int<Bc>, Int<Br>>{});  // ((2, 2, Br/8), 1, 1)
      Tensor accdP = partition_fragment_C(mma_sdp, Shape<Int<Bc>, Int<Br>>{});
      gemm<true>(mma_sdp, tSrK, tSrQ(_, _, _, s), accS);
      gemm<true>(mma_sdp, tSrV, tSrdO(_, _, _, s), accdP);

      // P^T in place while dP^T is still in flight (two batches committed: wait until one is left);
      // masked only where a key past Tk, a query past Tq or the diagonal lies
      const bool masked = (p.causal && k0 + Bc - 1 > q0) || q0 + Br > Tq || k0 + Bc > Tk;
      const float* lse = sh.lse[s];
      const float* dsum = sh.dsum[s];
      warpgroup_wait<1>();
      warpgroup_fence_operand(accS);
      auto softmax = [&](auto mask) {
        CUTE_UNROLL
        for (int e = 0; e < size(accS); ++e) {
          const int key = get<0>(cS(e)), query = get<1>(cS(e));
          float pv = exp2f(accS(e) * p.scale_log2 - lse[query] * kLog2e);
          if constexpr (decltype(mask)::value) {
            const int gk_ = k0 + key, gq_ = q0 + query;
            if (gk_ >= Tk || gq_ >= Tq || (p.causal && gk_ > gq_)) pv = 0.f;
          }
          accS(e) = pv;
        }
      };
      if (masked) softmax(cute::true_type{});
      else softmax(cute::false_type{});
      warpgroup_wait<0>();
      warpgroup_fence_operand(accdP);
      // dS^T = P^T o (dP^T - Dsum) (masked entries have P = 0)
      CUTE_UNROLL
      for (int e = 0; e < size(accdP); ++e) accdP(e) = accS(e) * (accdP(e) - dsum[get<1>(cS(e))]);
      Tensor rP = to_16bit<E>(accS);
      Tensor rdS = to_16bit<E>(accdP);

      // the accumulator's values in the order of the register A operand over Br/16 k blocks (see
      // backward_kernel: the same flat order, cute's CLayout_64xN and ALayout_64x16)
      using ALayout = Layout<Shape<Shape<_2, _2, _2>, _1, Int<Br / 16>>, Stride<Stride<_1, _2, _4>, _0, _8>>;
      static_assert(size(decltype(rP.layout()){}) == size(ALayout{}), "P^T fragment as the A operand");
      static_assert(is_same_v<decltype(shape(rP.layout())), decltype(shape(Layout<Shape<Shape<_2, _2, Int<Br / 8>>, _1, _1>>{}))>,
                    "accumulator layout ((2, 2, Br/8), 1, 1)");
      Tensor tdVrP = make_tensor(rP.data(), ALayout{});
      Tensor tdKrdS = make_tensor(rdS.data(), ALayout{});
      static_assert(size<2>(decltype(tdVrdOt(_, _, _, 0)){}) == Br / 16, "dV's k blocks");

      warpgroup_fence_operand(rP);
      warpgroup_fence_operand(rdS);
      gemm<false>(mma_dkv, tdVrP, tdVrdOt(_, _, _, s), accdV);
      gemm<false>(mma_dkv, tdKrdS, tdKrQt(_, _, _, s), accdK);

      // dS (both warp groups' keys) through shared memory for dQ: values 2j, 2j + 1 of the
      // accumulator are queries n, n + 1 (n even) of one key, neighbours in the query-major dS (the
      // swizzle moves 16-byte units), so one 4-byte store a pair, at an element offset (Offsets<>)
      {
        Tensor rdS32 = recast<uint32_t>(rdS);
        E* dS = sh.dS.data();
        CUTE_UNROLL
        for (int j = 0; j < size(rdS32); ++j) {
          const auto kq = cS(2 * j);
          *reinterpret_cast<uint32_t*>(dS + Offsets<typename T::LayoutdSt>{}(get<0>(kq), get<1>(kq))) = rdS32(j);
        }
      }
      fence_async_shared();
      __syncthreads();
      Tensor accdQ = partition_fragment_C(mma_dq, Shape<Int<Br>, Int<D>>{});
      gemm<true>(mma_dq, tdQrdS, tdQrKt, accdQ);
      warpgroup_wait<0>();
      warpgroup_fence_operand(rP);
      warpgroup_fence_operand(rdS);

      // dQ_i += dS K_j: pairs of neighbouring columns, one 8-byte reduction each
      static_assert(size<1>(decltype(accdQ){}) == 1 && size<2>(decltype(accdQ){}) == 1, "one atom per warp group");
      const int64_t bh = (int64_t)b * p.H + query_head(n);
      [[maybe_unused]] float* gdq = p.dq_acc + bh * Tq * D;
      CUTE_UNROLL
      for (int e = 0; e < size(accdQ); e += 2) {
        if constexpr (kBulkDq) {
          dq_tile[e / 2 * kThreads + tid] = make_float2(accdQ(e), accdQ(e + 1));
        } else {
          const int query = q0 + get<0>(cdQ(e)), d = get<1>(cdQ(e));
          if (query < Tq) atomicAdd(reinterpret_cast<float2*>(gdq + (int64_t)query * D + d), make_float2(accdQ(e), accdQ(e + 1)));
        }
      }
      if constexpr (kBulkDq) {
        fence_async_shared();  // the tile's st.shared visible to the bulk copy's (async proxy) reads
        __syncthreads();
        if (tid == 0)
          bulk_reduce_add_f32(p.dq_acc + (bh * nq + query_block(n)) * (int64_t)TiledDq<E, D>::kFloats,
                              reinterpret_cast<const float*>(dq_tile), TiledDq<E, D>::kFloats * sizeof(float));
      }
    }
    if constexpr (kBulkDq) {
      if (tid == 0) bulk_wait_all();  // the last tile read (and added) before the CTA's shared memory goes
    }
  }

  // dK_j, dV_j summed over the group's query heads (or this split's share)
  Tensor cKV = thr_dkv.partition_C(make_identity_tensor(Shape<Int<Bc>, Int<D>>{}));
  store_dkv<E, D>(p, accdK, accdV, cKV, k0, Tk, b, blockIdx.y / p.splits, gridDim.y / p.splits, blockIdx.y % p.splits);
}

}  // namespace vt_fmha::wgmma_bwd

// One head dim's zero-spill backward (VT_HOPPER_BWD=wgmma2), bfloat16 and float16
// and with dQ's bulk reduce-add (VT_HOPPER_BWD=wgmma3)
#define VT_WGMMA2_BACKWARD(D)                                                                                     \
  void vt_fmha::backward_wgmma2_d##D(vt::Call& c, const Backward& b) {                                            \
    if (b.p.fp16) wgmma_bwd::run<cutlass::half_t, D, wgmma_bwd::backward_kernel2<cutlass::half_t, D, false>>(c, b); \
    else wgmma_bwd::run<cutlass::bfloat16_t, D, wgmma_bwd::backward_kernel2<cutlass::bfloat16_t, D, false>>(c, b);  \
  }                                                                                                                \
  void vt_fmha::backward_wgmma3_d##D(vt::Call& c, const Backward& b) {                                            \
    using wgmma_bwd::backward_kernel2;                                                                             \
    if (b.p.fp16) wgmma_bwd::run<cutlass::half_t, D, backward_kernel2<cutlass::half_t, D, true>, true>(c, b);     \
    else wgmma_bwd::run<cutlass::bfloat16_t, D, backward_kernel2<cutlass::bfloat16_t, D, true>, true>(c, b);      \
  }
