// ops/core/src/matmul.cpp — matmul, bmm, addmm, linear: meta steps, CPU computes through OpenBLAS
// (scipy-openblas32, scipy_-prefixed CBLAS), backward rules, and the CUDA matmul flags op. The
// CUDA computes (cuBLASLt) are in cuda/matmul.cu; both plan GEMMs with matmul_plan.hpp.
// Not here: attention (ops/attention).
//
// Shape legend: self (..., m, k) @ other (..., k, n) -> out (..., m, n), out always contiguous.
// torch semantics: 1-D @ 1-D is a dot product (0-d result); a 1-D self is a row (m = 1) and a
// 1-D other a column (n = 1), their extra dim dropped from the result; N-D operands are batches
// of matrices whose batch dims broadcast. bmm is the strict (b, m, k) @ (b, k, n) form; addmm is
// beta * self + alpha * (mat1 @ mat2); linear is input (..., in) @ weight(out, in)^T + bias(out).
//
// Threads. OpenBLAS's own pool would fight the runtime's pool (its threads spin in
// blas_thread_server), so the first GEMM sets OpenBLAS to one thread (not in init: init may not
// compute) and every product is split into work items — (batch, row block) or (batch, column
// block) — run by vt::parallel_for, each a single-threaded GEMM writing its own block of out.
// Bias / addmm's self is the GEMM's C input (beta), written into the block just before its GEMM.
//
// Layouts. A matrix with a unit stride on either dim goes to BLAS as is (CblasTrans for the
// transposed case); anything else (an expanded 0-stride dim) is first copied by core::contiguous.
// When other has no batch dims and self's batch and row dims fold into one, the whole batched
// product is a single GEMM (the `linear` case). float16/bfloat16: converted to float32, multiplied,
// converted back (OpenBLAS has no float16 GEMM).
//
// Each op is a meta step (shape and dtype checks, the output; every device) and a CPU compute
// (the GEMMs, into the output the meta step made). linear has its own fused compute (bias as the
// GEMM's C input), so it is not composed of matmul/addmm.
#include <climits>
#include <mutex>
#include <numeric>
#include <vector>

#include <cblas.h>  // scipy_openblas32's header: every symbol carries the scipy_ prefix

#include "core.hpp"
#include "gradops.hpp"
#include "matmul_plan.hpp"
#include "vt/loops.hpp"

namespace {

using core::Gemm;
using core::Mat;
using core::Plan;

// How BLAS can read m as stored (core::gemm_layout), within 32-bit BLAS's leading dims.
bool blas_layout(const Mat& m, CBLAS_TRANSPOSE* tr, int64_t* ld) {
  bool trans = false;
  if (!core::gemm_layout(m, &trans, ld)) return false;
  *tr = trans ? CblasTrans : CblasNoTrans;
  return *ld <= INT_MAX;
}

void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

void gemm(float* c, int64_t ldc, int64_t m, int64_t n, int64_t k, double alpha, CBLAS_TRANSPOSE ta,
          const float* a, int64_t lda, CBLAS_TRANSPOSE tb, const float* b, int64_t ldb, double beta) {
  scipy_cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, (float)alpha, a, (blasint)lda, b,
                    (blasint)ldb, (float)beta, c, (blasint)ldc);
}
void gemm(double* c, int64_t ldc, int64_t m, int64_t n, int64_t k, double alpha, CBLAS_TRANSPOSE ta,
          const double* a, int64_t lda, CBLAS_TRANSPOSE tb, const double* b, int64_t ldb, double beta) {
  scipy_cblas_dgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b,
                    (blasint)ldb, beta, c, (blasint)ldc);
}

// Is the matrix part (last two dims; a 1-D tensor is a row) readable by BLAS without a copy?
bool matrix_ok(const vt_tensor* t) {
  CBLAS_TRANSPOSE tr;
  int64_t ld;
  return t->ndim == 0 || blas_layout(core::matrix_of(t), &tr, &ld);
}

constexpr int64_t kSerialFlops = 1 << 20;  // m*n*k below this: one GEMM on the calling thread

