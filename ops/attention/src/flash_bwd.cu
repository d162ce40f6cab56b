// flash_bwd.cu — the CUDA compute of attention::sdpa_backward for provider "flash": FlashAttention-2's
// recomputing backward on tensor cores (mma.sync m16n8k16 with ldmatrix, sm80+), deterministic (no
// float atomics: dQ has a pass of its own over query blocks).
// Not here: the shared primitives and what the kernels take (flash_cuda.cuh), the forward
// (flash_fwd.cu), the meta step and registration (pack.cpp), the CPU backward (flash.cpp).
//
// Three kernels on the call's stream (scale folded into log2 units: x = s * scale * log2(e)):
//   prepass   per query row: delta_i = rowsum(dO * O)_i - grad_lse_i, lse2_i = lse_i * log2(e)
//             (+inf where lse is -inf: a fully masked row then recomputes P = 0), written padded
//             per (b, h) to a multiple of 64 rows (delta 0, lse2 +inf past Tq)
//   dK, dV    one CTA = one (b, kv head) and a block of 64 keys (4 warps x 16 keys, dK and dV in
//             registers); for each query head of the kv head's group (one without grouped-query
//             attention; a share of it when kv_split_for splits a small grid, summed after) and
//             each block of BQ queries (causal: only i >= j0), through a double-buffered cp.async
//             pipeline for Q, dO, lse2, delta:
//               S^T = K Q^T;  P^T = exp2(x - lse2_i);  Pd = P^T * keep / (1 - p)
//               dV += Pd dO;  dP^T = V dO^T;  dS^T = P^T * (dP^T * keep / (1 - p) - delta_i)
//               dK += dS^T Q                                      (dK *= scale at the end)
//   dQ        one CTA = one (b, h) and a block of 64 queries (4 warps x 16 queries); for each block
//             of 64 keys of kv head h / group (causal: j < i0 + 64), K and V double-buffered:
//               S = Q K^T;  P = exp2(x - lse2_i);  dP = dO V^T;  dS = P * (dP * keep / (1 - p) - delta_i)
//               dQ += dS K                                         (dQ *= scale at the end)
// The dropout keep rule is attn.hpp's, at the (seed, offset) the forward recorded: launch arguments,
// or read on the device from the forward's rng tensor (graph-safe: the host never waits for it).
// Instantiated for {bfloat16, float16} x D {32, 64, 128}; causal is a run-time flag.
#include "flash_cuda.cuh"

namespace flashcu {


// ---- prepass: one warp per (b, h, i) row of the padded statistics ----------------------------------
constexpr int kPrepassWarps = 8;

template <class T>
__global__ void __launch_bounds__(32 * kPrepassWarps) flash_bwd_prepass(const BwdParams p) {
  const int64_t row = (int64_t)blockIdx.x * kPrepassWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= (int64_t)p.BH * p.Tq_pad) return;
  const int bh = (int)(row / p.Tq_pad), i = (int)(row % p.Tq_pad);
  if (i >= p.Tq) {
    if (lane == 0) p.lse2[row] = INFINITY, p.delta[row] = 0.f;
    return;
  }
  const int b = bh / p.H, h = bh % p.H;
  const T* o = static_cast<const T*>(p.o) + b * p.o_sb + h * p.o_sh + i * p.o_st;
  const T* g = head_of<T>(p.dout, b, h) + i * p.dout.st;
  float s = 0.f;
  for (int d = lane; d < p.D; d += 32) s += static_cast<float>(g[d]) * static_cast<float>(o[d * p.o_sd]);
#pragma unroll
  for (int w = 16; w > 0; w >>= 1) s += __shfl_xor_sync(0xffffffffu, s, w);
  if (lane == 0) {
    const float L = p.lse[b * p.l_sb + h * p.l_sh + i * p.l_st];
    p.lse2[row] = L == -INFINITY ? INFINITY : L * kLog2e;
    p.delta[row] = s - (p.glse ? p.glse[b * p.g_sb + h * p.g_sh + i * p.g_st] : 0.f);
  }
}

