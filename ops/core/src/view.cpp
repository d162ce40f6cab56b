// ops/core/src/view.cpp — views as ops: view, reshape, permute, transpose, expand, slice, select,
// squeeze, unsqueeze, as_strided; contiguous's backward; and the scatter-into-zeros ops that are
// the backward of slice/select/as_strided (each differentiable: their own backward is the view).
//
// A view's meta step computes sizes/strides/offset and asks the host for an as_strided view of the
// same storage: no copy, no allocation of data. That step is the whole op on every device
// (VT_META_COMPLETE: cpu, cuda and meta alike, no compute). reshape views when it can, else it
// views a core::contiguous copy (composed through the host, so complete too); slice_backward and
// select_backward are composed the same way (core::zeros, then core::copy_ into a view of it).
// Being ops, views are recorded by autograd like any other op.
//
// Backward rules that need the input's shape save `self`; for a view that costs no memory (it
// shares the output's storage) and an in-place change of the storage after the view was taken
// makes backward fail loudly instead of computing a stale gradient.
#include "core.hpp"
#include "shape_util.hpp"

namespace {

using vt::V;

// torch's view rule: strides that show `old` as `new` without copying (chunks of dims that are
// contiguous among themselves map onto chunks of the new shape); false when there are none.
bool view_strides(const int64_t* os, const int64_t* ost, int32_t on, const int64_t* ns, int32_t nn, int64_t* out) {
  int64_t numel = 1;
  for (int32_t i = 0; i < on; ++i) numel *= os[i];
  if (numel == 0 || on == 0) {
    int64_t acc = 1;
    for (int32_t i = nn - 1; i >= 0; --i) {
      out[i] = acc;
      acc *= ns[i] > 1 ? ns[i] : 1;
    }
    return true;
  }
  int32_t view_d = nn - 1;
  int64_t chunk_base_stride = ost[on - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int32_t td = on - 1; td >= 0; --td) {
    tensor_numel *= os[td];
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || ns[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= ns[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

// `size` with one -1 inferred so the element count matches `numel`.
int32_t infer_size(const vt::Call& c, vt_int_list size, int64_t numel, int64_t* out) {
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "shape has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  int32_t infer = -1;
  int64_t prod = 1;
  for (int32_t i = 0; i < (int32_t)size.len; ++i) {
    const int64_t s = size.data[i];
    out[i] = s;
    if (s == -1) {
      if (infer >= 0) c.fail(VT_ERR_VALUE, "only one dimension can be inferred (-1), got shape %s", vt::shape_str(size.data, (int32_t)size.len).c_str());
      infer = i;
    } else if (s < 0) {
      c.fail(VT_ERR_VALUE, "invalid shape dimension %lld in %s", (long long)s, vt::shape_str(size.data, (int32_t)size.len).c_str());
    } else {
      prod *= s;
    }
  }
  if (infer >= 0) {
    if (prod == 0 || numel % prod != 0)
      c.fail(VT_ERR_VALUE, "shape %s is invalid for input of size %lld", vt::shape_str(size.data, (int32_t)size.len).c_str(), (long long)numel);
    out[infer] = numel / prod;
  } else if (prod != numel) {
    c.fail(VT_ERR_VALUE, "shape %s is invalid for input of size %lld", vt::shape_str(size.data, (int32_t)size.len).c_str(), (long long)numel);
  }
  return (int32_t)size.len;
}

// row-major strides of a contiguous tensor of `sizes`
void contiguous_strides(const int64_t* sizes, int32_t ndim, int64_t* strides) {
  int64_t acc = 1;
  for (int32_t i = ndim - 1; i >= 0; --i) {
    strides[i] = acc;
    acc *= sizes[i];
  }
}

// out = zeros of `in_sizes` with grad written through the view (sizes, strides, offset) of it,
// composed of core::zeros and core::copy_ (so it runs on every device)
void scatter_into_zeros(vt::Call& c, vt_tensor* grad, vt_int_list in_sizes, const int64_t* vsizes, const int64_t* vstrides,
                        int32_t vndim, int64_t offset) {
  if (vndim != grad->ndim || std::memcmp(vsizes, grad->sizes, sizeof(int64_t) * (size_t)vndim) != 0)
    c.fail(VT_ERR_VALUE, "grad of shape %s does not match the view's shape %s", vt::shape_str(grad).c_str(),
           vt::shape_str(vsizes, vndim).c_str());
  vt::Tensor out = vt::call(c.host, "core::zeros", {V(in_sizes), V(grad->dtype), V(grad->device)});
  vt::Tensor v = c.view(out, vsizes, vstrides, vndim, offset);
  vt::call(c.host, "core::copy_", {v, grad});
  c.set_out(0, std::move(out));
}

// slice geometry: Python-style clamping of start/end, step > 0
struct SliceGeom {
  int32_t dim;
  int64_t start, len, step;
};
SliceGeom slice_geom(const vt::Call& c, const int64_t* sizes, int32_t ndim, int64_t dim, const vt::Arg& start_a,
                     const vt::Arg& end_a, int64_t step) {
  if (ndim == 0) c.fail(VT_ERR_INDEX, "cannot slice a 0-d tensor");
  SliceGeom g;
  g.dim = vt::wrap_dim(c.op, dim, ndim);
  const int64_t n = sizes[g.dim];
  if (step <= 0) c.fail(VT_ERR_VALUE, "slice step must be positive, got %lld", (long long)step);
  int64_t s = start_a.int_or(0), e = end_a.int_or(n);
  if (s < 0) s += n;
  if (e < 0) e += n;
  s = s < 0 ? 0 : s > n ? n : s;
  e = e < s ? s : e > n ? n : e;
  g.start = s;
  g.len = (e - s + step - 1) / step;
  g.step = step;
  return g;
}

}  // namespace

// ---- view, reshape ---------------------------------------------------------------------------------
VT_META_FN(view_meta, "core::view") {
  vt_tensor* self = c.arg(0, "self").tensor();
  int64_t shape[vt::kMaxDims], strides[vt::kMaxDims];
  const int32_t n = infer_size(c, c.arg(1, "size").ints(), self->numel, shape);
  if (!view_strides(self->sizes, self->strides, self->ndim, shape, n, strides))
    c.fail(VT_ERR_VALUE, "shape %s is not compatible with the size %s and strides %s of self; use reshape()",
           vt::shape_str(shape, n).c_str(), vt::shape_str(self).c_str(), vt::shape_str(self->strides, self->ndim).c_str());
  c.set_out(0, c.view(self, shape, strides, n, 0));
}

// a view when the strides allow one, else a view of a contiguous copy of self
VT_META_FN(reshape_meta, "core::reshape") {
  vt_tensor* self = c.arg(0, "self").tensor();
  int64_t shape[vt::kMaxDims], strides[vt::kMaxDims];
  const int32_t n = infer_size(c, c.arg(1, "size").ints(), self->numel, shape);
  if (view_strides(self->sizes, self->strides, self->ndim, shape, n, strides)) {
    c.set_out(0, c.view(self, shape, strides, n, 0));
    return;
  }
  vt::Tensor copy = vt::call(c.host, "core::contiguous", {self});
  contiguous_strides(shape, n, strides);
  c.set_out(0, c.view(copy, shape, strides, n, 0));
}

VT_BACKWARD(view_backward, "core::view") {
  g.set_grad(0, vt::call(g.host, "core::reshape", {g.grad_out(0), V::sizes(g.saved(0))}));
}

// ---- permute, transpose -----------------------------------------------------------------------------
VT_META_FN(permute_meta, "core::permute") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(1, "dims").ints();
  const int32_t n = self->ndim;
  if (dims.len != n)
    c.fail(VT_ERR_VALUE, "dims %s has %lld entries but self has %d dims", vt::shape_str(dims.data, (int32_t)dims.len).c_str(),
           (long long)dims.len, n);
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  bool seen[vt::kMaxDims] = {};
  for (int32_t i = 0; i < n; ++i) {
    const int32_t d = vt::wrap_dim(c.op, dims.data[i], n);
    if (seen[d]) c.fail(VT_ERR_VALUE, "dims %s is not a permutation: dim %d repeats", vt::shape_str(dims.data, n).c_str(), d);
    seen[d] = true;
    sizes[i] = self->sizes[d];
    strides[i] = self->strides[d];
  }
  c.set_out(0, c.view(self, sizes, strides, n, 0));
}

VT_BACKWARD(permute_backward, "core::permute") {
  const vt_int_list dims = g.arg(1).v.ints;
  std::vector<int64_t> inv((size_t)dims.len);
  const int64_t n = dims.len;
  for (int64_t i = 0; i < n; ++i) inv[(size_t)((dims.data[i] % n + n) % n)] = i;
  g.set_grad(0, vt::call(g.host, "core::permute", {g.grad_out(0), V(inv)}));
}

VT_META_FN(transpose_meta, "core::transpose") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t n = self->ndim;
  const int32_t d0 = vt::wrap_dim(c.op, c.arg(1, "dim0").int_(), n);
  const int32_t d1 = vt::wrap_dim(c.op, c.arg(2, "dim1").int_(), n);
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  for (int32_t i = 0; i < n; ++i) {
    sizes[i] = self->sizes[i];
    strides[i] = self->strides[i];
  }
  if (n > 0) {
    std::swap(sizes[d0], sizes[d1]);
    std::swap(strides[d0], strides[d1]);
  }
  c.set_out(0, c.view(self, sizes, strides, n, 0));
}

VT_BACKWARD(transpose_backward, "core::transpose") {
  g.set_grad(0, vt::call(g.host, "core::transpose", {g.grad_out(0), shp::raw(g.arg(1)), shp::raw(g.arg(2))}));
}

// ---- expand --------------------------------------------------------------------------------------------
VT_META_FN(expand_meta, "core::expand") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_int_list size = c.arg(1, "size").ints();
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "size has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  if (size.len < self->ndim)
    c.fail(VT_ERR_VALUE, "the target size %s has fewer dims than self %s", vt::shape_str(size.data, (int32_t)size.len).c_str(),
           vt::shape_str(self).c_str());
  const int32_t n = (int32_t)size.len, lead = n - self->ndim;
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  for (int32_t i = 0; i < n; ++i) {
    const int64_t s = size.data[i];
    if (i < lead) {
      if (s < 0) c.fail(VT_ERR_VALUE, "size %lld is not allowed in the new leading dim %d", (long long)s, i);
      sizes[i] = s;
      strides[i] = 0;
      continue;
    }
    const int64_t cur = self->sizes[i - lead];
    if (s == -1 || s == cur) {
      sizes[i] = cur;
      strides[i] = self->strides[i - lead];
    } else if (cur == 1 && s >= 0) {
      sizes[i] = s;
      strides[i] = 0;
    } else {
      c.fail(VT_ERR_VALUE, "cannot expand size %lld to %lld in dim %d (self %s -> %s)", (long long)cur, (long long)s, i,
             vt::shape_str(self).c_str(), vt::shape_str(size.data, n).c_str());
    }
  }
  c.set_out(0, c.view(self, sizes, strides, n, 0));
}

VT_BACKWARD(expand_backward, "core::expand") {
  vt_tensor* go = g.grad_out(0);
  g.set_grad(0, g.sum_to(shp::retained(g.host, go), g.saved(0)));
}

// ---- slice, select -------------------------------------------------------------------------------------
VT_META_FN(slice_meta, "core::slice") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const SliceGeom s = slice_geom(c, self->sizes, self->ndim, c.arg(1, "dim").int_(), c.arg(2, "start"), c.arg(3, "end"),
                                 c.arg(4, "step").int_());
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  for (int32_t i = 0; i < self->ndim; ++i) {
    sizes[i] = self->sizes[i];
    strides[i] = self->strides[i];
  }
  sizes[s.dim] = s.len;
  strides[s.dim] = self->strides[s.dim] * s.step;
  c.set_out(0, c.view(self, sizes, strides, self->ndim, s.len ? s.start * self->strides[s.dim] : 0));
}

