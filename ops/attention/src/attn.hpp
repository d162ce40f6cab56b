// attn.hpp — what the files of the attention pack share: sizes, the mask view, the dropout keep
// rule, and the vectorised tile primitives of the flash kernels. (The argument checks are the ops'
// meta steps, in pack.cpp: the computes get arguments already checked.)
//
// Shape legend (torch's): B = batch, H = query heads, Hkv = key/value heads, Tq = queries, Tk = keys,
// D = head dim of q/k, Dv = head dim of v. q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv),
// out (B, H, Tq, Dv), lse (B, H, Tq): log-sum-exp of the scaled, masked scores of each query row
// (before dropout). Hkv == H is plain multi-head attention; Hkv dividing H is grouped-query
// attention (MQA at Hkv = 1): query head h attends to kv head h / (H / Hkv) (torch's
// repeat_interleave of k and v over the group), and dk, dv sum over the group's query heads.
// mask broadcasts to (B, H, Tq, Tk): bool (True = keep) or additive float. causal keeps key j for
// query i when j <= i (aligned top-left, like torch's is_causal).
//
// Dropout keep rule (identical to core::dropout, so the composed provider's mask is the fused
// backward's): element e = ((b * H + h) * Tq + i) * Tk + j of the (B, H, Tq, Tk) probabilities is
// kept when (word e % 4 of Philox group (offset + e / 4) under key seed) >> 8 >= ceil(p * 2^24);
// kept values are scaled by 1 / (1 - p). The forward reserves ceil(B*H*Tq*Tk / 4) groups.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "vt/fastmath.hpp"
#include "vt/philox.h"
#include "vt/oppack.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VT_ATTN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VT_ATTN_CLONES
#endif
#define VT_ATTN_INLINE inline __attribute__((always_inline))

namespace attn {

// ---- arguments ------------------------------------------------------------------------------------
struct Dims {
  int64_t B, H, Tq, Tk, D, Dv, Hkv;
  int64_t group() const { return Hkv > 0 ? H / Hkv : 1; }  // query heads per kv head
};

// Element strides of a 4-d tensor, and of the mask broadcast to (B, H, Tq, Tk) (0 where broadcast).
struct Strides4 {
  int64_t b, h, t, d;
};
inline Strides4 strides4(const vt_tensor* t) { return {t->strides[0], t->strides[1], t->strides[2], t->strides[3]}; }

// The sizes of q, k, v (shapes the meta step accepted).
inline Dims dims(const vt_tensor* q, const vt_tensor* k, const vt_tensor* v) {
  return {q->sizes[0], q->sizes[1], q->sizes[2], k->sizes[2], q->sizes[3], v->sizes[3], k->sizes[1]};
}

// lse's dtype (and the compute type): float64 for float64 inputs, else float32
inline vt_dtype acc_dtype(vt_dtype t) {
  return vt::scalar_type(t) == vt::ScalarType::Float64 ? vt::kFloat64 : vt::kFloat32;
}

inline double default_scale(int64_t D) { return D > 0 ? 1.0 / std::sqrt((double)D) : 1.0; }

// ---- output layouts (the meta steps', pack.cpp) ---------------------------------------------------
// The outputs follow their inputs' memory arrangement, as torch's flash attention does: a q that
// is a head-transposed view of a (B, T, H, D) buffer (miniGPT's, nanoGPT's) gives an out whose
// transpose(1, 2) is contiguous, so the caller's `.transpose(1, 2).contiguous()` copies nothing.

// The 4 dims of t from outermost to innermost in memory: by decreasing stride, ties in logical
// order; a size-1 or broadcast (stride 0) dim, whose stride says nothing of the arrangement, right
// after the logical dim before it. A contiguous t gives 0, 1, 2, 3.
inline void memory_order(const vt_tensor* t, int32_t order[4]) {
  auto moves = [&](int32_t i) { return t->sizes[i] != 1 && t->strides[i] != 0; };
  int32_t n = 0;
  for (int32_t i = 0; i < 4; ++i)
    if (moves(i)) order[n++] = i;
  std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return t->strides[a] > t->strides[b]; });
  for (int32_t i = 0; i < 4; ++i) {
    if (moves(i)) continue;
    int32_t at = 0;  // dim i - 1 is placed already (dims are inserted in logical order)
    for (int32_t j = 0; j < n && i > 0; ++j)
      if (order[j] == i - 1) at = j + 1;
    for (int32_t j = n; j > at; --j) order[j] = order[j - 1];
    order[at] = i;
    ++n;
  }
}

