// ops/core/cuda/matmul.cu — the CUDA compute of matmul, bmm, addmm and linear, through cuBLASLt.
//
// Only the products: the meta steps in src/matmul.cpp check shapes and dtypes and make the
// (contiguous) output; matmul_plan.hpp turns the operands into GEMMs by the same rules as on cpu
// (batch broadcasting, 1-D operands, the folded `linear` case). cuBLASLt is loaded on the first
// call (cublaslt.cuh: not linked; where it is missing, that call raises NotImplementedError).
//
// Layouts. vt is row-major, cuBLASLt column-major: row-major C (m, n) is column-major C^T (n, m),
// so every product runs as C^T = B^T A^T (vt's B is cuBLASLt's first operand). An operand with a
// unit stride on either matrix dim is read where it lies (op N, or op T for a transposed view, with
// its leading dim); anything else (an expanded or stepped matrix) is first copied (core::copy_
// into a new contiguous tensor). Batches: the innermost batch dims that step A, B and C by one
// stride each run as one strided-batched call (a broadcast operand has batch stride 0); dims that
// do not fold loop on the host, one call each.
// Epilogues. linear/addmm with a 1-D bias (n,) of unit stride and beta = 1 add it in cuBLASLt's
// BIAS epilogue (float16/bfloat16/float32); any other self/bias is first copied into out by
// core::copy_ and added as beta * C. bias+GELU is left: no op asks for it yet.
// dtypes: float32 (FP32 compute; TF32 when vt.backends.cuda.matmul.allow_tf32), float16 and
// bfloat16 (FP32 accumulate and scale), float64 (FP64).
// Handle: one per device, made on first use (std::call_once). Descriptors and the heuristic's
// algorithm are cached per shape key (dtype, TF32, transposes, sizes, leading dims, batch strides,
// pointer alignments, epilogue) in a thread_local map: no lock on any path. The workspace comes
// from the caching allocator per call (stream-ordered: safe under graph capture and with several
// streams). Deterministic: one key always gets the same algorithm, and cuBLASLt's algorithms
// (split-K reductions included) give the same bits run to run on one GPU model.
#include "cublaslt.cuh"
#include "matmul_plan.hpp"
#include "vt/autograd.hpp"
#include "vt/cuda/launch.cuh"

#include <cstring>
#include <mutex>
#include <unordered_map>

namespace {

constexpr int kMaxDevices = 64;
constexpr uint64_t kMaxWorkspace = 32ull << 20;  // bytes an algorithm may use (torch's Hopper default)
constexpr size_t kMaxCached = 4096;              // plans per thread before the cache starts over

// The loaded library; a call that cannot have it fails here, naming what was tried.
const lt::Api& lib(const vt::Call& c) {
  const char* why = nullptr;
  const lt::Api* api = lt::api(&why);
  if (!api) c.fail(VT_ERR_NOT_IMPL, "%s", why);
  return *api;
}

void check_lt(const vt::Call& c, lt::Status s, const char* what) {
  if (s != lt::kSuccess) c.fail(VT_ERR_RUNTIME, "cuBLASLt error in %s: %s", what, lib(c).status_string(s));
}

lt::Handle lt_handle(const vt::Call& c) {
  static std::once_flag once[kMaxDevices];
  static lt::Handle handles[kMaxDevices];
  static lt::Status made[kMaxDevices];
  const int d = c.ctx->device.index;
  if (d < 0 || d >= kMaxDevices) c.fail(VT_ERR_RUNTIME, "cuda device index %d out of range", d);
  const lt::Api& L = lib(c);
  std::call_once(once[d], [&] { made[d] = L.create(&handles[d]); });  // the call's device is current
  check_lt(c, made[d], "cublasLtCreate");
  return handles[d];
}

// Largest power of two (at most 256) dividing every address/byte offset or-ed into `bits`.
int64_t alignment(uint64_t bits) { return bits == 0 ? 256 : std::min<int64_t>(256, (int64_t)(bits & (~bits + 1))); }

// One cuBLASLt problem, in cuBLASLt's (column-major) terms: D (m, n) = op(A) (m, k) @ op(B) (k, n),
// `batch` of them with element strides sa, sb, sd. Every field is an int64, so the bytes hash.
struct Key {
  int64_t device, dtype, tf32, bias, ta, tb, m, n, k, lda, ldb, ldd, batch, sa, sb, sd;
  int64_t align_a, align_b, align_d, align_bias;
  bool operator==(const Key& o) const { return std::memcmp(this, &o, sizeof(Key)) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    const int64_t* w = reinterpret_cast<const int64_t*>(&k);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(Key) / sizeof(int64_t); ++i) h = (h ^ (uint64_t)w[i]) * 1099511628211ull;
    return (size_t)h;
  }
};

