// ops/core/cuda/index_scatter.cu — the CUDA compute of the ops that write through indices:
// index_add, scatter_add, embedding_backward and index_put / index_put_ (with and without
// accumulate). The meta steps and the semantics are src/index.cpp's.
//
// Deterministic by default, for every dtype: no float atomics. The K writes ("contributions") get
// a destination key each; a stable radix sort (CUB) groups them by key with their positions in
// order, and each destination sums its run of contributions in that order:
//   keys    the destination of contribution p (a row of index_add / embedding_backward, an element
//           offset of scatter_add / index_put), or `sentinel` when its index was out of range
//           (skipped and reported: index_util.cuh)
//   chunks  the sorted contributions cut into G fixed chunks of CH; one thread per (outer, chunk,
//           16-byte column of the row) walks its chunk's runs in order. A run that stays inside
//           the chunk is written at once (base + its sum); a run that crosses a chunk edge leaves
//           partial sums (one per chunk it touches), which the chunk holding the run's start adds
//           in chunk order afterwards. The chunking depends only on the shapes, so the same inputs
//           give the same bits on every run; a hot row (one token repeated thousands of times) is
//           spread over many threads instead of one.
// Sums run in float for float16/bfloat16 (rounded once at the end; the cpu rounds at every step
// for index_add/scatter_add/index_put, so low-precision results can differ in the last bit),
// double for float64, wrapping integer arithmetic for the integer dtypes.
// index_put without accumulate keeps the last write of each destination, as the cpu does: the
// same sort finds, per destination, the last position; the others are dropped before one
// strided put kernel writes the survivors.
#include <algorithm>
#include <climits>

#include <cub/device/device_radix_sort.cuh>

#include "index_util.cuh"

namespace {

using vt::cuda::acc_t;
using vt::cuda::Vec;
using vtidx::Report;

int32_t wrapped(int64_t dim, int32_t ndim) { return (int32_t)(dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim); }

// out = self (the ops that start from a copy of self)
void copy_self(const vt::Call& c, vt_tensor* out, vt_tensor* self) {
  if (out != self && out->numel) vt::call(c.host, "core::copy_", {vt::V(out), vt::V(self)});
}

vt::Tensor contiguous(const vt::Call& c, vt_tensor* t) {
  if (vt::is_contiguous(t)) {
    c.host->retain(t);
    return vt::Tensor(c.host, t);
  }
  return vt::call(c.host, "core::contiguous", {vt::V(t)});
}

// ---- sorting contributions by destination -----------------------------------------------------------
__global__ void __launch_bounds__(vt::cuda::kThreads)
    make_keys(const int64_t* off, int64_t K, uint64_t sentinel, uint64_t* keys, int32_t* pos) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < K; p += step) {
    keys[p] = off[p] < 0 ? sentinel : (uint64_t)off[p];
    pos[p] = (int32_t)p;
  }
}

struct Sorted {
  vt::Tensor buf;  // owns the arrays below
  const uint64_t* keys;
  const int32_t* pos;
  int64_t K;
  uint64_t sentinel;  // keys are < sentinel; sentinel marks a skipped contribution
};

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

