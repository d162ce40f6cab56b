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
// masks; padding keys -inf), keys walked in register-sized chunks (so a CTA needs ~100 registers a
// thread, not ~220, and several CTAs share an SM).
//   forward   warp w owns queries 16w..16w+15 (its Q fragments held in registers): for each chunk
//             of 64 keys (causal: keys < 16w + 16) S = Q K^T, the online softmax, O += P V;
//             out = O / l, lse = (m + log2 l) ln 2.
//   backward  delta_i = rowsum(dO * O)_i - grad_lse_i first (FlashAttention-2's, read from O while
//             the tiles load: no prepass kernel). Phase A, warp w owns queries 16w..: for each
//             chunk of 32 keys S = Q K^T, P = exp2(x - lse2_i), dP = dO V^T, dS = P (dP - delta_i),
//             dQ += dS K; P and dS (16-bit, the precision the tiled kernels feed their MMAs) to
//             shared memory; dQ stored when the warp's keys are done. Phase B, warp w owns keys
//             16w..: dV = P^T dO, dK = dS^T Q with P^T and dS^T read transposed from shared memory
//             (ldmatrix .trans; causal: queries >= 16w only). Deterministic: no atomics, a fixed order.
// Instantiated for {bfloat16, float16} x D {32, 64}.
#include "flash_cuda.cuh"

namespace flashcu {

constexpr int kShortRows = 128;               // queries and keys a CTA holds at most
constexpr int kShortWarps = kShortRows / 16;  // 8
constexpr int kFwdChunk = 64;                 // keys a forward step (8 n-tiles: 32 score floats a thread)
constexpr int kBwdChunk = 32;                 // keys a backward step (S and dP: 16 floats each)

__host__ __device__ constexpr int round16(int x) { return (x + 15) / 16 * 16; }
// The P / dS tiles' row length: nk + 8 elements, so the 8 rows an ldmatrix reads (16 bytes each)
// start an odd number of 16-byte units apart and fall in 8 different bank groups (no swizzle).
__host__ __device__ constexpr int score_ld(int nk) { return nk + 8; }

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

// The A fragments of a warp's 16 rows (from i0) of a tile, every k-step: held across the key chunks.
template <class T, int D>
__device__ __forceinline__ void load_a(uint32_t (&af)[D / 16][4], const T* tile, int i0, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(af[kk], a_addr<D>(tile, i0, kk, lane));
}

// The scores of a warp's 16 rows (from i0) and keys c0.. of a chunk, in log2 units with attn.hpp's
// rules (P: FwdParams or BwdParams); n-tiles at or past kend (never computed) and keys past Tk -inf.
template <class P, int NT>
__device__ __forceinline__ void score_rule(float (&s)[NT][4], const P& p, int i0, int c0, int kend, int lane) {
  const int bh = blockIdx.x;
  const int64_t mb = (bh / p.H) * p.mask.sb + (bh % p.H) * p.mask.sh;
  const bool per_element = p.mask.kind != kNoMask || p.causal;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = i0 + lane / 4 + 8 * (e >> 1), j = c0 + nt * 8 + 2 * (lane % 4) + (e & 1);
      float& x = s[nt][e];
      if (c0 + nt * 8 >= kend || j >= p.Tk) x = -INFINITY;
      else if (!per_element) x *= p.scale_log2;
      else if (i >= p.Tq) x = p.causal && j > i ? -INFINITY : x * p.scale_log2;  // padding row: no mask read
      else x = masked_score(x, p.scale_log2, p.mask, mb, i, j, p.causal);
    }
  }
}

// acc (a warp's 16 rows x keys c0 .. c0 + 8 NT) += A B^T: A the warp's fragments, B's rows the keys
// (tile b, swizzled), for 16-key pairs below kend
template <class T, int D, int NT>
__device__ __forceinline__ void gemm_abt(float (&acc)[NT][4], const uint32_t (&af)[D / 16][4], const T* b, int c0,
                                         int kend, int lane) {
#pragma unroll
  for (int np = 0; np < NT / 2; ++np) {
    if (c0 + np * 16 >= kend) break;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t bf[4];
      ldmatrix_x4(bf, bn_addr<D>(b, c0 + np * 16, kk, lane));
      mma16816<T>(acc[2 * np], af[kk], bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], af[kk], bf[2], bf[3]);
    }
  }
}

