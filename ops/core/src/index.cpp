// ops/core/src/index.cpp — indexing: index_select, index_add, gather, scatter_add, masked_fill,
// embedding (+ its sparse-accumulating backward), one_hot, nonzero, and the ops behind Python's
// advanced indexing: index (t[i0, i1, ...]) and index_put / index_put_ (setitem).
//
// Each op is a meta step (every device: shapes, dtypes, index dtypes, the output) and a CPU
// compute (the loops, and the checks of the index values, which need the data). nonzero is a
// whole CPU kernel (its output shape depends on the data, so no meta device); so is one_hot's
// num_classes=-1 case in effect (its meta step leaves the output to the compute).
//
// Index tensors may be int64 or int32 (any strides); in advanced indexing negative indices count
// from the end, like Python; the other ops refuse them (torch does); out-of-range ones are an
// IndexError naming the index, dim and size.
// Accumulating kernels never let two threads write the same element: they split the work by
// destination (lines of scatter_add, rows of embedding_backward, outer slices of index_add) and
// add in a fixed order, so results do not depend on the thread count.
//
// index(self, indices): indices (k of them, k <= self.ndim) broadcast to a shape B; the result is
// B + self.shape[k:], out[b, ...] = self[i0[b], i1[b], ..., ...]. The Python layer moves the
// indexed dims to the front (a permute view) and turns bool masks into indices (nonzero) first.
#include <algorithm>

#include "core.hpp"
#include "shape_util.hpp"

namespace core {
void check_fill_value(vt::Call& c, vt_dtype dtype, double value, const char* name);  // factory.cpp
}

namespace {

using vt::V;

// The rows of a block of `nb` dims (outermost first) walked in two tensors at once:
// f(D* d, const S* s, int64_t n, int64_t dstride, int64_t sstride) per innermost row.
template <class D, class S, class F>
void block_rows(D* d, const int64_t* dst, const S* s, const int64_t* sst, const int64_t* sizes, int32_t nb, F&& f) {
  if (nb == 0) {
    f(d, s, (int64_t)1, (int64_t)0, (int64_t)0);
    return;
  }
  for (int32_t i = 0; i < nb; ++i)
    if (sizes[i] == 0) return;
  const int32_t last = nb - 1;
  int64_t idx[vt::kMaxDims] = {};
  for (;;) {
    f(d, s, sizes[last], dst[last], sst[last]);
    int32_t k = last - 1;
    for (; k >= 0; --k) {
      d += dst[k];
      s += sst[k];
      if (++idx[k] < sizes[k]) break;
      d -= sizes[k] * dst[k];
      s -= sizes[k] * sst[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

// drops size-1 dims and merges neighbours both operands step through as one
int32_t merge2(int64_t* sz, int64_t* a, int64_t* b, int32_t n) {
  int32_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (sz[i] != 1) {
      sz[w] = sz[i];
      a[w] = a[i];
      b[w++] = b[i];
    }
  if (w == 0) return 0;
  int32_t o = 0;
  for (int32_t i = 1; i < w; ++i) {
    if (a[o] == sz[i] * a[i] && b[o] == sz[i] * b[i]) {
      sz[o] *= sz[i];
      a[o] = a[i];
      b[o] = b[i];
    } else {
      ++o;
      sz[o] = sz[i];
      a[o] = a[i];
      b[o] = b[i];
    }
  }
  return o + 1;
}

template <class U>
void copy_row(U* d, const U* s, int64_t n, int64_t ds, int64_t ss) {
  if (ds == 1 && ss == 1) {
    std::memcpy(d, s, (size_t)n * sizeof(U));
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
}

template <class T>
void add_row(T* d, const T* s, int64_t n, int64_t ds, int64_t ss, vt::acc_t<T> alpha) {
  using A = vt::acc_t<T>;
  if (ds == 1 && ss == 1) {
    for (int64_t i = 0; i < n; ++i) d[i] = T((A)d[i] + alpha * (A)s[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i * ds] = T((A)d[i * ds] + alpha * (A)s[i * ss]);
}

// an index tensor as checked, wrapped int64 values (contiguous; a copy whenever wrapping would
// otherwise write into the caller's tensor). Only advanced indexing (index / index_put) counts
// negative indices from the end, as Python and torch do; the other ops refuse them, as torch does
// ("index out of range in self"), so that a -1 meant as padding or "ignore" never reads a real row.
vt::Tensor checked_index(const vt::Call& c, vt_tensor* index, const char* name, int64_t n, int32_t dim,
                         bool negative_ok = false) {
  vt::Tensor idx = shp::index_int64(c, index, name);
  const int64_t* p = vt::data<int64_t>(idx);
  bool neg = false;
  for (int64_t i = 0; i < idx->numel; ++i) {
    if (p[i] < 0 && !negative_ok)
      c.fail(VT_ERR_INDEX, "%s: index %lld is out of range for dim %d with size %lld (negative indices are "
             "refused, as in torch; only advanced indexing counts from the end)", name, (long long)p[i], dim, (long long)n);
    if (p[i] < -n || p[i] >= n)
      c.fail(VT_ERR_INDEX, "%s: index %lld is out of bounds for dim %d with size %lld", name, (long long)p[i], dim, (long long)n);
    neg = neg || p[i] < 0;
  }
  if (!neg) return idx;
  if (idx.get() == index) {
    vt::Tensor cp = c.empty(idx->sizes, idx->ndim, vt::kInt64);
    std::memcpy(cp->data, p, (size_t)idx->numel * 8);
    idx = std::move(cp);
  }
  int64_t* q = vt::data<int64_t>(idx);
  for (int64_t i = 0; i < idx->numel; ++i)
    if (q[i] < 0) q[i] += n;
  return idx;
}

// The meta steps' part of checked_index: an index tensor must have an integer dtype (its values are
// checked by the computes, which read them).
void check_index_dtype(const vt::Call& c, const vt_tensor* t, const char* name) {
  if (!vt::is_integral(t->dtype, false))
    c.fail(VT_ERR_TYPE, "%s must be an integer tensor (int64 or int32), got %s", name, vt::dtype_name(t->dtype));
}

// a dim the meta step already checked, made non-negative (a 0-d tensor's dim is 0)
int32_t wrapped(int64_t dim, int32_t ndim) { return (int32_t)(dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim); }

int64_t prod(const int64_t* s, int32_t b, int32_t e) {
  int64_t p = 1;
  for (int32_t i = b; i < e; ++i) p *= s[i];
  return p;
}

// element offset of "outer" index o over dims [0, dim) of (sizes, strides)
int64_t outer_offset(int64_t o, const int64_t* sizes, const int64_t* strides, int32_t dim) {
  int64_t off = 0;
  for (int32_t d = dim - 1; d >= 0; --d) {
    off += (o % sizes[d]) * strides[d];
    o /= sizes[d];
  }
  return off;
}

}  // namespace

// ---- index_select ------------------------------------------------------------------------------------
// index_select / index_add: self of >= 1 dims, a 0-d or 1-d integer index; returns the dim
int32_t index_dim_meta(const vt::Call& c, const vt_tensor* self, const vt_tensor* index) {
  vt::check_ndim(c.op, self, "self");
  if (self->ndim == 0) c.fail(VT_ERR_INDEX, "self must have at least 1 dim, got a 0-d tensor");
  const int32_t dim = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), self->ndim);
  if (index->ndim > 1) c.fail(VT_ERR_VALUE, "index must be 0-d or 1-d, got shape %s", vt::shape_str(index).c_str());
  return dim;
}

VT_META_FN(index_select_meta, "core::index_select") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* index = c.arg(2, "index").tensor();
  const int32_t dim = index_dim_meta(c, self, index);
  check_index_dtype(c, index, "index");
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < self->ndim; ++d) shape[d] = self->sizes[d];
  shape[dim] = index->numel;
  c.set_out(0, c.empty(shape, self->ndim, self->dtype));
}

VT_COMPUTE(index_select_cpu, "core::index_select") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  const vt_tensor* out = c.out(0);
  vt::Tensor idx = checked_index(c, c.arg(2, "index").tensor(), "index", self->sizes[dim], dim);
  const int64_t K = idx->numel;
  if (out->numel == 0) return;
  const int64_t outer = prod(self->sizes, 0, dim), inner = prod(self->sizes, dim + 1, self->ndim);
  // the inner block: dst contiguous, src with self's strides
  int64_t bs[vt::kMaxDims], bd[vt::kMaxDims], bsrc[vt::kMaxDims];
  int32_t nb = self->ndim - dim - 1;
  for (int32_t i = 0; i < nb; ++i) {
    bs[i] = self->sizes[dim + 1 + i];
    bsrc[i] = self->strides[dim + 1 + i];
  }
  for (int32_t i = nb - 1, acc = 1; i >= 0; --i) {
    bd[i] = acc;
    acc *= (int32_t)bs[i];
  }
  nb = merge2(bs, bd, bsrc, nb);
  const int64_t* ip = vt::data<int64_t>(idx);
  shp::dispatch_bytes(c.op, vt::element_size(self->dtype), [&](auto tag) {
    using U = typename decltype(tag)::type;
    const U* sd = static_cast<const U*>(self->data);
    U* od = vt::data<U>(out);
    vt::parallel_for(c.host, 0, outer * K, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / K, k = r % K;
        const U* src = sd + outer_offset(o, self->sizes, self->strides, dim) + ip[k] * self->strides[dim];
        block_rows(od + r * inner, bd, src, bsrc, bs, nb, [](U* d, const U* s, int64_t n, int64_t ds, int64_t ss) { copy_row(d, s, n, ds, ss); });
      }
    });
  });
}