// the K destinations in off (int64, -1 = skip; valid ones < sentinel) sorted, stably
Sorted sort_keys(const vt::Call& c, const vt_tensor* off, int64_t K, uint64_t sentinel) {
  if (K > INT_MAX) c.fail(VT_ERR_NOT_IMPL, "more than %d index entries (%lld) are not supported on cuda", INT_MAX, (long long)K);
  const int end_bit = 64 - __builtin_clzll(sentinel | 1);  // bits enough for the sentinel
  size_t temp = 0;
  vt::cuda::check(c, cub::DeviceRadixSort::SortPairs(nullptr, temp, (const uint64_t*)nullptr, (uint64_t*)nullptr,
                                                     (const int32_t*)nullptr, (int32_t*)nullptr, (int)K, 0, end_bit,
                                                     vt::cuda::stream(c)),
                  "cub::DeviceRadixSort (size query)");
  const size_t kb = align256((size_t)K * 8), pb = align256((size_t)K * 4);
  const int64_t bytes = (int64_t)(2 * kb + 2 * pb + align256(temp));
  Sorted s;
  s.buf = c.empty(&bytes, 1, vt::kUInt8);
  char* base = static_cast<char*>(s.buf->data);
  uint64_t* keys_in = reinterpret_cast<uint64_t*>(base);
  uint64_t* keys_out = reinterpret_cast<uint64_t*>(base + kb);
  int32_t* pos_in = reinterpret_cast<int32_t*>(base + 2 * kb);
  int32_t* pos_out = reinterpret_cast<int32_t*>(base + 2 * kb + pb);
  vt::cuda::launch(c, "make_keys", make_keys, vt::cuda::grid_for(K), vt::cuda::kThreads, 0, vt::data<const int64_t>(off), K,
                   sentinel, keys_in, pos_in);
  vt::cuda::check(c, cub::DeviceRadixSort::SortPairs(base + 2 * kb + 2 * pb, temp, keys_in, keys_out, pos_in, pos_out,
                                                     (int)K, 0, end_bit, vt::cuda::stream(c)),
                  "cub::DeviceRadixSort");
  s.keys = keys_out;
  s.pos = pos_out;
  s.K = K;
  s.sentinel = sentinel;
  return s;
}

// ---- summing runs of contributions ------------------------------------------------------------------
// Shape legend: contribution p of outer slice o is the row src + o*src_outer + p*src_row; its
// destination is the row dst + o*dst_outer + key*dst_key; rows hold inner = nv * W contiguous
// elements, moved W at a time (16 bytes when aligned).
template <class T>
struct Runs {
  const uint64_t* keys;
  const int32_t* pos;
  int64_t K, CH, G, outer, nv;
  uint64_t sentinel;
  const T* src;
  int64_t src_outer, src_row;
  T* dst;
  int64_t dst_outer, dst_key;
  acc_t<T>* pfirst;  // [outer][G][inner]: the sum of a chunk's first run, when it crosses an edge
  acc_t<T>* plast;   // the same for the chunk's last run, when that is another run
  acc_t<T> alpha;
  bool base;         // runs add onto dst's values (else onto zero)
  uint8_t* touched;  // when set, touched[key] = 1 for every destination written
};

template <class A> __device__ __forceinline__ A add(A a, A b) {
  if constexpr (std::is_integral<A>::value) return (A)((typename std::make_unsigned<A>::type)a + (typename std::make_unsigned<A>::type)b);
  else return a + b;
}
template <class A> __device__ __forceinline__ A mul(A a, A b) {
  if constexpr (std::is_integral<A>::value) return (A)((typename std::make_unsigned<A>::type)a * (typename std::make_unsigned<A>::type)b);
  else return a * b;
}
// the additive identity that keeps -0.0: -0.0 + x == x for every x
template <class A> __device__ __forceinline__ A zero() {
  if constexpr (std::is_integral<A>::value) return A(0);
  else return -A(0);
}

template <class T, int W>
__device__ __forceinline__ void load_row(const T* p, acc_t<T> (&a)[W]) {
  const Vec<T, W> v = *reinterpret_cast<const Vec<T, W>*>(p);
#pragma unroll
  for (int j = 0; j < W; ++j) a[j] = (acc_t<T>)v.v[j];
}
template <class T, int W>
__device__ __forceinline__ void store_row(T* p, const acc_t<T> (&a)[W]) {
  Vec<T, W> v;
#pragma unroll
  for (int j = 0; j < W; ++j) v.v[j] = T(a[j]);
  *reinterpret_cast<Vec<T, W>*>(p) = v;
}
template <class A, int W>
__device__ __forceinline__ void start(A (&acc)[W]) {
#pragma unroll
  for (int j = 0; j < W; ++j) acc[j] = zero<A>();
}

