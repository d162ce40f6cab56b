// flash_fwd.cu — the CUDA forward of provider "flash" (attention::sdpa): a tiled online-softmax
// kernel on tensor cores (mma.sync m16n8k16 with ldmatrix, sm80+), FlashAttention-2's design.
// Not here: the shared primitives and what the kernels take (flash_cuda.cuh), the backward
// (flash_bwd.cu), the meta step and registration (pack.cpp), the CPU kernel (flash.cpp).
//
// One CTA = one (b, h) and a block of 128 queries (K, V of kv head h / group); 4 warps, each owning
// two m16 tiles (32 query rows: every K/V fragment a warp loads feeds two MMAs), so the softmax
// statistics of a row live in the 4 lanes of one quad. Per CTA:
//   Q block -> shared memory (its A fragments are loaded per k-step by the warp that owns the rows)
//   for each block of 64 keys (32 at D = 128; causal: only keys j < i0 + 128):
//     K_j, V_j stream through shared memory with cp.async (V_j loads during S = Q K_j^T,
//     K_j+1 during O += P V_j)
//     S = Q K_j^T;  x = S * scale * log2(e) (+ mask), -inf where causal/mask/past Tk drop it
//     m_new = max(m, rowmax x);  P = exp2(x - m_new);  l = l * alpha + rowsum P;  O *= alpha
//     P (dropout applied: kept * 1/(1-p), else 0) -> A fragments in registers;  O += P V_j
//   out = O / l (0 where l == 0), lse = (m + log2 l) * ln 2 (-inf where l == 0)
// Dropout draws the keep rule of attn.hpp from host->philox_args (graph-safe: unpacked on the
// device), and block 0 writes the rng output [seed, offset] ([0, 0] without dropout).
// Instantiated for {bfloat16, float16} x D {32, 64, 128}; causal is a run-time flag.
#include "flash_cuda.cuh"

namespace flashcu {


template <class T, int D>
constexpr size_t fwd_smem() {
  return sizeof(T) * (size_t)(kFwdRows + 2 * kFwdKeys<D>) * D;
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_kernel(const FwdParams p) {
  constexpr int M = kFwdTiles;  // m16 tiles a warp: rows warp * 16 M + 16 mt + (0..15)
  constexpr int KB = kFwdKeys<D>;  // keys a step
  constexpr int NT = KB / 8;       // n-tiles of a score tile
  unsigned char* smem = dynamic_smem();
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + kFwdRows * D;
  T* sV = sK + KB * D;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // heaviest (latest, for causal) query blocks first: blockIdx.x = (nqb - 1 - qb) * BH + bh
  const int bh = blockIdx.x % p.BH, qb = p.nqb - 1 - (int)(blockIdx.x / p.BH);
  const int b = bh / p.H, h = bh % p.H;
  const int i0 = qb * kFwdRows;
  const T* q = head_of<T>(p.q, b, h);
  const T* k = head_of<T>(p.k, b, h / p.group);
  const T* v = head_of<T>(p.v, b, h / p.group);
  const int64_t mb = b * p.mask.sb + h * p.mask.sh;

  uint64_t seed, offset;
  forward_philox(p, seed, offset);

  const int kend = p.causal ? min(p.Tk, i0 + kFwdRows) : p.Tk;
  const int nkb = (kend + KB - 1) / KB;

  load_tile<T, kFwdRows, D>(sQ, q, p.q.st, i0, p.Tq);
  if (nkb > 0) load_tile<T, KB, D>(sK, k, p.k.st, 0, p.Tk);
  cp_async_commit();

  // this thread's rows: (lane / 4) and (lane / 4 + 8) of each of its warp's tiles; its columns
  // of an n-tile: 2 (lane % 4) and 2 (lane % 4) + 1
  const int wrow = warp * 16 * M;
  const int c0 = 2 * (lane % 4);
  auto row_of = [&](int mt, int r) { return i0 + wrow + mt * 16 + lane / 4 + 8 * r; };

  float o[M][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < M; ++mt)
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.f;
  float m[M][2], l[M][2];
#pragma unroll
  for (int mt = 0; mt < M; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;

  for (int kb = 0; kb < nkb; ++kb) {
    const int j0 = kb * KB;
    cp_async_wait_all();
    __syncthreads();  // K_j (and at kb == 0 Q) visible; every warp is done with V_j-1
    load_tile<T, KB, D>(sV, v, p.v.st, j0, p.Tk);
    cp_async_commit();

    // S = Q K_j^T: M tiles of 16 x KB a warp; Q's A fragments from shared memory (the warp's rows)
    float s[M][NT][4];
#pragma unroll
    for (int mt = 0; mt < M; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[M][4];
#pragma unroll
      for (int mt = 0; mt < M; ++mt) ldmatrix_x4(qa[mt], a_addr<D>(sQ, wrow + mt * 16, kk, lane));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, bn_addr<D>(sK, np * 16, kk, lane));
#pragma unroll
        for (int mt = 0; mt < M; ++mt) {
          mma16816<T>(s[mt][2 * np], qa[mt], bf[0], bf[1]);
          mma16816<T>(s[mt][2 * np + 1], qa[mt], bf[2], bf[3]);
        }
      }
    }

    // scores in log2 units with every rule applied; the per-element rules only where a block needs them
    const bool edge = j0 + KB > p.Tk || (p.causal && j0 + KB - 1 > i0);
    const bool per_element = edge || p.mask.kind != kNoMask;
#pragma unroll
    for (int mt = 0; mt < M; ++mt) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = row_of(mt, e >> 1), j = j0 + nt * 8 + c0 + (e & 1);
          float& x = s[mt][nt][e];
          if (!per_element) x *= p.scale_log2;
          else if (j >= p.Tk) x = -INFINITY;
          else if (i >= p.Tq) x = p.causal && j > i ? -INFINITY : x * p.scale_log2;  // padding row: no mask read
          else x = masked_score(x, p.scale_log2, p.mask, mb, i, j, p.causal);
        }
      }
    }

    // online softmax: per row, the thread's 16 scores, then across the quad
