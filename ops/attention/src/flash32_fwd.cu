// flash32_fwd.cu — the float32 forward of provider "flash" on CUDA: FlashAttention-2's tiled
// online softmax, computed in float32 with FFMA on CUDA cores (tensor cores would round the inputs
// to TF32). Called by sdpa_flash_cuda (flash_fwd.cu) for float32 calls the kernels take.
// Not here: the tile layout and the product (flash32.cuh), the 16-bit kernel (flash_fwd.cu).
//
// One CTA = one (b, h) and a block of 64 queries, 256 threads (flash32.cuh's 16 x 16 layout: a
// thread owns 4 query rows, 4 key columns of a score tile and 2 (D 32) / 4 (D 64) / 8 (D 128)
// columns of O):
//   Q block -> shared memory transposed (D x 64), once
//   for each block of 64 keys (causal: only keys j < i0 + 64):
//     K_j transposed (D x 64) and V_j (64 x D) -> shared memory
//     S = Q K_j^T;  x = S * scale * log2(e) (+ mask), -inf where causal/mask/past Tk drop it
//     m_new = max(m, rowmax x);  P = exp2(x - m_new);  l = l * alpha + rowsum P;  O *= alpha
//     P (dropout applied) -> shared memory transposed, over K_j's space (64 x 64: at D = 32 that
//     space is sized for P, twice K_j^T);  O += P V_j
//   out = O / l (0 where l == 0), lse = (m + log2 l) * ln 2 (-inf where l == 0)
// Instantiated for D in {32, 64, 128}; causal, mask and dropout are run-time.
#include "flash32.cuh"

namespace flashcu {

// K^T's space holds P^T (64 x 64) next: at least kRows rows of it
template <int D>
constexpr int kKtRows = D > f32::kRows ? D : f32::kRows;

template <int D>
constexpr size_t fwd32_smem() {
  return sizeof(float) * (size_t)f32::kRows * (2 * D + kKtRows<D>);  // Q^T, K^T (then P^T), V
}

template <int D>
__global__ void __launch_bounds__(f32::kThreads, f32::kFwdCtas<D>) flash_fwd32_kernel(const FwdParams p) {
  using namespace f32;
  static_assert(D == 32 || D == 64 || D == 128, "mm's column layouts (2 tx + c; 4 tx + 64 g + c)");
  float* sQt = reinterpret_cast<float*>(dynamic_smem());  // (d, i)
  float* sKt = sQt + D * kRows;                           // (d, j), then P^T (j, i)
  float* sV = sKt + kKtRows<D> * kRows;                   // (j, d)
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;

  // heaviest (latest, for causal) query blocks first
  const int bh = blockIdx.x % p.BH, qb = p.nqb - 1 - (int)(blockIdx.x / p.BH);
  const int b = bh / p.H, h = bh % p.H;
  const int i0 = qb * kRows;
  const float* q = head_of<float>(p.q, b, h);
  const float* k = head_of<float>(p.k, b, h / p.group);
  const float* v = head_of<float>(p.v, b, h / p.group);
  const int64_t mb = b * p.mask.sb + h * p.mask.sh;

  uint64_t seed, offset;
  forward_philox(p, seed, offset);

  const int kend = p.causal ? min(p.Tk, i0 + kRows) : p.Tk;
  const int nkb = (kend + kRows - 1) / kRows;
  load_t<D>(sQt, q, p.q.st, i0, p.Tq);

  float o[4][D / 16];
  float m[4], l[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < D / 16; ++c) o[r][c] = 0.f;
  }