// pass 1: one thread per (outer o, chunk g, column vector cv)
template <class T, int W>
__global__ void __launch_bounds__(vt::cuda::kThreads) chunk_runs(Runs<T> a) {
  using A = acc_t<T>;
  const int64_t items = a.outer * a.G * a.nv, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += step) {
    const int64_t cv = it % a.nv, g = (it / a.nv) % a.G, o = it / (a.nv * a.G);
    const int64_t s0 = g * a.CH, s1 = min(s0 + a.CH, a.K);
    uint64_t cur = a.keys[s0];
    if (cur >= a.sentinel) continue;
    const uint64_t before = s0 > 0 ? a.keys[s0 - 1] : a.sentinel, after = s1 < a.K ? a.keys[s1] : a.sentinel;
    const T* src = a.src + o * a.src_outer + cv * W;
    T* dst = a.dst + o * a.dst_outer + cv * W;
    const int64_t part = ((o * a.G + g) * a.nv + cv) * W;
    A acc[W];
    start(acc);
    if (a.base && cur != before) load_row<T, W>(dst + cur * a.dst_key, acc);
    bool first = true;
    for (int64_t s = s0;; ++s) {
      const uint64_t k = s < s1 ? a.keys[s] : a.sentinel;
      if (k != cur) {  // the run of cur ends at s
        const bool from_prev = first && cur == before, into_next = s == s1 && cur == after;
        if (!from_prev && !into_next) {
          store_row<T, W>(dst + cur * a.dst_key, acc);
        } else {
          A* p = (first ? a.pfirst : a.plast) + part;
#pragma unroll
          for (int j = 0; j < W; ++j) p[j] = acc[j];
        }
        if (a.touched && o == 0 && cv == 0) a.touched[cur] = 1;
        if (k >= a.sentinel) break;
        first = false;
        cur = k;
        start(acc);
        if (a.base) load_row<T, W>(dst + cur * a.dst_key, acc);
      }
      A x[W];
      load_row<T, W>(src + (int64_t)a.pos[s] * a.src_row, x);
#pragma unroll
      for (int j = 0; j < W; ++j) acc[j] = add(acc[j], mul(a.alpha, x[j]));
    }
  }
}

// pass 2: the chunk where a crossing run starts adds the partial sums of the chunks it covers
template <class T, int W>
__global__ void __launch_bounds__(vt::cuda::kThreads) crossing_runs(Runs<T> a) {
  using A = acc_t<T>;
  const int64_t items = a.outer * (a.G - 1) * a.nv, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += step) {
    const int64_t cv = it % a.nv, g = (it / a.nv) % (a.G - 1), o = it / (a.nv * (a.G - 1));
    const int64_t e = (g + 1) * a.CH;  // < K: g is not the last chunk
    const uint64_t v = a.keys[e - 1];
    if (v >= a.sentinel || a.keys[e] != v) continue;  // the chunk's last run ends inside it
    const int64_t s0 = g * a.CH;
    const bool v_first = a.keys[s0] == v;
    if (v_first && g > 0 && a.keys[s0 - 1] == v) continue;  // the run started in an earlier chunk
    const A* p = (v_first ? a.pfirst : a.plast) + ((o * a.G + g) * a.nv + cv) * W;
    A acc[W];
#pragma unroll
    for (int j = 0; j < W; ++j) acc[j] = p[j];
    for (int64_t h = g + 1; h < a.G; ++h) {
      const A* q = a.pfirst + ((o * a.G + h) * a.nv + cv) * W;
#pragma unroll
      for (int j = 0; j < W; ++j) acc[j] = add(acc[j], q[j]);
      const int64_t he = min((h + 1) * a.CH, a.K);
      if (he == a.K || a.keys[he - 1] != v || a.keys[he] != v) break;
    }
    store_row<T, W>(a.dst + o * a.dst_outer + v * a.dst_key + cv * W, acc);
  }
}