template <class T>
void run_gemm(const vt_host* host, const Gemm& G, const T* a, const T* b, T* c) {
  const int64_t m = G.A.rows, k = G.A.cols, n = G.B.cols;
  int64_t nb = 1;
  for (int32_t i = 0; i < G.nbatch; ++i) nb *= G.batch[i];
  if (nb * m * n == 0) return;
  const T* init = G.init ? vt::data<const T>(G.init) : nullptr;
  const bool use_init = init && G.beta != 0.0;

  CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
  int64_t lda = 1, ldb = 1;
  if (k > 0) {
    const bool oka = blas_layout(G.A, &ta, &lda), okb = blas_layout(G.B, &tb, &ldb);
    if (!oka || !okb) vt::fail(VT_ERR_RUNTIME, "[core::matmul] internal: operand not in a BLAS layout");
  }
  // batch offsets of each GEMM
  std::vector<int64_t> aoff((size_t)nb), boff((size_t)nb);
  {
    int64_t idx[vt::kMaxDims] = {};
    for (int64_t bi = 0; bi < nb; ++bi) {
      int64_t ao = 0, bo = 0;
      for (int32_t i = 0; i < G.nbatch; ++i) { ao += idx[i] * G.a_bstr[i]; bo += idx[i] * G.b_bstr[i]; }
      aoff[(size_t)bi] = ao;
      boff[(size_t)bi] = bo;
      for (int32_t i = G.nbatch - 1; i >= 0; --i) {
        if (++idx[i] < G.batch[i]) break;
        idx[i] = 0;
      }
    }
  }
  // work items: each GEMM cut into `parts` blocks along its larger output dim
  const int64_t nt = std::max<int32_t>(1, host->num_threads());
  const bool split_n = n > m;
  const int64_t dim = split_n ? n : m;
  int64_t parts = nt / std::gcd(nb, nt);
  parts = std::max<int64_t>(1, std::min(parts, (dim + 15) / 16));
  const int64_t block = (dim + parts - 1) / parts;
  const int64_t items = nb * parts;
  const bool serial = (double)nb * m * n * std::max<int64_t>(k, 1) < (double)kSerialFlops;

  vt::parallel_for(host, 0, items, serial ? items : 1, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t bi = it / parts, p = it % parts;
      const int64_t lo = p * block, hi = std::min(dim, lo + block);
      if (lo >= hi) continue;
      const int64_t m0 = split_n ? 0 : lo, m1 = split_n ? m : hi;
      const int64_t n0 = split_n ? lo : 0, n1 = split_n ? hi : n;
      T* cp = c + bi * m * n + m0 * n + n0;
      if (use_init)
        for (int64_t i = m0; i < m1; ++i) {
          const T* src = init + i * G.init_rs;
          T* dst = cp + (i - m0) * n;
          for (int64_t j = n0; j < n1; ++j) dst[j - n0] = src[j * G.init_cs];
        }
      if (k == 0) {  // empty sum: beta * init or zeros
        for (int64_t i = m0; i < m1; ++i)
          for (int64_t j = n0; j < n1; ++j) {
            T& v = cp[(i - m0) * n + (j - n0)];
            v = use_init ? (T)(G.beta * v) : T(0);
          }
        continue;
      }
      gemm(cp, n, m1 - m0, n1 - n0, k, G.alpha, ta, a + aoff[(size_t)bi] + m0 * G.A.rs, lda, tb,
           b + boff[(size_t)bi] + n0 * G.B.cs, ldb, use_init ? G.beta : 0.0);
    }
  });
}

// out (contiguous, a's dtype: float32 or float64) = the product G over tensors a and b (and G.init).
void execute(vt::Call& c, const Gemm& G, const vt_tensor* a, const vt_tensor* b, const vt_tensor* out) {
  if (G.A.rows > INT_MAX || G.A.cols > INT_MAX || G.B.cols > INT_MAX)
    c.fail(VT_ERR_VALUE, "matrix dims too large for 32-bit BLAS: (%lld, %lld) @ (%lld, %lld)", (long long)G.A.rows,
           (long long)G.A.cols, (long long)G.B.rows, (long long)G.B.cols);
  blas_single_threaded();
  if (vt::scalar_type(a->dtype) == vt::ScalarType::Float32)
    run_gemm<float>(c.host, G, vt::data<const float>(a), vt::data<const float>(b), vt::data<float>(out));
  else
    run_gemm<double>(c.host, G, vt::data<const double>(a), vt::data<const double>(b), vt::data<double>(out));
}

