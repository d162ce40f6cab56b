// ops/matmul_cutlass/pack.cu — the `matmul_cutlass` op pack: a second provider ("cutlass") of
// core::matmul, core::bmm and core::linear on cuda, for bfloat16, on CUTLASS 3.x Hopper GEMMs
// (gemm.cuh). It shows swapping a core op's provider, and measures CUTLASS against cuBLASLt.
//
// Priority -1, so core's cuBLASLt compute (priority 0) stays the default; pin this one with
//   vt.ops.use("core::matmul", "cutlass", "cuda")        (or `with vt.ops.use(...):`)
// Serves: bfloat16; matmul with a 2-D other (all of self's rows fold into one GEMM) or with equal
// batch dims (one batched GEMM); bmm; linear (its bias added by core::add_ after the GEMM).
// Operands the kernels cannot read where they lie (self not row-major, an expanded or stepped
// matrix, batch dims that do not fold into one stride) are copied to contiguous first. Refused
// with the reason (NotImplementedError) and the way back to core: other dtypes, 1-D operands,
// broadcast batch dims, k or n not a multiple of 8, operands not 16-byte aligned (TMA's rules).
// This file holds no CUTLASS code: the two kernels compile in their own files, in parallel.
#include <algorithm>
#include <climits>

#include "problem.hpp"
#include "vt/autograd.hpp"
#include "vt/capabilities.h"