VT_BACKWARD(slice_backward_rule, "core::slice") {
  g.set_grad(0, vt::call(g.host, "core::slice_backward", {g.grad_out(0), V::sizes(g.saved(0)), shp::raw(g.arg(1)),
                                                          shp::raw(g.arg(2)), shp::raw(g.arg(3)), shp::raw(g.arg(4))}));
}

// slice_backward(grad, input_sizes, dim, start, end, step): zeros of input_sizes with grad
// written into the slice. Linear in grad; its backward is the slice again.
VT_META_FN(slice_backward_meta, "core::slice_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  const vt_int_list in = c.arg(1, "input_sizes").ints();
  c.check_sizes("input_sizes", in);
  if (in.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "input_sizes has too many dims (%lld)", (long long)in.len);
  const SliceGeom s = slice_geom(c, in.data, (int32_t)in.len, c.arg(2, "dim").int_(), c.arg(3, "start"), c.arg(4, "end"),
                                 c.arg(5, "step").int_());
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  for (int32_t i = 0; i < (int32_t)in.len; ++i) sizes[i] = in.data[i];
  contiguous_strides(in.data, (int32_t)in.len, strides);
  const int64_t off = s.len ? s.start * strides[s.dim] : 0;
  sizes[s.dim] = s.len;
  strides[s.dim] *= s.step;
  scatter_into_zeros(c, grad, in, sizes, strides, (int32_t)in.len, off);
}

