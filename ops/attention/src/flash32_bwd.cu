// flash32_bwd.cu — the float32 backward of provider "flash" on CUDA: FlashAttention-2's recomputing
// backward in float32 with FFMA on CUDA cores, deterministic (no atomics: dQ has a pass of its
// own). Launched by sdpa_backward_flash_cuda (flash_bwd.cu) after its prepass (flash_bwd_prepass
// <float>: delta = rowsum(dO * O) - grad_lse, lse2 = lse * log2(e), padded per (b, h) to 64 rows).
// Not here: the tile layout and the product (flash32.cuh), the 16-bit kernels (flash_bwd.cu).
//
// Both kernels: 256 threads in flash32.cuh's 16 x 16 layout, blocks of 64 rows, everything through
// shared memory in plain loads (occupancy hides the latency; no cp.async pipeline).
//   dK, dV   one CTA = one (b, kv head) and 64 keys (K^T, V^T resident); for each query head of the
//            kv head's group (grouped-query attention; else the one head) and each block of 64
//            queries (causal: i >= j0): Q^T, Q, dO^T, dO ->
//              S^T = K Q^T;  P^T = exp2(x - lse2_i);  dP^T = V dO^T
//              dS^T = P^T * (dP^T * keep / (1 - p) - delta_i);  Pd = P^T * keep / (1 - p)
//              Pd -> shared (as (i, j));  dV += Pd^T-product with dO;  dS -> shared;  dK += with Q
//   dQ       one CTA = one (b, h) and 64 queries (Q^T, dO^T resident); for each block of 64 keys of
//            kv head h / group (causal: j < i0 + 64): K^T, V^T, K ->
//              S = Q K^T;  P = exp2(x - lse2_i);  dP = dO V^T;  dS = P * (dP * keep / (1 - p) - delta_i)
//              dS -> shared (as (j, i));  dQ += dS K
// dK and dQ are scaled at the end. Instantiated for D in {32, 64, 128}; causal, mask, dropout run-time.
#include "flash32.cuh"

namespace flashcu {

template <int D>
constexpr size_t dkdv32_smem() {
  return sizeof(float) * ((size_t)6 * f32::kRows * D + (size_t)f32::kRows * f32::kRows);
}
template <int D>
constexpr size_t dq32_smem() {
  return sizeof(float) * ((size_t)5 * f32::kRows * D + (size_t)f32::kRows * f32::kRows);
}

// P^T (into pd) and dS^T (into ds) of a score tile of this thread: rows r are keys j (dK/dV) or
// queries i (dQ) — `keys_are_rows` says which; L and Dl are the statistics of the 4 query rows or
// columns of this thread.
__device__ __forceinline__ void probs_and_grads(float (&pd)[4][4], float (&ds)[4][4], const BwdParams& p,
                                                bool per_element, bool keys_are_rows, int rbase, int cbase,
                                                const float (&L)[4], const float (&Dl)[4], int64_t mb, int bh,
                                                uint64_t seed, uint64_t offset) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = keys_are_rows ? cbase + c : rbase + r, j = keys_are_rows ? rbase + r : cbase + c;
      const int qi = keys_are_rows ? c : r;  // which statistic
      float x;
      if (!per_element) x = pd[r][c] * p.scale_log2;
      else if (i >= p.Tq || j >= p.Tk) x = -INFINITY;
      else x = masked_score(pd[r][c], p.scale_log2, p.mask, mb, i, j, p.causal);
      const float P = exp2f(x - L[qi]);
      float dp = ds[r][c], pk = P;
      if (p.drop.on) {
        const bool keep =
            i < p.Tq && j < p.Tk && keep1(seed, offset, ((uint64_t)bh * p.Tq + i) * p.Tk + j, p.drop.thr);
        dp = keep ? dp * p.drop.rs : 0.f;
        pk = keep ? P * p.drop.rs : 0.f;
      }
      ds[r][c] = P * (dp - Dl[qi]);
      pd[r][c] = pk;
    }
  }
}