VT_BACKWARD(index_select_backward, "core::index_select") {
  vt::Tensor z = shp::zeros_like(g.host, g.saved(0));
  g.set_grad(0, vt::call(g.host, "core::index_add", {z, shp::raw(g.arg(1)), g.saved(2), g.grad_out(0), 1.0}));
}

// ---- index_add (out of place): out = self; out.select(dim, index[k]) += alpha * source.select(dim, k)
VT_META_FN(index_add_meta, "core::index_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* index = c.arg(2, "index").tensor();
  vt_tensor* source = c.arg(3, "source").tensor();
  c.arg(4, "alpha").float_();
  c.check_same_dtype(self, "self", source, "source");
  const int32_t dim = index_dim_meta(c, self, index);
  check_index_dtype(c, index, "index");
  const int64_t K = index->numel;
  bool ok = source->ndim == self->ndim;
  for (int32_t d = 0; ok && d < self->ndim; ++d) ok = source->sizes[d] == (d == dim ? K : self->sizes[d]);
  if (!ok)
    c.fail(VT_ERR_VALUE, "source of shape %s does not match self %s with dim %d of size %lld (the index length)",
           vt::shape_str(source).c_str(), vt::shape_str(self).c_str(), dim, (long long)K);
  vt::dispatch(vt::kArithTypes, self->dtype, c.op, [](auto) {});
  c.set_out(0, c.empty_like(self));
}

VT_COMPUTE(index_add_cpu, "core::index_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* source = c.arg(3, "source").tensor();
  const double alpha = c.arg(4, "alpha").float_();
  const vt_tensor* out = c.out(0);
  vt::Tensor idx = checked_index(c, c.arg(2, "index").tensor(), "index", self->sizes[dim], dim);
  const int64_t K = idx->numel;
  shp::copy_same(c, out, self);
  vt::Tensor src = shp::contiguous(c, source);
  const int64_t outer = prod(self->sizes, 0, dim), inner = prod(self->sizes, dim + 1, self->ndim), N = self->sizes[dim];
  const int64_t* ip = vt::data<int64_t>(idx);
  if (out->numel && K) {
    vt::dispatch(vt::kArithTypes, self->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = vt::acc_t<T>;
      const A al = (A)alpha;
      T* od = vt::data<T>(out);
      const T* sd = vt::data<const T>(src);
      // split the (outer, inner) positions; every task loops over all k in order
      vt::parallel_for(c.host, 0, outer * inner, std::max<int64_t>(1, vt::kGrain / K), [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e;) {
          const int64_t o = p / inner, i0 = p % inner, i1 = std::min(inner, i0 + (e - p));
          for (int64_t k = 0; k < K; ++k)
            add_row(od + (o * N + ip[k]) * inner + i0, sd + (o * K + k) * inner + i0, i1 - i0, 1, 1, al);
          p += i1 - i0;
        }
      });
    });
  }
}

