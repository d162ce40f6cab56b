// ops/core/cuda/index.cu — the CUDA compute of the ops that read through indices: index_select,
// gather, embedding, index (advanced indexing t[i0, i1, ...]); and masked_fill, one_hot, nonzero.
// The meta steps and the semantics are src/index.cpp's; the ops that write through indices
// (index_add, scatter_add, embedding_backward, index_put) are in index_scatter.cu.
//
// index_select, gather, embedding and index are one kernel (index_util.cuh's take_kernel): a
// strided loop over the output with three operands, out, the index (broadcast over the dims it
// does not cover) and self with the indexed dim's stride zeroed; each element adds index * stride
// to self's address. Any strides for self, the index and (for index) the broadcast index shape;
// rows that are contiguous in out and self (embedding, index_select/index along a leading dim)
// move in 16-byte units. Dtypes: every dtype, moved as raw 1/2/4/8-byte words.
// Index values are checked on the device: an out-of-range index reads zero and is reported at the
// next indexing call (index_util.cuh), so no call synchronises.
//
// one_hot with num_classes=-1 and nonzero have output shapes that depend on the data: they read a
// count back from the device (a synchronisation), as torch does, and refuse CUDA graph capture.
#include <algorithm>
#include <climits>

#include "index_util.cuh"

namespace {

using vtidx::Report;

int32_t wrapped(int64_t dim, int32_t ndim) { return (int32_t)(dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim); }

// ---- index_select / gather / embedding / index ------------------------------------------------------
VT_COMPUTE(index_select_cuda, "core::index_select") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  const vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "index", dim);
  if (out->numel == 0) return;
  vt::Tensor idx = vtidx::index_tensor(c, c.arg(2, "index").tensor());
  const int64_t es = vt::element_size(self->dtype);
  int64_t is[vt::kMaxDims] = {}, ss[vt::kMaxDims];
  for (int32_t d = 0; d < self->ndim; ++d) ss[d] = self->strides[d];
  ss[dim] = 0;
  is[dim] = idx->ndim ? idx->strides[0] : 0;
  vtidx::take<false>(c, out->sizes, out->ndim, out->data, out->strides, idx.get(), is, self->data, ss, es,
                     self->sizes[dim], self->strides[dim] * es, false, rep);
}

// out[..., j, ...] = self[..., index[..., j, ...], ...] over index's shape (<= self's off dim)
VT_COMPUTE(gather_cuda, "core::gather") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  const vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "index", dim);
  if (out->numel == 0) return;
  vt::Tensor idx = vtidx::index_tensor(c, c.arg(2, "index").tensor());
  const int64_t es = vt::element_size(self->dtype);
  int64_t ss[vt::kMaxDims];
  for (int32_t d = 0; d < self->ndim; ++d) ss[d] = self->strides[d];
  const int64_t n = self->ndim ? self->sizes[dim] : 1, sdim = self->ndim ? self->strides[dim] * es : 0;
  if (self->ndim) ss[dim] = 0;
  vtidx::take<false>(c, out->sizes, out->ndim, out->data, out->strides, idx.get(), idx->strides, self->data, ss, es, n,
                     sdim, false, rep);
}

// out[i..., :] = weight[indices[i...], :]
VT_COMPUTE(embedding_cuda, "core::embedding") {
  const vt_tensor* w = c.arg(0, "weight").tensor();
  const vt_tensor* out = c.out(0);
  const Report rep = vtidx::reporter(c, "indices", 0);
  if (out->numel == 0) return;
  vt::Tensor idx = vtidx::index_tensor(c, c.arg(1, "indices").tensor());
  const int64_t es = vt::element_size(w->dtype);
  const int32_t nd = out->ndim;
  int64_t is[vt::kMaxDims] = {}, ws[vt::kMaxDims] = {};
  for (int32_t d = 0; d < nd - 1; ++d) is[d] = idx->strides[d];
  ws[nd - 1] = w->strides[1];
  vtidx::take<false>(c, out->sizes, nd, out->data, out->strides, idx.get(), is, w->data, ws, es, w->sizes[0],
                     w->strides[0] * es, false, rep);
}