// Refuses dtypes BLAS cannot multiply (meta step: the same error on every device).
void check_blas_dtype(vt::Call& c, vt_dtype dtype) {
  const vt::ScalarType st = vt::scalar_type(dtype);
  if (st != vt::ScalarType::Float16 && st != vt::ScalarType::BFloat16 && st != vt::ScalarType::Float32 &&
      st != vt::ScalarType::Float64)
    c.fail(VT_ERR_NOT_IMPL, "not implemented for dtype %s (supported: float32, float64, float16, bfloat16)",
           vt::dtype_name(dtype));
}

// The operands a CPU compute multiplies: float16/bfloat16 inputs converted to float32
// (contiguous), matrices BLAS cannot read as stored copied by core::contiguous; the rest used as
// they are. `dst(out)` is where the product goes: out itself, or (float16/bfloat16) a float32
// scratch that `finish` converts into out.
struct Prep {
  vt::Tensor own[3];
  const vt_tensor* t[3] = {nullptr, nullptr, nullptr};
  vt::Tensor scratch;
  bool reduced = false;

  Prep(vt::Call& c, std::initializer_list<const vt_tensor*> ts) {
    const vt::ScalarType st = vt::scalar_type((*ts.begin())->dtype);
    reduced = st == vt::ScalarType::Float16 || st == vt::ScalarType::BFloat16;
    int i = 0;
    for (const vt_tensor* x : ts) {
      t[i] = x;
      if (x && reduced) {
        own[i] = c.empty(x->sizes, x->ndim, vt::kFloat32);
        vt::call(c.host, "core::copy_", {own[i].get(), const_cast<vt_tensor*>(x)});
        t[i] = own[i];
      } else if (x && !matrix_ok(x)) {
        own[i] = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(x)});
        t[i] = own[i];
      }
      ++i;
    }
  }
  vt_tensor* dst(vt::Call& c, vt_tensor* out) {
    if (!reduced) return out;
    scratch = c.empty(out->sizes, out->ndim, vt::kFloat32);
    return scratch;
  }
  void finish(vt::Call& c, vt_tensor* out) const {
    if (reduced) vt::call(c.host, "core::copy_", {out, scratch.get()});
  }
};

void check_pair(vt::Call& c, const vt_tensor* a, const char* an, const vt_tensor* b, const char* bn) {
  c.check_same_device(a, an, b, bn);
  c.check_same_dtype(a, an, b, bn);
  vt::check_ndim(c.op, a, an);
  vt::check_ndim(c.op, b, bn);
}

// The meta step's half of matmul/bmm/linear: the shape rules with their messages, and the output.
void matmul_out(vt::Call& c, const vt_tensor* a, const vt_tensor* b, bool b_is_weight, const char* an, const char* bn) {
  Gemm G;
  int64_t shape[vt::kMaxDims + 2];
  int32_t ndim = 0;
  switch (core::plan_matmul(a, b, b_is_weight, G, shape, &ndim)) {
    case Plan::Inner:
      c.fail(VT_ERR_VALUE, "shape mismatch: %s %s and %s %s (inner dims %lld vs %lld)", an, vt::shape_str(a).c_str(), bn,
             vt::shape_str(b).c_str(), (long long)G.A.cols, (long long)G.B.rows);
    case Plan::Batch:
      c.fail(VT_ERR_VALUE, "batch dims cannot be broadcast: %s %s and %s %s", an, vt::shape_str(a).c_str(), bn,
             vt::shape_str(b).c_str());
    case Plan::Ok:
      break;
  }
  c.set_out(0, c.empty(shape, ndim, a->dtype));
}

// The CPU compute of matmul/bmm/linear: out = a @ b (+ init, linear's bias, broadcast over rows).
void matmul_compute(vt::Call& c, const vt_tensor* a, const vt_tensor* b, bool b_is_weight, const vt_tensor* init) {
  vt_tensor* out = c.out(0);
  Prep p(c, {a, b, init});
  Gemm G;
  int64_t shape[vt::kMaxDims + 2];
  int32_t ndim = 0;
  core::plan_matmul(p.t[0], p.t[1], b_is_weight, G, shape, &ndim);
  if ((init = p.t[2])) core::set_init(G, init, 1.0);  // broadcast to (m, n); validated by the meta step
  execute(c, G, p.t[0], p.t[1], p.dst(c, out));
  p.finish(c, out);
}

}  // namespace