VT_BACKWARD(index_add_backward, "core::index_add") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) g.set_grad(0, shp::retained(g.host, go));
  if (g.needs(3)) {
    const double alpha = g.arg(4).tag == VT_INT ? (double)g.arg(4).v.i : g.arg(4).v.f;
    g.set_grad(3, shp::scale(g.host, vt::call(g.host, "core::index_select", {go, shp::raw(g.arg(1)), g.saved(2)}), alpha));
  }
}

// ---- gather / scatter_add: both walk "lines" along dim of the index tensor ---------------------------
namespace {
struct Lines {
  int32_t dim, nd;
  int64_t Kd, inner, count;
  const int64_t* isz;
};
Lines lines_of(const vt_tensor* index, int32_t dim) {
  Lines L;
  L.dim = dim;
  L.nd = index->ndim;
  L.isz = index->sizes;
  L.Kd = index->ndim ? index->sizes[dim] : 1;
  L.inner = prod(index->sizes, dim + 1, index->ndim);
  L.count = L.Kd ? index->numel / L.Kd : 0;
  return L;
}
// offset in a tensor of `strides` of line l's first element (coords of the index, dim at 0)
int64_t line_offset(const Lines& L, int64_t l, const int64_t* strides) {
  int64_t off = 0, ii = l % L.inner, o = l / L.inner;
  for (int32_t d = L.nd - 1; d > L.dim; --d) {
    off += (ii % L.isz[d]) * strides[d];
    ii /= L.isz[d];
  }
  for (int32_t d = L.dim - 1; d >= 0; --d) {
    off += (o % L.isz[d]) * strides[d];
    o /= L.isz[d];
  }
  return off;
}
void check_gather_shapes(const vt::Call& c, const vt_tensor* self, const vt_tensor* index, int32_t dim, const vt_tensor* src) {
  if (index->ndim != self->ndim)
    c.fail(VT_ERR_VALUE, "index %s must have as many dims as self %s", vt::shape_str(index).c_str(), vt::shape_str(self).c_str());
  for (int32_t d = 0; d < self->ndim; ++d) {
    if (d != dim && index->sizes[d] > self->sizes[d])
      c.fail(VT_ERR_VALUE, "index %s is larger than self %s in dim %d", vt::shape_str(index).c_str(), vt::shape_str(self).c_str(), d);
    if (src && index->sizes[d] > src->sizes[d])
      c.fail(VT_ERR_VALUE, "index %s is larger than src %s in dim %d", vt::shape_str(index).c_str(), vt::shape_str(src).c_str(), d);
  }
}
}  // namespace

VT_META_FN(gather_meta, "core::gather") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  const int32_t dim = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* index = c.arg(2, "index").tensor();
  check_gather_shapes(c, self, index, dim, nullptr);
  check_index_dtype(c, index, "index");
  c.set_out(0, c.empty(index->sizes, index->ndim, self->dtype));
}

VT_COMPUTE(gather_cpu, "core::gather") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  const vt_tensor* out = c.out(0);
  const int64_t n = self->ndim ? self->sizes[dim] : 1;
  vt::Tensor idx = checked_index(c, c.arg(2, "index").tensor(), "index", n, dim);
  const Lines L = lines_of(idx, dim);
  const int64_t ds = self->ndim ? self->strides[dim] : 0;
  const int64_t* ip = vt::data<int64_t>(idx);
  int64_t ostr[vt::kMaxDims];
  for (int32_t d = idx->ndim - 1, acc = 1; d >= 0; --d) {
    ostr[d] = acc;
    acc *= (int32_t)idx->sizes[d];
  }
  shp::dispatch_bytes(c.op, vt::element_size(self->dtype), [&](auto tag) {
    using U = typename decltype(tag)::type;
    const U* sd = static_cast<const U*>(self->data);
    U* od = vt::data<U>(out);
    vt::parallel_for(c.host, 0, L.count, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(L.Kd, 1)), [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) {
        const U* s = sd + line_offset(L, l, self->strides);
        const int64_t io = line_offset(L, l, ostr);  // index and out are both contiguous
        for (int64_t j = 0; j < L.Kd; ++j) od[io + j * L.inner] = s[ip[io + j * L.inner] * ds];
      }
    });
  });
}

VT_BACKWARD(gather_backward, "core::gather") {
  vt::Tensor z = shp::zeros_like(g.host, g.saved(0));
  g.set_grad(0, vt::call(g.host, "core::scatter_add", {z, shp::raw(g.arg(1)), g.saved(2), g.grad_out(0)}));
}

// scatter_add(self, dim, index, src) -> out = self with out[..index[i]..] += src[i] (out of place)
VT_META_FN(scatter_add_meta, "core::scatter_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  const int32_t dim = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* index = c.arg(2, "index").tensor();
  vt_tensor* src = c.arg(3, "src").tensor();
  c.check_same_dtype(self, "self", src, "src");
  if (src->ndim != self->ndim)
    c.fail(VT_ERR_VALUE, "src %s must have as many dims as self %s", vt::shape_str(src).c_str(), vt::shape_str(self).c_str());
  check_gather_shapes(c, self, index, dim, src);
  check_index_dtype(c, index, "index");
  vt::dispatch(vt::kArithTypes, self->dtype, c.op, [](auto) {});
  c.set_out(0, c.empty_like(self));
}