// index(self, [i0, ..., ik-1]) -> B + self.shape[k:]. One index tensor: taken directly (negatives
// wrap). Several: their element offsets into self are summed first (index_util's tuple_offsets),
// then taken as one index of offsets.
VT_COMPUTE(index_cuda, "core::index") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  const vtidx::IndexList s = vtidx::index_list(c);
  const Report rep = vtidx::reporter(c, "index", 0);
  if (out->numel == 0) return;
  const int64_t es = vt::element_size(self->dtype);
  const int32_t rest = self->ndim - s.k, nd = out->ndim;
  int64_t is[vt::kMaxDims] = {}, ss[vt::kMaxDims] = {};
  for (int32_t i = 0; i < rest; ++i) ss[s.nb + i] = self->strides[s.k + i];
  if (s.k == 1) {
    vt::Tensor idx = vtidx::index_tensor(c, s.l.data[0]);
    vt::broadcast_strides(idx.get(), s.nb, is);
    vtidx::take<false>(c, out->sizes, nd, out->data, out->strides, idx.get(), is, self->data, ss, es, self->sizes[0],
                       self->strides[0] * es, true, rep);
    return;
  }
  vt::Tensor off = c.empty(s.B, s.nb, vt::kInt64);
  vtidx::tuple_offsets(c, s, self, off.get());
  vtidx::contiguous_strides(s.B, s.nb, is);
  vtidx::take<false>(c, out->sizes, nd, out->data, out->strides, off.get(), is, self->data, ss, es, LLONG_MAX, es, false,
                     vtidx::no_report());
}

// ---- masked_fill ------------------------------------------------------------------------------------
// out = mask ? value : self (broadcast), on the value's bit pattern in self's dtype
template <class U>
struct MaskedFill {
  U bits;
  __device__ __forceinline__ U operator()(U x, bool m) const { return m ? bits : x; }
};

VT_COMPUTE(masked_fill_cuda, "core::masked_fill") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* mask = c.arg(1, "mask").tensor();
  const double value = c.arg(2, "value").float_();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  uint64_t pattern = 0;
  vt::dispatch(vt::kAllTypes, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = vt::convert<T>(value);  // the cpu's conversion (the meta step checked the range)
    std::memcpy(&pattern, &v, sizeof(T));
  });
  auto run = [&](auto zero) {
    using U = decltype(zero);
    U bits;
    std::memcpy(&bits, &pattern, sizeof(U));
    vt::cuda::elementwise<U, U, bool>(c, MaskedFill<U>{bits}, out, self, mask);
  };
  switch (vt::element_size(self->dtype)) {
    case 1: run(uint8_t()); break;
    case 2: run(uint16_t()); break;
    case 4: run(uint32_t()); break;
    default: run(uint64_t()); break;
  }
}

// ---- one_hot ----------------------------------------------------------------------------------------
// Operands: 0 = out's row of the position (int64, C wide), 1 = the class index.
template <class I>
__global__ void __launch_bounds__(vt::cuda::kThreads) one_hot_kernel(vt::StridedLoop<2> L, int64_t C, Report rep) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* p[2];
    vt::cuda::element_ptrs(L, i, p);
    const int64_t v = (int64_t)*reinterpret_cast<const I*>(p[1]);
    if (v >= 0 && v < C) reinterpret_cast<int64_t*>(p[0])[v] = 1;
    else vtidx::bad_index(rep, v, C);
  }
}