#pragma unroll
    for (int mt = 0; mt < M; ++mt) {
      float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        mx[0] = fmaxf(mx[0], fmaxf(s[mt][nt][0], s[mt][nt][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[mt][nt][2], s[mt][nt][3]));
      }
      float alpha[2], mu[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        mu[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // a row with nothing kept yet: P = 0, alpha = 0
        alpha[r] = exp2f(m[mt][r] - mu[r]);
        m[mt][r] = mx[r];
      }
      float rsum[2] = {0.f, 0.f};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[mt][nt][e] = exp2f(s[mt][nt][e] - mu[e >> 1]);
          rsum[e >> 1] += s[mt][nt][e];
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) l[mt][r] = l[mt][r] * alpha[r] + rsum[r];  // quad partial sums
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        o[mt][nt][0] *= alpha[0], o[mt][nt][1] *= alpha[0];
        o[mt][nt][2] *= alpha[1], o[mt][nt][3] *= alpha[1];
      }
      if (p.drop.on) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int j = j0 + nt * 8 + c0;
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int i = row_of(mt, r);
            if (i >= p.Tq || j >= p.Tk) continue;  // padding: P is 0 (past Tk) or never stored
            bool k0 = true, k1 = true;
            const uint64_t e = ((uint64_t)bh * p.Tq + i) * p.Tk + j;
            if (j + 1 < p.Tk) keep2(seed, offset, e, p.drop.thr, k0, k1);
            else k0 = keep1(seed, offset, e, p.drop.thr);
            s[mt][nt][2 * r] = k0 ? s[mt][nt][2 * r] * p.drop.rs : 0.f;
            s[mt][nt][2 * r + 1] = k1 ? s[mt][nt][2 * r + 1] * p.drop.rs : 0.f;
          }
        }
      }
    }

    cp_async_wait_all();
    __syncthreads();  // V_j visible; every warp is done reading K_j
    if (kb + 1 < nkb) load_tile<T, KB, D>(sK, k, p.k.st, j0 + KB, p.Tk);
    cp_async_commit();

    // O += P V_j: P as A fragments (k = keys), V_j rows are k, its columns n (ldmatrix .trans)
#pragma unroll
    for (int kk = 0; kk < KB / 16; ++kk) {
      uint32_t pa[M][4];
#pragma unroll
      for (int mt = 0; mt < M; ++mt) pack_a<T>(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, bt_addr<D>(sV, kk * 16, np, lane));
#pragma unroll
        for (int mt = 0; mt < M; ++mt) {
          mma16816<T>(o[mt][2 * np], pa[mt], bf[0], bf[1]);
          mma16816<T>(o[mt][2 * np + 1], pa[mt], bf[2], bf[3]);
        }
      }
    }
  }
  cp_async_wait_all();
  __syncthreads();  // every copy landed and every warp is past its last read of sQ's other rows

  // epilogue: row sums across the quad; out through the warp's own rows of sQ (only this warp
  // read them, as its A fragments), lse by the quad's first lane