VT_COMPUTE(scatter_add_cpu, "core::scatter_add") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = wrapped(c.arg(1, "dim").int_(), self->ndim);
  vt_tensor* src = c.arg(3, "src").tensor();
  const vt_tensor* out = c.out(0);
  const int64_t n = self->ndim ? self->sizes[dim] : 1;
  vt::Tensor idx = checked_index(c, c.arg(2, "index").tensor(), "index", n, dim);
  shp::copy_same(c, out, self);
  const Lines L = lines_of(idx, dim);
  int64_t istr[vt::kMaxDims];
  for (int32_t d = idx->ndim - 1, acc = 1; d >= 0; --d) {
    istr[d] = acc;
    acc *= (int32_t)idx->sizes[d];
  }
  const int64_t ods = self->ndim ? out->strides[dim] : 0, sds = self->ndim ? src->strides[dim] : 0;
  const int64_t* ip = vt::data<int64_t>(idx);
  vt::dispatch(vt::kArithTypes, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    T* od = vt::data<T>(out);
    const T* sd = vt::data<const T>(src);
    // lines own disjoint output elements (they differ outside dim): no two threads collide
    vt::parallel_for(c.host, 0, L.count, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(L.Kd, 1)), [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) {
        T* o = od + line_offset(L, l, out->strides);
        const T* s = sd + line_offset(L, l, src->strides);
        const int64_t io = line_offset(L, l, istr);
        for (int64_t j = 0; j < L.Kd; ++j) {
          T& dst = o[ip[io + j * L.inner] * ods];
          dst = T((A)dst + (A)s[j * sds]);
        }
      }
    });
  });
}

VT_BACKWARD(scatter_add_backward, "core::scatter_add") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) g.set_grad(0, shp::retained(g.host, go));
  if (g.needs(3)) {
    vt_tensor* index = g.saved(2);
    vt_tensor* src = g.saved(3);
    vt::Tensor r = vt::call(g.host, "core::gather", {go, shp::raw(g.arg(1)), index});
    // index may be smaller than src: pad with zeros dim by dim (slice_backward is differentiable)
    for (int32_t d = 0; d < src->ndim; ++d) {
      if (r->sizes[d] == src->sizes[d]) continue;
      std::vector<int64_t> s = shp::sizes_of(r.get());
      s[(size_t)d] = src->sizes[d];
      r = vt::call(g.host, "core::slice_backward", {r, V(s), (int64_t)d, (int64_t)0, r->sizes[d], (int64_t)1});
    }
    g.set_grad(3, std::move(r));
  }
}

// ---- masked_fill: out = where(mask, value, self), broadcast like torch -------------------------------
VT_META_FN(masked_fill_meta, "core::masked_fill") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* mask = c.arg(1, "mask").tensor();
  core::check_fill_value(c, self->dtype, c.arg(2, "value").float_(), "value");
  if (!vt::same_dtype(mask->dtype, vt::kBool)) c.fail(VT_ERR_TYPE, "mask must be a bool tensor, got %s", vt::dtype_name(mask->dtype));
  c.check_same_device(self, "self", mask, "mask");
  int64_t shape[vt::kMaxDims];
  const int32_t nd = vt::broadcast_shape(c.op, self, "self", mask, "mask", shape);
  c.set_out(0, c.empty(shape, nd, self->dtype));
}

VT_COMPUTE(masked_fill_cpu, "core::masked_fill") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* mask = c.arg(1, "mask").tensor();
  const double value = c.arg(2, "value").float_();
  const vt_tensor* out = c.out(0);
  if (out->numel) {
    const vt_tensor* ops[3] = {out, self, mask};
    const vt::StridedLoop<3> L = vt::loop_over<3>(c.op, ops);
    vt::dispatch(vt::kAllTypes, self->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T v = vt::convert<T>(value);
      vt::elementwise<T, T, bool>(c.host, L, [v](T x, bool m) { return m ? v : x; });
    });
  }
}

VT_BACKWARD(masked_fill_backward, "core::masked_fill") {
  vt::Tensor r = vt::call(g.host, "core::masked_fill", {g.grad_out(0), g.saved(1), 0.0});
  g.set_grad(0, g.sum_to(std::move(r), g.saved(0)));
}

// ---- embedding ------------------------------------------------------------------------------------------
// embedding(weight (V, D), indices (any shape), padding_idx) -> indices.shape + (D,). Positions
// holding padding_idx (if given; negative counts from the end) send no gradient to that row.
VT_META_FN(embedding_meta, "core::embedding") {
  vt_tensor* w = c.arg(0, "weight").tensor();
  vt_tensor* indices = c.arg(1, "indices").tensor();
  if (w->ndim != 2) c.fail(VT_ERR_VALUE, "weight must be 2-d (num_embeddings, embedding_dim), got %s", vt::shape_str(w).c_str());
  const auto pad = c.arg(2, "padding_idx");
  if (!pad.is_none() && !(pad.int_() >= -w->sizes[0] && pad.int_() < w->sizes[0]))
    c.fail(VT_ERR_INDEX, "padding_idx %lld is out of range for %lld embeddings", (long long)pad.int_(), (long long)w->sizes[0]);
  if (indices->ndim + 1 > vt::kMaxDims) c.fail(VT_ERR_VALUE, "indices has too many dims (%d)", indices->ndim);
  check_index_dtype(c, indices, "indices");
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < indices->ndim; ++d) shape[d] = indices->sizes[d];
  shape[indices->ndim] = w->sizes[1];
  c.set_out(0, c.empty(shape, indices->ndim + 1, w->dtype));
}