// ---- dK, dV ------------------------------------------------------------------------------------------
template <class T, int D>
constexpr size_t dkdv_smem() {
  constexpr int BQ = kBwdQueries<D>;
  return sizeof(T) * (size_t)(2 * kRowsPerCta + 4 * BQ) * D + sizeof(float) * 4 * BQ;
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, kDkdvMinCtas<D>) flash_bwd_dkdv_kernel(const BwdParams p) {
  const uint64_t seed = p.drop.on ? drop_seed(p) : 0, offset = p.drop.on ? drop_offset(p) : 0;
  constexpr int BQ = kBwdQueries<D>;
  constexpr int NT = BQ / 8;  // n-tiles of a score tile (16 keys x BQ queries a warp)
  unsigned char* smem = dynamic_smem();
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + kRowsPerCta * D;
  T* sQ = sV + kRowsPerCta * D;  // [2][BQ * D]
  T* sO = sQ + 2 * BQ * D;       // [2][BQ * D]: dO
  float* sL = reinterpret_cast<float*>(sO + 2 * BQ * D);  // [2][BQ]: lse2
  float* sDl = sL + 2 * BQ;                               // [2][BQ]: delta
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // causal: the first key blocks see the most queries, so they go first. slot = the CTA's share of
  // a kv head: query heads slot * G .. + G - 1 (kv head slot / kv_split), dk/dv head slot
  const int G = p.group / p.kv_split, slots = p.H / G;
  const int bs = blockIdx.x % (p.BH / G), kb = (int)(blockIdx.x / (p.BH / G));
  const int b = bs / slots, slot = bs % slots;
  const int j0 = kb * kRowsPerCta;
  const T* k = head_of<T>(p.k, b, slot / p.kv_split);
  const T* v = head_of<T>(p.v, b, slot / p.kv_split);

  // steps: (query head slot * G + g, query block qb) for g < G, qb from qb0 (causal: queries
  // i < j0 keep no key of this block), one pipeline over all of them
  const int nq = (p.Tq + BQ - 1) / BQ;
  const int qb0 = p.causal ? j0 / BQ : 0;
  const int nqs = (nq > qb0 ? nq - qb0 : 0), nsteps = nqs * G;
  auto head_at = [&](int step) { return slot * G + step / nqs; };
  auto load_queries = [&](int buf, int step) {
    const int h = head_at(step), i0 = (qb0 + step % nqs) * BQ;
    const int64_t stats = ((int64_t)b * p.H + h) * p.Tq_pad + i0;
    load_tile<T, BQ, D>(sQ + buf * BQ * D, head_of<T>(p.q, b, h), p.q.st, i0, p.Tq);
    load_tile<T, BQ, D>(sO + buf * BQ * D, head_of<T>(p.dout, b, h), p.dout.st, i0, p.Tq);
    // padded statistics: BQ floats each, 16 bytes a thread (i0 + BQ <= Tq_pad)
    if (tid < BQ / 4) cp_async16(sL + buf * BQ + tid * 4, p.lse2 + stats + tid * 4, true);
    else if (tid < BQ / 2) cp_async16(sDl + buf * BQ + (tid - BQ / 4) * 4, p.delta + stats + (tid - BQ / 4) * 4, true);
  };
  load_tile<T, kRowsPerCta, D>(sK, k, p.k.st, j0, p.Tk);
  load_tile<T, kRowsPerCta, D>(sV, v, p.v.st, j0, p.Tk);
  if (nsteps > 0) load_queries(0, 0);
  cp_async_commit();

  const int ja = j0 + warp * 16 + lane / 4, jb = ja + 8;  // this thread's key rows
  const int c0 = 2 * (lane % 4);                          // and query columns within an n-tile
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.f;

  for (int step = 0; step < nsteps; ++step) {
    const int buf = step & 1, h = head_at(step), i0 = (qb0 + step % nqs) * BQ;
    const int bh = b * p.H + h;  // the query head's (b, h): the dropout's element index
    const int64_t mb = b * p.mask.sb + h * p.mask.sh;
    cp_async_wait_all();
    __syncthreads();  // this block's queries visible; every warp is done with the other buffer
    if (step + 1 < nsteps) load_queries(buf ^ 1, step + 1);
    cp_async_commit();
    const T* tQ = sQ + buf * BQ * D;
    const T* tO = sO + buf * BQ * D;
    const float* L = sL + buf * BQ;
    const float* Dl = sDl + buf * BQ;

    // S^T = K Q^T (16 keys x BQ queries a warp)
    float st[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) st[nt][0] = st[nt][1] = st[nt][2] = st[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4];
      ldmatrix_x4(ka, a_addr<D>(sK, warp * 16, kk, lane));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, bn_addr<D>(tQ, np * 16, kk, lane));
        mma16816<T>(st[2 * np], ka, bf[0], bf[1]);
        mma16816<T>(st[2 * np + 1], ka, bf[2], bf[3]);
      }
    }

    // P^T = exp2(x - lse2_i); padding (i >= Tq, j >= Tk) gives 0; keep bits of the dropout
    const bool per_element = p.mask.kind != kNoMask || (p.causal && j0 + kRowsPerCta - 1 > i0) ||
                             i0 + BQ > p.Tq || j0 + kRowsPerCta > p.Tk;
    uint32_t keep = 0xffffffffu;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ic = nt * 8 + c0 + (e & 1), i = i0 + ic, j = e < 2 ? ja : jb;
        float x;
        if (!per_element) x = st[nt][e] * p.scale_log2;
        else if (i >= p.Tq || j >= p.Tk) x = -INFINITY;
        else x = masked_score(st[nt][e], p.scale_log2, p.mask, mb, i, j, p.causal);
        st[nt][e] = exp2f(x - L[ic]);
        if (p.drop.on && i < p.Tq && j < p.Tk &&
            !keep1(seed, offset, ((uint64_t)bh * p.Tq + i) * p.Tk + j, p.drop.thr))
          keep &= ~(1u << (nt * 4 + e));
      }
    }

    // dV += Pd dO: Pd as A fragments (k = queries), dO rows are k (ldmatrix .trans)
