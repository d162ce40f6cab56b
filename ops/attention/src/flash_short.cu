// flash_short.cu — provider "flash"'s CUDA kernels for short sequences (Tq, Tk <= 128, D 32 or 64,
// 16-bit, no dropout; the backward also one query head a kv head): one CTA holds a whole (b, h),
// so each kernel is one global load, one pass and one store. The tiled kernels (flash_fwd.cu,
// flash_bwd.cu) walk 64- and 128-row blocks: at the ViT's T = 65 (64 patches and the class token)
// most of their second block is padding, each (b, h) costs 2-4 dependent load/compute rounds, and
// the backward adds a prepass and a second kernel. Not here: the shared primitives and what the
// kernels take (flash_cuda.cuh), the meta step and registration (pack.cpp).
//
// Both kernels: a CTA of 16-row warps covering round16(T) rows (at most 8 warps), Q, K, V (and dO)
// of the head in shared memory (rows past T zero-filled), scores as in attn.hpp (scale, causal,
// masks; padding keys -inf).
//   forward   warp w owns queries 16w..16w+15: S = Q K^T over all keys (causal: keys < 16w + 16),
//             one exact softmax (no online rescaling: every key is in registers), O = P V,
//             out = O / l, lse = (m + log2 l) ln 2.
//   backward  phase A, warp w owns queries 16w..: S = Q K^T, P = exp2(x - lse2_i), dP = dO V^T,
//             delta_i = rowsum(P * dP) - grad_lse_i (= rowsum(dO * O) - grad_lse_i: O = P V; so no
//             prepass and no read of O), dS = P * (dP - delta_i), dQ = dS K in registers; P and dS
//             (16-bit, the precision the tiled kernels feed their MMAs) to shared memory.
//             phase B, warp w owns keys 16w..: dV = P^T dO, dK = dS^T Q with P^T and dS^T read
//             transposed from shared memory (ldmatrix .trans; causal: queries >= 16w only).
//             Deterministic: no atomics, a fixed order.
// Instantiated for {bfloat16, float16} x D {32, 64}.
#include "flash_cuda.cuh"

namespace flashcu {

constexpr int kShortRows = 128;                 // queries and keys a CTA holds at most
constexpr int kShortWarps = kShortRows / 16;    // 8
constexpr int kScoreStride = kShortRows;        // a P / dS tile row: 128 16-bit elements (swz<128>)

__host__ __device__ constexpr int round16(int x) { return (x + 15) / 16 * 16; }

// Rows [0, R) of one head (rows >= T_ zero-filled) into a tile, by all the CTA's threads.
template <class T, int D>
__device__ __forceinline__ void load_head(T* tile, const T* base, int64_t st, int R, int T_) {
  constexpr int kChunks = D / 8;
  for (int idx = threadIdx.x; idx < R * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, ch = idx % kChunks;
    const bool ok = r < T_;
    cp_async16(tile + swz<D>(r, ch), ok ? base + (int64_t)r * st + ch * 8 : base, ok);
  }
}

// The scores of a warp's 16 rows (from i0) in log2 units with attn.hpp's rules (P: FwdParams or
// BwdParams); n-tiles at or past kend (never computed) and keys past Tk are -inf.
template <class P, int NT>
__device__ __forceinline__ void score_rule(float (&s)[NT][4], const P& p, int i0, int kend, int lane) {
  const int bh = blockIdx.x;
  const int64_t mb = (bh / p.H) * p.mask.sb + (bh % p.H) * p.mask.sh;
  const bool per_element = p.mask.kind != kNoMask || p.causal;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = i0 + lane / 4 + 8 * (e >> 1), j = nt * 8 + 2 * (lane % 4) + (e & 1);
      float& x = s[nt][e];
      if (nt * 8 >= kend || j >= p.Tk) x = -INFINITY;
      else if (!per_element) x *= p.scale_log2;
      else if (i >= p.Tq) x = p.causal && j > i ? -INFINITY : x * p.scale_log2;  // padding row: no mask read
      else x = masked_score(x, p.scale_log2, p.mask, mb, i, j, p.causal);
    }
  }
}