// A new tensor of the 4-d `sizes`, dense, with its dims in memory in `like`'s memory_order (a
// contiguous like gives a contiguous result).
inline vt::Tensor empty_in_layout_of(const vt::Call& c, const vt_tensor* like, const int64_t* sizes, vt_dtype dtype) {
  int32_t order[4];
  memory_order(like, order);
  if (order[0] == 0 && order[1] == 1 && order[2] == 2 && order[3] == 3) return c.empty(sizes, 4, dtype);
  int64_t phys[4], strides[4];
  for (int32_t i = 0; i < 4; ++i) phys[i] = sizes[order[i]];
  vt::Tensor buf = c.empty(phys, 4, dtype);
  for (int32_t i = 0; i < 4; ++i) strides[order[i]] = buf->strides[i];
  return c.view(buf.get(), sizes, strides, 4, 0);
}

// "Packed" q, k, v: three slices of the same sizes and strides at evenly spaced addresses, q
// first, that together tile one dense block exactly — the split(C, dim=-1) of a (B, T, 3C)
// projection viewed (B, T, H, D) and transposed (B, H, T, D), or a stack of three. Returns the
// distance from q to k (and k to v) in elements, 0 when they are not packed that way. On the
// meta device the addresses are the storage offsets, so the answer is the same there.
inline int64_t packed_qkv_step(const vt_tensor* q, const vt_tensor* k, const vt_tensor* v) {
  if (q->numel == 0) return 0;
  for (const vt_tensor* t : {k, v}) {
    if (!vt::same_dtype(t->dtype, q->dtype) || t->ndim != 4) return 0;
    for (int32_t i = 0; i < 4; ++i)
      if (t->sizes[i] != q->sizes[i] || (q->sizes[i] != 1 && t->strides[i] != q->strides[i])) return 0;
  }
  const int64_t es = (int64_t)vt::element_size(q->dtype);
  const intptr_t qk = static_cast<const char*>(k->data) - static_cast<const char*>(q->data);
  const intptr_t kv = static_cast<const char*>(v->data) - static_cast<const char*>(k->data);
  if (qk <= 0 || qk != kv || qk % es != 0) return 0;
  const int64_t step = (int64_t)qk / es;
  // the (3, B, H, T, D) arrangement with strides (step, q's): dense when, in increasing stride,
  // each stride is the extent of everything inside it
  int64_t sz[5], st[5];
  int32_t n = 0;
  for (int32_t i = 0; i < 4; ++i)
    if (q->sizes[i] != 1) sz[n] = q->sizes[i], st[n++] = q->strides[i];
  sz[n] = 3, st[n++] = step;
  int32_t idx[5] = {0, 1, 2, 3, 4};
  std::sort(idx, idx + n, [&](int32_t a, int32_t b) { return st[a] < st[b]; });
  int64_t expect = 1;
  for (int32_t j = 0; j < n; ++j) {
    if (st[idx[j]] != expect) return 0;
    expect *= sz[idx[j]];
  }
  return step;
}

// The arguments of attention::sdpa, read once by name (meta step and computes alike).
struct SdpaArgs {
  vt_tensor *q, *k, *v, *mask;
  bool causal, has_scale;  // scale None: 1/sqrt(D)
  double scale_arg, p;
  bool enable_gqa;  // k, v may have fewer heads than q (the meta step's check; computes read shapes)
  explicit SdpaArgs(const vt::Call& c)
      : q(c.arg(0, "q").tensor()), k(c.arg(1, "k").tensor()), v(c.arg(2, "v").tensor()),
        mask(c.arg(3, "mask").tensor_or_null()), causal(c.arg(4, "causal").bool_()),
        has_scale(!c.arg(5, "scale").is_none()), scale_arg(c.arg(5, "scale").float_or(0.0)),
        p(c.arg(6, "dropout_p").float_()), enable_gqa(c.arg(7, "enable_gqa").bool_()) {}
  double scale(int64_t D) const { return has_scale ? scale_arg : default_scale(D); }
};