#pragma unroll
    for (int kq = 0; kq < BQ / 16; ++kq) {
      float pd[2][4];
#pragma unroll
      for (int t = 0; t < 2; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int nt = 2 * kq + t;
          pd[t][e] = !p.drop.on ? st[nt][e] : (keep >> (nt * 4 + e)) & 1u ? st[nt][e] * p.drop.rs : 0.f;
        }
      uint32_t pa[4];
      pack_a<T>(pa, pd[0], pd[1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bt_addr<D>(tO, kq * 16, np, lane));
        mma16816<T>(dv[2 * np], pa, bf[0], bf[1]);
        mma16816<T>(dv[2 * np + 1], pa, bf[2], bf[3]);
      }
    }

    // dP^T = V dO^T
    float dpt[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) dpt[nt][0] = dpt[nt][1] = dpt[nt][2] = dpt[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t va[4];
      ldmatrix_x4(va, a_addr<D>(sV, warp * 16, kk, lane));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, bn_addr<D>(tO, np * 16, kk, lane));
        mma16816<T>(dpt[2 * np], va, bf[0], bf[1]);
        mma16816<T>(dpt[2 * np + 1], va, bf[2], bf[3]);
      }
    }

    // dS^T = P^T * (dP^T * keep / (1 - p) - delta_i), in place of dP^T
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ic = nt * 8 + c0 + (e & 1);
        float dp = dpt[nt][e];
        if (p.drop.on) dp = (keep >> (nt * 4 + e)) & 1u ? dp * p.drop.rs : 0.f;
        dpt[nt][e] = st[nt][e] * (dp - Dl[ic]);
      }
    }

    // dK += dS^T Q: dS^T as A fragments (k = queries), Q rows are k (ldmatrix .trans)
