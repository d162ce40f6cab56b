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

[[maybe_unused]] static VT_NN_CLONES void row_scale(float* __restrict y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}
// y = x - s
[[maybe_unused]] static VT_NN_CLONES void row_sub(const float* __restrict x, float* __restrict y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] - s;
}

}  // namespace nnm