  for (int kb = 0; kb < nkb; ++kb) {
    const int j0 = kb * kRows;
    __syncthreads();  // every thread is done with P^T and V of the previous block
    load_t<D>(sKt, k, p.k.st, j0, p.Tk);
    load_r<D>(sV, v, p.v.st, j0, p.Tk);
    __syncthreads();

    float s[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r) s[r][0] = s[r][1] = s[r][2] = s[r][3] = 0.f;
    mm<D, kRows>(s, sQt, sKt, ty, tx);

    // scores in log2 units with every rule applied; the per-element rules only where a block needs them
    const bool per_element = j0 + kRows > p.Tk || (p.causal && j0 + kRows - 1 > i0) || p.mask.kind != kNoMask;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = i0 + 4 * ty + r, j = j0 + 4 * tx + c;
        float& x = s[r][c];
        if (!per_element) x *= p.scale_log2;
        else if (j >= p.Tk) x = -INFINITY;
        else if (i >= p.Tq) x = p.causal && j > i ? -INFINITY : x * p.scale_log2;  // padding row: no mask read
        else x = masked_score(x, p.scale_log2, p.mask, mb, i, j, p.causal);
      }
    }

    // online softmax: per row, the thread's 4 scores, then across the half-warp
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float mx = fmaxf(fmaxf(m[r], fmaxf(s[r][0], s[r][1])), fmaxf(s[r][2], s[r][3]));
#pragma unroll
      for (int w = 1; w < 16; w <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, w));
      const float mu = mx == -INFINITY ? 0.f : mx;  // a row with nothing kept yet: P = 0, alpha = 0
      const float alpha = exp2f(m[r] - mu);
      m[r] = mx;
      float rsum = 0.f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] = exp2f(s[r][c] - mu);
        rsum += s[r][c];
      }
      l[r] = l[r] * alpha + rsum;  // this thread's partial sum
#pragma unroll
      for (int c = 0; c < D / 16; ++c) o[r][c] *= alpha;
      if (p.drop.on) {
        const int i = i0 + 4 * ty + r;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int j = j0 + 4 * tx + c;
          if (i >= p.Tq || j >= p.Tk) continue;  // padding: P is 0 (past Tk) or never stored
          if (!keep1(seed, offset, ((uint64_t)bh * p.Tq + i) * p.Tk + j, p.drop.thr)) s[r][c] = 0.f;
          else s[r][c] *= p.drop.rs;
        }
      }
    }

    __syncthreads();  // every thread is done reading K^T: P^T goes over it
    store_t(sKt, s, ty, tx);
    __syncthreads();
    mm<kRows, D>(o, sKt, sV, ty, tx);
  }

  // epilogue: row sums across the half-warp; out from registers, lse by the row group's first thread
#pragma unroll
  for (int r = 0; r < 4; ++r) {
#pragma unroll
    for (int w = 1; w < 16; w <<= 1) l[r] += __shfl_xor_sync(0xffffffffu, l[r], w);
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
    for (int c = 0; c < D / 16; ++c) o[r][c] *= inv;
    const int i = i0 + 4 * ty + r;
    if (tx == 0 && i < p.Tq) p.lse[(int64_t)bh * p.Tq + i] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
  f32::store_rows<D>(head_of<float>(p.out, b, h), p.out.st, o, 1.f, i0, p.Tq, ty, tx);
}

#ifndef FLASH_EMULATE
template <int D>
static void launch_fwd32_d(const vt::Call& c, FwdParams p) {
  constexpr size_t smem = fwd32_smem<D>();
  p.nqb = (p.Tq + f32::kRows - 1) / f32::kRows;
  allow_smem(c, flash_fwd32_kernel<D>, smem);
  vt::cuda::launch(c, "flash_fwd32_kernel", flash_fwd32_kernel<D>, dim3((unsigned)p.nqb * (unsigned)p.BH),
                   dim3(f32::kThreads), smem, p);
}

void launch_fwd32(const vt::Call& c, const FwdParams& p, int D) {
  switch (D) {  // what takes() admits: 32, 64, 128
    case 32: return launch_fwd32_d<32>(c, p);
    case 64: return launch_fwd32_d<64>(c, p);
    default: return launch_fwd32_d<128>(c, p);
  }
}
#endif  // FLASH_EMULATE

}  // namespace flashcu