// embedding_backward: rows no index picked are zero
template <class T, int W>
__global__ void __launch_bounds__(vt::cuda::kThreads) zero_untouched(Runs<T> a, int64_t rows) {
  using A = acc_t<T>;
  const int64_t items = rows * a.nv, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t it = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; it < items; it += step) {
    const int64_t v = it / a.nv, cv = it % a.nv;
    if (a.touched[v]) continue;
    A z[W];
#pragma unroll
    for (int j = 0; j < W; ++j) z[j] = A(0);
    store_row<T, W>(a.dst + v * a.dst_key + cv * W, z);
  }
}

// What a caller describes; sum_runs plans the chunks and launches.
struct RunsPlan {
  int64_t outer = 1, inner = 1;
  const void* src;
  int64_t src_outer = 0, src_row = 0;
  void* dst;
  int64_t dst_outer = 0, dst_key = 0;
  double alpha = 1.0;
  bool base = true;
  bool keys_aligned = true;  // every key * dst_key * element size is a multiple of 16 bytes
  int64_t zero_rows = -1;    // >= 0: also zero the rows [0, zero_rows) no key picked (dst_key = inner)
};

template <class T>
void sum_runs(const vt::Call& c, const Sorted& s, const RunsPlan& P) {
  using A = acc_t<T>;
  constexpr int VW = (int)(16 / sizeof(T));
  const int64_t es = sizeof(T);
  auto aligned = [](const void* p) { return ((uintptr_t)p & 15) == 0; };
  const bool vec = P.keys_aligned && P.inner % VW == 0 && aligned(P.src) && aligned(P.dst) &&
                   (P.src_outer * es) % 16 == 0 && (P.src_row * es) % 16 == 0 && (P.dst_outer * es) % 16 == 0;
  const int64_t W = vec ? VW : 1, nv = P.inner / W;
  // chunks of CH sorted contributions: enough threads to fill the GPU, never fewer than 8 per chunk
  int64_t CH = 64;
  while (CH > 8 && P.outer * ((s.K + CH - 1) / CH) * nv < (int64_t)1 << 17) CH /= 2;
  const int64_t G = (s.K + CH - 1) / CH;
  Runs<T> a;
  a.keys = s.keys;
  a.pos = s.pos;
  a.K = s.K;
  a.CH = CH;
  a.G = G;
  a.outer = P.outer;
  a.nv = nv;
  a.sentinel = s.sentinel;
  a.src = static_cast<const T*>(P.src);
  a.src_outer = P.src_outer;
  a.src_row = P.src_row;
  a.dst = static_cast<T*>(P.dst);
  a.dst_outer = P.dst_outer;
  a.dst_key = P.dst_key;
  a.alpha = (A)P.alpha;
  a.base = P.base;
  a.pfirst = a.plast = nullptr;
  a.touched = nullptr;
  vt::Tensor parts, touched;
  if (G > 1) {
    const int64_t bytes = 2 * P.outer * G * P.inner * (int64_t)sizeof(A);
    parts = c.empty(&bytes, 1, vt::kUInt8);
    a.pfirst = static_cast<A*>(parts->data);
    a.plast = a.pfirst + P.outer * G * P.inner;
  }
  if (P.zero_rows >= 0) {
    touched = c.empty(&P.zero_rows, 1, vt::kUInt8);
    a.touched = vt::data<uint8_t>(touched);
    if (P.zero_rows)
      vt::cuda::check(c, cudaMemsetAsync(a.touched, 0, (size_t)P.zero_rows, vt::cuda::stream(c)), "cudaMemsetAsync");
  }
  auto launch = [&](auto w) {
    constexpr int Wc = decltype(w)::value;
    vt::cuda::launch(c, "chunk_runs", chunk_runs<T, Wc>, vt::cuda::grid_for(P.outer * G * nv), vt::cuda::kThreads, 0, a);
    if (G > 1)
      vt::cuda::launch(c, "crossing_runs", crossing_runs<T, Wc>, vt::cuda::grid_for(P.outer * (G - 1) * nv),
                       vt::cuda::kThreads, 0, a);
    if (P.zero_rows > 0)
      vt::cuda::launch(c, "zero_untouched", zero_untouched<T, Wc>, vt::cuda::grid_for(P.zero_rows * nv), vt::cuda::kThreads,
                       0, a, P.zero_rows);
  };
  if (W == 1) launch(std::integral_constant<int, 1>{});
  else launch(std::integral_constant<int, VW>{});
}