VT_META_FN(matmul_meta, "core::matmul") {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  check_pair(c, a, "self", b, "other");
  if (a->ndim == 0 || b->ndim == 0)
    c.fail(VT_ERR_VALUE, "both arguments need at least 1 dim, got self %s and other %s", vt::shape_str(a).c_str(),
           vt::shape_str(b).c_str());
  check_blas_dtype(c, a->dtype);
  matmul_out(c, a, b, false, "self", "other");
}
VT_COMPUTE(matmul_cpu, "core::matmul") {
  matmul_compute(c, c.arg(0, "self").tensor(), c.arg(1, "other").tensor(), false, nullptr);
}

VT_META_FN(bmm_meta, "core::bmm") {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "mat2").tensor();
  check_pair(c, a, "self", b, "mat2");
  if (a->ndim != 3 || b->ndim != 3)
    c.fail(VT_ERR_VALUE, "expected 3-D tensors, got self %s and mat2 %s", vt::shape_str(a).c_str(),
           vt::shape_str(b).c_str());
  if (a->sizes[0] != b->sizes[0] || a->sizes[2] != b->sizes[1])
    c.fail(VT_ERR_VALUE, "shape mismatch: self %s and mat2 %s", vt::shape_str(a).c_str(), vt::shape_str(b).c_str());
  check_blas_dtype(c, a->dtype);
  matmul_out(c, a, b, false, "self", "mat2");
}
VT_COMPUTE(bmm_cpu, "core::bmm") {
  matmul_compute(c, c.arg(0, "self").tensor(), c.arg(1, "mat2").tensor(), false, nullptr);
}

// linear has its own fused kernel (bias as the GEMM's C input), so it is a meta step + compute.
VT_META_FN(linear_meta, "core::linear") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* w = c.arg(1, "weight").tensor();
  const vt_tensor* bias = c.arg(2, "bias").tensor_or_null();
  check_pair(c, x, "input", w, "weight");
  if (x->ndim == 0 || w->ndim != 2)
    c.fail(VT_ERR_VALUE, "expected input (..., in_features) and a 2-D weight (out_features, in_features), got input %s "
           "and weight %s", vt::shape_str(x).c_str(), vt::shape_str(w).c_str());
  if (x->sizes[x->ndim - 1] != w->sizes[1])
    c.fail(VT_ERR_VALUE, "shape mismatch: input %s has %lld features, weight %s expects %lld", vt::shape_str(x).c_str(),
           (long long)x->sizes[x->ndim - 1], vt::shape_str(w).c_str(), (long long)w->sizes[1]);
  if (bias) {
    check_pair(c, x, "input", bias, "bias");
    if (!(bias->ndim == 1 && bias->sizes[0] == w->sizes[0]) && !(bias->ndim == 0))
      c.fail(VT_ERR_VALUE, "bias must have shape (%lld,), got %s", (long long)w->sizes[0], vt::shape_str(bias).c_str());
  }
  check_blas_dtype(c, x->dtype);
  matmul_out(c, x, w, true, "input", "weight");
}
VT_COMPUTE(linear_cpu, "core::linear") {
  matmul_compute(c, c.arg(0, "input").tensor(), c.arg(1, "weight").tensor(), true,
                 c.arg(2, "bias").tensor_or_null());
}

VT_META_FN(addmm_meta, "core::addmm") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* m1 = c.arg(1, "mat1").tensor();
  const vt_tensor* m2 = c.arg(2, "mat2").tensor();
  c.arg(3, "beta").float_();
  c.arg(4, "alpha").float_();
  check_pair(c, m1, "mat1", m2, "mat2");
  check_pair(c, m1, "mat1", self, "self");
  if (m1->ndim != 2 || m2->ndim != 2)
    c.fail(VT_ERR_VALUE, "expected 2-D mat1 and mat2, got %s and %s", vt::shape_str(m1).c_str(), vt::shape_str(m2).c_str());
  if (m1->sizes[1] != m2->sizes[0])
    c.fail(VT_ERR_VALUE, "shape mismatch: mat1 %s @ mat2 %s", vt::shape_str(m1).c_str(), vt::shape_str(m2).c_str());
  const int64_t mn[2] = {m1->sizes[0], m2->sizes[1]};
  int64_t bshape[vt::kMaxDims];
  const int32_t bnd = vt::broadcast_shape(c.op, self->sizes, self->ndim, "self", mn, 2, "mat1 @ mat2", bshape);
  if (bnd != 2 || bshape[0] != mn[0] || bshape[1] != mn[1])
    c.fail(VT_ERR_VALUE, "self %s cannot be broadcast to (%lld, %lld)", vt::shape_str(self).c_str(), (long long)mn[0],
           (long long)mn[1]);
  check_blas_dtype(c, m1->dtype);
  c.set_out(0, c.empty(mn, 2, m1->dtype));
}