// acc (16 rows from i0, NT n-tiles of 8 columns) of warp-owned rows += A(16 x D from tile a, rows
// i0) * B^T where B's rows are n (tile b, swizzled like A), for n-tile pairs below kend
template <class T, int D, int NT>
__device__ __forceinline__ void gemm_abt(float (&acc)[NT][4], const T* a, int i0, const T* b, int kend, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    ldmatrix_x4(af, a_addr<D>(a, i0, kk, lane));
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      if (np * 16 >= kend) break;
      uint32_t bf[4];
      ldmatrix_x4(bf, bn_addr<D>(b, np * 16, kk, lane));
      mma16816<T>(acc[2 * np], af, bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

// acc (16 x D) += P (16 x K, C fragments in registers, k-steps below kend) * tile (K rows x D)
template <class T, int D, int NT>
__device__ __forceinline__ void gemm_pv(float (&acc)[D / 8][4], const float (&p)[NT][4], const T* tile, int kend,
                                        int lane) {
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    if (kk * 16 >= kend) break;
    uint32_t pa[4];
    pack_a<T>(pa, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, bt_addr<D>(tile, kk * 16, np, lane));
      mma16816<T>(acc[2 * np], pa, bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], pa, bf[2], bf[3]);
    }
  }
}

template <class T, int D>
size_t short_fwd_smem(int nq, int nk) {
  return sizeof(T) * (size_t)(nq + 2 * nk) * D;
}

template <class T, int D>
__global__ void __launch_bounds__(32 * kShortWarps) flash_short_fwd_kernel(const FwdParams p) {
  constexpr int NT = kShortRows / 8;  // n-tiles of a score row at most
  const int nq = round16(p.Tq), nk = round16(p.Tk);
  unsigned char* smem = dynamic_smem();
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + nq * D;
  T* sV = sK + nk * D;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;

  uint64_t seed, offset;
  forward_philox(p, seed, offset);  // the rng record: [0, 0] (these kernels take no dropout)
  load_head<T, D>(sQ, head_of<T>(p.q, b, h), p.q.st, nq, p.Tq);
  load_head<T, D>(sK, head_of<T>(p.k, b, h / p.group), p.k.st, nk, p.Tk);
  load_head<T, D>(sV, head_of<T>(p.v, b, h / p.group), p.v.st, nk, p.Tk);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();  // the only barrier: from here each warp reads shared Q rows of its own only

  const int i0 = warp * 16;
  const int kend = p.causal ? min(nk, i0 + 16) : nk;
  float s[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
  gemm_abt<T, D>(s, sQ, i0, sK, kend, lane);
  score_rule(s, p, i0, kend, lane);

  // one exact softmax per row: the thread's scores, then across the quad
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    m[0] = fmaxf(m[0], fmaxf(s[nt][0], s[nt][1]));
    m[1] = fmaxf(m[1], fmaxf(s[nt][2], s[nt][3]));
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    m[r] = fmaxf(m[r], __shfl_xor_sync(0xffffffffu, m[r], 1));
    m[r] = fmaxf(m[r], __shfl_xor_sync(0xffffffffu, m[r], 2));
  }
  const float mu[2] = {m[0] == -INFINITY ? 0.f : m[0], m[1] == -INFINITY ? 0.f : m[1]};  // nothing kept: P = 0
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[nt][e] = exp2f(s[nt][e] - mu[e >> 1]);
      l[e >> 1] += s[nt][e];
    }
  float o[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
  gemm_pv<T, D>(o, s, sV, kend, lane);

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
  }
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    o[nt][0] *= inv[0], o[nt][1] *= inv[0];
    o[nt][2] *= inv[1], o[nt][3] *= inv[1];
  }
  if (lane % 4 == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = i0 + lane / 4 + 8 * r;
      if (i < p.Tq) p.lse[(int64_t)bh * p.Tq + i] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
    }
  }
  store_frag<T, D>(sQ, o, 1.f, i0, lane);  // through the warp's own rows of sQ
  __syncwarp();
  store_rows<T, D>(sQ, head_of<T>(p.out, b, h), p.out.st, 0, p.Tq, i0, lane);
}

// ---- backward ------------------------------------------------------------------------------------
template <class T, int D>
size_t short_bwd_smem(int nq, int nk) {
  return sizeof(T) * ((size_t)(2 * nq + 2 * nk) * D + (size_t)2 * nq * kScoreStride);
}