VT_COMPUTE(embedding_cpu, "core::embedding") {
  vt_tensor* w = c.arg(0, "weight").tensor();
  vt::Tensor idx = checked_index(c, c.arg(1, "indices").tensor(), "indices", w->sizes[0], 0);
  const vt_tensor* out = c.out(0);
  const int64_t D = w->sizes[1], N = idx->numel;
  const int64_t* ip = vt::data<int64_t>(idx);
  const int64_t rs = w->strides[0], cs = w->strides[1];
  shp::dispatch_bytes(c.op, vt::element_size(w->dtype), [&](auto tag) {
    using U = typename decltype(tag)::type;
    const U* wd = static_cast<const U*>(w->data);
    U* od = vt::data<U>(out);
    vt::parallel_for(c.host, 0, N, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(D, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) copy_row(od + i * D, wd + ip[i] * rs, D, 1, cs);
    });
  });
}

VT_BACKWARD(embedding_backward_rule, "core::embedding") {
  vt_tensor* w = g.saved(0);
  vt::Tensor gw = vt::call(g.host, "core::embedding_backward", {g.grad_out(0), g.saved(1), w->sizes[0]});
  if (g.arg(2).tag == VT_INT) {  // the padding row gets none: zero it (ops, so every device)
    const int64_t pad = (g.arg(2).v.i + w->sizes[0]) % w->sizes[0];
    vt::Tensor row = vt::call(g.host, "core::select", {gw, (int64_t)0, pad});
    vt::Tensor r = vt::call(g.host, "core::zero_", {row});
  }
  g.set_grad(0, std::move(gw));
}

// embedding_backward(grad (indices.shape + (D,)), indices, num_weights) -> (num_weights, D): row v
// sums the grad rows of every position holding v. The positions are bucketed by row (counting
// sort), then rows are split across threads; each row adds its positions in order.
VT_META_FN(embedding_backward_meta, "core::embedding_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  vt_tensor* indices = c.arg(1, "indices").tensor();
  const int64_t V = c.arg(2, "num_weights").int_();
  if (V < 0) c.fail(VT_ERR_VALUE, "num_weights must be non-negative, got %lld", (long long)V);
  if (!vt::is_floating(grad->dtype)) c.fail(VT_ERR_TYPE, "grad must be floating, got %s", vt::dtype_name(grad->dtype));
  bool ok = grad->ndim == indices->ndim + 1;
  for (int32_t d = 0; ok && d < indices->ndim; ++d) ok = grad->sizes[d] == indices->sizes[d];
  if (!ok) c.fail(VT_ERR_VALUE, "grad %s must be indices.shape %s + (D,)", vt::shape_str(grad).c_str(), vt::shape_str(indices).c_str());
  check_index_dtype(c, indices, "indices");
  vt::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [](auto) {});
  const int64_t shape[2] = {V, grad->sizes[grad->ndim - 1]};
  c.set_out(0, c.empty(shape, 2, grad->dtype));
}

VT_COMPUTE(embedding_backward_cpu, "core::embedding_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  const int64_t V = c.arg(2, "num_weights").int_();
  const vt_tensor* out = c.out(0);
  vt::Tensor idx = checked_index(c, c.arg(1, "indices").tensor(), "indices", V, 0);
  vt::Tensor gc = shp::contiguous(c, grad);
  const int64_t D = grad->sizes[grad->ndim - 1], N = idx->numel;
  const int64_t* ip = vt::data<int64_t>(idx);
  std::vector<int64_t> start((size_t)V + 1, 0), order((size_t)N);
  for (int64_t i = 0; i < N; ++i) ++start[(size_t)ip[i] + 1];
  for (int64_t v = 0; v < V; ++v) start[(size_t)v + 1] += start[(size_t)v];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i) order[(size_t)fill[(size_t)ip[i]]++] = i;
  }
  vt::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const T* gd = vt::data<const T>(gc);
    T* od = vt::data<T>(out);
    const int64_t grain = std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(D * std::max<int64_t>(N / std::max<int64_t>(V, 1), 1), 1));
    vt::parallel_for(c.host, 0, V, grain, [&](int64_t b, int64_t e) {
      std::vector<A> acc((size_t)D);
      for (int64_t v = b; v < e; ++v) {
        T* o = od + v * D;
        const int64_t s0 = start[(size_t)v], s1 = start[(size_t)v + 1];
        if (s0 == s1) {
          std::memset(o, 0, (size_t)D * sizeof(T));
          continue;
        }
        if constexpr (std::is_same<A, T>::value) {
          std::memcpy(o, gd + order[(size_t)s0] * D, (size_t)D * sizeof(T));
          for (int64_t s = s0 + 1; s < s1; ++s) {
            const T* r = gd + order[(size_t)s] * D;
            for (int64_t j = 0; j < D; ++j) o[j] += r[j];
          }
        } else {
          std::fill(acc.begin(), acc.end(), A(0));
          for (int64_t s = s0; s < s1; ++s) {
            const T* r = gd + order[(size_t)s] * D;
            for (int64_t j = 0; j < D; ++j) acc[(size_t)j] += (A)r[j];
          }
          for (int64_t j = 0; j < D; ++j) o[j] = T(acc[(size_t)j]);
        }
      }
    });
  });
}

VT_BACKWARD(embedding_backward_backward, "core::embedding_backward") {
  g.set_grad(0, vt::call(g.host, "core::embedding", {g.grad_out(0), g.saved(1)}));
}

// ---- one_hot, nonzero (integer results: no gradient) ------------------------------------------------
// one_hot(indices, num_classes): indices.shape + (num_classes,) int64. With num_classes=-1 the
// class count is the largest index + 1, known only from the data: then the meta step makes no
// output (the compute makes it once it has read the indices), and on the meta device it refuses.
VT_META_FN(one_hot_meta, "core::one_hot") {
  vt_tensor* indices = c.arg(0, "indices").tensor();
  const int64_t C = c.arg(1, "num_classes").int_();
  if (indices->ndim + 1 > vt::kMaxDims) c.fail(VT_ERR_VALUE, "indices has too many dims (%d)", indices->ndim);
  check_index_dtype(c, indices, "indices");
  if (C < 0) {
    if (C != -1) c.fail(VT_ERR_VALUE, "num_classes must be -1 (infer) or non-negative, got %lld", (long long)C);
    if (c.is_meta())
      c.fail(VT_ERR_NOT_IMPL, "num_classes=-1 takes the class count from the largest index, which a meta tensor does not "
             "have; pass num_classes");
    return;
  }
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < indices->ndim; ++d) shape[d] = indices->sizes[d];
  shape[indices->ndim] = C;
  c.set_out(0, c.empty(shape, indices->ndim + 1, vt::kInt64));
}