VT_BACKWARD(slice_backward_backward, "core::slice_backward") {
  g.set_grad(0, vt::call(g.host, "core::slice", {g.grad_out(0), shp::raw(g.arg(2)), shp::raw(g.arg(3)), shp::raw(g.arg(4)),
                                                 shp::raw(g.arg(5))}));
}

namespace {
// the view of select(dim, index) on a tensor of (sizes, strides)
int64_t select_geom(const vt::Call& c, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t dim, int64_t index,
                    int64_t* osizes, int64_t* ostrides, int32_t* d_out) {
  if (ndim == 0) c.fail(VT_ERR_INDEX, "select() cannot be applied to a 0-d tensor");
  const int32_t d = vt::wrap_dim(c.op, dim, ndim);
  const int64_t n = sizes[d];
  if (index < -n || index >= n)
    c.fail(VT_ERR_INDEX, "index %lld is out of range for dim %d of size %lld", (long long)index, d, (long long)n);
  if (index < 0) index += n;
  int32_t k = 0;
  for (int32_t i = 0; i < ndim; ++i)
    if (i != d) {
      osizes[k] = sizes[i];
      ostrides[k++] = strides[i];
    }
  *d_out = d;
  return index * strides[d];
}
}  // namespace

VT_META_FN(select_meta, "core::select") {
  vt_tensor* self = c.arg(0, "self").tensor();
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  int32_t d;
  const int64_t off = select_geom(c, self->sizes, self->strides, self->ndim, c.arg(1, "dim").int_(),
                                  c.arg(2, "index").int_(), sizes, strides, &d);
  c.set_out(0, c.view(self, sizes, strides, self->ndim - 1, off));
}