template <int D>
__global__ void __launch_bounds__(f32::kThreads, f32::kBwdCtas<D>) flash_bwd32_dkdv_kernel(const BwdParams p) {
  using namespace f32;
  const uint64_t seed = p.drop.on ? drop_seed(p) : 0, offset = p.drop.on ? drop_offset(p) : 0;
  float* sKt = reinterpret_cast<float*>(dynamic_smem());  // (d, j)
  float* sVt = sKt + D * kRows;                           // (d, j)
  float* sQt = sVt + D * kRows;                           // (d, i)
  float* sQ = sQt + D * kRows;                            // (i, d)
  float* sOt = sQ + kRows * D;                            // dO (d, i)
  float* sO = sOt + D * kRows;                            // dO (i, d)
  float* sP = sO + kRows * D;                             // (i, j): Pd, then dS
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;

  // slot = the CTA's share of a kv head: query heads slot * G .. + G - 1 (kv head slot / kv_split)
  const int G = p.group / p.kv_split, slots = p.H / G;
  const int bs = blockIdx.x % (p.BH / G), kb = (int)(blockIdx.x / (p.BH / G));
  const int b = bs / slots, slot = bs % slots;
  const int j0 = kb * kRows;
  const float* k = head_of<float>(p.k, b, slot / p.kv_split);
  const float* v = head_of<float>(p.v, b, slot / p.kv_split);

  const int nq = (p.Tq + kRows - 1) / kRows;
  const int qb0 = p.causal ? j0 / kRows : 0;  // queries i < j0 keep no key of this block
  const int nqs = (nq > qb0 ? nq - qb0 : 0);           // query blocks a query head of the group brings
  load_t<D>(sKt, k, p.k.st, j0, p.Tk);
  load_t<D>(sVt, v, p.v.st, j0, p.Tk);

  float dk[4][D / 16], dv[4][D / 16];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < D / 16; ++c) dk[r][c] = dv[r][c] = 0.f;

  for (int step = 0; step < nqs * G; ++step) {
    const int h = slot * G + step / nqs, bh = b * p.H + h, i0 = (qb0 + step % nqs) * kRows;
    const float* q = head_of<float>(p.q, b, h);
    const float* go = head_of<float>(p.dout, b, h);
    const float* lse2 = p.lse2 + (int64_t)bh * p.Tq_pad;
    const float* delta = p.delta + (int64_t)bh * p.Tq_pad;
    const int64_t mb = b * p.mask.sb + h * p.mask.sh;
    __syncthreads();  // every thread is done with the previous block's tiles
    load_t<D>(sQt, q, p.q.st, i0, p.Tq);
    load_r<D>(sQ, q, p.q.st, i0, p.Tq);
    load_t<D>(sOt, go, p.dout.st, i0, p.Tq);
    load_r<D>(sO, go, p.dout.st, i0, p.Tq);
    __syncthreads();

    float pt[4][4], dpt[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) pt[r][c] = dpt[r][c] = 0.f;
    mm<D, kRows>(pt, sKt, sQt, ty, tx);   // S^T (keys x queries)
    mm<D, kRows>(dpt, sVt, sOt, ty, tx);  // dP^T

    // statistics of this thread's 4 query columns (padded rows: lse2 +inf, delta 0)
    const float4 l4 = ld4(lse2 + i0 + 4 * tx), d4 = ld4(delta + i0 + 4 * tx);
    const float L[4] = {l4.x, l4.y, l4.z, l4.w}, Dl[4] = {d4.x, d4.y, d4.z, d4.w};
    const bool per_element = p.mask.kind != kNoMask || (p.causal && j0 + kRows - 1 > i0) || i0 + kRows > p.Tq ||
                             j0 + kRows > p.Tk;
    probs_and_grads(pt, dpt, p, per_element, true, j0 + 4 * ty, i0 + 4 * tx, L, Dl, mb, bh, seed, offset);

    store_t(sP, pt, ty, tx);  // (k = i, n = j)
    __syncthreads();
    mm<kRows, D>(dv, sP, sO, ty, tx);  // dV += Pd^T dO
    __syncthreads();
    store_t(sP, dpt, ty, tx);
    __syncthreads();
    mm<kRows, D>(dk, sP, sQ, ty, tx);  // dK += dS^T Q
  }

  f32::store_rows<D>(head_of<float>(p.dk, b, slot), p.dk.st, dk, p.scale, j0, p.Tk, ty, tx);
  f32::store_rows<D>(head_of<float>(p.dv, b, slot), p.dv.st, dv, 1.f, j0, p.Tk, ty, tx);
}