VT_COMPUTE(one_hot_cpu, "core::one_hot") {
  vt_tensor* indices = c.arg(0, "indices").tensor();
  int64_t C = c.arg(1, "num_classes").int_();
  vt::Tensor idx = shp::index_int64(c, indices, "indices");
  const int64_t* ip = vt::data<int64_t>(idx);
  const int64_t N = idx->numel;
  int64_t mx = -1;
  for (int64_t i = 0; i < N; ++i) {
    if (ip[i] < 0) c.fail(VT_ERR_INDEX, "class values must be non-negative, got %lld", (long long)ip[i]);
    mx = std::max(mx, ip[i]);
  }
  if (C < 0) {  // num_classes=-1: the output's shape is known only now
    C = mx + 1;
    int64_t shape[vt::kMaxDims];
    for (int32_t d = 0; d < indices->ndim; ++d) shape[d] = indices->sizes[d];
    shape[indices->ndim] = C;
    c.set_out(0, c.empty(shape, indices->ndim + 1, vt::kInt64));
  } else if (mx >= C) {
    c.fail(VT_ERR_INDEX, "class value %lld is out of range for num_classes %lld", (long long)mx, (long long)C);
  }
  int64_t* o = vt::data<int64_t>(c.out(0));
  if (c.out(0)->numel) std::memset(o, 0, (size_t)c.out(0)->numel * 8);
  for (int64_t i = 0; i < N; ++i) o[i * C + ip[i]] = 1;
}

// nonzero(self) -> (n, ndim) int64: the coordinates of the nonzero elements in row-major order
VT_KERNEL(nonzero_cpu, "core::nonzero") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  const int32_t nd = self->ndim;
  std::vector<int64_t> coords;
  int64_t count = 0;
  vt::dispatch(vt::kAllTypes, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* d = vt::data<const T>(self);
    int64_t idx[vt::kMaxDims] = {};
    for (int64_t i = 0; i < self->numel; ++i) {
      int64_t off = 0;
      for (int32_t k = 0; k < nd; ++k) off += idx[k] * self->strides[k];
      if (vt::convert<bool>(d[off])) {
        coords.insert(coords.end(), idx, idx + nd);
        ++count;
      }
      for (int32_t k = nd - 1; k >= 0; --k) {
        if (++idx[k] < self->sizes[k]) break;
        idx[k] = 0;
      }
    }
  });
  const int64_t shape[2] = {count, nd};
  vt::Tensor out = c.empty(shape, 2, vt::kInt64);
  if (!coords.empty()) std::memcpy(out->data, coords.data(), coords.size() * 8);
  c.set_out(0, std::move(out));
}

// ---- index / index_put: advanced indexing over the leading dims ----------------------------------------
namespace {

// the broadcast index set of one index/index_put call
struct IndexSet {
  int32_t k = 0;                      // number of index tensors (leading dims of self)
  int32_t nb = 0;                     // ndim of the broadcast index shape B
  int64_t B[vt::kMaxDims];
  int64_t N = 1;                      // numel of B
  std::vector<vt::Tensor> idx;        // int64, wrapped and checked, each of its own shape
  int64_t st[vt::kMaxDims][vt::kMaxDims];  // [index j][dim of B]: element strides, 0 to broadcast
};

// The meta steps' part: the index list (argument 1) checked against self (count, dims, dtypes,
// broadcasting); fills k, nb, B and N.
IndexSet index_shape_meta(const vt::Call& c, const vt_tensor* self) {
  if (c.nargs < 2 || c.args[1].tag != VT_TENSORS) c.fail(VT_ERR_TYPE, "argument 'indices' must be Tensor[]");
  const vt_tensor_list l = c.args[1].v.ts;
  IndexSet s;
  if (l.len == 0) c.fail(VT_ERR_VALUE, "indices must hold at least one tensor");
  if (l.len > self->ndim)
    c.fail(VT_ERR_INDEX, "too many indices for a tensor of dimension %d (got %lld)", self->ndim, (long long)l.len);
  s.k = (int32_t)l.len;
  for (int32_t j = 0; j < s.k; ++j) {
    const vt_tensor* t = l.data[j];
    vt::check_ndim(c.op, t, "an index");
    if (vt::same_dtype(t->dtype, vt::kBool))
      c.fail(VT_ERR_TYPE, "indices[%d] is a bool mask; convert masks with nonzero() first", j);
    check_index_dtype(c, t, "index");
    int64_t out[vt::kMaxDims];
    s.nb = vt::broadcast_shape(c.op, s.B, s.nb, "indices", t->sizes, t->ndim, "an index", out);
    for (int32_t d = 0; d < s.nb; ++d) s.B[d] = out[d];
  }
  for (int32_t d = 0; d < s.nb; ++d) s.N *= s.B[d];
  return s;
}

// The computes' part: the same shape (the meta step checked it, so the indices broadcast), and
// the indices' values checked against self's dims, wrapped, with their strides over B.
IndexSet make_index_set(const vt::Call& c, const vt_tensor* self) {
  const vt_tensor_list l = c.args[1].v.ts;
  IndexSet s;
  s.k = (int32_t)l.len;
  for (int32_t j = 0; j < s.k; ++j) s.nb = std::max(s.nb, l.data[j]->ndim);
  for (int32_t d = 0; d < s.nb; ++d) s.B[d] = 1;
  for (int32_t j = 0; j < s.k; ++j) {
    const vt_tensor* t = l.data[j];
    for (int32_t i = 0; i < t->ndim; ++i)
      if (t->sizes[i] != 1) s.B[s.nb - t->ndim + i] = t->sizes[i];
  }
  for (int32_t d = 0; d < s.nb; ++d) s.N *= s.B[d];
  for (int32_t j = 0; j < s.k; ++j) {
    s.idx.push_back(checked_index(c, l.data[j], "index", self->sizes[j], j, /*negative_ok=*/true));
    vt::broadcast_strides(s.idx[(size_t)j].get(), s.nb, s.st[j]);
  }
  return s;
}

// f(n, element offset into self) for every n in [b, e) of the broadcast index shape
template <class F>
void for_index(const IndexSet& s, const vt_tensor* self, int64_t b, int64_t e, F&& f) {
  int64_t pos[vt::kMaxDims] = {};
  int64_t rem = b;
  for (int32_t d = s.nb - 1; d >= 0; --d) {
    pos[d] = rem % s.B[d];
    rem /= s.B[d];
  }
  for (int64_t n = b; n < e; ++n) {
    int64_t off = 0;
    for (int32_t j = 0; j < s.k; ++j) {
      int64_t p = 0;
      for (int32_t d = 0; d < s.nb; ++d) p += pos[d] * s.st[j][d];
      off += vt::data<const int64_t>(s.idx[(size_t)j])[p] * self->strides[j];
    }
    f(n, off);
    for (int32_t d = s.nb - 1; d >= 0; --d) {
      if (++pos[d] < s.B[d]) break;
      pos[d] = 0;
    }
  }
}

}  // namespace

