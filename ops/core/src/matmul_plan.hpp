// matmul_plan.hpp — how matmul/bmm/linear/addmm become GEMMs: shared by the meta step and CPU
// compute (src/matmul.cpp) and the CUDA compute (cuda/matmul.cu), so every device reads the
// operands, broadcasts the batch and folds the `linear` case by the same rules.
//
// Shape legend: A (m, k) @ B (k, n) -> C (m, n), repeated over the broadcast batch dims.
// Not here: any arithmetic, library calls or messages (the callers own those).
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "vt/loops.hpp"
#include "vt/oppack.hpp"

namespace core {

// vt.backends.cuda.matmul.allow_tf32, set by the op core::set_cuda_matmul_flags (matmul.cpp).
extern std::atomic<bool> cuda_matmul_allow_tf32;

struct Mat {  // one operand seen as (rows, cols) with element strides
  int64_t rows, cols, rs, cs;
};

// How a GEMM library can read m as stored: row-major (unit column stride, ld = row stride,
// *trans = false) or column-major (unit row stride, ld = column stride, *trans = true). Strides of
// size-1 dims do not matter, so they never force a copy. false: neither (needs a contiguous copy).
inline bool gemm_layout(const Mat& m, bool* trans, int64_t* ld) {
  if ((m.cols == 1 || m.cs == 1) && (m.rows == 1 || m.rs >= std::max<int64_t>(m.cols, 1))) {
    *trans = false;
    *ld = m.rows == 1 ? std::max<int64_t>(m.cols, 1) : m.rs;
    return true;
  }
  if ((m.rows == 1 || m.rs == 1) && (m.cols == 1 || m.cs >= std::max<int64_t>(m.rows, 1))) {
    *trans = true;
    *ld = m.cols == 1 ? std::max<int64_t>(m.rows, 1) : m.cs;
    return true;
  }
  return false;
}

// The matrix part of a tensor (last two dims; a 1-D tensor is a row).
inline Mat matrix_of(const vt_tensor* t) {
  return t->ndim == 1 ? Mat{1, t->sizes[0], 0, t->strides[0]}
                      : Mat{t->sizes[t->ndim - 2], t->sizes[t->ndim - 1], t->strides[t->ndim - 2],
                            t->strides[t->ndim - 1]};
}

// A product to run: nb = prod(batch) GEMMs of A (m, k) @ B (k, n) into contiguous C (nb, m, n),
// optionally C = beta * init + alpha * A @ B with init broadcast over (m, n) and the batch.
struct Gemm {
  Mat A, B;
  int32_t nbatch = 0;
  int64_t batch[vt::kMaxDims], a_bstr[vt::kMaxDims], b_bstr[vt::kMaxDims];
  const vt_tensor* init = nullptr;  // same dtype as a, b
  int64_t init_rs = 0, init_cs = 0;
  double alpha = 1.0, beta = 0.0;
};

// init (bias, addmm's self) broadcast over (m, n): its strides there (0 along broadcast dims).
inline void set_init(Gemm& G, const vt_tensor* init, double beta) {
  G.init = init;
  G.init_cs = init->ndim >= 1 && init->sizes[init->ndim - 1] != 1 ? init->strides[init->ndim - 1] : 0;
  G.init_rs = init->ndim >= 2 && init->sizes[init->ndim - 2] != 1 ? init->strides[init->ndim - 2] : 0;
  G.beta = beta;
}

// Do dims [0, n) of t fold into one dim of stride t->strides[n-1]? (size-1 dims never matter)
inline bool folds(const vt_tensor* t, int32_t n) {
  int64_t expected = t->strides[n - 1] * t->sizes[n - 1];
  for (int32_t d = n - 2; d >= 0; --d) {
    if (t->sizes[d] == 1) continue;
    if (t->strides[d] != expected) return false;
    expected = t->strides[d] * t->sizes[d];
  }
  return true;
}

enum class Plan { Ok, Inner, Batch };

// The general N-d product a @ b (torch.matmul) as a Gemm, and its output shape. `b_is_weight`: b
// is given as (n, k) and used transposed (linear). Says which rule the shapes break, if any (the
// meta step turns that into the message; a compute plans shapes the meta step accepted).
inline Plan plan_matmul(const vt_tensor* a, const vt_tensor* b, bool b_is_weight, Gemm& G, int64_t* shape,
                        int32_t* ndim) {
  const int32_t an_ = a->ndim, bn_ = b->ndim;
  G.A = matrix_of(a);
  if (b_is_weight)  // weight (n, k) read as (k, n)
    G.B = bn_ == 1 ? Mat{b->sizes[0], 1, b->strides[0], 0} : Mat{b->sizes[1], b->sizes[0], b->strides[1], b->strides[0]};
  else
    G.B = bn_ == 1 ? Mat{b->sizes[0], 1, b->strides[0], 0}
                   : Mat{b->sizes[bn_ - 2], b->sizes[bn_ - 1], b->strides[bn_ - 2], b->strides[bn_ - 1]};
  if (G.A.cols != G.B.rows) return Plan::Inner;
  const int32_t abatch = an_ > 2 ? an_ - 2 : 0, bbatch = (!b_is_weight && bn_ > 2) ? bn_ - 2 : 0;
  G.nbatch = std::max(abatch, bbatch);
  for (int32_t i = 0; i < G.nbatch; ++i) {
    const int32_t ia = i - (G.nbatch - abatch), ib = i - (G.nbatch - bbatch);
    const int64_t sa = ia >= 0 ? a->sizes[ia] : 1, sb = ib >= 0 ? b->sizes[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) return Plan::Batch;
    G.batch[i] = sa == 1 ? sb : sa;
    G.a_bstr[i] = sa == 1 ? 0 : a->strides[ia];
    G.b_bstr[i] = sb == 1 ? 0 : b->strides[ib];
  }
  int32_t nd = 0;
  for (int32_t i = 0; i < G.nbatch; ++i) shape[nd++] = G.batch[i];
  if (an_ > 1) shape[nd++] = G.A.rows;
  if (bn_ > 1) shape[nd++] = G.B.cols;
  *ndim = nd;
  // the `linear` case: b is one matrix and a's batch+row dims fold into one row dim
  if (G.nbatch > 0 && bbatch == 0 && G.A.rows * G.A.cols > 0 && (G.A.cols == 1 || G.A.cs == 1) && folds(a, an_ - 1)) {
    int64_t rows = 1;
    for (int32_t d = 0; d < an_ - 1; ++d) rows *= a->sizes[d];
    if (rows <= INT_MAX) {
      G.A.rows = rows;
      G.nbatch = 0;
    }
  }
  return Plan::Ok;
}

}  // namespace core
