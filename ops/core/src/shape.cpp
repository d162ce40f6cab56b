// ops/core/src/shape.cpp — cat, tril/triu, and the factories linspace and eye: meta steps (every
// check and the output, on every device) and CPU computes.
//
// cat(tensors, dim=0): inputs share device and every size but `dim`; dtypes promote like torch
// (host->promote_types over all inputs); like torch, 1-d tensors of size 0 are skipped when the
// others have more dims. Each input is copied into its slice of the output (converted when its
// dtype differs); backward hands each input its slice of the gradient (a view, cast back to the
// input's dtype). stack/split/chunk are Python over these ops (python/vibetensor/_shape.py).
#include <cmath>

#include "core.hpp"
#include "shape_util.hpp"

namespace {

using vt::V;

vt_tensor_list tensor_list(const vt::Call& c, int32_t i, const char* name) {
  if (i >= c.nargs || c.args[i].tag != VT_TENSORS)
    c.fail(VT_ERR_TYPE, "argument '%s' (position %d) must be Tensor[]", name, i);
  return c.args[i].v.ts;
}

bool skipped(const vt_tensor* t, int32_t ref_ndim) { return t->ndim == 1 && t->sizes[0] == 0 && ref_ndim != 1; }

// the reference: the first tensor that is not a legacy empty 1-d one (ts.len > 0)
const vt_tensor* cat_ref(vt_tensor_list ts) {
  for (int64_t k = 0; k < ts.len; ++k)
    if (!(ts.data[k]->ndim == 1 && ts.data[k]->sizes[0] == 0)) return ts.data[k];
  return ts.data[0];
}

}  // namespace

// The meta step: every check (dtypes, devices, dims, sizes) and the output.
VT_META_FN(cat_meta, "core::cat") {
  const vt_tensor_list ts = tensor_list(c, 0, "tensors");
  const int64_t dim_arg = c.arg(1, "dim").int_();
  if (ts.len == 0) c.fail(VT_ERR_VALUE, "expected a non-empty list of tensors");
  const vt_tensor* ref = cat_ref(ts);
  if (ref->ndim == 0) c.fail(VT_ERR_VALUE, "zero-dimensional tensor (at position 0) cannot be concatenated");
  vt::check_ndim(c.op, ref, "tensors[0]");
  const int32_t dim = vt::wrap_dim(c.op, dim_arg, ref->ndim);
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < ref->ndim; ++d) shape[d] = ref->sizes[d];
  shape[dim] = 0;
  vt_dtype dtype = ts.data[0]->dtype;
  for (int64_t k = 0; k < ts.len; ++k) {
    const vt_tensor* t = ts.data[k];
    if (!vt::same_dtype(t->dtype, dtype)) {
      const vt_dtype p = c.host->promote_types(dtype, t->dtype);
      if (vt::scalar_type(p) == vt::ScalarType::Unknown)
        c.fail(VT_ERR_TYPE, "tensors[%lld] has dtype %s, which has no supported common dtype with %s", (long long)k,
               vt::dtype_name(t->dtype), vt::dtype_name(dtype));
      dtype = p;
    }
    if (!vt::same_device(t->device, ref->device)) c.fail(VT_ERR_VALUE, "tensors[%lld] is on another device than tensors[0]", (long long)k);
    if (skipped(t, ref->ndim)) continue;
    if (t->ndim != ref->ndim)
      c.fail(VT_ERR_VALUE, "tensors must have the same number of dims: tensors[%lld] has %d, expected %d", (long long)k, t->ndim, ref->ndim);
    for (int32_t d = 0; d < ref->ndim; ++d)
      if (d != dim && t->sizes[d] != ref->sizes[d])
        c.fail(VT_ERR_VALUE, "sizes must match except in dim %d: tensors[%lld] is %s, expected %s in dim %d", dim, (long long)k,
               vt::shape_str(t).c_str(), vt::shape_str(ref).c_str(), d);
    shape[dim] += t->sizes[dim];
  }
  c.set_out(0, c.empty(shape, ref->ndim, dtype));
}