VT_COMPUTE(addmm_cpu, "core::addmm") {
  vt_tensor* out = c.out(0);
  Prep p(c, {c.arg(1, "mat1").tensor(), c.arg(2, "mat2").tensor(), c.arg(0, "self").tensor()});
  const vt_tensor* a = p.t[0];
  const vt_tensor* b = p.t[1];
  const vt_tensor* init = p.t[2];
  Gemm G;
  G.A = Mat{a->sizes[0], a->sizes[1], a->strides[0], a->strides[1]};
  G.B = Mat{b->sizes[0], b->sizes[1], b->strides[0], b->strides[1]};
  core::set_init(G, init, c.arg(3, "beta").float_());
  G.alpha = c.arg(4, "alpha").float_();
  execute(c, G, a, b, p.dst(c, out));
  p.finish(c, out);
}

// ---- backward rules --------------------------------------------------------------------------
// matmul: ga = g @ b^T, gb = a^T @ g, with the dims a 1-D operand dropped put back, and batch
// broadcasting undone by sum_to_size. When b is one matrix and a has batch dims, gb is a single
// GEMM over the folded rows: a2^T @ g2 with a2 = a as (-1, k), g2 = g as (-1, n).
VT_BACKWARD(matmul_backward, "core::matmul") {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  vt_tensor* a = g.saved(0);
  vt_tensor* b = g.saved(1);
  if (a->ndim == 1 && b->ndim == 1) {  // dot: g is 0-d
    if (g.needs(0)) g.set_grad(0, gops::mul(h, go, b));
    if (g.needs(1)) g.set_grad(1, gops::mul(h, go, a));
    return;
  }
  const int64_t k = a->sizes[a->ndim - 1];
  // g1: the gradient with the dropped dims restored, (..., m, n)
  std::vector<int64_t> gs = gops::shape(go);
  if (a->ndim == 1) gs.insert(gs.end() - (b->ndim == 1 ? 0 : 1), 1);
  if (b->ndim == 1) gs.push_back(1);
  vt::Tensor g1 = (a->ndim == 1 || b->ndim == 1) ? gops::reshape(h, go, gs) : gops::retained(h, go);
  vt::Tensor a1 = a->ndim == 1 ? gops::reshape(h, a, {1, k}) : gops::retained(h, a);
  vt::Tensor b1 = b->ndim == 1 ? gops::reshape(h, b, {k, 1}) : gops::retained(h, b);
  if (g.needs(0)) {
    vt::Tensor bt = gops::mT(h, b1);
    vt::Tensor ga = gops::matmul(h, g1, bt);
    if (a->ndim == 1) {
      vt::Tensor s = g.sum_to(std::move(ga), a1);
      ga = gops::reshape(h, s, {k});
    }
    else ga = g.sum_to(std::move(ga), a);
    g.set_grad(0, std::move(ga));
  }
  if (g.needs(1)) {
    vt::Tensor gb;
    if (b1->ndim == 2 && a1->ndim > 2) {
      const int64_t n = b1->sizes[1];
      vt::Tensor a2 = gops::reshape(h, a1, {a1->numel / std::max<int64_t>(k, 1), k});
      vt::Tensor g2 = gops::reshape(h, g1, {g1->numel / std::max<int64_t>(n, 1), n});
      if (k == 0 || n == 0) {  // numel / 0 above is meaningless; fall back to the batched form
        vt::Tensor at = gops::mT(h, a1);
        gb = g.sum_to(gops::matmul(h, at, g1), b1);
      } else {  // one GEMM over the folded rows
        vt::Tensor at = gops::mT(h, a2);
        gb = gops::matmul(h, at, g2);
      }
    } else {
      vt::Tensor at = gops::mT(h, a1);
      gb = g.sum_to(gops::matmul(h, at, g1), b1);
    }
    if (b->ndim == 1) {
      vt::Tensor s = std::move(gb);
      gb = gops::reshape(h, s, {k});
    }
    g.set_grad(1, std::move(gb));
  }
}