VT_BACKWARD(select_backward_rule, "core::select") {
  g.set_grad(0, vt::call(g.host, "core::select_backward", {g.grad_out(0), V::sizes(g.saved(0)), shp::raw(g.arg(1)),
                                                           shp::raw(g.arg(2))}));
}

VT_META_FN(select_backward_meta, "core::select_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  const vt_int_list in = c.arg(1, "input_sizes").ints();
  c.check_sizes("input_sizes", in);
  if (in.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "input_sizes has too many dims (%lld)", (long long)in.len);
  int64_t cstrides[vt::kMaxDims];
  contiguous_strides(in.data, (int32_t)in.len, cstrides);
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  int32_t d;
  const int64_t off = select_geom(c, in.data, cstrides, (int32_t)in.len, c.arg(2, "dim").int_(), c.arg(3, "index").int_(),
                                  sizes, strides, &d);
  scatter_into_zeros(c, grad, in, sizes, strides, (int32_t)in.len - 1, off);
}

VT_BACKWARD(select_backward_backward, "core::select_backward") {
  g.set_grad(0, vt::call(g.host, "core::select", {g.grad_out(0), shp::raw(g.arg(2)), shp::raw(g.arg(3))}));
}

// ---- squeeze, unsqueeze --------------------------------------------------------------------------------
VT_META_FN(squeeze_meta, "core::squeeze") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(1, "dim").ints();
  bool drop[vt::kMaxDims] = {};
  if (dims.len == 0) {
    for (int32_t i = 0; i < self->ndim; ++i) drop[i] = self->sizes[i] == 1;
  } else {
    for (int64_t i = 0; i < dims.len; ++i) {
      const int32_t d = vt::wrap_dim(c.op, dims.data[i], self->ndim);
      if (self->ndim > 0) drop[d] = self->sizes[d] == 1;  // a dim of size != 1 stays, like torch
    }
  }
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  int32_t n = 0;
  for (int32_t i = 0; i < self->ndim; ++i)
    if (!drop[i]) {
      sizes[n] = self->sizes[i];
      strides[n++] = self->strides[i];
    }
  c.set_out(0, c.view(self, sizes, strides, n, 0));
}

VT_BACKWARD(squeeze_backward, "core::squeeze") {
  g.set_grad(0, vt::call(g.host, "core::reshape", {g.grad_out(0), V::sizes(g.saved(0))}));
}

