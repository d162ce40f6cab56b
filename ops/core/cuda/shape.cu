// ops/core/cuda/shape.cu — the CUDA compute of cat, tril and triu. The meta steps and the
// semantics are src/shape.cpp's (linspace and eye, the shape family's factories, are in
// factory.cu with arange).
//
// cat: the output is contiguous; seen around `dim` it is (outer, total * inner) and input k fills
// the columns [off_k * inner, (off_k + size_k) * inner) of every outer row. An input whose own rows
// are contiguous (its dims from `dim` on, with one stride between outer rows: contiguous tensors,
// slices along outer dims) is a batch entry: up to kBatch of them per launch (blockIdx.y picks the
// input), moved in the widest unit (up to 16 bytes) that every row, stride and address of the batch
// allows. Other inputs (transposed, expanded, another dtype) are copied into their slice by
// core::copy_ (the strided/converting copy), one launch each.
// tril/triu: one strided pass over (out, self); the element's row and column come from its
// position in the contiguous output.
#include <algorithm>

#include "vt/autograd.hpp"
#include "vt/cuda/elementwise.cuh"

namespace {

// ---- cat ------------------------------------------------------------------------------------------
constexpr int kBatch = 32;

struct CatInput {
  const char* src;
  int64_t dst_off;     // bytes from the output's start to this input's first column
  int64_t row_bytes;   // bytes of one row of this input
  int64_t src_stride;  // bytes between its rows
};
struct CatBatch {
  CatInput in[kBatch];
  char* dst;
  int64_t rows, dst_stride;  // outer rows; bytes between output rows
};

template <class U>
__global__ void __launch_bounds__(vt::cuda::kThreads) cat_kernel(CatBatch b) {
  const CatInput in = b.in[blockIdx.y];
  const int64_t per_row = in.row_bytes / (int64_t)sizeof(U), n = b.rows * per_row;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  const bool small = n <= (int64_t)0xffffffffu;  // 32-bit division when it fits
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < n; u += step) {
    const int64_t r = small ? (int64_t)((uint32_t)u / (uint32_t)per_row) : u / per_row;
    const int64_t col = u - r * per_row;
    *reinterpret_cast<U*>(b.dst + in.dst_off + r * b.dst_stride + col * (int64_t)sizeof(U)) =
        *reinterpret_cast<const U*>(in.src + r * in.src_stride + col * (int64_t)sizeof(U));
  }
}

bool skipped(const vt_tensor* t, int32_t ref_ndim) { return t->ndim == 1 && t->sizes[0] == 0 && ref_ndim != 1; }

// t's dims [d, nd) contiguous and its dims [0, d) one stride apart: true, with that stride (elements)
bool rows_of(const vt_tensor* t, int32_t d, int64_t* stride) {
  int64_t expected = 1;
  for (int32_t k = t->ndim - 1; k >= d; --k) {
    if (t->sizes[k] != 1 && t->strides[k] != expected) return false;
    expected *= t->sizes[k];
  }
  *stride = expected;  // the stride of a single outer row does not matter
  int64_t next = -1;   // the stride the next outer dim (going outwards) must have
  for (int32_t k = d - 1; k >= 0; --k) {
    if (t->sizes[k] == 1) continue;
    if (next < 0) *stride = t->strides[k];
    else if (t->strides[k] != next) return false;
    next = t->strides[k] * t->sizes[k];
  }
  return true;
}

void launch_batch(const vt::Call& c, CatBatch& b, int n, int64_t unit, int64_t max_units) {
  if (n == 0) return;
  const dim3 grid(std::max(1u, vt::cuda::grid_for(max_units) / (unsigned)std::min(n, 8)), (unsigned)n);
  auto go = [&](auto tag) {
    using U = typename decltype(tag)::type;
    vt::cuda::launch(c, "cat_kernel", cat_kernel<U>, grid, vt::cuda::kThreads, 0, b);
  };
  switch (unit) {
    case 1: go(vt::type_tag<uint8_t>{}); break;
    case 2: go(vt::type_tag<uint16_t>{}); break;
    case 4: go(vt::type_tag<uint32_t>{}); break;
    case 8: go(vt::type_tag<uint64_t>{}); break;
    default: go(vt::type_tag<uint4>{}); break;
  }
}