// acc (16 x D) += X (16 x the chunk's keys c0.., C fragments in registers, k-steps below kend) *
// tile (rows = keys, D columns)
template <class T, int D, int NT>
__device__ __forceinline__ void gemm_xv(float (&acc)[D / 8][4], const float (&x)[NT][4], const T* tile, int c0,
                                        int kend, int lane) {
#pragma unroll
  for (int kk = 0; kk < NT / 2; ++kk) {
    if (c0 + kk * 16 >= kend) break;
    uint32_t xa[4];
    pack_a<T>(xa, x[2 * kk], x[2 * kk + 1]);
#pragma unroll
    for (int np = 0; np < D / 16; ++np) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, bt_addr<D>(tile, c0 + kk * 16, np, lane));
      mma16816<T>(acc[2 * np], xa, bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], xa, bf[2], bf[3]);
    }
  }
}

template <class T, int D>
size_t short_fwd_smem(int nq, int nk) {
  return sizeof(T) * (size_t)(nq + 2 * nk) * D;
}

template <class T, int D>
__global__ void __launch_bounds__(32 * kShortWarps, 2) flash_short_fwd_kernel(const FwdParams p) {
  constexpr int NT = kFwdChunk / 8;
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
  uint32_t qa[D / 16][4];
  load_a<T, D>(qa, sQ, i0, lane);
  float o[D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
#pragma unroll 1  // (unrolled, ptxas held two chunks' scores: 216 registers at D 32)
  for (int c0 = 0; c0 < kend; c0 += kFwdChunk) {
    float s[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
    gemm_abt<T, D>(s, qa, sK, c0, kend, lane);
    score_rule(s, p, i0, c0, kend, lane);
    // online softmax: per row, the thread's scores, then across the quad
    float mx[2] = {m[0], m[1]}, mu[2], alpha[2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      mu[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // nothing kept yet: P = 0, alpha = 0
      alpha[r] = exp2f(m[r] - mu[r]);
      m[r] = mx[r];
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - mu[e >> 1]);
        l[e >> 1] += s[nt][e];
      }
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      o[nt][0] *= alpha[0], o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1], o[nt][3] *= alpha[1];
    }
    gemm_xv<T, D>(o, s, sV, c0, kend, lane);
  }

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
// shared memory: Q, dO, K, V, dQ (its staging) tiles of D columns, P and dS tiles, delta per query
template <class T, int D>
size_t short_bwd_smem(int nq, int nk) {
  return sizeof(T) * ((size_t)(3 * nq + 2 * nk) * D + (size_t)2 * nq * score_ld(nk)) + sizeof(float) * nq;
}

// A warp's C-fragment chunk (16 rows from i0, keys c0 .. c0 + 8 NT) into a 16-bit [query][key]
// tile of row length ld, n-tiles below nk
template <class T, int NT>
__device__ __forceinline__ void store_scores(T* tile, int ld, const float (&x)[NT][4], int i0, int c0, int nk,
                                             int lane) {
  const int r = i0 + lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (c0 + nt * 8 >= nk) break;
    const int col = c0 + nt * 8 + c;
    *reinterpret_cast<uint32_t*>(tile + r * ld + col) = pack2<T>(x[nt][0], x[nt][1]);
    *reinterpret_cast<uint32_t*>(tile + (r + 8) * ld + col) = pack2<T>(x[nt][2], x[nt][3]);
  }
}

// ldmatrix address of the A fragment (rows m0..m0+15, k-step kq) of the transpose of a [k][m] tile
// of row length ld (ldmatrix .trans): matrix q = lane / 8 covers m + 8 (q & 1), k + 8 (q >> 1)
template <class T>
__device__ __forceinline__ const T* at_addr(const T* tile, int ld, int m0, int kq, int lane) {
  return tile + (kq * 16 + (lane & 7) + ((lane >> 4) << 3)) * ld + m0 + ((lane >> 3) & 1) * 8;
}