#pragma unroll
    for (int kq = 0; kq < BQ / 16; ++kq) {
      uint32_t da[4];
      pack_a<T>(da, dpt[2 * kq], dpt[2 * kq + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bt_addr<D>(tQ, kq * 16, np, lane));
        mma16816<T>(dk[2 * np], da, bf[0], bf[1]);
        mma16816<T>(dk[2 * np + 1], da, bf[2], bf[3]);
      }
    }
  }
  cp_async_wait_all();
  __syncthreads();  // every copy landed (also when no query block ran); only own rows are rewritten below

  // epilogue through the warp's own rows of sK / sV (only this warp read them, as A fragments)
  store_frag<T, D>(sK, dk, p.scale, warp * 16, lane);
  store_frag<T, D>(sV, dv, 1.f, warp * 16, lane);
  __syncwarp();
  store_rows<T, D>(sK, head_of<T>(p.dk, b, slot), p.dk.st, j0, p.Tk, warp * 16, lane);
  store_rows<T, D>(sV, head_of<T>(p.dv, b, slot), p.dv.st, j0, p.Tk, warp * 16, lane);
}

// ---- dQ ------------------------------------------------------------------------------------------------
template <class T, int D>
constexpr size_t dq_smem() {
  return sizeof(T) * (size_t)(2 * kRowsPerCta + 4 * kKeys) * D;
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_bwd_dq_kernel(const BwdParams p) {
  const uint64_t seed = p.drop.on ? drop_seed(p) : 0, offset = p.drop.on ? drop_offset(p) : 0;
  constexpr int NT = kKeys / 8;
  unsigned char* smem = dynamic_smem();
  T* sQ = reinterpret_cast<T*>(smem);
  T* sO = sQ + kRowsPerCta * D;  // dO
  T* sK = sO + kRowsPerCta * D;  // [2][kKeys * D]
  T* sV = sK + 2 * kKeys * D;    // [2][kKeys * D]
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  const int nqb = (p.Tq + kRowsPerCta - 1) / kRowsPerCta;
  const int bh = blockIdx.x % p.BH, qb = nqb - 1 - (int)(blockIdx.x / p.BH);  // heaviest first
  const int b = bh / p.H, h = bh % p.H;
  const int i0 = qb * kRowsPerCta;
  const T* q = head_of<T>(p.q, b, h);
  const T* k = head_of<T>(p.k, b, h / p.group);
  const T* v = head_of<T>(p.v, b, h / p.group);
  const T* go = head_of<T>(p.dout, b, h);
  const int64_t mb = b * p.mask.sb + h * p.mask.sh;

  const int kend = p.causal ? min(p.Tk, i0 + kRowsPerCta) : p.Tk;
  const int nkb = (kend + kKeys - 1) / kKeys;
  load_tile<T, kRowsPerCta, D>(sQ, q, p.q.st, i0, p.Tq);
  load_tile<T, kRowsPerCta, D>(sO, go, p.dout.st, i0, p.Tq);
  if (nkb > 0) {
    load_tile<T, kKeys, D>(sK, k, p.k.st, 0, p.Tk);
    load_tile<T, kKeys, D>(sV, v, p.v.st, 0, p.Tk);
  }
  cp_async_commit();

  const int ia = i0 + warp * 16 + lane / 4, ib = ia + 8;  // this thread's query rows (< Tq_pad)
  const int c0 = 2 * (lane % 4);
  const float L[2] = {p.lse2[(int64_t)bh * p.Tq_pad + ia], p.lse2[(int64_t)bh * p.Tq_pad + ib]};
  const float Dl[2] = {p.delta[(int64_t)bh * p.Tq_pad + ia], p.delta[(int64_t)bh * p.Tq_pad + ib]};
  float dq[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) dq[nt][0] = dq[nt][1] = dq[nt][2] = dq[nt][3] = 0.f;

  for (int kb = 0; kb < nkb; ++kb) {
    const int buf = kb & 1, j0 = kb * kKeys;
    cp_async_wait_all();
    __syncthreads();  // this key block visible; every warp is done with the other buffer
    if (kb + 1 < nkb) {
      load_tile<T, kKeys, D>(sK + (buf ^ 1) * kKeys * D, k, p.k.st, j0 + kKeys, p.Tk);
      load_tile<T, kKeys, D>(sV + (buf ^ 1) * kKeys * D, v, p.v.st, j0 + kKeys, p.Tk);
    }
    cp_async_commit();
    const T* tK = sK + buf * kKeys * D;
    const T* tV = sV + buf * kKeys * D;

    // S = Q K^T (16 queries x 64 keys a warp)
    float s[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4];
      ldmatrix_x4(qa, a_addr<D>(sQ, warp * 16, kk, lane));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, bn_addr<D>(tK, np * 16, kk, lane));
        mma16816<T>(s[2 * np], qa, bf[0], bf[1]);
        mma16816<T>(s[2 * np + 1], qa, bf[2], bf[3]);
      }
    }

    // P = exp2(x - lse2_i); padding gives 0
    const bool per_element = p.mask.kind != kNoMask || (p.causal && j0 + kKeys - 1 > i0) ||
                             i0 + kRowsPerCta > p.Tq || j0 + kKeys > p.Tk;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e < 2 ? ia : ib, j = j0 + nt * 8 + c0 + (e & 1);
        float x;
        if (!per_element) x = s[nt][e] * p.scale_log2;
        else if (i >= p.Tq || j >= p.Tk) x = -INFINITY;
        else x = masked_score(s[nt][e], p.scale_log2, p.mask, mb, i, j, p.causal);
        s[nt][e] = exp2f(x - L[e >> 1]);
      }
    }

    // dP = dO V^T
    float dp[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t oa[4];
      ldmatrix_x4(oa, a_addr<D>(sO, warp * 16, kk, lane));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, bn_addr<D>(tV, np * 16, kk, lane));
        mma16816<T>(dp[2 * np], oa, bf[0], bf[1]);
        mma16816<T>(dp[2 * np + 1], oa, bf[2], bf[3]);
      }
    }

    // dS = P * (dP * keep / (1 - p) - delta_i), in place of dP
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int j = j0 + nt * 8 + c0;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = r ? ib : ia;
        float d0 = dp[nt][2 * r], d1 = dp[nt][2 * r + 1];
        if (p.drop.on && i < p.Tq && j < p.Tk) {
          bool k0 = true, k1 = true;
          const uint64_t e = ((uint64_t)bh * p.Tq + i) * p.Tk + j;
          if (j + 1 < p.Tk) keep2(seed, offset, e, p.drop.thr, k0, k1);
          else k0 = keep1(seed, offset, e, p.drop.thr);
          d0 = k0 ? d0 * p.drop.rs : 0.f;
          d1 = k1 ? d1 * p.drop.rs : 0.f;
        }
        dp[nt][2 * r] = s[nt][2 * r] * (d0 - Dl[r]);
        dp[nt][2 * r + 1] = s[nt][2 * r + 1] * (d1 - Dl[r]);
      }
    }

    // dQ += dS K: dS as A fragments (k = keys), K rows are k (ldmatrix .trans)
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t da[4];
      pack_a<T>(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bt_addr<D>(tK, kk * 16, np, lane));
        mma16816<T>(dq[2 * np], da, bf[0], bf[1]);
        mma16816<T>(dq[2 * np + 1], da, bf[2], bf[3]);
      }
    }
  }
  cp_async_wait_all();
  __syncthreads();

  store_frag<T, D>(sQ, dq, p.scale, warp * 16, lane);  // the warp's own rows of sQ
  __syncwarp();
  store_rows<T, D>(sQ, head_of<T>(p.dq, b, h), p.dq.st, i0, p.Tq, warp * 16, lane);
}