VT_META_FN(index_meta, "core::index") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  const IndexSet s = index_shape_meta(c, self);
  const int32_t rest = self->ndim - s.k;
  if (s.nb + rest > vt::kMaxDims) c.fail(VT_ERR_VALUE, "result would have %d dims; at most %d are supported", s.nb + rest, vt::kMaxDims);
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < s.nb; ++d) shape[d] = s.B[d];
  for (int32_t d = 0; d < rest; ++d) shape[s.nb + d] = self->sizes[s.k + d];
  c.set_out(0, c.empty(shape, s.nb + rest, self->dtype));
}

VT_COMPUTE(index_cpu, "core::index") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const IndexSet s = make_index_set(c, self);
  const int32_t rest = self->ndim - s.k;
  const vt_tensor* out = c.out(0);
  const int64_t inner = prod(self->sizes, s.k, self->ndim);
  if (out->numel) {
    int64_t bs[vt::kMaxDims], bd[vt::kMaxDims], bsrc[vt::kMaxDims];
    for (int32_t i = 0; i < rest; ++i) {
      bs[i] = self->sizes[s.k + i];
      bsrc[i] = self->strides[s.k + i];
    }
    for (int32_t i = rest - 1, acc = 1; i >= 0; --i) {
      bd[i] = acc;
      acc *= (int32_t)bs[i];
    }
    const int32_t nb = merge2(bs, bd, bsrc, rest);
    shp::dispatch_bytes(c.op, vt::element_size(self->dtype), [&](auto tag) {
      using U = typename decltype(tag)::type;
      const U* sd = static_cast<const U*>(self->data);
      U* od = vt::data<U>(out);
      vt::parallel_for(c.host, 0, s.N, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
        for_index(s, self, b, e, [&](int64_t n, int64_t off) {
          block_rows(od + n * inner, bd, sd + off, bsrc, bs, nb, [](U* d, const U* x, int64_t m, int64_t ds, int64_t xs) { copy_row(d, x, m, ds, xs); });
        });
      });
    });
  }
}

VT_BACKWARD(index_backward, "core::index") {
  vt::Tensor z = shp::zeros_like(g.host, g.saved(0));
  g.set_grad(0, vt::call(g.host, "core::index_put", {z, shp::raw(g.arg(1)), g.grad_out(0), true}));
}

