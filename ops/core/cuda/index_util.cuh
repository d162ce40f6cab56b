// ops/core/cuda/index_util.cuh — what the CUDA indexing computes share (index.cu reads through
// indices, index_scatter.cu writes through them):
//   - bad-index reports: a kernel that meets an out-of-range index never reads or writes through
//     it (a read gives zero, a write is skipped) and records the first one in a small record in
//     mapped pinned host memory. The GPU writes it with plain stores, the host reads it with plain
//     loads: no copy and no synchronisation on the hot path. The next indexing call on cuda (of any
//     op of the two files) finds it and raises the IndexError, naming the op, the index and the
//     size. Checking needs the data, and the data is on the device: this is torch's device assert
//     without killing the CUDA context, raised by the first indexing call that starts after the
//     kernel has run (after a synchronisation, the next one). Kernels in captured CUDA graphs
//     report too, unless the record did not exist yet (it is allocated outside capture only).
//   - index tensors as the kernels read them (int64 or int32, any strides);
//   - the "take" kernel: out = self[.., idx, ..] (or its Put form self[.., idx, ..] = values) over
//     a three-operand strided loop, in 16-byte units when rows allow, whole rows one warp each;
//   - the "offsets" kernel: element offsets of index tuples (advanced indexing, scatter_add).
// Not a public header: the core pack's index.cu and index_scatter.cu include it.
#ifndef VT_CORE_CUDA_INDEX_UTIL_CUH_
#define VT_CORE_CUDA_INDEX_UTIL_CUH_

#include <atomic>
#include <cstring>
#include <mutex>

#include "vt/autograd.hpp"
#include "vt/cuda/elementwise.cuh"

namespace vtidx {

// ---- bad-index reports -----------------------------------------------------------------------------
// One per process (per loaded core pack), in mapped pinned memory. `gen` is the generation the host
// waits for; a kernel claims the generation (a device-memory atomicMax, so the first bad index of a
// generation wins), fills the fields and then sets `published` = gen. The host consumes a published
// record by moving to the next generation.
struct BadIndex {
  volatile uint32_t gen;
  volatile uint32_t published;
  volatile int32_t dim;       // -1: a class value (one_hot)
  volatile int32_t pad_;
  volatile int64_t index;
  volatile int64_t size;
  const char* volatile op;    // string literals of the pack (the op and argument names)
  const char* volatile name;
};

// What a kernel needs to report: rec == nullptr turns reporting off (offsets already checked).
struct Report {
  BadIndex* rec;
  const char* op;
  const char* name;
  int32_t dim;
};

// The claim of a generation, in device memory (one per translation unit: two files may both
// publish in one generation; the later record wins, either is a true report).
static __device__ unsigned int g_claim;

__device__ __forceinline__ void bad_index(const Report& r, int64_t index, int64_t size) {
  if (r.rec == nullptr) return;
  const uint32_t gen = r.rec->gen;  // a read over the bus, on this error path only
  if (atomicMax(&g_claim, gen) >= gen) return;
  r.rec->dim = r.dim;
  r.rec->index = index;
  r.rec->size = size;
  r.rec->op = r.op;
  r.rec->name = r.name;
  __threadfence_system();
  r.rec->published = gen;
}

inline std::atomic<BadIndex*> g_record{nullptr};
inline std::mutex g_record_mu;

inline bool capturing(const vt::Call& c) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(vt::cuda::stream(c), &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return true;  // unknown: act as if capturing (allocate nothing, synchronise nothing)
  }
  return st != cudaStreamCaptureStatusNone;
}