// the smallest and largest index, by one block (one_hot's num_classes=-1: labels, not huge)
template <class I>
__global__ void __launch_bounds__(1024) minmax_kernel(vt::StridedLoop<1> L, int64_t* out) {
  int64_t lo = LLONG_MAX, hi = LLONG_MIN;
  for (int64_t i = threadIdx.x; i < L.numel; i += blockDim.x) {
    char* p[1];
    vt::cuda::element_ptrs(L, i, p);
    const int64_t v = (int64_t)*reinterpret_cast<const I*>(p[0]);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  __shared__ int64_t s_lo[32], s_hi[32];
  for (int o = 16; o > 0; o >>= 1) {
    const int64_t a = __shfl_xor_sync(0xffffffffu, lo, o), b = __shfl_xor_sync(0xffffffffu, hi, o);
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
  if ((threadIdx.x & 31) == 0) {
    s_lo[threadIdx.x >> 5] = lo;
    s_hi[threadIdx.x >> 5] = hi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) {
      lo = s_lo[w] < lo ? s_lo[w] : lo;
      hi = s_hi[w] > hi ? s_hi[w] : hi;
    }
    out[0] = lo;
    out[1] = hi;
  }
}

// Device -> host copy of a few int64 and a wait: for outputs whose shape depends on the data.
void read_back(const vt::Call& c, const void* dev, int64_t* host, int64_t count, const char* why) {
  if (vtidx::capturing(c))
    c.fail(VT_ERR_NOT_IMPL, "%s depends on the data, which needs a device-to-host read (a synchronisation) that CUDA "
           "graph capture does not allow", why);
  vt::cuda::check(c, cudaMemcpyAsync(host, dev, (size_t)count * 8, cudaMemcpyDeviceToHost, vt::cuda::stream(c)),
                  "cudaMemcpyAsync");
  vt::cuda::check(c, cudaStreamSynchronize(vt::cuda::stream(c)), "cudaStreamSynchronize");
}

VT_COMPUTE(one_hot_cuda, "core::one_hot") {
  vt_tensor* indices = c.arg(0, "indices").tensor();
  int64_t C = c.arg(1, "num_classes").int_();
  const Report rep = vtidx::reporter(c, "indices", -1);
  vt::Tensor idx = vtidx::index_tensor(c, indices);
  if (C < 0) {  // num_classes=-1: the largest class + 1, read back from the device
    int64_t mm[2] = {LLONG_MAX, -1};
    if (idx->numel) {
      const int64_t two = 2;
      vt::Tensor dev = c.empty(&two, 1, vt::kInt64);
      const vt_tensor* ops[1] = {idx.get()};
      const vt::StridedLoop<1> L = vt::loop_over<1>(c.op, ops);
      vtidx::with_index_type(idx.get(), [&](auto tag) {
        using I = typename decltype(tag)::type;
        vt::cuda::launch(c, "minmax_kernel", minmax_kernel<I>, 1, 1024, 0, L, vt::data<int64_t>(dev));
      });
      read_back(c, dev->data, mm, 2, "one_hot with num_classes=-1: the class count");
    }
    if (mm[0] < 0 && idx->numel) c.fail(VT_ERR_INDEX, "class values must be non-negative, got %lld", (long long)mm[0]);
    C = mm[1] + 1;
    int64_t shape[vt::kMaxDims];
    for (int32_t d = 0; d < indices->ndim; ++d) shape[d] = indices->sizes[d];
    shape[indices->ndim] = C;
    c.set_out(0, c.empty(shape, indices->ndim + 1, vt::kInt64));
  }
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  vt::cuda::check(c, cudaMemsetAsync(out->data, 0, (size_t)out->numel * 8, vt::cuda::stream(c)), "cudaMemsetAsync");
  int64_t strides[2][vt::kMaxDims];
  for (int32_t d = 0; d < idx->ndim; ++d) {
    strides[0][d] = out->strides[d];
    strides[1][d] = idx->strides[d];
  }
  char* data[2] = {static_cast<char*>(out->data), static_cast<char*>(idx->data)};
  const int64_t esz[2] = {8, vt::element_size(idx->dtype)};
  const vt::StridedLoop<2> L = vt::make_loop<2>(idx->sizes, idx->ndim, data, strides, esz);
  vtidx::with_index_type(idx.get(), [&](auto tag) {
    using I = typename decltype(tag)::type;
    vt::cuda::launch(c, "one_hot_kernel", one_hot_kernel<I>, vt::cuda::grid_for(L.numel), vt::cuda::kThreads, 0, L, C,
                     rep);
  });
}

// ---- nonzero ----------------------------------------------------------------------------------------
// Stream compaction in row-major order: tiles of kTile elements; pass 1 counts each tile's nonzero
// elements, one block scans the counts (exclusive) and writes the total, the host reads the total
// (the output's row count), pass 2 writes each nonzero element's coordinates at its tile's offset
// plus its rank in the tile (ballots), so the order is row-major as on cpu.
constexpr int kTileIters = 16;
constexpr int64_t kTile = (int64_t)vt::cuda::kThreads * kTileIters;

struct Geo {  // self's shape and element strides, outermost first
  int32_t nd;
  bool contiguous;
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
};

// element e (row-major) of self is nonzero: its bits with a float's sign bit masked off are not 0
template <class U>
__device__ __forceinline__ bool nonzero_at(const U* x, const Geo& g, int64_t e, U mask) {
  int64_t off = e;
  if (!g.contiguous) {
    off = 0;
    for (int32_t d = g.nd - 1; d >= 0; --d) {
      off += (e % g.sizes[d]) * g.strides[d];
      e /= g.sizes[d];
    }
  }
  return (x[off] & mask) != 0;
}

// rank among the block's flagged threads and the block's count (all threads must call it)
__device__ __forceinline__ int block_rank(bool flag, int& total) {
  __shared__ int warp_count[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const unsigned ballot = __ballot_sync(0xffffffffu, flag);
  if (lane == 0) warp_count[warp] = __popc(ballot);
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < nwarps; ++w) {
    before += w < warp ? warp_count[w] : 0;
    total += warp_count[w];
  }
  __syncthreads();  // the slots are reused by the next call
  return before + __popc(ballot & ((1u << lane) - 1u));
}

template <class U>
__global__ void __launch_bounds__(vt::cuda::kThreads) count_tiles(const U* x, Geo g, int64_t N, U mask, int64_t* counts) {
  for (int64_t t = blockIdx.x; t * kTile < N; t += gridDim.x) {
    int64_t n = 0;
    for (int it = 0; it < kTileIters; ++it) {
      const int64_t e = t * kTile + (int64_t)it * blockDim.x + threadIdx.x;
      int total;
      block_rank(e < N && nonzero_at(x, g, e, mask), total);
      n += total;
    }
    if (threadIdx.x == 0) counts[t] = n;
  }
}

// exclusive scan of counts[0, n) in place by one block; counts[n] = the total
__global__ void __launch_bounds__(1024) scan_counts(int64_t* counts, int64_t n) {
  __shared__ int64_t warp_sum[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  int64_t carry = 0;
  for (int64_t b = 0; b < n; b += blockDim.x) {
    const int64_t i = b + threadIdx.x;
    const int64_t v = i < n ? counts[i] : 0;
    int64_t x = v;
    for (int o = 1; o < 32; o <<= 1) {
      const int64_t y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) warp_sum[warp] = x;
    __syncthreads();
    int64_t before = carry, total = carry;
    for (int w = 0; w < nwarps; ++w) {
      before += w < warp ? warp_sum[w] : 0;
      total += warp_sum[w];
    }
    if (i < n) counts[i] = before + x - v;
    carry = total;
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[n] = carry;
}

template <class U>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    write_coords(const U* x, Geo g, int64_t N, U mask, const int64_t* offsets, int64_t* out) {
  for (int64_t t = blockIdx.x; t * kTile < N; t += gridDim.x) {
    int64_t base = offsets[t];
    for (int it = 0; it < kTileIters; ++it) {
      const int64_t e = t * kTile + (int64_t)it * blockDim.x + threadIdx.x;
      const bool flag = e < N && nonzero_at(x, g, e, mask);
      int total;
      const int rank = block_rank(flag, total);
      if (flag) {
        int64_t* row = out + (base + rank) * g.nd;
        int64_t r = e;
        for (int32_t d = g.nd - 1; d >= 0; --d) {
          row[d] = r % g.sizes[d];
          r /= g.sizes[d];
        }
      }
      base += total;
    }
  }
}

// a whole kernel (registered with impl, not as a compute): the output's row count is the data's
VT_KERNEL(nonzero_cuda, "core::nonzero") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  vt::dispatch(vt::kAllTypes, self->dtype, c.op, [](auto) {});
  const int32_t nd = self->ndim;
  const int64_t N = self->numel;
  int64_t count = 0;
  vt::Tensor counts;
  Geo g;
  g.nd = nd;
  g.contiguous = vt::is_contiguous(self);
  for (int32_t d = 0; d < nd; ++d) {
    g.sizes[d] = self->sizes[d];
    g.strides[d] = self->strides[d];
  }
  const int64_t es = vt::element_size(self->dtype);
  // floats: -0.0 is zero, so the sign bit does not count
  const uint64_t mask = !vt::is_floating(self->dtype) ? ~0ull : es == 2 ? 0x7fffull : es == 4 ? 0x7fffffffull
                                                                                   : 0x7fffffffffffffffull;
  const int64_t tiles = (N + kTile - 1) / kTile;
  const unsigned grid = (unsigned)std::min<int64_t>(std::max<int64_t>(tiles, 1), vt::cuda::kMaxBlocks);
  auto run = [&](auto zero, bool second, int64_t* out) {
    using U = decltype(zero);
    if (!second)
      vt::cuda::launch(c, "nonzero count_tiles", count_tiles<U>, grid, vt::cuda::kThreads, 0, static_cast<const U*>(self->data),
                       g, N, (U)mask, vt::data<int64_t>(counts));
    else
      vt::cuda::launch(c, "nonzero write_coords", write_coords<U>, grid, vt::cuda::kThreads, 0,
                       static_cast<const U*>(self->data), g, N, (U)mask, vt::data<const int64_t>(counts), out);
  };
  auto pass = [&](bool second, int64_t* out) {
    switch (es) {
      case 1: run(uint8_t(), second, out); break;
      case 2: run(uint16_t(), second, out); break;
      case 4: run(uint32_t(), second, out); break;
      default: run(uint64_t(), second, out); break;
    }
  };
  if (N > 0) {
    const int64_t n1 = tiles + 1;
    counts = c.empty(&n1, 1, vt::kInt64);
    pass(false, nullptr);
    vt::cuda::launch(c, "nonzero scan_counts", scan_counts, 1, 1024, 0, vt::data<int64_t>(counts), tiles);
    read_back(c, vt::data<int64_t>(counts) + tiles, &count, 1, "nonzero's output shape");
  }
  const int64_t shape[2] = {count, nd};
  vt::Tensor out = c.empty(shape, 2, vt::kInt64);
  if (count > 0 && nd > 0) pass(true, vt::data<int64_t>(out));
  c.set_out(0, std::move(out));
}

}  // namespace

void register_index_cuda(vt::Registrar& r) {
  r.compute("core::index_select", VT_CUDA, index_select_cuda);
  r.compute("core::gather", VT_CUDA, gather_cuda);
  r.compute("core::embedding", VT_CUDA, embedding_cuda);
  r.compute("core::index", VT_CUDA, index_cuda);
  r.compute("core::masked_fill", VT_CUDA, masked_fill_cuda);
  r.compute("core::one_hot", VT_CUDA, one_hot_cuda);
  r.impl("core::nonzero", VT_CUDA, nonzero_cuda);  // a whole kernel, as on cpu
}