VT_COMPUTE(cat_cuda, "core::cat") {
  const vt_tensor_list ts = c.args[0].v.ts;
  vt_tensor* out = c.out(0);
  const int32_t nd = out->ndim;
  const int64_t dim_arg = c.arg(1, "dim").int_();
  const int32_t d = (int32_t)(dim_arg < 0 ? dim_arg + nd : dim_arg);
  if (out->numel == 0) return;
  const int64_t es = vt::element_size(out->dtype);
  int64_t outer = 1, inner = 1;
  for (int32_t k = 0; k < d; ++k) outer *= out->sizes[k];
  for (int32_t k = d + 1; k < nd; ++k) inner *= out->sizes[k];
  CatBatch b;
  b.dst = static_cast<char*>(out->data);
  b.rows = outer;
  b.dst_stride = out->sizes[d] * inner * es;
  int n = 0;
  int64_t unit = 16, max_units = 0;
  // the widest unit dividing every value the batch's addresses are made of
  auto fits = [&unit](int64_t v) {
    while (unit > 1 && v % unit != 0) unit /= 2;
  };
  fits((int64_t)(uintptr_t)b.dst);
  if (outer > 1) fits(b.dst_stride);
  const int64_t unit0 = unit;
  int64_t off = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    vt_tensor* t = ts.data[k];
    if (skipped(t, nd)) continue;
    const int64_t cols = t->sizes[d];
    int64_t stride = 0;
    if (t->numel && vt::same_dtype(t->dtype, out->dtype) && rows_of(t, d, &stride)) {
      CatInput& in = b.in[n++];
      in.src = static_cast<const char*>(t->data);
      in.dst_off = off * inner * es;
      in.row_bytes = cols * inner * es;
      in.src_stride = stride * es;
      fits((int64_t)(uintptr_t)in.src);
      fits(in.dst_off);
      fits(in.row_bytes);
      if (outer > 1) fits(in.src_stride);
      max_units = std::max(max_units, outer * in.row_bytes);
      if (n == kBatch) {
        launch_batch(c, b, n, unit, max_units / unit);
        n = 0;
        unit = unit0;
        max_units = 0;
      }
    } else if (t->numel) {  // strided or converting: the general copy into the slice (a view)
      int64_t sizes[vt::kMaxDims];
      for (int32_t j = 0; j < nd; ++j) sizes[j] = out->sizes[j];
      sizes[d] = cols;
      vt_tensor* v = c.host->as_strided(out, sizes, out->strides, nd, off * out->strides[d]);
      if (!v) throw vt::Error(VT_ERR_VALUE);
      vt::Tensor dst(c.host, v);
      vt::call(c.host, "core::copy_", {vt::V(dst), vt::V(t)});
    }
    off += cols;
  }
  launch_batch(c, b, n, unit, max_units / unit);
}

// ---- tril / triu ----------------------------------------------------------------------------------
// out[.., i, j] = keep ? self[.., i, j] : 0 with keep = j <= i + diag (tril) or j >= i + diag (triu)
template <class U>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    tri_kernel(vt::StridedLoop<2> L, int64_t R, int64_t C, int64_t diag, bool lower) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* p[2];
    vt::cuda::element_ptrs(L, i, p);
    const int64_t e = (int64_t)(p[0] - L.data[0]) / (int64_t)sizeof(U);  // out is contiguous
    const int64_t col = e % C, row = (e / C) % R;
    const bool keep = lower ? col <= row + diag : col >= row + diag;
    *reinterpret_cast<U*>(p[0]) = keep ? *reinterpret_cast<const U*>(p[1]) : U(0);
  }
}

void tri_cuda(vt::Call& c, bool lower) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int64_t diag = c.arg(1, "diagonal").int_();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const vt_tensor* ops[2] = {out, x};
  const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  const int64_t R = x->sizes[x->ndim - 2], C = x->sizes[x->ndim - 1];
  auto go = [&](auto zero) {
    using U = decltype(zero);
    vt::cuda::launch(c, "tri_kernel", tri_kernel<U>, vt::cuda::grid_for(L.numel), vt::cuda::kThreads, 0, L, R, C, diag, lower);
  };
  switch (vt::element_size(x->dtype)) {
    case 1: go(uint8_t()); break;
    case 2: go(uint16_t()); break;
    case 4: go(uint32_t()); break;
    default: go(uint64_t()); break;
  }
}

VT_COMPUTE(tril_cuda, "core::tril") { tri_cuda(c, true); }
VT_COMPUTE(triu_cuda, "core::triu") { tri_cuda(c, false); }

}  // namespace

void register_shape_cuda(vt::Registrar& r) {
  r.compute("core::cat", VT_CUDA, cat_cuda);
  r.compute("core::tril", VT_CUDA, tril_cuda);
  r.compute("core::triu", VT_CUDA, triu_cuda);
}