// The record, allocated on first use outside CUDA graph capture (never freed: 48 bytes). While a
// first use is being captured, or where mapped memory is not available, kernels run without it:
// bad indices are still skipped, only not reported.
inline BadIndex* record(const vt::Call& c) {
  BadIndex* r = g_record.load(std::memory_order_acquire);
  if (r || capturing(c)) return r;
  std::lock_guard<std::mutex> lock(g_record_mu);
  r = g_record.load(std::memory_order_acquire);
  if (r) return r;
  void* p = nullptr;
  if (cudaHostAlloc(&p, sizeof(BadIndex), cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  void* d = nullptr;
  if (cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess || d != p) {  // needs unified addressing
    (void)cudaGetLastError();
    cudaFreeHost(p);
    return nullptr;
  }
  std::memset(p, 0, sizeof(BadIndex));
  r = static_cast<BadIndex*>(p);
  r->gen = 1;
  g_record.store(r, std::memory_order_release);
  return r;
}

// Raises the bad index an earlier kernel recorded, if any (then starts a new generation).
inline void raise_pending() {
  BadIndex* r = g_record.load(std::memory_order_acquire);
  if (!r || r->published != r->gen) return;
  int32_t dim;
  long long index, size;
  const char *op, *name;
  {
    std::lock_guard<std::mutex> lock(g_record_mu);
    if (r->published != r->gen) return;
    std::atomic_thread_fence(std::memory_order_acquire);
    dim = r->dim;
    index = r->index;
    size = r->size;
    op = r->op;
    name = r->name;
    r->gen = r->gen + 1;
  }
  if (dim < 0)
    vt::fail(VT_ERR_INDEX, "[%s] %s: class value %lld is out of range for num_classes %lld (met on cuda by an earlier "
             "call, which skipped it; reported at the next indexing call)", op, name, index, size);
  vt::fail(VT_ERR_INDEX, "[%s] %s: index %lld is out of bounds for dim %d with size %lld (met on cuda by an earlier "
           "call, which skipped it: nothing was read or written through it; reported at the next indexing call)",
           op, name, index, dim, size);
}

// At the start of every indexing compute: raise what an earlier call left, then the record for
// this call's kernels.
inline Report reporter(const vt::Call& c, const char* name, int32_t dim) {
  raise_pending();
  return Report{record(c), c.op, name, dim};
}
inline Report no_report() { return Report{nullptr, nullptr, nullptr, 0}; }

// ---- index tensors ---------------------------------------------------------------------------------
// int64 and int32 indices are read as they are (any strides); uint8/int8 are converted to int64.
inline vt::Tensor index_tensor(const vt::Call& c, vt_tensor* t) {
  if (!vt::is_integral(t->dtype, false))
    c.fail(VT_ERR_TYPE, "index must be an integer tensor (int64 or int32), got %s", vt::dtype_name(t->dtype));
  if (vt::same_dtype(t->dtype, vt::kInt64) || vt::same_dtype(t->dtype, vt::kInt32)) {
    c.host->retain(t);
    return vt::Tensor(c.host, t);
  }
  return vt::call(c.host, "core::to_dtype", {vt::V(t), vt::V(vt::kInt64)});
}

template <class F>
void with_index_type(const vt_tensor* idx, F&& f) {
  if (vt::same_dtype(idx->dtype, vt::kInt64)) f(vt::type_tag<int64_t>{});
  else f(vt::type_tag<int32_t>{});
}

// contiguous element strides of a shape
inline void contiguous_strides(const int64_t* shape, int32_t nd, int64_t* st) {
  int64_t acc = 1;
  for (int32_t d = nd - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= shape[d];
  }
}

// ---- three-operand loops ---------------------------------------------------------------------------
struct Operand {
  const void* data;
  const int64_t* strides;  // element strides over the loop's shape (0 to broadcast)
  int64_t es;              // element size
};

inline vt::StridedLoop<3> loop3(const int64_t* shape, int32_t nd, Operand a, Operand b, Operand c) {
  char* data[3] = {(char*)a.data, (char*)b.data, (char*)c.data};
  int64_t st[3][vt::kMaxDims];
  for (int32_t d = 0; d < nd; ++d) {
    st[0][d] = a.strides[d];
    st[1][d] = b.strides[d];
    st[2][d] = c.strides[d];
  }
  const int64_t es[3] = {a.es, b.es, c.es};
  return vt::make_loop<3>(shape, nd, data, st, es);
}

// ---- take / put ------------------------------------------------------------------------------------
// Operands: 0 = out (Put: the values), 1 = the index (I), 2 = self with the indexed dim's stride
// zeroed. Element i: v = index (negatives + n when wrap), then out = self[v * sdim bytes] (Put:
// self[v * sdim] = values). An index outside [0, n) reads zero (Put: writes nothing) and is
// reported. U is the unit moved: the element, or 2..16 bytes of a row (see widen). Each thread
// moves kIlp units per step, all loads before the stores, so kIlp gathers are in flight at once.
constexpr int kIlp = 4;

template <class U, class I, bool Put>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    take_kernel(vt::StridedLoop<3> L, int64_t n, int64_t sdim, bool wrap, Report rep) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x * kIlp;
  for (int64_t i0 = (int64_t)blockIdx.x * blockDim.x * kIlp + threadIdx.x; i0 < L.numel; i0 += step) {
    char* p[kIlp][3];
    int64_t v[kIlp];
    U x[kIlp];
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      const int64_t i = i0 + (int64_t)k * blockDim.x;
      if (i < L.numel) vt::cuda::element_ptrs(L, i, p[k]);
    }
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      v[k] = -1;
      if (i0 + (int64_t)k * blockDim.x >= L.numel) continue;
      const int64_t raw = (int64_t)*reinterpret_cast<const I*>(p[k][1]);
      v[k] = (wrap && raw < 0) ? raw + n : raw;
      if (v[k] < 0 || v[k] >= n) {
        bad_index(rep, raw, n);
        v[k] = -1;
      }
    }
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      if (Put) {
        if (v[k] >= 0) x[k] = *reinterpret_cast<const U*>(p[k][0]);
      } else {
        x[k] = v[k] >= 0 ? *reinterpret_cast<const U*>(p[k][2] + v[k] * sdim) : U{};
      }
    }