#pragma unroll
  for (int mt = 0; mt < M; ++mt) {
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
      inv[r] = l[mt][r] > 0.f ? 1.f / l[mt][r] : 0.f;
    }
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      o[mt][nt][0] *= inv[0], o[mt][nt][1] *= inv[0];
      o[mt][nt][2] *= inv[1], o[mt][nt][3] *= inv[1];
    }
    store_frag<T, D>(sQ, o[mt], 1.f, wrow + mt * 16, lane);
    if (lane % 4 == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = row_of(mt, r);
        if (i < p.Tq)
          p.lse[(int64_t)bh * p.Tq + i] = l[mt][r] > 0.f ? (m[mt][r] + log2f(l[mt][r])) * kLn2 : -INFINITY;
      }
    }
  }
  __syncwarp();
  store_rows<T, D, 16 * M>(sQ, head_of<T>(p.out, b, h), p.out.st, i0, p.Tq, wrow, lane);
}

#ifndef FLASH_EMULATE  // the launchers and the compute (host side)
int device_cc_major(int index) {
  static int cached[64] = {0};  // 0: not asked yet (a race only asks twice)
  if (index < 0 || index >= 64) return 0;
  if (cached[index] == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess) {
      cudaGetLastError();
      major = -1;
    }
    cached[index] = major;
  }
  return cached[index];
}

template <class T, int D>
void launch_fwd(const vt::Call& c, const FwdParams& p) {
  constexpr size_t smem = fwd_smem<T, D>();
  allow_smem(c, flash_fwd_kernel<T, D>, smem);
  vt::cuda::launch(c, "flash_fwd_kernel", flash_fwd_kernel<T, D>, dim3((unsigned)p.nqb * (unsigned)p.BH),
                   dim3(kThreads), smem, p);
}

#endif  // FLASH_EMULATE
}  // namespace flashcu

#ifndef FLASH_EMULATE
vt::KernelFn sdpa_composed;  // composed.cpp: what the kernels do not take runs there

// Arguments checked and outputs made by the meta step (pack.cpp).
VT_COMPUTE(sdpa_flash_cuda, "attention::sdpa") {
  using namespace flashcu;
  const attn::SdpaArgs a(c);
  const attn::Dims d = attn::dims(a.q, a.k, a.v);
  if (!takes(a.q, d, c.ctx->device.index)) {
    const vt_status st = sdpa_composed(c.ctx, c.args, c.nargs, c.outs, c.nouts);
    if (st != VT_OK) throw vt::Error(st);
    return;
  }
  vt::Tensor hq, hk, hv, hm;
  FwdParams p{};
  p.q = operand(c, a.q, hq);
  p.k = operand(c, a.k, hk);
  p.v = operand(c, a.v, hv);
  p.mask = mask_of(c, a.mask, hm);
  vt::Tensor scratch;
  p.out = dest(c, c.out(0), scratch);
  p.lse = vt::data<float>(c.out(1));
  p.rng = vt::data<int64_t>(c.out(2));
  p.H = (int)d.H, p.BH = (int)(d.B * d.H), p.Tq = (int)d.Tq, p.Tk = (int)d.Tk, p.group = (int)d.group();
  p.nqb = (int)((d.Tq + kFwdRows - 1) / kFwdRows);
  p.scale_log2 = (float)(a.scale(d.D) * 1.4426950408889634);
  p.causal = a.causal;
  if (a.p > 0) {
    p.drop.on = true;
    p.drop.thr = attn::dropout_threshold(a.p);
    p.drop.rs = a.p < 1.0 ? (float)(1.0 / (1.0 - a.p)) : 0.f;
    c.host->philox_args(c.ctx->device, attn::dropout_groups(d), &p.philox);
  }
  const vt::ScalarType st = vt::scalar_type(a.q->dtype);
  const bool bf16 = st == vt::ScalarType::BFloat16;
  if (short_takes(a.q, d, a.p, false)) launch_short_fwd(c, p, (int)d.D, bf16);  // flash_short.cu
  else if (st == vt::ScalarType::Float32) launch_fwd32(c, p, (int)d.D);  // flash32_fwd.cu
  else if (d.D == 32) bf16 ? launch_fwd<__nv_bfloat16, 32>(c, p) : launch_fwd<__half, 32>(c, p);
  else if (d.D == 64) bf16 ? launch_fwd<__nv_bfloat16, 64>(c, p) : launch_fwd<__half, 64>(c, p);
  else bf16 ? launch_fwd<__nv_bfloat16, 128>(c, p) : launch_fwd<__half, 128>(c, p);  // takes(): 32, 64, 128
  finish_dest(c, c.out(0), scratch);
}
#endif  // FLASH_EMULATE