// The arguments of attention::sdpa_backward.
struct SdpaBackwardArgs {
  vt_tensor *go, *q, *k, *v, *out, *lse, *mask;
  bool causal;
  double scale, p;
  int64_t seed, offset;
  vt_tensor* glse;
  vt_tensor* rng;  // the forward's int64 (2,) [seed, offset] tensor, when given instead of seed/offset
  explicit SdpaBackwardArgs(const vt::Call& c)
      : go(c.arg(0, "grad_out").tensor()), q(c.arg(1, "q").tensor()), k(c.arg(2, "k").tensor()),
        v(c.arg(3, "v").tensor()), out(c.arg(4, "out").tensor()), lse(c.arg(5, "lse").tensor()),
        mask(c.arg(6, "mask").tensor_or_null()), causal(c.arg(7, "causal").bool_()),
        scale(c.arg(8, "scale").float_()), p(c.arg(9, "dropout_p").float_()), seed(c.arg(10, "seed").int_()),
        offset(c.arg(11, "offset").int_()), glse(c.arg(12, "grad_lse").tensor_or_null()),
        rng(c.arg(13, "rng").tensor_or_null()) {
    // on the cpu the values are plain memory: take them (once the meta step has checked the tensor)
    if (rng && rng->device.type == VT_CPU && rng->ndim == 1 && rng->numel == 2 && rng->strides[0] == 1 &&
        vt::scalar_type(rng->dtype) == vt::ScalarType::Int64) {
      seed = static_cast<const int64_t*>(rng->data)[0];
      offset = static_cast<const int64_t*>(rng->data)[1];
    }
  }
  // the rng tensor a kernel reads on its device (null on the cpu, where seed/offset hold its values)
  vt_tensor* device_rng() const { return rng && rng->device.type != VT_CPU ? rng : nullptr; }
};

inline Strides4 mask_strides(const vt_tensor* mask) {
  int64_t s[4] = {0, 0, 0, 0};
  for (int32_t i = 0; i < mask->ndim; ++i) {
    const int32_t di = 4 - mask->ndim + i;
    s[di] = mask->sizes[i] == 1 ? 0 : mask->strides[i];
  }
  return {s[0], s[1], s[2], s[3]};
}

// keep threshold of the dropout rule above: keep when (word >> 8) >= thr
inline uint32_t dropout_threshold(double p) { return (uint32_t)std::ceil(p * 16777216.0); }
inline uint64_t dropout_groups(const Dims& d) { return (uint64_t)((d.B * d.H * d.Tq * d.Tk + 3) / 4); }

// keep[jj * ldk + ii] for query rows i0 + ii (ii < nq) and keys j0 + jj (jj < nk) of head bh:
// the transposed (keys-major) layout the tiles use.
inline void dropout_keep_tile(uint64_t seed, uint64_t offset, uint32_t thr, const Dims& d, int64_t bh, int64_t i0,
                              int64_t nq, int64_t j0, int64_t nk, uint8_t* keep, int64_t ldk) {
  for (int64_t ii = 0; ii < nq; ++ii) {
    const int64_t e0 = ((bh * d.Tq) + i0 + ii) * d.Tk + j0, e1 = e0 + nk;
    for (int64_t g = e0 / 4; g * 4 < e1; ++g) {
      const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)g);
      for (int w = 0; w < 4; ++w) {
        const int64_t e = g * 4 + w;
        if (e >= e0 && e < e1) keep[(e - e0) * ldk + ii] = (r.x[w] >> 8) >= thr;
      }
    }
  }
}