#pragma unroll
    for (int k = 0; k < kIlp; ++k) {
      if (i0 + (int64_t)k * blockDim.x >= L.numel) continue;
      if (Put) {
        if (v[k] >= 0) *reinterpret_cast<U*>(p[k][2] + v[k] * sdim) = x[k];
      } else {
        *reinterpret_cast<U*>(p[k][0]) = x[k];
      }
    }
  }
}

// The common case of take: whole rows of 16-byte units (embedding, index_select / index along a
// leading dim). One warp per row reads the row's index once and copies the row, kIlp units per
// lane in flight; no index arithmetic per unit.
template <class I>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    take_rows_kernel(vt::StridedLoop<3> L, int64_t n, int64_t sdim, bool wrap, Report rep) {
  const int lane = threadIdx.x & 31;
  const int64_t units = L.ndim ? L.sizes[0] : 1, rows = L.ndim > 1 ? L.sizes[1] : 1;
  const int64_t so = L.ndim > 1 ? L.strides[1][0] : 0, si = L.ndim > 1 ? L.strides[1][1] : 0,
                ss = L.ndim > 1 ? L.strides[1][2] : 0;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nwarps) {
    const int64_t raw = (int64_t)*reinterpret_cast<const I*>(L.data[1] + r * si);
    const int64_t v = (wrap && raw < 0) ? raw + n : raw;
    const bool ok = v >= 0 && v < n;
    if (!ok && lane == 0) bad_index(rep, raw, n);
    const uint4* src = reinterpret_cast<const uint4*>(L.data[2] + r * ss + (ok ? v : 0) * sdim);
    uint4* out = reinterpret_cast<uint4*>(L.data[0] + r * so);
    for (int64_t u = lane; u < units; u += 32 * kIlp) {
      uint4 x[kIlp];
#pragma unroll
      for (int k = 0; k < kIlp; ++k) x[k] = (ok && u + 32 * k < units) ? src[u + 32 * k] : uint4{};
#pragma unroll
      for (int k = 0; k < kIlp; ++k)
        if (u + 32 * k < units) out[u + 32 * k] = x[k];
    }
  }
}