template <class T, int D>
__global__ void __launch_bounds__(32 * kShortWarps) flash_short_bwd_kernel(const BwdParams p) {
  constexpr int NT = kBwdChunk / 8;
  const int nq = round16(p.Tq), nk = round16(p.Tk), ld = score_ld(nk);
  unsigned char* smem = dynamic_smem();
  T* sQ = reinterpret_cast<T*>(smem);
  T* sO = sQ + nq * D;   // dO
  T* sDQ = sO + nq * D;  // dQ on its way out
  T* sK = sDQ + nq * D;
  T* sV = sK + nk * D;
  T* sP = sV + nk * D;   // [nq][ld]: P
  T* sS = sP + nq * ld;  // [nq][ld]: dS
  float* sDelta = reinterpret_cast<float*>(sS + nq * ld);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const T* gO = head_of<T>(p.dout, b, h);

  load_head<T, D>(sQ, head_of<T>(p.q, b, h), p.q.st, nq, p.Tq);
  load_head<T, D>(sO, gO, p.dout.st, nq, p.Tq);
  load_head<T, D>(sK, head_of<T>(p.k, b, h), p.k.st, nk, p.Tk);
  load_head<T, D>(sV, head_of<T>(p.v, b, h), p.v.st, nk, p.Tk);
  cp_async_commit();

  // while the tiles load: delta of the warp's 16 query rows, two lanes a row (half of D each), and
  // lse2 (+inf where lse is -inf or past Tq: P = 0) of the thread's two rows
  const int i0 = warp * 16;
  if (i0 < nq) {
    const int i = i0 + lane / 2, d0 = (lane % 2) * (D / 2);
    float dl = 0.f;
    if (i < p.Tq) {
      const T* orow = static_cast<const T*>(p.o) + b * p.o_sb + h * p.o_sh + i * p.o_st;
      const T* grow = gO + i * p.dout.st;
#pragma unroll
      for (int d = d0; d < d0 + D / 2; ++d) dl += static_cast<float>(grow[d]) * static_cast<float>(orow[d * p.o_sd]);
    }
    dl += __shfl_xor_sync(0xffffffffu, dl, 1);
    if (lane % 2 == 0) sDelta[i] = i < p.Tq ? dl - (p.glse ? p.glse[b * p.g_sb + h * p.g_sh + i * p.g_st] : 0.f) : 0.f;
  }
  float L[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + lane / 4 + 8 * r;
    L[r] = INFINITY;
    if (i < p.Tq) {
      const float lse = p.lse[b * p.l_sb + h * p.l_sh + i * p.l_st];
      L[r] = lse == -INFINITY ? INFINITY : lse * kLog2e;
    }
  }
  cp_async_wait_all();
  __syncthreads();  // Q, dO, K, V and delta visible

  // phase A: this warp's query rows
  if (i0 < nq) {
    const int kend = p.causal ? min(nk, i0 + 16) : nk;
    const float dl[2] = {sDelta[i0 + lane / 4], sDelta[i0 + lane / 4 + 8]};
    uint32_t qa[D / 16][4], oa[D / 16][4];
    load_a<T, D>(qa, sQ, i0, lane);
    load_a<T, D>(oa, sO, i0, lane);
    float dq[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) dq[nt][0] = dq[nt][1] = dq[nt][2] = dq[nt][3] = 0.f;
#pragma unroll 1
    for (int c0 = 0; c0 < kend; c0 += kBwdChunk) {
      float s[NT][4], dp[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
      gemm_abt<T, D>(s, qa, sK, c0, kend, lane);
      score_rule(s, p, i0, c0, kend, lane);
      gemm_abt<T, D>(dp, oa, sV, c0, kend, lane);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[nt][e] = exp2f(s[nt][e] - L[e >> 1]);               // P
          dp[nt][e] = s[nt][e] * (dp[nt][e] - dl[e >> 1]);      // dS
        }
      store_scores<T>(sP, ld, s, i0, c0, nk, lane);
      store_scores<T>(sS, ld, dp, i0, c0, nk, lane);
      gemm_xv<T, D>(dq, dp, sK, c0, kend, lane);
    }
    store_frag<T, D>(sDQ, dq, p.scale, i0, lane);
    __syncwarp();
    store_rows<T, D>(sDQ, head_of<T>(p.dq, b, h), p.dq.st, 0, p.Tq, i0, lane);
  }
  __syncthreads();  // P and dS of every query visible; every read of sK, sV done

  // phase B: this warp's key rows
  const int j0 = warp * 16;
  if (j0 < nk) {
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dk[nt][e] = dv[nt][e] = 0.f;
    for (int kq = p.causal ? j0 / 16 : 0; kq < nq / 16; ++kq) {  // causal: queries i < j0 keep none of these keys
      uint32_t pa[4], da[4];
      ldmatrix_x4_trans(pa, at_addr(sP, ld, j0, kq, lane));
      ldmatrix_x4_trans(da, at_addr(sS, ld, j0, kq, lane));
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