// A C-fragment score tile (a warp's 16 rows from i0, NT n-tiles) into a 16-bit [row][key] tile
template <class T, int NT>
__device__ __forceinline__ void store_scores(T* tile, const float (&x)[NT][4], int i0, int nk, int lane) {
  const int r = i0 + lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (nt * 8 >= nk) break;
    const int col = nt * 8 + c;
    *reinterpret_cast<uint32_t*>(tile + swz<kScoreStride>(r, col / 8) + col % 8) = pack2<T>(x[nt][0], x[nt][1]);
    *reinterpret_cast<uint32_t*>(tile + swz<kScoreStride>(r + 8, col / 8) + col % 8) = pack2<T>(x[nt][2], x[nt][3]);
  }
}

// ldmatrix address of the A fragment (rows m0..m0+15, k-step kq) of the transpose of a [k][m] tile
// (ldmatrix .trans): matrix q = lane / 8 covers m + 8 (q & 1), k + 8 (q >> 1)
template <class T>
__device__ __forceinline__ const T* at_addr(const T* tile, int m0, int kq, int lane) {
  return tile + swz<kScoreStride>(kq * 16 + (lane & 7) + ((lane >> 4) << 3), m0 / 8 + ((lane >> 3) & 1));
}

template <class T, int D>
__global__ void __launch_bounds__(32 * kShortWarps) flash_short_bwd_kernel(const BwdParams p) {
  constexpr int NT = kShortRows / 8;
  const int nq = round16(p.Tq), nk = round16(p.Tk);
  unsigned char* smem = dynamic_smem();
  T* sQ = reinterpret_cast<T*>(smem);
  T* sO = sQ + nq * D;  // dO
  T* sK = sO + nq * D;
  T* sV = sK + nk * D;
  T* sP = sV + nk * D;               // [nq][128]: P
  T* sS = sP + nq * kScoreStride;    // [nq][128]: dS
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;

  load_head<T, D>(sQ, head_of<T>(p.q, b, h), p.q.st, nq, p.Tq);
  load_head<T, D>(sO, head_of<T>(p.dout, b, h), p.dout.st, nq, p.Tq);
  load_head<T, D>(sK, head_of<T>(p.k, b, h), p.k.st, nk, p.Tk);
  load_head<T, D>(sV, head_of<T>(p.v, b, h), p.v.st, nk, p.Tk);
  cp_async_commit();

  // phase A: this warp's query rows
  const int i0 = warp * 16;
  float dq[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) dq[nt][0] = dq[nt][1] = dq[nt][2] = dq[nt][3] = 0.f;
  float L[2], G[2];  // lse2 (+inf where lse is -inf or past Tq: P = 0) and grad_lse of the rows
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + lane / 4 + 8 * r;
    L[r] = INFINITY, G[r] = 0.f;
    if (i < p.Tq) {
      const float lse = p.lse[b * p.l_sb + h * p.l_sh + i * p.l_st];
      L[r] = lse == -INFINITY ? INFINITY : lse * kLog2e;
      if (p.glse) G[r] = p.glse[b * p.g_sb + h * p.g_sh + i * p.g_st];
    }
  }
  cp_async_wait_all();
  __syncthreads();  // Q, dO, K, V visible

  if (i0 < nq) {
    const int kend = p.causal ? min(nk, i0 + 16) : nk;
    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
    gemm_abt<T, D>(s, sQ, i0, sK, kend, lane);
    score_rule(s, p, i0, kend, lane);
    gemm_abt<T, D>(dp, sO, i0, sV, kend, lane);
    float delta[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - L[e >> 1]);
        delta[e >> 1] += s[nt][e] * dp[nt][e];
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      delta[r] += __shfl_xor_sync(0xffffffffu, delta[r], 1);
      delta[r] += __shfl_xor_sync(0xffffffffu, delta[r], 2);
      delta[r] -= G[r];
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[nt][e] = s[nt][e] * (dp[nt][e] - delta[e >> 1]);  // dS
    store_scores<T>(sP, s, i0, nk, lane);
    store_scores<T>(sS, dp, i0, nk, lane);
    gemm_pv<T, D>(dq, dp, sK, kend, lane);
  }
  __syncthreads();  // P, dS of every query visible; every read of sK, sV done

  // phase B: this warp's key rows
  const int j0 = warp * 16;
  if (j0 < nk) {
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.f;
    const int q0 = p.causal ? j0 / 16 : 0;  // causal: queries i < j0 keep none of these keys
#pragma unroll
    for (int kq = 0; kq < kShortWarps; ++kq) {
      if (kq < q0) continue;
      if (kq * 16 >= nq) break;
      uint32_t pa[4], da[4];
      ldmatrix_x4_trans(pa, at_addr(sP, j0, kq, lane));
      ldmatrix_x4_trans(da, at_addr(sS, j0, kq, lane));
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bt_addr<D>(sO, kq * 16, np, lane));
        mma16816<T>(dv[2 * np], pa, bf[0], bf[1]);
        mma16816<T>(dv[2 * np + 1], pa, bf[2], bf[3]);
        ldmatrix_x4_trans(bf, bt_addr<D>(sQ, kq * 16, np, lane));
        mma16816<T>(dk[2 * np], da, bf[0], bf[1]);
        mma16816<T>(dk[2 * np + 1], da, bf[2], bf[3]);
      }
    }
    // through the warp's own rows of sK, sV (no warp reads them in phase B)
    store_frag<T, D>(sK, dk, p.scale, j0, lane);
    store_frag<T, D>(sV, dv, 1.f, j0, lane);
    __syncwarp();
    store_rows<T, D>(sK, head_of<T>(p.dk, b, h), p.dk.st, 0, p.Tk, j0, lane);
    store_rows<T, D>(sV, head_of<T>(p.dv, b, h), p.dv.st, 0, p.Tk, j0, lane);
  }
  __syncthreads();  // every phase-B read of sQ done
  if (i0 < nq) {
    store_frag<T, D>(sQ, dq, p.scale, i0, lane);
    __syncwarp();
    store_rows<T, D>(sQ, head_of<T>(p.dq, b, h), p.dq.st, 0, p.Tq, i0, lane);
  }
}