// When operands 0 and 2 walk the loop's innermost dim contiguously and the index does not move
// along it, the dim is a row of bytes: move it in units of w bytes (16 down to 2) when the row
// length, every outer stride, both bases and the indexed stride allow. Returns the unit.
inline int64_t widen(vt::StridedLoop<3>& L, int64_t es, int64_t sdim) {
  if (L.ndim == 0 || L.strides[0][0] != es || L.strides[0][2] != es || L.strides[0][1] != 0) return es;
  for (int64_t w = 16; w > es; w /= 2) {
    bool ok = (L.sizes[0] * es) % w == 0 && (uintptr_t)L.data[0] % w == 0 && (uintptr_t)L.data[2] % w == 0 && sdim % w == 0;
    for (int32_t d = 1; ok && d < L.ndim; ++d) ok = L.strides[d][0] % w == 0 && L.strides[d][2] % w == 0;
    if (!ok) continue;
    L.numel = L.numel / L.sizes[0] * (L.sizes[0] * es / w);
    L.sizes[0] = L.sizes[0] * es / w;
    L.strides[0][0] = L.strides[0][2] = w;
    return w;
  }
  return es;
}

template <class F>
void with_unit(int64_t w, F&& f) {
  switch (w) {
    case 1: f(vt::type_tag<uint8_t>{}); break;
    case 2: f(vt::type_tag<uint16_t>{}); break;
    case 4: f(vt::type_tag<uint32_t>{}); break;
    case 8: f(vt::type_tag<uint64_t>{}); break;
    default: f(vt::type_tag<uint4>{}); break;
  }
}

// Launches take_kernel over `shape`: a = out (Put: values), idx with strides `is`, b = self with
// strides `bs` (the indexed dims zeroed); elements of es bytes.
template <bool Put>
void take(const vt::Call& c, const int64_t* shape, int32_t nd, const void* a, const int64_t* as, const vt_tensor* idx,
          const int64_t* is, const void* b, const int64_t* bs, int64_t es, int64_t n, int64_t sdim_bytes, bool wrap,
          const Report& rep) {
  vt::StridedLoop<3> L = loop3(shape, nd, {a, as, es}, {idx->data, is, vt::element_size(idx->dtype)}, {b, bs, es});
  if (L.numel == 0) return;
  const int64_t w = widen(L, es, sdim_bytes);
  with_index_type(idx, [&](auto itag) {
    using I = typename decltype(itag)::type;
    if (!Put && w == 16 && L.ndim <= 2) {
      const int64_t rows = L.ndim > 1 ? L.sizes[1] : 1;
      vt::cuda::launch(c, "take_rows_kernel", take_rows_kernel<I>, vt::cuda::grid_for(rows * 32), vt::cuda::kThreads, 0, L,
                       n, sdim_bytes, wrap, rep);
      return;
    }
    with_unit(w, [&](auto utag) {
      using U = typename decltype(utag)::type;
      vt::cuda::launch(c, Put ? "put_kernel" : "take_kernel", take_kernel<U, I, Put>, vt::cuda::grid_for((L.numel + kIlp - 1) / kIlp),
                       vt::cuda::kThreads, 0, L, n, sdim_bytes, wrap, rep);
    });
  });
}

// ---- offsets ---------------------------------------------------------------------------------------
// Operands: 0 = off (int64), 1 = an index (I), 2 = a coordinate operand (its byte offset from its
// base, >> es2_shift, is the position's element offset in some tensor; all-zero strides for none).
// off = (first ? 0 : off) + coordinate offset + v * mult, with v the checked (wrapped) index; a
// position with a bad index gets -1 and keeps it.
template <class I>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    offsets_kernel(vt::StridedLoop<3> L, int64_t n, int64_t mult, int32_t es2_shift, bool wrap, bool first, Report rep) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* p[3];
    vt::cuda::element_ptrs(L, i, p);
    int64_t* o = reinterpret_cast<int64_t*>(p[0]);
    const int64_t prev = first ? 0 : *o;
    const int64_t raw = (int64_t)*reinterpret_cast<const I*>(p[1]);
    const int64_t v = (wrap && raw < 0) ? raw + n : raw;
    if (prev < 0) continue;
    if (v < 0 || v >= n) {
      bad_index(rep, raw, n);
      *o = -1;
      continue;
    }
    *o = prev + ((int64_t)(p[2] - L.data[2]) >> es2_shift) + v * mult;
  }
}

