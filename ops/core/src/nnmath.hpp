// nnmath.hpp — vectorisable float32 row primitives shared by the nn family (softmax, norms, losses).
//
// The pack is built without -march (portable binaries), so the hot float32 row loops are compiled
// three times with GCC's target_clones (AVX-512, AVX2, baseline SSE2) and picked at load time by
// the CPU. Every loop is written so the compiler vectorises it: no calls, no early exits, sums in
// 16 independent lanes (which also fixes the summation order: results do not depend on threads).
// exp is the SDK's vt::fast_exp (vt/fastmath.hpp): branch-free, so these loops vectorise, and
// exp(-inf) = 0 as masked rows need.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "vt/fastmath.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VT_NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VT_NN_CLONES
#endif

namespace nnm {

// max of x[0..n) (NaNs are skipped here; they reach the result through the exp pass)
[[maybe_unused]] static VT_NN_CLONES float row_max(const float* __restrict x, int64_t n) {
  float m[16];
  for (int j = 0; j < 16; ++j) m[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  float r = -INFINITY;
  for (int j = 0; j < 16; ++j) r = m[j] > r ? m[j] : r;
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

[[maybe_unused]] static VT_NN_CLONES float row_sum(const float* __restrict x, int64_t n) {
  float a[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) a[j] += x[i + j];
  float r = 0;
  for (int j = 0; j < 16; ++j) r += a[j];
  for (; i < n; ++i) r += x[i];
  return r;
}

// sum of x*y
[[maybe_unused]] static VT_NN_CLONES float row_dot(const float* __restrict x, const float* __restrict y, int64_t n) {
  float a[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) a[j] += x[i + j] * y[i + j];
  float r = 0;
  for (int j = 0; j < 16; ++j) r += a[j];
  for (; i < n; ++i) r += x[i] * y[i];
  return r;
}

// sum of (x - m)^2
[[maybe_unused]] static VT_NN_CLONES float row_sqdev(const float* __restrict x, float m, int64_t n) {
  float a[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) a[j] += (x[i + j] - m) * (x[i + j] - m);
  float r = 0;
  for (int j = 0; j < 16; ++j) r += a[j];
  for (; i < n; ++i) r += (x[i] - m) * (x[i] - m);
  return r;
}

// y = exp(x - m) (y may be null: only the sum is wanted); returns the sum of exp(x - m)
[[maybe_unused]] static VT_NN_CLONES float row_exp_sum(const float* __restrict x, float* __restrict y, float m, int64_t n) {
  float a[16] = {};
  int64_t i = 0;
  if (y) {
    for (int64_t k = 0; k < n; ++k) y[k] = vt::fast_exp(x[k] - m);
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; ++j) a[j] += y[i + j];
    float r = 0;
    for (int j = 0; j < 16; ++j) r += a[j];
    for (; i < n; ++i) r += y[i];
    return r;
  }
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) a[j] += vt::fast_exp(x[i + j] - m);
  float r = 0;
  for (int j = 0; j < 16; ++j) r += a[j];
  for (; i < n; ++i) r += vt::fast_exp(x[i] - m);
  return r;
}

// One row's log-sum-exp and plain sum, in two passes (max and sum together, then the exps): what
// cross_entropy needs per position, in one call. Written with GCC vectors of 16 floats (one
// AVX-512 register, two AVX2 ones) and shuffle-tree reductions: a short row (65 classes)
// otherwise spent more time in the compiler's epilogues and lane-by-lane reductions than in its
// arithmetic. The tail (n % 16 elements) is scalar. NaN anywhere gives a NaN lse (via the exps).
typedef float nn_vf16 __attribute__((vector_size(64)));
typedef uint32_t nn_vu16 __attribute__((vector_size(64)));

#define VT_NN_TREE(v, op)                                                                            \
  do {                                                                                               \
    v = op(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));  \
    v = op(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));  \
    v = op(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));  \
    v = op(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));  \
  } while (0)
static inline nn_vf16 nn_vmax(nn_vf16 a, nn_vf16 b) { return b > a ? b : a; }
static inline nn_vf16 nn_vadd(nn_vf16 a, nn_vf16 b) { return a + b; }

[[maybe_unused]] static VT_NN_CLONES void row_lse_and_sum(const float* __restrict x, int64_t n, float* lse, float* sum) {
  const nn_vf16 zero{};
  nn_vf16 m = zero - INFINITY, a = zero;
  const int64_t full = n / 16 * 16;
  for (int64_t i = 0; i < full; i += 16) {
    nn_vf16 v;
    std::memcpy(&v, x + i, sizeof v);
    m = nn_vmax(m, v);
    a += v;
  }
  VT_NN_TREE(m, nn_vmax);
  VT_NN_TREE(a, nn_vadd);
  float mx = m[0], s = a[0];
  for (int64_t i = full; i < n; ++i) {
    mx = x[i] > mx ? x[i] : mx;
    s += x[i];
  }
  const nn_vf16 vm = zero + mx;
  nn_vf16 e = zero;
  for (int64_t i = 0; i < full; i += 16) {
    nn_vf16 v;
    std::memcpy(&v, x + i, sizeof v);
    e += vt::fast_exp_t<nn_vf16, nn_vu16>(v - vm);
  }
  VT_NN_TREE(e, nn_vadd);
  float es = e[0];
  for (int64_t i = full; i < n; ++i) es += vt::fast_exp(x[i] - mx);
  *lse = mx + std::log(es);
  *sum = s;
}

// g[k] = w * (exp(x[k] - l) - b): cross_entropy's gradient row before the target's term
[[maybe_unused]] static VT_NN_CLONES void row_softmax_grad(const float* __restrict x, float* __restrict g, float l, float w,
                                                           float b, int64_t n) {
  for (int64_t k = 0; k < n; ++k) g[k] = w * (vt::fast_exp(x[k] - l) - b);
}

[[maybe_unused]] static VT_NN_CLONES void row_scale(float* __restrict y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}
// y = x - s
[[maybe_unused]] static VT_NN_CLONES void row_sub(const float* __restrict x, float* __restrict y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] - s;
}

}  // namespace nnm