// ---- embedding_backward -------------------------------------------------------------------------
// out (V, D): row v = the sum, in position order, of the grad rows of every position holding v
VT_COMPUTE(embedding_backward_cuda, "core::embedding_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  vt_tensor* indices = c.arg(1, "indices").tensor();
  const int64_t V = c.arg(2, "num_weights").int_();
  const vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "indices", 0);
  const int64_t D = grad->sizes[grad->ndim - 1], K = indices->numel;
  if (out->numel == 0 && K == 0) return;
  vt::Tensor idx = vtidx::index_tensor(c, indices);
  vt::Tensor off = c.empty(idx->sizes, idx->ndim, vt::kInt64);
  vtidx::add_offsets(c, off.get(), idx->sizes, idx->ndim, idx.get(), idx->strides, nullptr, nullptr, 1, V, 1, false, true, rep);
  if (out->numel == 0) return;  // D == 0 (or V == 0: every index was bad and is reported)
  if (K == 0) {
    vt::cuda::check(c, cudaMemsetAsync(out->data, 0, (size_t)(out->numel * vt::element_size(out->dtype)), vt::cuda::stream(c)),
                    "cudaMemsetAsync");
    return;
  }
  vt::Tensor g = contiguous(c, grad);
  const Sorted s = sort_keys(c, off.get(), K, (uint64_t)V);
  RunsPlan P;
  P.inner = D;
  P.src = g->data;
  P.src_row = D;
  P.dst = out->data;
  P.dst_key = D;
  P.base = false;
  P.zero_rows = V;
  vt::cuda::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [&](auto tag) { sum_runs<typename decltype(tag)::type>(c, s, P); });
}

// ---- index_add: out = self; out.select(dim, index[k]) += alpha * source.select(dim, k) -----------------
VT_COMPUTE(index_add_cuda, "core::index_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* source = c.arg(3, "source").tensor();
  const double alpha = c.arg(4, "alpha").float_();
  vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "index", dim);
  copy_self(c, out, self);
  vt::Tensor idx = vtidx::index_tensor(c, c.arg(2, "index").tensor());
  const int64_t K = idx->numel, N = self->sizes[dim];
  if (K == 0 || out->numel == 0) return;
  vt::Tensor off = c.empty(&K, 1, vt::kInt64);
  const int64_t is[1] = {idx->ndim ? idx->strides[0] : 0};
  vtidx::add_offsets(c, off.get(), &K, 1, idx.get(), is, nullptr, nullptr, 1, N, 1, false, true, rep);
  vt::Tensor src = contiguous(c, source);
  const Sorted s = sort_keys(c, off.get(), K, (uint64_t)N);
  RunsPlan P;
  for (int32_t d = 0; d < dim; ++d) P.outer *= self->sizes[d];
  for (int32_t d = dim + 1; d < self->ndim; ++d) P.inner *= self->sizes[d];
  P.src = src->data;
  P.src_outer = K * P.inner;
  P.src_row = P.inner;
  P.dst = out->data;
  P.dst_outer = N * P.inner;
  P.dst_key = P.inner;
  P.alpha = alpha;
  vt::cuda::dispatch(vt::kArithTypes, self->dtype, c.op, [&](auto tag) { sum_runs<typename decltype(tag)::type>(c, s, P); });
}