#ifndef FLASH_EMULATE  // the launchers (host side)
template <class T, int D>
void launch_short_fwd_t(const vt::Call& c, const FwdParams& p) {
  const int nq = round16(p.Tq), nk = round16(p.Tk);
  const size_t smem = short_fwd_smem<T, D>(nq, nk);
  allow_smem(c, flash_short_fwd_kernel<T, D>, smem);
  vt::cuda::launch(c, "flash_short_fwd_kernel", flash_short_fwd_kernel<T, D>, dim3((unsigned)p.BH),
                   dim3((unsigned)(2 * nq)), smem, p);  // a warp (32 threads) per 16 queries
}

template <class T, int D>
void launch_short_bwd_t(const vt::Call& c, const BwdParams& p) {
  const int nq = round16(p.Tq), nk = round16(p.Tk);
  const size_t smem = short_bwd_smem<T, D>(nq, nk);
  allow_smem(c, flash_short_bwd_kernel<T, D>, smem);
  vt::cuda::launch(c, "flash_short_bwd_kernel", flash_short_bwd_kernel<T, D>, dim3((unsigned)p.BH),
                   dim3((unsigned)(2 * std::max(nq, nk))), smem, p);
}

void launch_short_fwd(const vt::Call& c, const FwdParams& p, int D, bool bf16) {
  if (D == 32) bf16 ? launch_short_fwd_t<__nv_bfloat16, 32>(c, p) : launch_short_fwd_t<__half, 32>(c, p);
  else bf16 ? launch_short_fwd_t<__nv_bfloat16, 64>(c, p) : launch_short_fwd_t<__half, 64>(c, p);
}

void launch_short_bwd(const vt::Call& c, const BwdParams& p, int D, bool bf16) {
  if (D == 32) bf16 ? launch_short_bwd_t<__nv_bfloat16, 32>(c, p) : launch_short_bwd_t<__half, 32>(c, p);
  else bf16 ? launch_short_bwd_t<__nv_bfloat16, 64>(c, p) : launch_short_bwd_t<__half, 64>(c, p);
}
#endif  // FLASH_EMULATE
}  // namespace flashcu