#ifndef FLASH_EMULATE  // the launchers and the compute (host side)
// The device's SM count (cached per device index; 0 when unknown).
int device_sm_count(int index) {
  static int cached[64] = {0};  // 0: not asked yet (a race only asks twice)
  if (index < 0 || index >= 64) return 0;
  if (cached[index] == 0) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, index) != cudaSuccess) {
      cudaGetLastError();
      n = -1;
    }
    cached[index] = n;
  }
  return cached[index] > 0 ? cached[index] : 0;
}

// CTAs a kv head and key block of the dK/dV kernels: 1 (the group summed in registers) unless
// B * Hkv * key blocks would leave most SMs idle (an SM holds 1-2 such CTAs), then the smallest
// divisor of the group that gives two CTAs an SM, or the group itself (every query head its own)
int kv_split_for(const attn::Dims& d, int sms) {
  const int64_t ctas = d.B * d.Hkv * ((d.Tk + kRowsPerCta - 1) / kRowsPerCta);
  int s = 1;
  while (s < d.group() && ctas * s < 2 * (int64_t)sms)
    do ++s; while (d.group() % s != 0);
  return s;
}

template <class T>
void launch_prepass(const vt::Call& c, const BwdParams& p) {
  const int64_t rows = (int64_t)p.BH * p.Tq_pad;
  vt::cuda::launch(c, "flash_bwd_prepass", flash_bwd_prepass<T>,
                   dim3((unsigned)((rows + kPrepassWarps - 1) / kPrepassWarps)), dim3(32 * kPrepassWarps), 0, p);
}