template <int D>
__global__ void __launch_bounds__(f32::kThreads, f32::kBwdCtas<D>) flash_bwd32_dq_kernel(const BwdParams p) {
  using namespace f32;
  const uint64_t seed = p.drop.on ? drop_seed(p) : 0, offset = p.drop.on ? drop_offset(p) : 0;
  float* sQt = reinterpret_cast<float*>(dynamic_smem());  // (d, i)
  float* sOt = sQt + D * kRows;                           // dO (d, i)
  float* sKt = sOt + D * kRows;                           // (d, j)
  float* sVt = sKt + D * kRows;                           // (d, j)
  float* sK = sVt + D * kRows;                            // (j, d)
  float* sS = sK + kRows * D;                             // dS (j, i)
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;

  const int nqb = (p.Tq + kRows - 1) / kRows;
  const int bh = blockIdx.x % p.BH, qb = nqb - 1 - (int)(blockIdx.x / p.BH);  // heaviest first
  const int b = bh / p.H, h = bh % p.H;
  const int i0 = qb * kRows;
  const float* q = head_of<float>(p.q, b, h);
  const float* k = head_of<float>(p.k, b, h / p.group);
  const float* v = head_of<float>(p.v, b, h / p.group);
  const float* go = head_of<float>(p.dout, b, h);
  const int64_t mb = b * p.mask.sb + h * p.mask.sh;

  const int kend = p.causal ? min(p.Tk, i0 + kRows) : p.Tk;
  const int nkb = (kend + kRows - 1) / kRows;
  load_t<D>(sQt, q, p.q.st, i0, p.Tq);
  load_t<D>(sOt, go, p.dout.st, i0, p.Tq);

  // statistics of this thread's 4 query rows (< Tq_pad)
  float L[4], Dl[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    L[r] = p.lse2[(int64_t)bh * p.Tq_pad + i0 + 4 * ty + r];
    Dl[r] = p.delta[(int64_t)bh * p.Tq_pad + i0 + 4 * ty + r];
  }
  float dq[4][D / 16];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < D / 16; ++c) dq[r][c] = 0.f;

  for (int kb = 0; kb < nkb; ++kb) {
    const int j0 = kb * kRows;
    __syncthreads();  // every thread is done with the previous block's tiles
    load_t<D>(sKt, k, p.k.st, j0, p.Tk);
    load_t<D>(sVt, v, p.v.st, j0, p.Tk);
    load_r<D>(sK, k, p.k.st, j0, p.Tk);
    __syncthreads();

    float s[4][4], ds[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[r][c] = ds[r][c] = 0.f;
    mm<D, kRows>(s, sQt, sKt, ty, tx);   // S
    mm<D, kRows>(ds, sOt, sVt, ty, tx);  // dP
    const bool per_element = p.mask.kind != kNoMask || (p.causal && j0 + kRows - 1 > i0) || i0 + kRows > p.Tq ||
                             j0 + kRows > p.Tk;
    probs_and_grads(s, ds, p, per_element, false, i0 + 4 * ty, j0 + 4 * tx, L, Dl, mb, bh, seed, offset);

    store_t(sS, ds, ty, tx);  // (k = j, n = i)
    __syncthreads();
    mm<kRows, D>(dq, sS, sK, ty, tx);  // dQ += dS K
  }

  f32::store_rows<D>(head_of<float>(p.dq, b, h), p.dq.st, dq, p.scale, i0, p.Tq, ty, tx);
}

#ifndef FLASH_EMULATE
template <int D>
static void launch_bwd32_d(const vt::Call& c, const BwdParams& p) {
  constexpr size_t s1 = dkdv32_smem<D>(), s2 = dq32_smem<D>();
  allow_smem(c, flash_bwd32_dkdv_kernel<D>, s1);
  allow_smem(c, flash_bwd32_dq_kernel<D>, s2);
  const unsigned nkb = (unsigned)((p.Tk + f32::kRows - 1) / f32::kRows);
  const unsigned nqb = (unsigned)((p.Tq + f32::kRows - 1) / f32::kRows);
  const unsigned slots = (unsigned)(p.BH / p.group * p.kv_split);  // dK/dV: kv_split CTAs a kv head and key block
  vt::cuda::launch(c, "flash_bwd32_dkdv_kernel", flash_bwd32_dkdv_kernel<D>, dim3(nkb * slots),
                   dim3(f32::kThreads), s1, p);
  vt::cuda::launch(c, "flash_bwd32_dq_kernel", flash_bwd32_dq_kernel<D>, dim3(nqb * (unsigned)p.BH),
                   dim3(f32::kThreads), s2, p);
}

void launch_bwd32(const vt::Call& c, const BwdParams& p) {
  switch (p.D) {  // what takes() admits: 32, 64, 128
    case 32: return launch_bwd32_d<32>(c, p);
    case 64: return launch_bwd32_d<64>(c, p);
    default: return launch_bwd32_d<128>(c, p);
  }
}
#endif  // FLASH_EMULATE

}  // namespace flashcu