struct Entry {  // descriptors made in place (cuBLASLt's opaque structs: no destroy needed)
  lt::MatmulDesc op;
  lt::MatrixLayout a, b, d;  // C shares D's layout (and memory)
  lt::Algo algo;
  uint64_t workspace = 0;
  bool found = false;  // false: the heuristic had no algorithm for this key
};

cudaDataType_t lt_type(vt::ScalarType st) {
  switch (st) {
    case vt::ScalarType::Float16: return CUDA_R_16F;
    case vt::ScalarType::BFloat16: return CUDA_R_16BF;
    case vt::ScalarType::Float64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

template <class T>
void set_attr(const vt::Call& c, lt::MatmulDesc* d, int attr, const T& v) {
  check_lt(c, lib(c).desc_set(d, attr, &v, sizeof(T)), "cublasLtMatmulDescSetAttribute");
}

void init_layout(const vt::Call& c, lt::MatrixLayout* l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                 int64_t batch, int64_t stride) {
  const lt::Api& L = lib(c);
  check_lt(c, L.layout_init(l, sizeof *l, t, (uint64_t)rows, (uint64_t)cols, ld), "cublasLtMatrixLayoutInit");
  if (batch > 1) {
    const int32_t count = (int32_t)batch;
    check_lt(c, L.layout_set(l, lt::kLayoutBatchCount, &count, sizeof count), "cublasLtMatrixLayoutSetAttribute");
    check_lt(c, L.layout_set(l, lt::kLayoutStridedBatchOffset, &stride, sizeof stride),
             "cublasLtMatrixLayoutSetAttribute");
  }
}

// The cached descriptors + algorithm of `key` (made on a miss: descriptors, then the heuristic).
Entry& plan_for(const vt::Call& c, lt::Handle h, const Key& key, const void* bias) {
  thread_local std::unordered_map<Key, Entry, KeyHash> cache;
  auto hit = cache.find(key);
  if (hit != cache.end()) return hit->second;
  if (cache.size() >= kMaxCached) cache.clear();
  Entry& e = cache[key];
  try {
    const auto st = (vt::ScalarType)key.dtype;
    const cudaDataType_t t = lt_type(st);
    const bool f64 = st == vt::ScalarType::Float64;
    const lt::Api& L = lib(c);
    const int compute = f64 ? lt::kCompute64F : key.tf32 ? lt::kCompute32FFastTF32 : lt::kCompute32F;
    check_lt(c, L.desc_init(&e.op, sizeof e.op, compute, f64 ? CUDA_R_64F : CUDA_R_32F), "cublasLtMatmulDescInit");
    set_attr(c, &e.op, lt::kDescTransA, key.ta ? lt::kOpT : lt::kOpN);
    set_attr(c, &e.op, lt::kDescTransB, key.tb ? lt::kOpT : lt::kOpN);
    if (key.bias) {
      set_attr(c, &e.op, lt::kDescEpilogue, (int)lt::kEpilogueBias);
      set_attr(c, &e.op, lt::kDescBiasPointer, bias);  // the heuristic reads its alignment
    }
    // stored shapes: op N reads (m, k) / (k, n) as they are, op T their transposes
    init_layout(c, &e.a, t, key.ta ? key.k : key.m, key.ta ? key.m : key.k, key.lda, key.batch, key.sa);
    init_layout(c, &e.b, t, key.tb ? key.n : key.k, key.tb ? key.k : key.n, key.ldb, key.batch, key.sb);
    init_layout(c, &e.d, t, key.m, key.n, key.ldd, key.batch, key.sd);

    lt::Preference pref;
    check_lt(c, L.pref_init(&pref, sizeof pref), "cublasLtMatmulPreferenceInit");
    auto set_pref = [&](int attr, const auto& v) {
      check_lt(c, L.pref_set(&pref, attr, &v, sizeof v), "cublasLtMatmulPreferenceSetAttribute");
    };
    set_pref(lt::kPrefMaxWorkspaceBytes, kMaxWorkspace);
    set_pref(lt::kPrefMinAlignA, (uint32_t)key.align_a);
    set_pref(lt::kPrefMinAlignB, (uint32_t)key.align_b);
    set_pref(lt::kPrefMinAlignC, (uint32_t)key.align_d);
    set_pref(lt::kPrefMinAlignD, (uint32_t)key.align_d);
    lt::HeuristicResult r;
    int found = 0;
    const lt::Status s = L.heuristic(h, &e.op, &e.a, &e.b, &e.d, &e.d, &pref, 1, &r, &found);
    if (s != lt::kSuccess && s != lt::kNotSupported) check_lt(c, s, "cublasLtMatmulAlgoGetHeuristic");
    e.found = s == lt::kSuccess && found > 0;
    if (e.found) {
      e.algo = r.algo;
      e.workspace = r.workspace_size;
    }
  } catch (...) {
    cache.erase(key);
    throw;
  }
  return e;
}

// How a product's batch dims run: the innermost dims that fold into one stride per operand go
// into one batched cuBLASLt call of `count` matrices at strides (sa, sb, sd); dims [0, outer] loop
// on the host, `calls` calls. cstr: the contiguous out's batch strides.
struct Batching {
  int64_t count = 1, sa = 0, sb = 0, sd = 0, calls = 1;
  int32_t outer = -1;
  int64_t cstr[vt::kMaxDims];
};

Batching batching(const core::Gemm& G) {
  const int64_t m = G.A.rows, n = G.B.cols;
  Batching r;
  int64_t below = 1;  // matrices in the dims after i
  for (int32_t i = G.nbatch - 1; i >= 0; --i) { r.cstr[i] = below * m * n; below *= G.batch[i]; }
  r.sd = m * n;
  for (r.outer = G.nbatch - 1; r.outer >= 0; --r.outer) {
    const int64_t s = G.batch[r.outer];
    if (s == 1) continue;
    if (r.count == 1) {
      r.sa = G.a_bstr[r.outer], r.sb = G.b_bstr[r.outer], r.sd = r.cstr[r.outer], r.count = s;
      continue;
    }
    if (G.a_bstr[r.outer] != r.sa * r.count || G.b_bstr[r.outer] != r.sb * r.count ||
        r.cstr[r.outer] != r.sd * r.count || r.count * s > INT_MAX)
      break;
    r.count *= s;
  }
  for (int32_t i = 0; i <= r.outer; ++i) r.calls *= G.batch[i];
  return r;
}

// A product as planned by matmul_plan.hpp, on tensors cuBLASLt can read, into contiguous `out`.
// Returns false when cuBLASLt has no algorithm for it (the caller retries with fresh operands).
bool run(vt::Call& c, const core::Gemm& G, const vt_tensor* a, const vt_tensor* b, vt_tensor* out, bool bias) {
  const int64_t m = G.A.rows, k = G.A.cols, n = G.B.cols;
  const vt::ScalarType st = vt::scalar_type(out->dtype);
  const int64_t es = vt::element_size(out->dtype);
  bool ta_vt = false, tb_vt = false;
  int64_t lda_vt = 1, ldb_vt = 1;
  if (!core::gemm_layout(G.A, &ta_vt, &lda_vt) || !core::gemm_layout(G.B, &tb_vt, &ldb_vt))
    c.fail(VT_ERR_RUNTIME, "internal: operand not in a cuBLASLt layout");

  const Batching bt = batching(G);
  const int64_t count = bt.count, sa = bt.sa, sb = bt.sb, sd = bt.sd;
  const int32_t outer = bt.outer;
  const int64_t* cstr = bt.cstr;
  if (count > INT_MAX) c.fail(VT_ERR_VALUE, "batch of %lld matrices is too large for cuBLASLt", (long long)count);

  // alignments every matrix of every call keeps: the base pointer or-ed with the batch strides
  uint64_t bits_a = (uint64_t)(uintptr_t)a->data, bits_b = (uint64_t)(uintptr_t)b->data;
  uint64_t bits_d = (uint64_t)(uintptr_t)out->data;
  if (count > 1) bits_a |= (uint64_t)(sa * es), bits_b |= (uint64_t)(sb * es), bits_d |= (uint64_t)(sd * es);
  for (int32_t i = 0; i <= outer; ++i)
    if (G.batch[i] > 1)
      bits_a |= (uint64_t)(G.a_bstr[i] * es), bits_b |= (uint64_t)(G.b_bstr[i] * es), bits_d |= (uint64_t)(cstr[i] * es);
  const void* bias_ptr = bias ? G.init->data : nullptr;
  const bool tf32 = st == vt::ScalarType::Float32 && core::cuda_matmul_allow_tf32.load(std::memory_order_relaxed);
  // cuBLASLt's A is vt's B (n x k in its terms), its B is vt's A: D^T = B^T A^T
  const Key key{c.ctx->device.index, (int64_t)st, tf32, bias, tb_vt, ta_vt, n, m, k, ldb_vt, lda_vt, n, count, sb, sa,
                sd, alignment(bits_b), alignment(bits_a), alignment(bits_d),
                bias ? alignment((uint64_t)(uintptr_t)bias_ptr) : 0};
  const lt::Handle h = lt_handle(c);
  Entry& e = plan_for(c, h, key, bias_ptr);
  if (!e.found) return false;
  if (bias) set_attr(c, &e.op, lt::kDescBiasPointer, bias_ptr);

  vt::Tensor ws;
  if (e.workspace > 0) {
    const int64_t bytes = (int64_t)e.workspace;
    ws = c.empty(&bytes, 1, vt::kUInt8);
  }
  const double beta = G.init && !bias ? G.beta : 0.0;
  const float alpha32 = (float)G.alpha, beta32 = (float)beta;
  const bool f64 = st == vt::ScalarType::Float64;
  const void* alpha_p = f64 ? (const void*)&G.alpha : (const void*)&alpha32;
  const void* beta_p = f64 ? (const void*)&beta : (const void*)&beta32;

  int64_t idx[vt::kMaxDims] = {};
  for (int64_t call = 0; call < bt.calls; ++call) {
    int64_t oa = 0, ob = 0, od = 0;
    for (int32_t i = 0; i <= outer; ++i) { oa += idx[i] * G.a_bstr[i]; ob += idx[i] * G.b_bstr[i]; od += idx[i] * cstr[i]; }
    const char* pa = static_cast<const char*>(a->data) + oa * es;
    const char* pb = static_cast<const char*>(b->data) + ob * es;
    char* pd = static_cast<char*>(out->data) + od * es;
    check_lt(c,
             lib(c).matmul(h, &e.op, alpha_p, pb, &e.a, pa, &e.b, beta_p, pd, &e.d, pd, &e.d, &e.algo,
                           ws ? ws->data : nullptr, e.workspace, vt::cuda::stream(c)),
             "cublasLtMatmul");
    for (int32_t i = outer; i >= 0; --i) {
      if (++idx[i] < G.batch[i]) break;
      idx[i] = 0;
    }
  }
  return true;
}

// More host-looped cuBLASLt calls than this (a batch whose dims do not fold, e.g. attention's
// k^T viewed out of a fused qkv projection) and the operands are copied contiguous first: one
// batched call then runs instead of one launch per matrix.
constexpr int64_t kMaxHostCalls = 4;

// t itself where cuBLASLt can read its matrices as stored (a unit stride on either dim), else (or
// when `fresh`) a contiguous copy in a new allocation.
const vt_tensor* readable(vt::Call& c, const vt_tensor* t, vt::Tensor& own, bool fresh) {
  bool tr;
  int64_t ld;
  if (!fresh && core::gemm_layout(core::matrix_of(t), &tr, &ld)) return t;
  own = c.empty(t->sizes, t->ndim, t->dtype);
  vt::call(c.host, "core::copy_", {vt::V(own.get()), vt::V(const_cast<vt_tensor*>(t))});
  return own.get();
}

// out = alpha * a @ b (+ beta * init): matmul/bmm/linear (b_is_weight) and addmm.
void product(vt::Call& c, const vt_tensor* a, const vt_tensor* b, bool b_is_weight, const vt_tensor* init, double beta,
             double alpha) {
  vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const int64_t n_last = out->ndim > 0 ? out->sizes[out->ndim - 1] : 1;
  const bool use_init = init && beta != 0.0;  // beta = 0 ignores self, nan or not (torch's rule)
  const int64_t k = a->sizes[a->ndim - 1];
  if (k == 0) {  // an empty sum: zeros, or beta * init
    if (!use_init) {
      vt::call(c.host, "core::fill_", {vt::V(out), vt::V(0.0)});
    } else {
      vt::call(c.host, "core::copy_", {vt::V(out), vt::V(const_cast<vt_tensor*>(init))});
      if (beta != 1.0) vt::call(c.host, "core::mul_scalar_", {vt::V(out), vt::V(beta)});
    }
    return;
  }
  // bias epilogue: (n,) of unit stride added to every row, beta = 1, not float64
  const bool bias = use_init && beta == 1.0 && init->ndim == 1 && init->sizes[0] == n_last &&
                    (n_last == 1 || init->strides[0] == 1) && vt::scalar_type(out->dtype) != vt::ScalarType::Float64;
  if (use_init && !bias) vt::call(c.host, "core::copy_", {vt::V(out), vt::V(const_cast<vt_tensor*>(init))});

  for (int attempt = 0; attempt < 2; ++attempt) {  // second try: fresh (aligned, contiguous) operands
    vt::Tensor own_a, own_b;
    const vt_tensor* pa = readable(c, a, own_a, attempt > 0);
    const vt_tensor* pb = readable(c, b, own_b, attempt > 0);
    core::Gemm G;
    int64_t shape[vt::kMaxDims + 2];
    int32_t ndim = 0;
    core::plan_matmul(pa, pb, b_is_weight, G, shape, &ndim);
    if (use_init) {
      G.init = init;
      G.beta = beta;
    }
    G.alpha = alpha;
    if (attempt == 0 && batching(G).calls > kMaxHostCalls) continue;  // fresh operands fold
    if (run(c, G, pa, pb, out, bias)) return;
  }
  c.fail(VT_ERR_NOT_IMPL, "cuBLASLt has no algorithm for %s @ %s (%s)", vt::shape_str(a).c_str(),
         vt::shape_str(b).c_str(), vt::dtype_name(out->dtype));
}

}  // namespace

VT_COMPUTE(matmul_cuda, "core::matmul") {
  product(c, c.arg(0, "self").tensor(), c.arg(1, "other").tensor(), false, nullptr, 0.0, 1.0);
}
VT_COMPUTE(bmm_cuda, "core::bmm") {
  product(c, c.arg(0, "self").tensor(), c.arg(1, "mat2").tensor(), false, nullptr, 0.0, 1.0);
}
VT_COMPUTE(linear_cuda, "core::linear") {
  product(c, c.arg(0, "input").tensor(), c.arg(1, "weight").tensor(), true, c.arg(2, "bias").tensor_or_null(), 1.0,
          1.0);
}
VT_COMPUTE(addmm_cuda, "core::addmm") {
  product(c, c.arg(1, "mat1").tensor(), c.arg(2, "mat2").tensor(), false, c.arg(0, "self").tensor(),
          c.arg(3, "beta").float_(), c.arg(4, "alpha").float_());
}

void register_matmul_cuda(vt::Registrar& r) {
  r.compute("core::matmul", VT_CUDA, matmul_cuda);
  r.compute("core::bmm", VT_CUDA, bmm_cuda);
  r.compute("core::addmm", VT_CUDA, addmm_cuda);
  r.compute("core::linear", VT_CUDA, linear_cuda);
}