template <class T, int D>
void launch_bwd(const vt::Call& c, const BwdParams& p) {
  launch_prepass<T>(c, p);
  constexpr size_t s1 = dkdv_smem<T, D>(), s2 = dq_smem<T, D>();
  allow_smem(c, flash_bwd_dkdv_kernel<T, D>, s1);
  allow_smem(c, flash_bwd_dq_kernel<T, D>, s2);
  const unsigned nkb = (unsigned)((p.Tk + kRowsPerCta - 1) / kRowsPerCta);
  const unsigned nqb = (unsigned)((p.Tq + kRowsPerCta - 1) / kRowsPerCta);
  const unsigned slots = (unsigned)(p.BH / p.group * p.kv_split);  // dK/dV: kv_split CTAs a kv head and key block
  vt::cuda::launch(c, "flash_bwd_dkdv_kernel", flash_bwd_dkdv_kernel<T, D>, dim3(nkb * slots),
                   dim3(kThreads), s1, p);
  vt::cuda::launch(c, "flash_bwd_dq_kernel", flash_bwd_dq_kernel<T, D>, dim3(nqb * (unsigned)p.BH),
                   dim3(kThreads), s2, p);
}

#endif  // FLASH_EMULATE
}  // namespace flashcu

#ifndef FLASH_EMULATE
vt::KernelFn sdpa_backward_composed;  // composed.cpp: what the kernels do not take runs there

