// ops/core/src/shape.cpp — cat, tril/triu, and the factories linspace and eye, on CPU.
//
// cat(tensors, dim=0): inputs share dtype, device and every size but `dim` (the Python layer
// promotes dtypes first); like torch, 1-d tensors of size 0 are skipped when the others have more
// dims. Each input is copied into its slice of the output; backward hands each input its slice
// of the gradient (a view). stack/split/chunk are Python over these ops (python/vibetensor/_shape.py).
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

}  // namespace

VT_KERNEL(cat_cpu, "core::cat") {
  const vt_tensor_list ts = tensor_list(c, 0, "tensors");
  const int64_t dim_arg = c.arg(1, "dim").int_();
  if (ts.len == 0) c.fail(VT_ERR_VALUE, "expected a non-empty list of tensors");
  // the reference: the first tensor that is not a legacy empty 1-d one
  const vt_tensor* ref = nullptr;
  for (int64_t k = 0; k < ts.len && !ref; ++k)
    if (!(ts.data[k]->ndim == 1 && ts.data[k]->sizes[0] == 0)) ref = ts.data[k];
  if (!ref) ref = ts.data[0];
  if (ref->ndim == 0) c.fail(VT_ERR_VALUE, "zero-dimensional tensor (at position 0) cannot be concatenated");
  vt::check_ndim(c.op, ref, "tensors[0]");
  const int32_t dim = vt::wrap_dim(c.op, dim_arg, ref->ndim);
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < ref->ndim; ++d) shape[d] = ref->sizes[d];
  shape[dim] = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    const vt_tensor* t = ts.data[k];
    if (!vt::same_dtype(t->dtype, ref->dtype))
      c.fail(VT_ERR_TYPE, "tensors[%lld] has dtype %s but tensors[0] has %s (all must match)", (long long)k,
             vt::dtype_name(t->dtype), vt::dtype_name(ref->dtype));
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
  vt::Tensor out = c.empty(shape, ref->ndim, ref->dtype);
  int64_t ostr[vt::kMaxDims];
  int64_t acc = 1;
  for (int32_t d = ref->ndim - 1; d >= 0; --d) {
    ostr[d] = acc;
    acc *= shape[d];
  }
  int64_t off = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    const vt_tensor* t = ts.data[k];
    if (skipped(t, ref->ndim)) continue;
    if (t->numel) {
      vt::Tensor dst = shp::make_view(c, out, t->sizes, ostr, t->ndim, off * ostr[dim]);
      shp::copy_same(c, dst, t);
    }
    off += t->sizes[dim];
  }
  c.set_out(0, std::move(out));
}

VT_BACKWARD(cat_backward, "core::cat") {
  const vt_value& a = g.arg(0);
  if (a.tag != VT_TENSORS) throw vt::Error(g.host->set_error(VT_ERR_RUNTIME, "[core::cat] backward: tensors were not saved"));
  const vt_tensor_list ts = a.v.ts;
  vt_tensor* go = g.grad_out(0);
  const vt_tensor* ref = nullptr;
  for (int64_t k = 0; k < ts.len && !ref; ++k)
    if (!(ts.data[k]->ndim == 1 && ts.data[k]->sizes[0] == 0)) ref = ts.data[k];
  if (!ref) ref = ts.data[0];
  const int64_t dim = (g.arg(1).v.i + ref->ndim) % ref->ndim;
  int64_t off = 0;
  for (int64_t k = 0; k < ts.len; ++k) {
    vt_tensor* t = ts.data[k];
    if (skipped(t, ref->ndim)) {
      g.set_grad(0, k, shp::zeros_like(g.host, t));
      continue;
    }
    const int64_t n = t->sizes[dim];
    g.set_grad(0, k, vt::call(g.host, "core::slice", {go, dim, off, off + n, (int64_t)1}));
    off += n;
  }
}