// ---- math --------------------------------------------------------------------------------------
// float: the SDK's one vectorisable exp (vt/fastmath.hpp; exp(-inf) = 0 as masked scores need)
VT_ATTN_INLINE float fexp(float x) { return vt::fast_exp(x); }
VT_ATTN_INLINE double fexp(double x) { return std::exp(x); }

// ---- the tile GEMM ------------------------------------------------------------------------------
// C (M x N) (+)= A (M x K) * B (K x N), where A(r, k) = a[r * ars + k * aks] (any strides: A is only
// ever broadcast one scalar at a time), B's rows are contiguous (row k at b + k * ldb) and N is a
// multiple of the vector width W (callers pad B and C). Register blocked: 4 rows x up to 4 vectors
// of 64 bytes (16 accumulators: 16 floats or 8 doubles each) per pass over K. Written with GCC
// vector types so every target_clones variant gets explicit vector code (AVX-512: one zmm each).
template <class A> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(64))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(64))); };
template <class A> constexpr int64_t kW = 64 / (int64_t)sizeof(A);

template <class A, int R, int NV>
VT_ATTN_INLINE void gemm_block(int64_t K, const A* __restrict a, int64_t ars, int64_t aks, const A* __restrict b,
                               int64_t ldb, A* __restrict c, int64_t ldc, bool accumulate) {
  using V = typename Vec<A>::type;
  constexpr int64_t W = kW<A>;
  V s[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      if (accumulate) std::memcpy(&s[r][v], c + r * ldc + v * W, sizeof(V));
      else s[r][v] = V{};
    }
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + k * ldb + v * W, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const V av = V{} + a[r * ars + k * aks];
      for (int v = 0; v < NV; ++v) s[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) std::memcpy(c + r * ldc + v * W, &s[r][v], sizeof(V));
}

template <class A, int R>
VT_ATTN_INLINE void gemm_rows(int64_t N, int64_t K, const A* a, int64_t ars, int64_t aks, const A* b, int64_t ldb,
                              A* c, int64_t ldc, bool acc) {
  constexpr int64_t W = kW<A>;
  int64_t n = 0;
  for (; n + 4 * W <= N; n += 4 * W) gemm_block<A, R, 4>(K, a, ars, aks, b + n, ldb, c + n, ldc, acc);
  switch ((N - n) / W) {
    case 3: gemm_block<A, R, 3>(K, a, ars, aks, b + n, ldb, c + n, ldc, acc); break;
    case 2: gemm_block<A, R, 2>(K, a, ars, aks, b + n, ldb, c + n, ldc, acc); break;
    case 1: gemm_block<A, R, 1>(K, a, ars, aks, b + n, ldb, c + n, ldc, acc); break;
    default: break;
  }
}

template <class A>
VT_ATTN_INLINE void gemm(int64_t M, int64_t N, int64_t K, const A* a, int64_t ars, int64_t aks, const A* b,
                         int64_t ldb, A* c, int64_t ldc, bool acc) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) gemm_rows<A, 4>(N, K, a + m * ars, ars, aks, b, ldb, c + m * ldc, ldc, acc);
  switch (M - m) {
    case 3: gemm_rows<A, 3>(N, K, a + m * ars, ars, aks, b, ldb, c + m * ldc, ldc, acc); break;
    case 2: gemm_rows<A, 2>(N, K, a + m * ars, ars, aks, b, ldb, c + m * ldc, ldc, acc); break;
    case 1: gemm_rows<A, 1>(N, K, a + m * ars, ars, aks, b, ldb, c + m * ldc, ldc, acc); break;
    default: break;
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Zero-initialised, 64-byte aligned scratch of A's for one worker (allocated once per task loop,
// never per tile).
template <class A>
class Buf {
 public:
  explicit Buf(int64_t n) : n_(round_up(n > 0 ? n : 1, 16)) {
    p_ = static_cast<A*>(std::aligned_alloc(64, (size_t)n_ * sizeof(A)));
    if (!p_) throw std::bad_alloc();
    std::memset(p_, 0, (size_t)n_ * sizeof(A));
  }
  ~Buf() { std::free(p_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  A* get() const { return p_; }

 private:
  int64_t n_;
  A* p_;
};

}  // namespace attn
