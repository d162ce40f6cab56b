// ops/core/src/matmul.cpp — matmul on CPU through OpenBLAS (scipy-openblas32, scipy_-prefixed CBLAS).
//
// torch semantics: 1-D @ 1-D is a dot product (0-d result); a 1-D self is a row (m = 1) and a
// 1-D other a column (n = 1), their extra dim dropped from the result; N-D operands are batches
// of matrices whose batch dims broadcast. float32 and float64.
//
// Shape legend: self (..., m, k) @ other (..., k, n) -> out (..., m, n), out always contiguous.
// A matrix with a unit stride on either dim goes to BLAS as is (CblasTrans for the transposed
// case); anything else (e.g. an expanded 0-stride dim) is copied to a contiguous scratch buffer.
// When other has no batch dims and self's batch and row dims fold into one, the whole batched
// product is a single GEMM (the `linear` case). Threads: OpenBLAS's own pool runs each GEMM.
#include <climits>
#include <vector>

#include <cblas.h>  // scipy_openblas32's header: every symbol carries the scipy_ prefix

#include "vt/loops.hpp"

namespace {

struct Mat {      // one operand seen as (rows, cols) with element strides
  int64_t rows, cols, rs, cs;
};

// How BLAS can read m as stored: NoTrans (row-major, unit column stride) or Trans (unit row
// stride). Strides of size-1 dims do not matter, so they never force a copy.
bool blas_layout(const Mat& m, CBLAS_TRANSPOSE* tr, int64_t* ld) {
  if ((m.cols == 1 || m.cs == 1) && (m.rows == 1 || m.rs >= std::max<int64_t>(m.cols, 1))) {
    *tr = CblasNoTrans;
    *ld = m.rows == 1 ? std::max<int64_t>(m.cols, 1) : m.rs;
    return *ld <= INT_MAX;
  }
  if ((m.rows == 1 || m.rs == 1) && (m.cols == 1 || m.cs >= std::max<int64_t>(m.rows, 1))) {
    *tr = CblasTrans;
    *ld = m.cols == 1 ? std::max<int64_t>(m.rows, 1) : m.cs;
    return *ld <= INT_MAX;
  }
  return false;
}

void gemm(float* c, int64_t m, int64_t n, int64_t k, CBLAS_TRANSPOSE ta, const float* a, int64_t lda,
          CBLAS_TRANSPOSE tb, const float* b, int64_t ldb) {
  scipy_cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b,
                    (blasint)ldb, 0.0f, c, (blasint)n);
}
void gemm(double* c, int64_t m, int64_t n, int64_t k, CBLAS_TRANSPOSE ta, const double* a, int64_t lda,
          CBLAS_TRANSPOSE tb, const double* b, int64_t ldb) {
  scipy_cblas_dgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, 1.0, a, (blasint)lda, b,
                    (blasint)ldb, 0.0, c, (blasint)n);
}

// Reads matrix `m` at p through BLAS directly or via a contiguous copy in `scratch`.
template <class T>
const T* operand(const T* p, const Mat& m, std::vector<T>& scratch, CBLAS_TRANSPOSE* tr, int64_t* ld) {
  if (blas_layout(m, tr, ld)) return p;
  scratch.resize((size_t)(m.rows * m.cols));
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) scratch[(size_t)(i * m.cols + j)] = p[i * m.rs + j * m.cs];
  *tr = CblasNoTrans;
  *ld = std::max<int64_t>(m.cols, 1);
  return scratch.data();
}

// Do dims [0, n) of t fold into one dim of stride t->strides[n-1]? (size-1 dims never matter)
bool folds(const vt_tensor* t, int32_t n) {
  int64_t expected = t->strides[n - 1] * t->sizes[n - 1];
  for (int32_t d = n - 2; d >= 0; --d) {
    if (t->sizes[d] == 1) continue;
    if (t->strides[d] != expected) return false;
    expected = t->strides[d] * t->sizes[d];
  }
  return true;
}