// ---- scatter_add: out = self; out[.., index[p], ..] += src[p] over index's positions p ----------------
VT_COMPUTE(scatter_add_cuda, "core::scatter_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* src = c.arg(3, "src").tensor();
  vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "index", dim);
  copy_self(c, out, self);
  vt::Tensor idx = vtidx::index_tensor(c, c.arg(2, "index").tensor());
  const int64_t K = idx->numel;
  if (K == 0 || out->numel == 0) return;
  // the destination of position p: out's offset of p's coordinates, with index[p] along dim
  const int32_t nd = idx->ndim;
  int64_t cs[vt::kMaxDims];
  for (int32_t d = 0; d < nd; ++d) cs[d] = out->strides[d];
  const int64_t n = nd ? self->sizes[dim] : 1, mult = nd ? out->strides[dim] : 0;
  if (nd) cs[dim] = 0;
  vt::Tensor off = c.empty(idx->sizes, nd, vt::kInt64);
  vtidx::add_offsets(c, off.get(), idx->sizes, nd, idx.get(), idx->strides, out->data, cs, vt::element_size(out->dtype), n,
                     mult, false, true, rep);
  // src over index's shape, contiguous: position p is element p
  vt::Tensor sv;
  if (vt::same_shape(src, idx.get()) && vt::is_contiguous(src)) {
    c.host->retain(src);
    sv = vt::Tensor(c.host, src);
  } else {
    vt_tensor* v = c.host->as_strided(src, idx->sizes, src->strides, nd, 0);
    if (!v) throw vt::Error(VT_ERR_VALUE);
    vt::Tensor view(c.host, v);
    sv = vt::call(c.host, "core::contiguous", {vt::V(view)});
  }
  const Sorted s = sort_keys(c, off.get(), K, (uint64_t)out->numel);
  RunsPlan P;
  P.src = sv->data;
  P.src_row = 1;
  P.dst = out->data;
  P.dst_key = 1;
  P.keys_aligned = false;
  vt::cuda::dispatch(vt::kArithTypes, self->dtype, c.op, [&](auto tag) { sum_runs<typename decltype(tag)::type>(c, s, P); });
}

// ---- index_put / index_put_ -------------------------------------------------------------------------
// Per sorted run of one destination, every position but the last is dropped (off = -1).
__global__ void __launch_bounds__(vt::cuda::kThreads)
    drop_overwritten(const uint64_t* keys, const int32_t* pos, int64_t K, uint64_t sentinel, int64_t* off) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; s + 1 < K; s += step)
    if (keys[s] < sentinel && keys[s + 1] == keys[s]) off[pos[s]] = -1;
}

// dims [k, nd) of t walk its memory contiguously (size-1 dims aside)
bool rest_contiguous(const vt_tensor* t, int32_t k) {
  int64_t expected = 1;
  for (int32_t d = t->ndim - 1; d >= k; --d) {
    if (t->sizes[d] != 1 && t->strides[d] != expected) return false;
    expected *= t->sizes[d];
  }
  return true;
}