namespace {
// the meta step of index_put / index_put_: values must broadcast to B + self.shape[k:]
void index_put_meta(vt::Call& c, const vt_tensor* self) {
  vt::check_ndim(c.op, self, "self");
  const vt_tensor* values = c.arg(2, "values").tensor();
  const bool accumulate = c.arg(3, "accumulate").bool_();
  c.check_same_dtype(self, "self", values, "values");
  const IndexSet s = index_shape_meta(c, self);
  const int32_t rest = self->ndim - s.k, nt = s.nb + rest;
  if (nt > vt::kMaxDims) c.fail(VT_ERR_VALUE, "the indexed shape has %d dims; at most %d are supported", nt, vt::kMaxDims);
  int64_t target[vt::kMaxDims];
  for (int32_t d = 0; d < s.nb; ++d) target[d] = s.B[d];
  for (int32_t d = 0; d < rest; ++d) target[s.nb + d] = self->sizes[s.k + d];
  int64_t bshape[vt::kMaxDims];
  const int32_t bn = vt::broadcast_shape(c.op, target, nt, "the indexed shape", values->sizes, values->ndim, "values", bshape);
  bool ok = bn == nt;
  for (int32_t d = 0; ok && d < nt; ++d) ok = bshape[d] == target[d];
  if (!ok)
    c.fail(VT_ERR_VALUE, "values of shape %s cannot be broadcast to the indexed shape %s", vt::shape_str(values).c_str(),
           vt::shape_str(target, nt).c_str());
  if (accumulate) vt::dispatch(vt::kArithTypes, self->dtype, c.op, [](auto) {});
}

// dst[indices] = values (or +=), dst any strides; values broadcast to B + dst.shape[k:]
void index_put_into(vt::Call& c, const vt_tensor* dst) {
  const vt_tensor* values = c.arg(2, "values").tensor();
  const bool accumulate = c.arg(3, "accumulate").bool_();
  const IndexSet s = make_index_set(c, dst);
  const int32_t rest = dst->ndim - s.k, nt = s.nb + rest;
  if (s.N == 0) return;
  int64_t vst[vt::kMaxDims];
  vt::broadcast_strides(values, nt, vst);
  // values' offset for index position n: over the B dims of vst
  int64_t bs[vt::kMaxDims], bd[vt::kMaxDims], bv[vt::kMaxDims];
  for (int32_t i = 0; i < rest; ++i) {
    bs[i] = dst->sizes[s.k + i];
    bd[i] = dst->strides[s.k + i];
    bv[i] = vst[s.nb + i];
  }
  for (int32_t i = 0; i < rest; ++i)
    if (bs[i] == 0) return;
  const int32_t nb = merge2(bs, bd, bv, rest);
  // Split the first block dim across threads (every task visits all n in order: duplicates
  // resolve the same way on any thread count); with no block dims the loop is serial.
  const int64_t split = nb > 0 ? bs[0] : 1;
  const int64_t inner = nb > 0 ? prod(bs, 1, nb) : 1;
  auto run = [&](auto tag, auto rowf) {
    using U = typename decltype(tag)::type;
    U* dd = static_cast<U*>(dst->data);
    const U* vd = static_cast<const U*>(values->data);
    vt::parallel_for(c.host, 0, split, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(s.N * inner, 1)), [&](int64_t b, int64_t e) {
      int64_t sz[vt::kMaxDims];
      for (int32_t i = 0; i < nb; ++i) sz[i] = bs[i];
      if (nb > 0) sz[0] = e - b;
      for_index(s, dst, 0, s.N, [&](int64_t n, int64_t off) {
        int64_t voff = 0, rem = n;
        for (int32_t d = s.nb - 1; d >= 0; --d) {
          voff += (rem % s.B[d]) * vst[d];
          rem /= s.B[d];
        }
        if (nb > 0) {
          off += b * bd[0];
          voff += b * bv[0];
        }
        block_rows(dd + off, bd, vd + voff, bv, sz, nb, rowf);
      });
    });
  };
  if (!accumulate) {
    shp::dispatch_bytes(c.op, vt::element_size(dst->dtype), [&](auto tag) {
      using U = typename decltype(tag)::type;
      run(tag, [](U* d, const U* x, int64_t m, int64_t ds, int64_t xs) { copy_row(d, x, m, ds, xs); });
    });
  } else {
    vt::dispatch(vt::kArithTypes, dst->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      run(tag, [](T* d, const T* x, int64_t m, int64_t ds, int64_t xs) { add_row(d, x, m, ds, xs, vt::acc_t<T>(1)); });
    });
  }
}
}  // namespace

VT_META_FN(index_put_meta_fn, "core::index_put") {
  vt_tensor* self = c.arg(0, "self").tensor();
  index_put_meta(c, self);
  c.set_out(0, c.empty_like(self));
}
VT_META_FN(index_put__meta, "core::index_put_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  index_put_meta(c, self);
  c.set_out_retained(0, self);
}

// out = self with out[indices] = values (or +=); for index_put_ out is self
VT_COMPUTE(index_put_cpu, "core::index_put") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  if (out != self) shp::copy_same(c, out, self);
  index_put_into(c, out);
}

// for index_put and index_put_: self's gradient is the output's with the written places zeroed
// (unless accumulating); values' is the output's gradient at those places, summed to its shape
VT_BACKWARD(index_put_backward, "core::index_put") {
  vt_tensor* go = g.grad_out(0);
  const bool accumulate = g.arg(3).v.b != 0;
  if (g.needs(0)) {
    if (accumulate) {
      g.set_grad(0, shp::retained(g.host, go));
    } else {
      vt::Tensor z = shp::scalar_like(g.host, go, 0.0);
      g.set_grad(0, vt::call(g.host, "core::index_put", {go, shp::raw(g.arg(1)), z, false}));
    }
  }
  if (g.needs(2)) {
    vt::Tensor r = vt::call(g.host, "core::index", {go, shp::raw(g.arg(1))});
    g.set_grad(2, g.sum_to(std::move(r), g.saved(2)));
  }
}

using core::OpDef;

const OpDef kIndexOps[] = {
    {"core::index_select(Tensor self, int dim, Tensor index) -> Tensor", index_select_meta, index_select_cpu, index_select_backward,
     0b101},
    {"core::index_add(Tensor self, int dim, Tensor index, Tensor source, float alpha=1.0) -> Tensor", index_add_meta, index_add_cpu,
     index_add_backward, 0b100},
    {"core::gather(Tensor self, int dim, Tensor index) -> Tensor", gather_meta, gather_cpu, gather_backward, 0b101},
    {"core::scatter_add(Tensor self, int dim, Tensor index, Tensor src) -> Tensor", scatter_add_meta, scatter_add_cpu,
     scatter_add_backward, 0b1100},
    {"core::masked_fill(Tensor self, Tensor mask, float value) -> Tensor", masked_fill_meta, masked_fill_cpu, masked_fill_backward,
     0b11},
    {"core::embedding(Tensor weight, Tensor indices, int? padding_idx=None) -> Tensor", embedding_meta, embedding_cpu, embedding_backward_rule, 0b11},
    {"core::embedding_backward(Tensor grad, Tensor indices, int num_weights) -> Tensor", embedding_backward_meta,
     embedding_backward_cpu, embedding_backward_backward, 0b10},
    {"core::one_hot(Tensor indices, int num_classes=-1) -> Tensor", one_hot_meta, one_hot_cpu},
    // a whole kernel: the output's row count is the number of nonzero elements (no meta step)
    {"core::nonzero(Tensor self) -> Tensor", nullptr, nonzero_cpu},
    {"core::index(Tensor self, Tensor[] indices) -> Tensor", index_meta, index_cpu, index_backward, 0b11},
    {"core::index_put(Tensor self, Tensor[] indices, Tensor values, bool accumulate=False) -> Tensor", index_put_meta_fn,
     index_put_cpu, index_put_backward, 0b110},
    {"core::index_put_(Tensor self, Tensor[] indices, Tensor values, bool accumulate=False) -> Tensor", index_put__meta,
     index_put_cpu, index_put_backward, 0b110},
};
VT_OP_TABLE(kIndexOps)
