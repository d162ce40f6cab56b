// ops/matmul_cutlass/problem.hpp — one bfloat16 GEMM as the pack's kernels take it, and the two
// kernels (gemm_nmajor.cu, gemm_kmajor.cu); the pack (pack.cu) plans and checks, the kernels run.
//
// Shape legend: D (l, m, n) = A (l, m, k) @ B (l, k, n); A and D row-major (unit stride along k,
// along n), B either N-major (row-major, unit stride along n: `x @ w`) or K-major (column-major,
// unit stride along k: `linear`'s weight (n, k)). ld* are the strides of the other matrix dim,
// batch_* the strides between the l matrices (all in elements).
#pragma once

#include <cstdint>

#include "vt/oppack.hpp"

namespace vt_cutlass {

struct Problem {
  int64_t m, n, k, l;
  const void* a;
  int64_t lda, batch_a;
  const void* b;
  int64_t ldb, batch_b;
  void* d;
  int64_t ldd, batch_d;
};

// D = A @ B with FP32 accumulation on the call's stream; fails the call when CUTLASS refuses.
void gemm_bf16_nmajor(vt::Call& c, const Problem& p);
void gemm_bf16_kmajor(vt::Call& c, const Problem& p);

}  // namespace vt_cutlass