// dst[indices] = values, or += (accumulate); dst any strides (accumulate: its rest dims contiguous)
void index_put_into(const vt::Call& c, const vt_tensor* dst, const vtidx::IndexList& s, vt_tensor* values, bool accumulate) {
  const int32_t rest = dst->ndim - s.k, nt = s.nb + rest;
  int64_t target[vt::kMaxDims];
  for (int32_t d = 0; d < s.nb; ++d) target[d] = s.B[d];
  int64_t inner = 1;
  for (int32_t d = 0; d < rest; ++d) {
    target[s.nb + d] = dst->sizes[s.k + d];
    inner *= dst->sizes[s.k + d];
  }
  vt::Tensor off = c.empty(s.B, s.nb, vt::kInt64);
  vtidx::tuple_offsets(c, s, dst, off.get());
  if (inner == 0) return;
  // destinations are element offsets into dst: below sentinel
  uint64_t sentinel = 1;
  for (int32_t j = 0; j < s.k; ++j) sentinel += (uint64_t)(dst->sizes[j] - 1) * (uint64_t)dst->strides[j];
  const int64_t es = vt::element_size(dst->dtype);
  if (!accumulate) {
    if (s.N > 1) {
      const Sorted so = sort_keys(c, off.get(), s.N, sentinel);
      vt::cuda::launch(c, "drop_overwritten", drop_overwritten, vt::cuda::grid_for(s.N), vt::cuda::kThreads, 0, so.keys, so.pos,
                       so.K, so.sentinel, vt::data<int64_t>(off));
    }
    int64_t vs[vt::kMaxDims], is[vt::kMaxDims] = {}, ds[vt::kMaxDims] = {};
    vt::broadcast_strides(values, nt, vs);
    vtidx::contiguous_strides(s.B, s.nb, is);
    for (int32_t d = 0; d < rest; ++d) ds[s.nb + d] = dst->strides[s.k + d];
    vtidx::take<true>(c, target, nt, values->data, vs, off.get(), is, dst->data, ds, es, LLONG_MAX, es, false,
                      vtidx::no_report());
    return;
  }
  // values as contiguous rows: (N, inner)
  vt::Tensor vals;
  bool exact = vt::is_contiguous(values) && values->ndim == nt;
  for (int32_t d = 0; exact && d < nt; ++d) exact = values->sizes[d] == target[d];
  if (exact) {
    c.host->retain(values);
    vals = vt::Tensor(c.host, values);
  } else {
    const std::vector<int64_t> shape(target, target + nt);
    vt::Tensor e = vt::call(c.host, "core::expand", {vt::V(values), vt::V(shape)});
    vals = vt::call(c.host, "core::contiguous", {vt::V(e)});
  }
  const Sorted so = sort_keys(c, off.get(), s.N, sentinel);
  RunsPlan P;
  P.inner = inner;
  P.src = vals->data;
  P.src_row = inner;
  P.dst = dst->data;
  P.dst_key = 1;
  for (int32_t j = 0; j < s.k; ++j) P.keys_aligned = P.keys_aligned && (dst->strides[j] * es) % 16 == 0;
  vt::cuda::dispatch(vt::kArithTypes, dst->dtype, c.op, [&](auto tag) { sum_runs<typename decltype(tag)::type>(c, so, P); });
}

// index_put: out = self with out[indices] = values (or +=); index_put_: out is self
void index_put_cuda(vt::Call& c) {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* values = c.arg(2, "values").tensor();
  const bool accumulate = c.arg(3, "accumulate").bool_();
  vt_tensor* out = c.out(0);
  vtidx::raise_pending();
  copy_self(c, out, self);
  const vtidx::IndexList s = vtidx::index_list(c);
  if (s.N == 0 || out->numel == 0) return;
  if (!accumulate || rest_contiguous(out, s.k)) {
    index_put_into(c, out, s, values, accumulate);
    return;
  }
  // accumulating into a view whose rows are not contiguous: through a contiguous copy
  vt::Tensor tmp = contiguous(c, out);
  index_put_into(c, tmp.get(), s, values, accumulate);
  vt::call(c.host, "core::copy_", {vt::V(out), vt::V(tmp)});
}
VT_COMPUTE(index_put_out_cuda, "core::index_put") { index_put_cuda(c); }
VT_COMPUTE(index_put_inplace_cuda, "core::index_put_") { index_put_cuda(c); }

}  // namespace

void register_index_scatter_cuda(vt::Registrar& r) {
  r.compute("core::index_add", VT_CUDA, index_add_cuda);
  r.compute("core::scatter_add", VT_CUDA, scatter_add_cuda);
  r.compute("core::embedding_backward", VT_CUDA, embedding_backward_cuda);
  r.compute("core::index_put", VT_CUDA, index_put_out_cuda);
  r.compute("core::index_put_", VT_CUDA, index_put_inplace_cuda);
}