namespace {

using vt_cutlass::Problem;

constexpr const char* kBack = "; vt.ops.use(op, 'core', 'cuda') goes back to cuBLASLt";

void need_bf16(const vt::Call& c, const vt_tensor* t) {
  if (!vt::same_dtype(t->dtype, vt::kBFloat16))
    c.fail(VT_ERR_NOT_IMPL, "the cutlass provider serves bfloat16 only, got %s%s", vt::dtype_name(t->dtype), kBack);
}

// The matrix part (last two dims) of t with a unit stride along its columns (row-major; *ld = the
// row stride) or along its rows (column-major; *ld = the column stride).
bool row_major(const vt_tensor* t, int64_t* ld) {
  const int32_t nd = t->ndim;
  const int64_t rows = t->sizes[nd - 2], cols = t->sizes[nd - 1];
  if ((cols != 1 && t->strides[nd - 1] != 1) || (rows != 1 && t->strides[nd - 2] < cols)) return false;
  *ld = rows == 1 ? cols : t->strides[nd - 2];
  return true;
}
bool col_major(const vt_tensor* t, int64_t* ld) {
  const int32_t nd = t->ndim;
  const int64_t rows = t->sizes[nd - 2], cols = t->sizes[nd - 1];
  if ((rows != 1 && t->strides[nd - 2] != 1) || (cols != 1 && t->strides[nd - 1] < rows)) return false;
  *ld = cols == 1 ? rows : t->strides[nd - 1];
  return true;
}

// t (..., k) as one row-major (rows, k) matrix: the stride of its rows when every dim but the last
// folds into one row dim, else -1.
int64_t row_stride(const vt_tensor* t) {
  const int32_t nd = t->ndim;
  const int64_t k = t->sizes[nd - 1];
  if (k != 1 && t->strides[nd - 1] != 1) return -1;
  int64_t rs = -1, next = 0;  // next: the stride the next outer dim must have to fold
  for (int32_t d = nd - 2; d >= 0; --d) {
    if (t->sizes[d] == 1) continue;
    if (rs < 0) rs = t->strides[d];
    else if (t->strides[d] != next) return -1;
    next = t->strides[d] * t->sizes[d];
  }
  if (rs < 0) return k;  // a single row
  return rs >= k ? rs : -1;
}

// The stride between t's matrices when its batch dims [0, ndim - 2) fold into one (0 for a single
// matrix), else -1 (also for a broadcast batch: TMA wants non-zero strides).
int64_t batch_stride(const vt_tensor* t) {
  int64_t bs = 0, next = 0;
  bool any = false;
  for (int32_t d = t->ndim - 3; d >= 0; --d) {
    if (t->sizes[d] == 1) continue;
    if (!any) bs = t->strides[d], any = true;
    else if (t->strides[d] != next) return -1;
    next = t->strides[d] * t->sizes[d];
  }
  return any && bs == 0 ? -1 : bs;
}

// A contiguous copy of t in a new (256-byte aligned) allocation.
vt::Tensor copy_of(vt::Call& c, const vt_tensor* t) {
  vt::Tensor own = c.empty(t->sizes, t->ndim, t->dtype);
  vt::call(c.host, "core::copy_", {vt::V(own.get()), vt::V(const_cast<vt_tensor*>(t))});
  return own;
}

// Checks TMA's rules, then runs the kernel for B's layout. k > 0 and out non-empty here.
void run(vt::Call& c, const Problem& p, bool b_kmajor) {
  auto a16 = [](const void* q) { return ((uintptr_t)q & 15) == 0; };
  bool ok = p.k % 8 == 0 && p.n % 8 == 0 && p.lda % 8 == 0 && p.ldb % 8 == 0 && p.ldd % 8 == 0 && a16(p.a) &&
            a16(p.b) && a16(p.d);
  if (p.l > 1) ok = ok && p.batch_a % 8 == 0 && p.batch_b % 8 == 0 && p.batch_d % 8 == 0;
  if (!ok)
    c.fail(VT_ERR_NOT_IMPL,
           "the CUTLASS kernels need k and n multiples of 8 and 16-byte aligned rows (TMA), got (%lld, %lld) @ "
           "(%lld, %lld) with leading dims %lld, %lld%s",
           (long long)p.m, (long long)p.k, (long long)p.k, (long long)p.n, (long long)p.lda, (long long)p.ldb, kBack);
  if (p.m > INT_MAX || p.n > INT_MAX || p.k > INT_MAX || p.l > INT_MAX)
    c.fail(VT_ERR_NOT_IMPL, "dims beyond 32 bits are not served: (%lld, %lld) @ (%lld, %lld) x %lld%s", (long long)p.m,
           (long long)p.k, (long long)p.k, (long long)p.n, (long long)p.l, kBack);
  (b_kmajor ? vt_cutlass::gemm_bf16_kmajor : vt_cutlass::gemm_bf16_nmajor)(c, p);
}

// An empty sum (k = 0): zeros.
void zeros(vt::Call& c, vt_tensor* out) { vt::call(c.host, "core::fill_", {vt::V(out), vt::V(0.0)}); }

// out = a @ b for matmul and bmm.
void product(vt::Call& c, const vt_tensor* a, const vt_tensor* b) {
  vt_tensor* out = c.out(0);
  need_bf16(c, a);
  if (a->ndim < 2 || b->ndim < 2)
    c.fail(VT_ERR_NOT_IMPL, "1-D operands are not served by the cutlass provider: self %s, other %s%s",
           vt::shape_str(a).c_str(), vt::shape_str(b).c_str(), kBack);
  if (b->ndim > 2 && (a->ndim != b->ndim || !std::equal(a->sizes, a->sizes + a->ndim - 2, b->sizes)))
    c.fail(VT_ERR_NOT_IMPL, "broadcast batch dims are not served by the cutlass provider: self %s, other %s%s",
           vt::shape_str(a).c_str(), vt::shape_str(b).c_str(), kBack);
  if (out->numel == 0) return;
  Problem p{};
  p.k = a->sizes[a->ndim - 1];
  p.n = b->sizes[b->ndim - 1];
  if (p.k == 0) return zeros(c, out);
  p.d = out->data;
  p.ldd = p.n;
  vt::Tensor own_a, own_b;
  if (b->ndim == 2) {  // all of a's rows as one (m, k) matrix
    if (row_stride(a) < 0) own_a = copy_of(c, a), a = own_a.get();
    p.m = a->numel / p.k, p.l = 1, p.lda = row_stride(a);
  } else {  // l matrices of (m, k) @ (k, n)
    p.m = a->sizes[a->ndim - 2];
    p.l = out->numel / (p.m * p.n);
    if (!row_major(a, &p.lda) || batch_stride(a) < 0) own_a = copy_of(c, a), a = own_a.get(), row_major(a, &p.lda);
    p.batch_a = batch_stride(a);
    p.batch_d = p.m * p.n;
  }
  p.a = a->data;
  bool kmajor = false, fits = batch_stride(b) >= 0;  // b row-major: an N-major B
  if (fits && !row_major(b, &p.ldb)) fits = kmajor = col_major(b, &p.ldb);
  if (!fits) own_b = copy_of(c, b), b = own_b.get(), kmajor = false, row_major(b, &p.ldb);
  p.b = b->data;
  p.batch_b = batch_stride(b);
  run(c, p, kmajor);
}

}  // namespace