// The CPU compute: each input copied into its slice of the output (a view of it).
VT_COMPUTE(cat_cpu, "core::cat") {
  const vt_tensor_list ts = tensor_list(c, 0, "tensors");
  vt_tensor* out = c.out(0);
  const int32_t nd = out->ndim;  // out is contiguous (the meta step made it)
  const int64_t dim = c.arg(1, "dim").int_();
  const int32_t d = (int32_t)(dim < 0 ? dim + nd : dim);
  int64_t off = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    const vt_tensor* t = ts.data[k];
    if (skipped(t, nd)) continue;
    if (t->numel) {
      vt::Tensor dst = c.view(out, t->sizes, out->strides, t->ndim, off * out->strides[d]);
      if (vt::same_dtype(t->dtype, out->dtype)) shp::copy_same(c, dst, t);
      else vt::call(c.host, "core::copy_", {dst.get(), const_cast<vt_tensor*>(t)});  // converts
    }
    off += t->sizes[d];
  }
}

VT_BACKWARD(cat_backward, "core::cat") {
  const vt_value& a = g.arg(0);
  if (a.tag != VT_TENSORS) throw vt::Error(g.host->set_error(VT_ERR_RUNTIME, "[core::cat] backward: tensors were not saved"));
  const vt_tensor_list ts = a.v.ts;
  vt_tensor* go = g.grad_out(0);
  const vt_tensor* ref = cat_ref(ts);
  const int64_t dim = (g.arg(1).v.i + ref->ndim) % ref->ndim;
  int64_t off = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    vt_tensor* t = ts.data[k];
    if (skipped(t, ref->ndim)) {
      g.set_grad(0, k, shp::zeros_like(g.host, t));
      continue;
    }
    const int64_t n = t->sizes[dim];
    g.set_grad(0, k, shp::cast_like(g.host, vt::call(g.host, "core::slice", {go, dim, off, off + n, (int64_t)1}), t));
    off += n;
  }
}

// ---- tril / triu over the last two dims (batched) ---------------------------------------------------
namespace {
// The meta step: self is at least 2-d; the result has its shape and dtype.
void tri_meta(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, x, "self");
  if (x->ndim < 2) c.fail(VT_ERR_VALUE, "self must have at least 2 dims, got %s", vt::shape_str(x).c_str());
  c.set_out(0, c.empty_like(x));
}

template <bool Lower>
void tri_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int64_t diag = c.arg(1, "diagonal").int_();
  const vt_tensor* out = c.out(0);
  if (out->numel == 0) return;
  const int32_t nd = x->ndim;
  const int64_t R = x->sizes[nd - 2], C = x->sizes[nd - 1];
  const int64_t rs = x->strides[nd - 2], cs = x->strides[nd - 1];
  const int64_t batches = out->numel / (R * C);
  shp::dispatch_bytes(c.op, vt::element_size(x->dtype), [&](auto tag) {
    using U = typename decltype(tag)::type;
    const U* xd = static_cast<const U*>(x->data);
    U* o = vt::data<U>(out);
    const int64_t rows = batches * R;
    vt::parallel_for(c.host, 0, rows, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t bi = r / R, i = r % R;
        int64_t off = 0, rem = bi;
        for (int32_t d = nd - 3; d >= 0; --d) {
          off += (rem % x->sizes[d]) * x->strides[d];
          rem /= x->sizes[d];
        }
        const U* src = xd + off + i * rs;
        U* dst = o + r * C;
        // kept columns: tril j <= i + diag, triu j >= i + diag
        const int64_t lim = i + diag;
        for (int64_t j = 0; j < C; ++j) {
          const bool keep = Lower ? j <= lim : j >= lim;
          dst[j] = keep ? src[j * cs] : U(0);
        }
      }
    });
  });
}
}  // namespace