VT_META_FN(unsqueeze_meta, "core::unsqueeze") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t n = self->ndim;
  if (n + 1 > vt::kMaxDims) c.fail(VT_ERR_VALUE, "result would have %d dims; at most %d are supported", n + 1, vt::kMaxDims);
  const int32_t d = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), n + 1);
  int64_t sizes[vt::kMaxDims], strides[vt::kMaxDims];
  for (int32_t i = 0, k = 0; i <= n; ++i) {
    if (i == d) {
      sizes[i] = 1;
      strides[i] = d < n ? self->sizes[d] * self->strides[d] : 1;
    } else {
      sizes[i] = self->sizes[k];
      strides[i] = self->strides[k++];
    }
  }
  c.set_out(0, c.view(self, sizes, strides, n + 1, 0));
}

VT_BACKWARD(unsqueeze_backward, "core::unsqueeze") {
  const int64_t d = g.arg(1).v.i;
  const std::vector<int64_t> dims{d};
  g.set_grad(0, vt::call(g.host, "core::squeeze", {g.grad_out(0), V(dims)}));
}

// ---- as_strided ----------------------------------------------------------------------------------------
// offset counts elements from self's first element (self's own storage offset is already applied).
VT_META_FN(as_strided_meta, "core::as_strided") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_int_list size = c.arg(1, "size").ints();
  const vt_int_list stride = c.arg(2, "stride").ints();
  const int64_t offset = c.arg(3, "offset").int_();
  if (size.len != stride.len)
    c.fail(VT_ERR_VALUE, "size %s and stride %s differ in length", vt::shape_str(size.data, (int32_t)size.len).c_str(),
           vt::shape_str(stride.data, (int32_t)stride.len).c_str());
  c.check_sizes("size", size);
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "size has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  c.set_out(0, c.view(self, size.data, stride.data, (int32_t)size.len, offset));
}

VT_BACKWARD(as_strided_backward_rule, "core::as_strided") {
  vt_tensor* self = g.saved(0);
  if (!vt::is_contiguous(self))
    throw vt::Error(g.host->set_error(VT_ERR_NOT_IMPL,
                                      "[core::as_strided] backward is only implemented for a contiguous self (got "
                                      "strides %s); call .contiguous() before as_strided",
                                      vt::shape_str(self->strides, self->ndim).c_str()));
  g.set_grad(0, vt::call(g.host, "core::as_strided_backward",
                         {g.grad_out(0), V::sizes(self), shp::raw(g.arg(1)), shp::raw(g.arg(2)), shp::raw(g.arg(3))}));
}

// as_strided_backward(grad, input_sizes, size, stride, offset): a contiguous tensor of
// input_sizes where each element sums the grads of every view position that reads it (views may
// overlap). Serial over the view (a rare op; correct under overlap without atomics).
VT_META_FN(as_strided_backward_meta, "core::as_strided_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  const vt_int_list in = c.arg(1, "input_sizes").ints();
  const vt_int_list size = c.arg(2, "size").ints();
  const vt_int_list stride = c.arg(3, "stride").ints();
  const int64_t offset = c.arg(4, "offset").int_();
  c.check_sizes("input_sizes", in);
  if (in.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "input_sizes has too many dims (%lld)", (long long)in.len);
  // (a 0-d size is an empty list whose data may be null: memcmp must not see it)
  if (size.len != grad->ndim || (size.len && std::memcmp(size.data, grad->sizes, sizeof(int64_t) * (size_t)size.len) != 0) ||
      stride.len != size.len)
    c.fail(VT_ERR_VALUE, "grad of shape %s does not match size %s", vt::shape_str(grad).c_str(),
           vt::shape_str(size.data, (int32_t)size.len).c_str());
  vt::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [](auto) {});
  // every element the view reads lies in [lo, hi]; both must be inside the input
  int64_t N = 1, lo = offset, hi = offset;
  for (int64_t d = 0; d < in.len; ++d) N *= in.data[d];
  for (int32_t d = 0; d < grad->ndim; ++d) {
    const int64_t span = (grad->sizes[d] - 1) * stride.data[d];
    (span < 0 ? lo : hi) += span;
  }
  if (grad->numel > 0 && (lo < 0 || hi >= N))
    c.fail(VT_ERR_VALUE, "the view reaches element %lld outside the input's %lld elements", (long long)(lo < 0 ? lo : hi),
           (long long)N);
  c.set_out(0, c.empty(in.data, (int32_t)in.len, grad->dtype));
}