inline int32_t log2_size(int64_t es) { return es == 8 ? 3 : es == 4 ? 2 : es == 2 ? 1 : 0; }

// off (contiguous int64 of `shape`) (+)= coordinate offsets + idx * mult; idx read with strides
// `is` over shape, coordinates with strides `cs` over shape in a tensor of element size ces (null:
// none). Indices outside [-n, n) (wrap) or [0, n) are reported with `rep`.
inline void add_offsets(const vt::Call& c, const vt_tensor* off, const int64_t* shape, int32_t nd, const vt_tensor* idx,
                        const int64_t* is, const void* cbase, const int64_t* cs, int64_t ces, int64_t n, int64_t mult,
                        bool wrap, bool first, const Report& rep) {
  int64_t ost[vt::kMaxDims], zero[vt::kMaxDims] = {};
  contiguous_strides(shape, nd, ost);
  const vt::StridedLoop<3> L = loop3(shape, nd, {off->data, ost, 8}, {idx->data, is, vt::element_size(idx->dtype)},
                                     {cbase ? cbase : off->data, cs ? cs : zero, cs ? ces : 1});
  if (L.numel == 0) return;
  with_index_type(idx, [&](auto itag) {
    using I = typename decltype(itag)::type;
    vt::cuda::launch(c, "offsets_kernel", offsets_kernel<I>, vt::cuda::grid_for(L.numel), vt::cuda::kThreads, 0, L, n,
                     mult, log2_size(cs ? ces : 1), wrap, first, rep);
  });
}

// The broadcast shape of advanced indexing's index list (argument 1), as the meta step made it.
struct IndexList {
  int32_t k = 0, nb = 0;
  int64_t B[vt::kMaxDims];
  int64_t N = 1;
  vt_tensor_list l;
};
inline IndexList index_list(const vt::Call& c) {
  IndexList s;
  s.l = c.args[1].v.ts;
  s.k = (int32_t)s.l.len;
  for (int32_t j = 0; j < s.k; ++j) s.nb = std::max(s.nb, s.l.data[j]->ndim);
  for (int32_t d = 0; d < s.nb; ++d) s.B[d] = 1;
  for (int32_t j = 0; j < s.k; ++j) {
    const vt_tensor* t = s.l.data[j];
    for (int32_t i = 0; i < t->ndim; ++i)
      if (t->sizes[i] != 1) s.B[s.nb - t->ndim + i] = t->sizes[i];
  }
  for (int32_t d = 0; d < s.nb; ++d) s.N *= s.B[d];
  return s;
}

// off (int64 of shape B, contiguous) = the element offset in `self` (strides) of every index tuple
// of the list (negatives wrapped), -1 where one of its indices is out of range (reported).
inline void tuple_offsets(const vt::Call& c, const IndexList& s, const vt_tensor* self, const vt_tensor* off) {
  for (int32_t j = 0; j < s.k; ++j) {
    vt::Tensor idx = index_tensor(c, s.l.data[j]);
    int64_t is[vt::kMaxDims];
    vt::broadcast_strides(idx.get(), s.nb, is);
    add_offsets(c, off, s.B, s.nb, idx.get(), is, nullptr, nullptr, 1, self->sizes[j], self->strides[j], true, j == 0,
                reporter(c, "index", j));
  }
}

}  // namespace vtidx

#endif  // VT_CORE_CUDA_INDEX_UTIL_CUH_