VT_META_FN(tril_meta, "core::tril") { tri_meta(c); }
VT_META_FN(triu_meta, "core::triu") { tri_meta(c); }
VT_COMPUTE(tril_cpu, "core::tril") { tri_compute<true>(c); }
VT_COMPUTE(triu_cpu, "core::triu") { tri_compute<false>(c); }
VT_BACKWARD(tril_backward, "core::tril") { g.set_grad(0, vt::call(g.host, "core::tril", {g.grad_out(0), shp::raw(g.arg(1))})); }
VT_BACKWARD(triu_backward, "core::triu") { g.set_grad(0, vt::call(g.host, "core::triu", {g.grad_out(0), shp::raw(g.arg(1))})); }

// ---- factories -----------------------------------------------------------------------------------------
// linspace(start, end, steps): computed from both ends (start + i*step for the first half,
// end - (steps-1-i)*step for the rest) like torch, so the last value is exactly `end`.
VT_META_FN(linspace_meta, "core::linspace") {
  const int64_t steps = c.arg(2, "steps").int_();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kFloat32);
  if (steps < 0) c.fail(VT_ERR_VALUE, "steps must be non-negative, got %lld", (long long)steps);
  vt::dispatch(vt::kArithTypes, dtype, c.op, [](auto) {});  // refuse other dtypes on every device
  c.set_out(0, c.empty(&steps, 1, dtype));
}

VT_COMPUTE(linspace_cpu, "core::linspace") {
  const double start = c.arg(0, "start").float_();
  const double end = c.arg(1, "end").float_();
  const vt_tensor* out = c.out(0);
  const int64_t steps = out->numel;
  const double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0.0;
  const int64_t half = steps / 2;
  vt::dispatch(vt::kArithTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    for (int64_t i = 0; i < steps; ++i)
      o[i] = vt::convert<T>(steps == 1 ? start : i < half ? start + (double)i * step : end - (double)(steps - 1 - i) * step);
  });
}

VT_META_FN(eye_meta, "core::eye") {
  const int64_t n = c.arg(0, "n").int_();
  const int64_t m = c.arg(1, "m").int_or(n);
  const vt_dtype dtype = c.arg(2, "dtype").dtype_or(vt::kFloat32);
  if (n < 0 || m < 0) c.fail(VT_ERR_VALUE, "n and m must be non-negative, got n=%lld, m=%lld", (long long)n, (long long)m);
  vt::dispatch(vt::kAllTypes, dtype, c.op, [](auto) {});  // refuse other dtypes on every device
  const int64_t shape[2] = {n, m};
  c.set_out(0, c.empty(shape, 2, dtype));
}

VT_COMPUTE(eye_cpu, "core::eye") {
  const vt_tensor* out = c.out(0);
  const int64_t n = out->sizes[0], m = out->sizes[1];
  if (out->numel) std::memset(out->data, 0, (size_t)(out->numel * vt::element_size(out->dtype)));
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    for (int64_t i = 0; i < std::min(n, m); ++i) o[i * m + i] = vt::convert<T>(1.0);
  });
}

using core::OpDef;

const OpDef kShapeOps[] = {
    {"core::cat(Tensor[] tensors, int dim=0) -> Tensor", cat_meta, cat_cpu, cat_backward, 1},
    {"core::tril(Tensor self, int diagonal=0) -> Tensor", tril_meta, tril_cpu, tril_backward},
    {"core::triu(Tensor self, int diagonal=0) -> Tensor", triu_meta, triu_cpu, triu_backward},
    {"core::linspace(float start, float end, int steps, ScalarType? dtype=None, Device? device=None) -> Tensor", linspace_meta, linspace_cpu},
    {"core::eye(int n, int? m=None, ScalarType? dtype=None, Device? device=None) -> Tensor", eye_meta, eye_cpu},
};
VT_OP_TABLE(kShapeOps)