// Arguments checked and outputs (dq, dk, dv) made by the meta step (pack.cpp).
VT_COMPUTE(sdpa_backward_flash_cuda, "attention::sdpa_backward") {
  using namespace flashcu;
  const attn::SdpaBackwardArgs a(c);
  const attn::Dims d = attn::dims(a.q, a.k, a.v);
  if (!takes(a.q, d, c.ctx->device.index)) {
    const vt_status st = sdpa_backward_composed(c.ctx, c.args, c.nargs, c.outs, c.nouts);
    if (st != VT_OK) throw vt::Error(st);
    return;
  }
  vt::Tensor hq, hk, hv, hg, hm;
  BwdParams p{};
  p.q = operand(c, a.q, hq);
  p.k = operand(c, a.k, hk);
  p.v = operand(c, a.v, hv);
  p.dout = operand(c, a.go, hg);
  p.o = a.out->data;
  p.o_sb = a.out->strides[0], p.o_sh = a.out->strides[1], p.o_st = a.out->strides[2], p.o_sd = a.out->strides[3];
  p.lse = vt::data<const float>(a.lse);
  p.l_sb = a.lse->strides[0], p.l_sh = a.lse->strides[1], p.l_st = a.lse->strides[2];
  if (a.glse) {
    p.glse = vt::data<const float>(a.glse);
    p.g_sb = a.glse->strides[0], p.g_sh = a.glse->strides[1], p.g_st = a.glse->strides[2];
  }
  p.D = (int)d.D, p.H = (int)d.H, p.BH = (int)(d.B * d.H), p.Tq = (int)d.Tq, p.Tk = (int)d.Tk;
  p.group = (int)d.group();
  p.scale = (float)a.scale;
  p.scale_log2 = (float)(a.scale * 1.4426950408889634);
  p.causal = a.causal;
  p.mask = mask_of(c, a.mask, hm);
  const vt::ScalarType st = vt::scalar_type(a.q->dtype);
  const bool bf16 = st == vt::ScalarType::BFloat16;
  vt::Tensor scratch[3], parts[2];  // parts: dk, dv of each kv head's kv_split slots, summed after
  p.dq = dest(c, c.out(0), scratch[0]);
  if (short_takes(a.q, d, a.p, true)) {  // flash_short.cu: one kernel, no prepass, no statistics
    p.dk = dest(c, c.out(1), scratch[1]);
    p.dv = dest(c, c.out(2), scratch[2]);
    launch_short_bwd(c, p, (int)d.D, bf16);
    for (int i = 0; i < 3; ++i) finish_dest(c, c.out(i), scratch[i]);
    return;
  }
  p.kv_split = kv_split_for(d, device_sm_count(c.ctx->device.index));
  if (p.kv_split == 1) {
    p.dk = dest(c, c.out(1), scratch[1]);
    p.dv = dest(c, c.out(2), scratch[2]);
  } else {
    const int64_t psz[4] = {d.B, d.Hkv * p.kv_split, d.Tk, d.D};
    for (int i = 0; i < 2; ++i) {
      parts[i] = c.empty(psz, 4, a.q->dtype);
      (i ? p.dv : p.dk) = Dest{parts[i]->data, parts[i]->strides[0], parts[i]->strides[1], parts[i]->strides[2]};
    }
  }
  p.Tq_pad = (int)attn::round_up(d.Tq, kStatPad);
  const int64_t ssz[3] = {2, d.B * d.H, p.Tq_pad};
  vt::Tensor stats = c.empty(ssz, 3, vt::kFloat32);
  p.lse2 = vt::data<float>(stats);
  p.delta = p.lse2 + d.B * d.H * p.Tq_pad;
  if (a.p > 0) {
    p.drop.on = true;
    p.drop.thr = attn::dropout_threshold(a.p);
    p.drop.rs = a.p < 1.0 ? (float)(1.0 / (1.0 - a.p)) : 0.f;
    p.seed = (uint64_t)a.seed, p.offset = (uint64_t)a.offset;
    p.rng = a.device_rng() ? vt::data<const int64_t>(a.device_rng()) : nullptr;
  }
  if (st == vt::ScalarType::Float32) {  // the float32 kernels (flash32_bwd.cu) after the same prepass
    launch_prepass<float>(c, p);
    launch_bwd32(c, p);
  } else if (d.D == 32) {
    bf16 ? launch_bwd<__nv_bfloat16, 32>(c, p) : launch_bwd<__half, 32>(c, p);
  } else if (d.D == 64) {
    bf16 ? launch_bwd<__nv_bfloat16, 64>(c, p) : launch_bwd<__half, 64>(c, p);
  } else {  // takes(): 32, 64, 128
    bf16 ? launch_bwd<__nv_bfloat16, 128>(c, p) : launch_bwd<__half, 128>(c, p);
  }
  for (int i = 0; i < 3; ++i) finish_dest(c, c.out(i), scratch[i]);
  if (p.kv_split > 1) {  // (B, Hkv * S, Tk, D) -> (B, Hkv, S, Tk, D), summed over the S slots
    const std::vector<int64_t> five = {d.B, d.Hkv, p.kv_split, d.Tk, d.D}, slots = {2};
    for (int i = 0; i < 2; ++i) {
      vt::Tensor r = vt::call(c.host, "core::reshape", {parts[i].get(), vt::V(five)});
      vt::call(c.host, "core::copy_", {c.out(i + 1), vt::call(c.host, "core::sum", {r.get(), vt::V(slots), false})});
    }
  }
}
#endif  // FLASH_EMULATE