template <class T>
void matmul_impl(const vt_tensor* a, const vt_tensor* b, vt_tensor* out, const int64_t* batch,
                 int32_t nbatch, const int64_t* a_bstr, const int64_t* b_bstr, Mat A, Mat B) {
  const int64_t m = A.rows, k = A.cols, n = B.cols;
  T* o = vt::data<T>(out);
  if (out->numel == 0) return;
  if (k == 0) {  // empty sum: zeros
    std::memset(o, 0, (size_t)out->numel * sizeof(T));
    return;
  }
  int64_t nb = 1;
  for (int32_t i = 0; i < nbatch; ++i) nb *= batch[i];
  std::vector<T> sa, sb;
  int64_t idx[vt::kMaxDims] = {};
  for (int64_t bi = 0; bi < nb; ++bi) {
    int64_t ao = 0, bo = 0;
    for (int32_t i = 0; i < nbatch; ++i) { ao += idx[i] * a_bstr[i]; bo += idx[i] * b_bstr[i]; }
    CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    const T* pa = operand(vt::data<const T>(a) + ao, A, sa, &ta, &lda);
    const T* pb = operand(vt::data<const T>(b) + bo, B, sb, &tb, &ldb);
    gemm(o + bi * m * n, m, n, k, ta, pa, lda, tb, pb, ldb);
    for (int32_t i = nbatch - 1; i >= 0; --i) {  // odometer over the batch dims
      if (++idx[i] < batch[i]) break;
      idx[i] = 0;
    }
  }
}

}  // namespace

VT_KERNEL(matmul_cpu, "core::matmul") {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  c.check_same_device(a, "self", b, "other");
  c.check_same_dtype(a, "self", b, "other");
  vt::check_ndim(c.op, a, "self");
  vt::check_ndim(c.op, b, "other");
  if (a->ndim == 0 || b->ndim == 0)
    c.fail(VT_ERR_VALUE, "both arguments need at least 1 dim, got self %s and other %s", vt::shape_str(a).c_str(),
           vt::shape_str(b).c_str());

  // each operand as a batch of matrices
  const int32_t an = a->ndim, bn = b->ndim;
  Mat A = an == 1 ? Mat{1, a->sizes[0], 0, a->strides[0]}
                  : Mat{a->sizes[an - 2], a->sizes[an - 1], a->strides[an - 2], a->strides[an - 1]};
  Mat B = bn == 1 ? Mat{b->sizes[0], 1, b->strides[0], 0}
                  : Mat{b->sizes[bn - 2], b->sizes[bn - 1], b->strides[bn - 2], b->strides[bn - 1]};
  if (A.cols != B.rows)
    c.fail(VT_ERR_VALUE, "shape mismatch: self %s @ other %s", vt::shape_str(a).c_str(), vt::shape_str(b).c_str());
  const int32_t abatch = an > 2 ? an - 2 : 0, bbatch = bn > 2 ? bn - 2 : 0;
  const int32_t nbatch = std::max(abatch, bbatch);
  int64_t batch[vt::kMaxDims], a_bstr[vt::kMaxDims], b_bstr[vt::kMaxDims];
  for (int32_t i = 0; i < nbatch; ++i) {
    const int32_t ia = i - (nbatch - abatch), ib = i - (nbatch - bbatch);
    const int64_t sa = ia >= 0 ? a->sizes[ia] : 1, sb = ib >= 0 ? b->sizes[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      c.fail(VT_ERR_VALUE, "batch dims cannot be broadcast: self %s @ other %s", vt::shape_str(a).c_str(),
             vt::shape_str(b).c_str());
    batch[i] = sa == 1 ? sb : sa;
    a_bstr[i] = sa == 1 ? 0 : a->strides[ia];
    b_bstr[i] = sb == 1 ? 0 : b->strides[ib];
  }
  if (A.rows > INT_MAX || A.cols > INT_MAX || B.cols > INT_MAX)
    c.fail(VT_ERR_VALUE, "matrix dims too large for 32-bit BLAS: self %s @ other %s", vt::shape_str(a).c_str(),
           vt::shape_str(b).c_str());

  int64_t shape[vt::kMaxDims + 2];
  int32_t ndim = 0;
  for (int32_t i = 0; i < nbatch; ++i) shape[ndim++] = batch[i];
  if (an > 1) shape[ndim++] = A.rows;
  if (bn > 1) shape[ndim++] = B.cols;
  vt::Tensor out = c.empty(shape, ndim, a->dtype);

  // The `linear` case: other is a plain matrix and self's batch+row dims fold into one row dim.
  int32_t nb = nbatch;
  if (nbatch > 0 && bbatch == 0 && A.rows * A.cols > 0 && (A.cols == 1 || A.cs == 1) && folds(a, an - 1)) {
    int64_t rows = 1;
    for (int32_t d = 0; d < an - 1; ++d) rows *= a->sizes[d];
    if (rows <= INT_MAX) {
      A.rows = rows;
      nb = 0;
    }
  }

  vt::dispatch(vt::kFloatTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    matmul_impl<T>(a, b, out, batch, nb, a_bstr, b_bstr, A, B);
  });
  c.set_out(0, std::move(out));
}
