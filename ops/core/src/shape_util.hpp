// shape_util.hpp — helpers shared by the view, shape, index and reduction families of the core
// pack (view.cpp, shape.cpp, index.cpp, reduce.cpp): views through the host, dtype-agnostic
// strided copies, reading index tensors, and the small utilities their backward rules use.
// Not a public header: packs outside ops/core use vt/oppack.hpp, vt/loops.hpp, vt/autograd.hpp.
#pragma once

#include <cstring>
#include <vector>

#include "vt/autograd.hpp"
#include "vt/loops.hpp"

namespace shp {

// A new reference to t (for returning an argument as an output or a gradient).
inline vt::Tensor retained(const vt_host* host, vt_tensor* t) {
  host->retain(t);
  return vt::Tensor(host, t);
}

inline std::vector<int64_t> sizes_of(const vt_tensor* t) { return std::vector<int64_t>(t->sizes, t->sizes + t->ndim); }

// an unsigned integer type of the given byte size, for dtype-agnostic copies
template <class F>
void dispatch_bytes(const char* op, int64_t size, F&& f) {
  switch (size) {
    case 1: f(vt::type_tag<uint8_t>{}); break;
    case 2: f(vt::type_tag<uint16_t>{}); break;
    case 4: f(vt::type_tag<uint32_t>{}); break;
    case 8: f(vt::type_tag<uint64_t>{}); break;
    default: vt::fail(VT_ERR_NOT_IMPL, "[%s] no copy for elements of %lld bytes", op, (long long)size);
  }
}

// dst = src for tensors of one dtype; src broadcasts to dst's shape. Raw bytes, any strides.
inline void copy_same(const vt::Call& c, const vt_tensor* dst, const vt_tensor* src) {
  if (dst->numel == 0) return;
  const int64_t es = vt::element_size(dst->dtype);
  if (vt::same_shape(dst, src) && vt::is_contiguous(dst) && vt::is_contiguous(src)) {
    char* d = static_cast<char*>(dst->data);
    const char* s = static_cast<const char*>(src->data);
    vt::parallel_for(c.host, 0, dst->numel, 4 * vt::kGrain, [&](int64_t b, int64_t e) {
      std::memcpy(d + b * es, s + b * es, (size_t)((e - b) * es));
    });
    return;
  }
  const vt_tensor* ops[2] = {dst, src};
  const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  dispatch_bytes(c.op, es, [&](auto tag) {
    using U = typename decltype(tag)::type;
    vt::elementwise<U, U>(c.host, L, [](U v) { return v; });
  });
}

// t itself (a new reference) when contiguous, else a contiguous copy.
inline vt::Tensor contiguous(const vt::Call& c, vt_tensor* t) {
  if (vt::is_contiguous(t)) return retained(c.host, t);
  vt::Tensor out = c.empty_like(t);
  copy_same(c, out, t);
  return out;
}

// An index tensor as contiguous int64 (a new reference; converted from int32/uint8/int8 when
// needed). Floating or bool indices are a TypeError naming the argument.
inline vt::Tensor index_int64(const vt::Call& c, vt_tensor* t, const char* name) {
  if (!vt::is_integral(t->dtype, false))
    c.fail(VT_ERR_TYPE, "%s must be an integer tensor (int64 or int32), got %s", name, vt::dtype_name(t->dtype));
  if (vt::same_dtype(t->dtype, vt::kInt64)) return contiguous(c, t);
  vt::Tensor out = c.empty(t->sizes, t->ndim, vt::kInt64);
  const vt_tensor* ops[2] = {out, t};
  const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  vt::dispatch(vt::types<int32_t, uint8_t, int8_t>{}, t->dtype, c.op, [&](auto tag) {
    using S = typename decltype(tag)::type;
    vt::elementwise<int64_t, S>(c.host, L, [](S v) { return (int64_t)v; });
  });
  return out;
}

// Checks every index in [-n, n) and wraps negatives, in place (idx is our own int64 copy or the
// caller's contiguous int64 tensor: then it is only checked, never written).
inline void check_indices(const vt::Call& c, const int64_t* idx, int64_t count, int64_t n, const char* name, int32_t dim) {
  for (int64_t i = 0; i < count; ++i)
    if (idx[i] < -n || idx[i] >= n)
      c.fail(VT_ERR_INDEX, "%s: index %lld is out of bounds for dim %d with size %lld", name, (long long)idx[i], dim,
             (long long)n);
}
inline int64_t wrap_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

// ---- for backward rules ------------------------------------------------------------------------
// A scalar tensor of t's dtype and device holding v (for scaling by a constant).
inline vt::Tensor scalar_like(const vt_host* host, const vt_tensor* t, double v) {
  const std::vector<int64_t> none;
  return vt::call(host, "core::full", {vt::V(none), vt::V(v), vt::V(t->dtype), vt::V(t->device)});
}
inline vt::Tensor scale(const vt_host* host, vt::Tensor&& t, double s) {
  if (s == 1.0) return std::move(t);
  vt::Tensor k = scalar_like(host, t.get(), s);
  return vt::call(host, "core::mul", {t, k});
}
inline vt::Tensor zeros_like(const vt_host* host, const vt_tensor* t) {
  return vt::call(host, "core::zeros", {vt::V::sizes(t), vt::V(t->dtype), vt::V(t->device)});
}
// t converted to `like`'s dtype (core::to_dtype, differentiable); t itself when they match
inline vt::Tensor cast_like(const vt_host* host, vt::Tensor&& t, const vt_tensor* like) {
  if (vt::same_dtype(t->dtype, like->dtype)) return std::move(t);
  return vt::call(host, "core::to_dtype", {t, vt::V(like->dtype)});
}
// grad of a reduction over `reduced` dims, reshaped to the keepdim shape of `self`
inline vt::Tensor keepdim_grad(const vt_host* host, vt_tensor* grad, const vt_tensor* self, const bool* reduced, bool keepdim) {
  if (keepdim || self->ndim == 0) return retained(host, grad);
  std::vector<int64_t> shape(self->sizes, self->sizes + self->ndim);
  for (int32_t d = 0; d < self->ndim; ++d)
    if (reduced[d]) shape[d] = 1;
  return vt::call(host, "core::reshape", {grad, vt::V(shape)});
}

// a vt::V holding an argument value as it came (an int?, a list...)
inline vt::V raw(const vt_value& v) {
  vt::V r;
  r.v = v;
  return r;
}

// Parses a dim list (int[]) into reduced[ndim]; [] means every dim. Repeated dims are an error.
inline void parse_dims(const vt::Call& c, vt_int_list dims, int32_t ndim, bool* reduced) {
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = false;
  if (dims.len == 0) {
    for (int32_t d = 0; d < ndim; ++d) reduced[d] = true;
    return;
  }
  for (int64_t i = 0; i < dims.len; ++i) {
    const int32_t d = vt::wrap_dim(c.op, dims.data[i], ndim);
    if (ndim == 0) continue;  // dim 0 / -1 of a scalar: nothing to reduce
    if (reduced[d]) c.fail(VT_ERR_VALUE, "dim %d appears multiple times in the list of dims", d);
    reduced[d] = true;
  }
}

// The same for backward rules (the dims were validated by the forward call).
inline void parse_dims_nocheck(vt_int_list dims, int32_t ndim, bool* reduced) {
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = dims.len == 0 && d < ndim;
  for (int64_t i = 0; i < dims.len && ndim > 0; ++i) {
    int64_t d = dims.data[i];
    if (d < 0) d += ndim;
    if (d >= 0 && d < ndim) reduced[d] = true;
  }
}

}  // namespace shp