VT_COMPUTE(as_strided_backward_cpu, "core::as_strided_backward") {
  const vt_tensor* grad = c.arg(0, "grad").tensor();
  const vt_int_list stride = c.arg(3, "stride").ints();
  const int64_t offset = c.arg(4, "offset").int_();
  const vt_tensor* out = c.out(0);
  const int64_t N = out->numel;
  vt::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    std::vector<A> acc((size_t)N, A(0));
    const int32_t n = grad->ndim;
    int64_t idx[vt::kMaxDims] = {};
    for (int64_t i = 0; i < grad->numel; ++i) {
      int64_t src = 0, dst = offset;
      for (int32_t d = 0; d < n; ++d) {
        src += idx[d] * grad->strides[d];
        dst += idx[d] * stride.data[d];
      }
      acc[(size_t)dst] += (A)vt::data<T>(grad)[src];
      for (int32_t d = n - 1; d >= 0; --d) {
        if (++idx[d] < grad->sizes[d]) break;
        idx[d] = 0;
      }
    }
    T* o = vt::data<T>(out);
    for (int64_t i = 0; i < N; ++i) o[i] = T(acc[(size_t)i]);
  });
}

VT_BACKWARD(as_strided_backward_backward, "core::as_strided_backward") {
  vt::Tensor gg = vt::call(g.host, "core::contiguous", {g.grad_out(0)});
  g.set_grad(0, vt::call(g.host, "core::as_strided", {gg, shp::raw(g.arg(2)), shp::raw(g.arg(3)), shp::raw(g.arg(4))}));
}

// ---- contiguous: the meta step and compute are in copy.cpp; the gradient passes through ------------
vt::KernelFn contiguous_meta, contiguous_cpu;
VT_BACKWARD(contiguous_backward, "core::contiguous") { g.set_grad(0, shp::retained(g.host, g.grad_out(0))); }

using core::OpDef;

constexpr uint32_t kComplete = VT_META_COMPLETE;

const OpDef kViewOps[] = {
    {"core::view(Tensor self, int[] size) -> Tensor", view_meta, nullptr, view_backward, 1, 0, kComplete},
    {"core::reshape(Tensor self, int[] size) -> Tensor", reshape_meta, nullptr, view_backward, 1, 0, kComplete},
    {"core::permute(Tensor self, int[] dims) -> Tensor", permute_meta, nullptr, permute_backward, 0, 0, kComplete},
    {"core::transpose(Tensor self, int dim0, int dim1) -> Tensor", transpose_meta, nullptr, transpose_backward, 0, 0, kComplete},
    {"core::expand(Tensor self, int[] size) -> Tensor", expand_meta, nullptr, expand_backward, 1, 0, kComplete},
    {"core::slice(Tensor self, int dim=0, int? start=None, int? end=None, int step=1) -> Tensor", slice_meta, nullptr,
     slice_backward_rule, 1, 0, kComplete},
    {"core::slice_backward(Tensor grad, int[] input_sizes, int dim, int? start, int? end, int step) -> Tensor",
     slice_backward_meta, nullptr, slice_backward_backward, 0, 0, kComplete},
    {"core::select(Tensor self, int dim, int index) -> Tensor", select_meta, nullptr, select_backward_rule, 1, 0, kComplete},
    {"core::select_backward(Tensor grad, int[] input_sizes, int dim, int index) -> Tensor", select_backward_meta, nullptr,
     select_backward_backward, 0, 0, kComplete},
    {"core::squeeze(Tensor self, int[] dim=[]) -> Tensor", squeeze_meta, nullptr, squeeze_backward, 1, 0, kComplete},
    {"core::unsqueeze(Tensor self, int dim) -> Tensor", unsqueeze_meta, nullptr, unsqueeze_backward, 0, 0, kComplete},
    {"core::as_strided(Tensor self, int[] size, int[] stride, int offset=0) -> Tensor", as_strided_meta, nullptr,
     as_strided_backward_rule, 1, 0, kComplete},
    {"core::as_strided_backward(Tensor grad, int[] input_sizes, int[] size, int[] stride, int offset) -> Tensor",
     as_strided_backward_meta, as_strided_backward_cpu, as_strided_backward_backward},
    {"core::contiguous(Tensor self) -> Tensor", contiguous_meta, contiguous_cpu, contiguous_backward},
};
VT_OP_TABLE(kViewOps)
