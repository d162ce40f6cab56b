// ops/core/src/pointwise.cpp — sum_to_size, to_dtype, where, zero_ on CPU, and copy_'s backward.
//
//   sum_to_size(self, size): sums a broadcast tensor back down to `size` (which must broadcast to
//       self's shape): what every backward rule uses to undo broadcasting. Backward: core::expand.
//   to_dtype(self, dtype): a converted copy (torch's `.to(dtype)`); differentiable between
//       floating dtypes (the gradient is cast back).
//   where(condition, self, other): condition (bool) ? self : other, all three broadcast; self and
//       other share a dtype (the Python layer promotes).
//   zero_(self): fills self with zeros in place; the old values get a zero gradient.
// Each op is a meta step (checks, output) and a CPU compute, except sum_to_size, whose meta step
// is the whole op (VT_META_COMPLETE: it only calls core::sum and makes views).
#include "ew.hpp"

namespace {

// Converts x into out (contiguous, x's shape), any dtype pair.
void convert_into(const vt::Call& c, const vt_tensor* out, const vt_tensor* x) {
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto stag) {
      using S = typename decltype(stag)::type;
      ew::map1<D, S>(c, out, x, [](S v) { return vt::convert<D>(v); });
    });
  });
}

}  // namespace

// self (..., sizes) -> size: reduced dims are the leading ones self has beyond `size`, and those
// where size is 1 but self is not. Sums through core::sum (keepdim) and views the result as size.
// The whole op is its meta step (a view of self, or core::sum through the host then a view): it
// runs as is on every device, meta included (VT_META_COMPLETE).
VT_META_FN(sum_to_size_meta, "core::sum_to_size") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_int_list size = c.arg(1, "size").ints();
  const int32_t nd = self->ndim;
  if (size.len > nd)
    c.fail(VT_ERR_VALUE, "size %s has more dims than self %s", vt::shape_str(size.data, (int32_t)size.len).c_str(),
           vt::shape_str(self).c_str());
  const int32_t lead = nd - (int32_t)size.len;
  int64_t dims[vt::kMaxDims];
  int32_t ndims = 0;
  vt::check_ndim(c.op, self, "self");
  for (int32_t d = 0; d < nd; ++d) {
    if (d < lead) {
      dims[ndims++] = d;
      continue;
    }
    const int64_t want = size.data[d - lead], have = self->sizes[d];
    if (want == have) continue;
    if (want != 1)
      c.fail(VT_ERR_VALUE, "size %s is not expandable to self's shape %s (dim %d: %lld vs %lld)",
             vt::shape_str(size.data, (int32_t)size.len).c_str(), vt::shape_str(self).c_str(), d, (long long)want,
             (long long)have);
    dims[ndims++] = d;
  }
  int64_t strides[vt::kMaxDims];
  if (ndims == 0) {  // same shape: nothing to sum, a view of self
    for (int32_t i = 0; i < (int32_t)size.len; ++i) strides[i] = self->strides[i + lead];
    vt_tensor* v = c.host->as_strided(self, size.data, strides, (int32_t)size.len, 0);
    if (!v) throw vt::Error(VT_ERR_RUNTIME);
    c.set_out(0, vt::Tensor(c.host, v));
    return;
  }
  vt::Tensor s = vt::call(c.host, "core::sum",
                          {vt::V(self), vt::V(vt_int_list{dims, ndims}), vt::V(true), vt::V::none()});
  int64_t st = 1;
  for (int32_t i = (int32_t)size.len - 1; i >= 0; --i) {
    strides[i] = st;
    st *= size.data[i] > 0 ? size.data[i] : 1;
  }
  vt_tensor* v = c.host->as_strided(s, size.data, strides, (int32_t)size.len, 0);
  if (!v) throw vt::Error(VT_ERR_RUNTIME);
  c.set_out(0, vt::Tensor(c.host, v));
}

VT_BACKWARD(sum_to_size_backward, "core::sum_to_size") {
  g.set_grad(0, vt::call(g.host, "core::expand", {vt::V(g.grad_out(0)), vt::V::sizes(g.saved(0))}));
}

VT_META_FN(to_dtype_meta, "core::to_dtype") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_dtype dtype = c.arg(1, "dtype").dtype();
  if (vt::scalar_type(dtype) == vt::ScalarType::Unknown)
    c.fail(VT_ERR_TYPE, "unsupported dtype (code %d, bits %d)", dtype.code, dtype.bits);
  ew::unary_out(c, self, dtype);
}
VT_COMPUTE(to_dtype_cpu, "core::to_dtype") { convert_into(c, c.out(0), c.arg(0, "self").tensor()); }

VT_BACKWARD(to_dtype_backward, "core::to_dtype") {
  // only floating inputs ever need a gradient; it goes back to the input's dtype
  vt_tensor* go = g.grad_out(0);
  g.set_grad(0, vt::call(g.host, "core::to_dtype", {vt::V(go), vt::V(g.saved(0)->dtype)}));
}