// ---- tril / triu over the last two dims (batched) ---------------------------------------------------
namespace {
template <bool Lower>
void tri_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int64_t diag = c.arg(1, "diagonal").int_();
  vt::check_ndim(c.op, x, "self");
  if (x->ndim < 2) c.fail(VT_ERR_VALUE, "self must have at least 2 dims, got %s", vt::shape_str(x).c_str());
  vt::Tensor out = c.empty_like(x);
  const int32_t nd = x->ndim;
  const int64_t R = x->sizes[nd - 2], C = x->sizes[nd - 1];
  const int64_t rs = x->strides[nd - 2], cs = x->strides[nd - 1];
  if (out->numel == 0) {
    c.set_out(0, std::move(out));
    return;
  }
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
  c.set_out(0, std::move(out));
}
}  // namespace

VT_KERNEL(tril_cpu, "core::tril") { tri_kernel<true>(c); }
VT_KERNEL(triu_cpu, "core::triu") { tri_kernel<false>(c); }
VT_BACKWARD(tril_backward, "core::tril") { g.set_grad(0, vt::call(g.host, "core::tril", {g.grad_out(0), shp::raw(g.arg(1))})); }
VT_BACKWARD(triu_backward, "core::triu") { g.set_grad(0, vt::call(g.host, "core::triu", {g.grad_out(0), shp::raw(g.arg(1))})); }

// ---- factories -----------------------------------------------------------------------------------------
// linspace(start, end, steps): computed from both ends (start + i*step for the first half,
// end - (steps-1-i)*step for the rest) like torch, so the last value is exactly `end`.
VT_KERNEL(linspace_cpu, "core::linspace") {
  const double start = c.arg(0, "start").float_();
  const double end = c.arg(1, "end").float_();
  const int64_t steps = c.arg(2, "steps").int_();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kFloat32);
  if (steps < 0) c.fail(VT_ERR_VALUE, "steps must be non-negative, got %lld", (long long)steps);
  vt::Tensor out = c.empty(&steps, 1, dtype);
  const double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0.0;
  const int64_t half = steps / 2;
  vt::dispatch(vt::kArithTypes, dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    for (int64_t i = 0; i < steps; ++i)
      o[i] = vt::convert<T>(steps == 1 ? start : i < half ? start + (double)i * step : end - (double)(steps - 1 - i) * step);
  });
  c.set_out(0, std::move(out));
}

VT_KERNEL(eye_cpu, "core::eye") {
  const int64_t n = c.arg(0, "n").int_();
  const int64_t m = c.arg(1, "m").int_or(n);
  const vt_dtype dtype = c.arg(2, "dtype").dtype_or(vt::kFloat32);
  if (n < 0 || m < 0) c.fail(VT_ERR_VALUE, "n and m must be non-negative, got n=%lld, m=%lld", (long long)n, (long long)m);
  const int64_t shape[2] = {n, m};
  vt::Tensor out = c.empty(shape, 2, dtype);
  if (out->numel) std::memset(out->data, 0, (size_t)(out->numel * vt::element_size(dtype)));
  vt::dispatch(vt::kAllTypes, dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    for (int64_t i = 0; i < std::min(n, m); ++i) o[i * m + i] = vt::convert<T>(1.0);
  });
  c.set_out(0, std::move(out));
}

using core::OpDef;

const OpDef kShapeOps[] = {
    {"core::cat(Tensor[] tensors, int dim=0) -> Tensor", nullptr, cat_cpu, cat_backward, 1},
    {"core::tril(Tensor self, int diagonal=0) -> Tensor", nullptr, tril_cpu, tril_backward},
    {"core::triu(Tensor self, int diagonal=0) -> Tensor", nullptr, triu_cpu, triu_backward},
    {"core::linspace(float start, float end, int steps, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, linspace_cpu},
    {"core::eye(int n, int? m=None, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, eye_cpu},
};
VT_OP_TABLE(kShapeOps)