VT_BACKWARD(bmm_backward, "core::bmm") {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  if (g.needs(0)) {
    vt::Tensor bt = gops::mT(h, g.saved(1));
    g.set_grad(0, vt::call(h, "core::bmm", {go, bt}));
  }
  if (g.needs(1)) {
    vt::Tensor at = gops::mT(h, g.saved(0));
    g.set_grad(1, vt::call(h, "core::bmm", {at, go}));
  }
}

// linear: g_in = g @ W, g_W = g2^T @ x2 (x, g folded to 2-D), g_bias = g summed to (out,)
VT_BACKWARD(linear_backward, "core::linear") {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  vt_tensor* x = g.saved(0);
  vt_tensor* w = g.saved(1);
  if (g.needs(0)) g.set_grad(0, gops::matmul(h, go, w));
  if (g.needs(1)) {
    const int64_t in = w->sizes[1], out = w->sizes[0];
    const int64_t rows = x->ndim == 1 ? 1 : (in ? x->numel / in : 0);
    vt::Tensor x2 = gops::reshape(h, x, {rows, in});
    vt::Tensor g2 = gops::reshape(h, go, {rows, out});
    vt::Tensor gt = gops::mT(h, g2);
    g.set_grad(1, gops::matmul(h, gt, x2));
  }
  if (g.needs(2)) {
    vt_tensor* bias = g.saved(2);
    g.set_grad(2, g.sum_to(gops::retained(h, go), bias));
  }
}

// addmm: g_self = sum_to(beta * g), g_mat1 = alpha * g @ mat2^T, g_mat2 = alpha * mat1^T @ g
VT_BACKWARD(addmm_backward, "core::addmm") {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  const double beta = gops::num(g.arg(3)), alpha = gops::num(g.arg(4));
  if (g.needs(0)) {
    vt::Tensor gs = beta == 1.0 ? gops::retained(h, go) : gops::scale(h, go, beta);
    g.set_grad(0, g.sum_to(std::move(gs), g.saved(0)));
  }
  if (g.needs(1)) {
    vt::Tensor bt = gops::mT(h, g.saved(2));
    vt::Tensor r = gops::matmul(h, go, bt);
    g.set_grad(1, alpha == 1.0 ? std::move(r) : gops::scale(h, r, alpha));
  }
  if (g.needs(2)) {
    vt::Tensor at = gops::mT(h, g.saved(1));
    vt::Tensor r = gops::matmul(h, at, go);
    g.set_grad(2, alpha == 1.0 ? std::move(r) : gops::scale(h, r, alpha));
  }
}

// ---- CUDA matmul flags -------------------------------------------------------------------------
// vt.backends.cuda.matmul.allow_tf32 (torch's flag, default off): float32 products on cuda may
// round their inputs to TF32 (cuda/matmul.cu reads the flag on every call). An op, so Python sets
// it like any other; it takes no tensor, so it runs on cpu. Returns the previous setting.
std::atomic<bool> core::cuda_matmul_allow_tf32{false};

VT_KERNEL(set_cuda_matmul_flags_cpu, "core::set_cuda_matmul_flags") {
  const bool allow_tf32 = c.arg(0, "allow_tf32").bool_();
  c.outs[0].tag = VT_BOOL;
  c.outs[0].v.b = core::cuda_matmul_allow_tf32.exchange(allow_tf32, std::memory_order_relaxed) ? 1 : 0;
}

using core::OpDef;

const OpDef kMatmulOps[] = {
    {"core::matmul(Tensor self, Tensor other) -> Tensor", matmul_meta, matmul_cpu, matmul_backward, 0b11, 0},
    {"core::bmm(Tensor self, Tensor mat2) -> Tensor", bmm_meta, bmm_cpu, bmm_backward, 0b11, 0},
    {"core::addmm(Tensor self, Tensor mat1, Tensor mat2, *, float beta=1.0, float alpha=1.0) -> Tensor", addmm_meta,
     addmm_cpu, addmm_backward, 0b111, 0},
    {"core::linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor", linear_meta, linear_cpu, linear_backward,
     0b111, 0},
    {"core::set_cuda_matmul_flags(bool allow_tf32) -> bool", nullptr, set_cuda_matmul_flags_cpu},
};
VT_OP_TABLE(kMatmulOps)