VT_META_FN(where_meta, "core::where") {
  const vt_tensor* cond = c.arg(0, "condition").tensor();
  const vt_tensor* a = c.arg(1, "self").tensor();
  const vt_tensor* b = c.arg(2, "other").tensor();
  c.check_same_device(a, "self", b, "other");
  c.check_same_device(cond, "condition", a, "self");
  c.check_same_dtype(a, "self", b, "other");
  if (!vt::same_dtype(cond->dtype, vt::kBool))
    c.fail(VT_ERR_TYPE, "condition must be bool, got %s", vt::dtype_name(cond->dtype));
  int64_t ab[vt::kMaxDims], shape[vt::kMaxDims];
  const int32_t nab = vt::broadcast_shape(c.op, a, "self", b, "other", ab);
  const int32_t nd = vt::broadcast_shape(c.op, cond->sizes, cond->ndim, "condition", ab, nab, "self/other", shape);
  c.set_out(0, c.empty(shape, nd, a->dtype));  // the broadcast shape bounds every operand's ndim
}
VT_COMPUTE(where_cpu, "core::where") {
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const vt_tensor* ops[4] = {out, c.arg(0, "condition").tensor(), c.arg(1, "self").tensor(), c.arg(2, "other").tensor()};
  const vt::StridedLoop<4> L = vt::loop_over<4>(c.op, ops);
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::elementwise<T, bool, T, T>(c.host, L, [](bool k, T x, T y) { return k ? x : y; });
  });
}

VT_BACKWARD(where_backward, "core::where") {
  vt_tensor* go = g.grad_out(0);
  vt_tensor* cond = g.saved(0);
  vt::Tensor z = ew::scalar(g.host, 0.0, go);
  if (g.needs(1)) {
    vt::Tensor r = vt::call(g.host, "core::where", {vt::V(cond), vt::V(go), vt::V(z)});
    g.set_grad(1, g.sum_to(std::move(r), g.saved(1)));
  }
  if (g.needs(2)) {
    vt::Tensor r = vt::call(g.host, "core::where", {vt::V(cond), vt::V(z), vt::V(go)});
    g.set_grad(2, g.sum_to(std::move(r), g.saved(2)));
  }
}

VT_META_FN(zero__meta, "core::zero_") { c.set_out_retained(0, c.arg(0, "self").tensor()); }
VT_COMPUTE(zero__cpu, "core::zero_") {
  vt_tensor* self = c.out(0);
  if (self->numel > 0) {
    if (vt::is_contiguous(self)) {
      char* d = static_cast<char*>(self->data);
      const int64_t es = vt::element_size(self->dtype);
      vt::parallel_for(c.host, 0, self->numel, 4 * vt::kGrain,
                       [&](int64_t b, int64_t e) { std::memset(d + b * es, 0, (size_t)((e - b) * es)); });
    } else {
      vt::Tensor r = vt::call(c.host, "core::fill_", {vt::V(self), vt::V(0.0)});
    }
  }
}

// zero_, fill_, normal_, uniform_: the output does not depend on self's old values, so their
// gradient is zero (recorded, so an overwritten region of a tensor with history gets none).
VT_BACKWARD(overwrite_backward, "core::zero_") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) g.set_grad(0, vt::call(g.host, "core::zeros", {vt::V::sizes(go), vt::V(go->dtype), vt::V(go->device)}));
}

// copy_(self, src): self's old values do not reach the output (their gradient is zero); src's
// gradient is the incoming one, cast to src's dtype and summed back over broadcast dims.
VT_BACKWARD(copy__backward, "core::copy_") {
  vt_tensor* go = g.grad_out(0);
  if (g.needs(0)) g.set_grad(0, vt::call(g.host, "core::zeros", {vt::V::sizes(go), vt::V(go->dtype), vt::V(go->device)}));
  if (g.needs(1)) {
    vt_tensor* src = g.saved(1);
    vt::Tensor r = vt::same_dtype(go->dtype, src->dtype)
                       ? vt::call(g.host, "core::contiguous", {vt::V(go)})
                       : vt::call(g.host, "core::to_dtype", {vt::V(go), vt::V(src->dtype)});
    g.set_grad(1, g.sum_to(std::move(r), src));
  }
}

using core::OpDef;

const OpDef kPointwiseOps[] = {
    {"core::sum_to_size(Tensor self, int[] size) -> Tensor", sum_to_size_meta, nullptr, sum_to_size_backward, 0b1, 0,
     VT_META_COMPLETE},
    {"core::to_dtype(Tensor self, ScalarType dtype) -> Tensor", to_dtype_meta, to_dtype_cpu, to_dtype_backward, 0b1},
    {"core::where(Tensor condition, Tensor self, Tensor other) -> Tensor", where_meta, where_cpu, where_backward, 0b111},
    {"core::zero_(Tensor self) -> Tensor", zero__meta, zero__cpu, overwrite_backward},
};
VT_OP_TABLE(kPointwiseOps)