VT_COMPUTE(matmul_cutlass, "core::matmul") { product(c, c.arg(0, "self").tensor(), c.arg(1, "other").tensor()); }
VT_COMPUTE(bmm_cutlass, "core::bmm") { product(c, c.arg(0, "self").tensor(), c.arg(1, "mat2").tensor()); }

// out = x @ w^T (+ bias): x's rows as one (m, k) matrix, w (n, k) is a K-major B as stored.
VT_COMPUTE(linear_cutlass, "core::linear") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* w = c.arg(1, "weight").tensor();
  const vt_tensor* bias = c.arg(2, "bias").tensor_or_null();
  vt_tensor* out = c.out(0);
  need_bf16(c, x);
  if (out->numel == 0) return;
  Problem p{};
  p.n = w->sizes[0];
  p.k = w->sizes[1];
  if (p.k == 0) {
    zeros(c, out);
  } else {
    vt::Tensor own_x, own_w;
    if (row_stride(x) < 0) own_x = copy_of(c, x), x = own_x.get();
    p.m = x->numel / p.k, p.l = 1, p.a = x->data, p.lda = row_stride(x);
    bool kmajor = row_major(w, &p.ldb);  // w row-major: B = w^T is column-major (K-major)
    if (!kmajor && !col_major(w, &p.ldb)) own_w = copy_of(c, w), w = own_w.get(), kmajor = row_major(w, &p.ldb);
    p.b = w->data;
    p.d = out->data;
    p.ldd = p.n;
    run(c, p, kmajor);
  }
  if (bias) vt::call(c.host, "core::add_", {vt::V(out), vt::V(const_cast<vt_tensor*>(bias)), vt::V(1.0)});
}

namespace {

vt_status matmul_cutlass_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "matmul_cutlass", [&] {
    vt::Registrar r(host, pack, "cutlass", -1);  // below core's cuBLASLt: serves when pinned
    r.compute("core::matmul", VT_CUDA, matmul_cutlass);
    r.compute("core::bmm", VT_CUDA, bmm_cutlass);
    r.compute("core::linear", VT_CUDA, linear_cutlass);
  });
}

}  // namespace

VT_OPPACK_DEFINE(matmul_cutlass_init)

// What the provider needs and promises (vt/capabilities.h; checked at load, shown by vt-ops info):
// wgmma + TMA exist on sm_90a only, so compute capability 9.0 exactly; k and n multiples of 8.
VT_OPPACK_CAPABILITIES(R"json({
  "abi_minor": 1,
  "requires": {"core": ">=0.1,<1"},
  "providers": [
    {"provider": "cutlass", "device": "cuda", "compute_capability": {"min": "9.0", "max": "9.0"},
     "dtypes": ["bfloat16"], "cuda_graphs": true, "deterministic": true,
     "shapes": "2-D or batched operands (no broadcast batch dims), k and n multiples of 8, 16-byte aligned"},
    {"provider": "cutlass", "device": "cuda", "ops": ["core::matmul"],
     "limits": [{"arg": "self", "dim": -1, "multiple_of": 8}, {"arg": "other", "dim": -1, "multiple_of": 8}]},
    {"provider": "cutlass", "device": "cuda", "ops": ["core::bmm"],
     "limits": [{"arg": "self", "dim": -1, "multiple_of": 8}, {"arg": "mat2", "dim": -1, "multiple_of": 8}]},
    {"provider": "cutlass", "device": "cuda", "ops": ["core::linear"],
     "limits": [{"arg": "input", "dim": -1, "multiple_of": 8}, {"arg": "weight", "dim": 0, "multiple_of": 8}]}
  ]
})json")
