// ops/core/src/copy.cpp — contiguous, copy_ and to_device: meta steps and CPU computes.
//
// contiguous(self): always a new contiguous copy (the Python side skips the call when self is
// already contiguous; clone() and the autograd engine's gradient accumulation rely on the copy).
// copy_(self, src): writes src, broadcast to self's shape and converted to self's dtype, into self
// (any strides) and returns self. Same-dtype copies move raw bytes, so they cover every dtype with
// four instantiations.
// to_device(self, device, non_blocking): self's data on another device (cpu <-> cuda, cuda:i ->
// cuda:j, anything -> meta); differentiable (the gradient goes back to self's device). The call
// is dispatched on self's device, so each source device registers the same compute
// (to_device_compute: contiguous source + the host's copy_bytes, no device code of its own).
//
// The meta steps (every device) check and make the outputs; the computes only move data.
#include "core.hpp"
#include "shape_util.hpp"

namespace {

// dst = src (src broadcast to dst's shape), converting dtypes when they differ
void copy_into(vt::Call& c, const vt_tensor* dst, const vt_tensor* src) {
  if (dst->numel == 0) return;
  const bool same = vt::same_dtype(dst->dtype, src->dtype);
  if (same && vt::same_shape(dst, src) && vt::is_contiguous(dst) && vt::is_contiguous(src)) {
    const int64_t es = vt::element_size(dst->dtype);
    char* d = static_cast<char*>(dst->data);
    const char* s = static_cast<const char*>(src->data);
    vt::parallel_for(c.host, 0, dst->numel, 4 * vt::kGrain, [&](int64_t b, int64_t e) {
      std::memmove(d + b * es, s + b * es, (size_t)((e - b) * es));
    });
    return;
  }
  if (same) {
    shp::copy_same(c, dst, src);
    return;
  }
  const vt_tensor* ops[2] = {dst, src};
  const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  vt::dispatch(vt::kAllTypes, dst->dtype, c.op, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    vt::dispatch(vt::kAllTypes, src->dtype, c.op, [&](auto stag) {
      using S = typename decltype(stag)::type;
      vt::elementwise<D, S>(c.host, L, [](S v) { return vt::convert<D>(v); });
    });
  });
}

}  // namespace

// ---- contiguous ------------------------------------------------------------------------------------
VT_META_FN(contiguous_meta, "core::contiguous") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  c.set_out(0, c.empty_like(self));
}

VT_COMPUTE(contiguous_cpu, "core::contiguous") { copy_into(c, c.out(0), c.arg(0, "self").tensor()); }

// ---- copy_ ------------------------------------------------------------------------------------------
VT_META_FN(copy__meta, "core::copy_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* src = c.arg(1, "src").tensor();
  c.check_same_device(self, "self", src, "src");
  vt::check_ndim(c.op, self, "self");
  vt::check_ndim(c.op, src, "src");
  // src must broadcast to exactly self's shape
  int64_t shape[vt::kMaxDims];
  const int32_t ndim = vt::broadcast_shape(c.op, self, "self", src, "src", shape);
  bool ok = ndim == self->ndim;
  for (int32_t i = 0; ok && i < ndim; ++i) ok = shape[i] == self->sizes[i];
  if (!ok)
    c.fail(VT_ERR_VALUE, "src of shape %s cannot be broadcast to self of shape %s", vt::shape_str(src).c_str(),
           vt::shape_str(self).c_str());
  c.set_out_retained(0, self);
}

VT_COMPUTE(copy__cpu, "core::copy_") { copy_into(c, c.out(0), c.arg(1, "src").tensor()); }

// ---- to_device ----------------------------------------------------------------------------------------
// To self's own device: an alias of self (a new tensor object, so autograd records a node for it
// without touching self's history). From the meta device: refused (there is no data). Else a new
// contiguous tensor of self's shape and dtype on `device` (not ctx->device: that is self's).
VT_META_FN(to_device_meta, "core::to_device") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const vt_device device = c.arg(1, "device").device();
  if (vt::same_device(self->device, device)) {
    c.set_out(0, c.view(self, self->sizes, self->strides, self->ndim, 0));
    return;
  }
  if (self->device.type == VT_META) c.fail(VT_ERR_NOT_IMPL, "cannot copy data out of a meta tensor");
  vt::check_ndim(c.op, self, "self");
  c.set_out(0, vt::empty(c.host, self->sizes, self->ndim, self->dtype, device));
}

// Registered for VT_CPU here; CUDA registers the same function (cuda/register.cu).
VT_COMPUTE(to_device_compute, "core::to_device") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt_tensor* out = c.out(0);
  // the alias of the same-device case, a meta destination (no memory) or nothing to move
  if (out->numel == 0 || out->device.type == VT_META || vt::same_device(self->device, out->device)) return;
  if (!VT_HOST_HAS(c.host, copy_bytes))
    c.fail(VT_ERR_NOT_IMPL, "needs a host with copy_bytes (this host is ABI %u.%u)", (unsigned)c.host->abi_major,
           (unsigned)c.host->abi_minor);
  vt::Tensor tmp;
  const vt_tensor* src = self;
  if (!vt::is_contiguous(self)) {
    tmp = vt::call(c.host, "core::contiguous", {self});
    src = tmp.get();
  }
  const vt_status st = c.host->copy_bytes(out, src, c.arg(2, "non_blocking").bool_() ? 1 : 0);
  if (st != VT_OK) throw vt::Error(st);  // the host set the message
}

// the gradient goes back to self's device (the node's device, ctx->device)
VT_BACKWARD(to_device_backward, "core::to_device") {
  g.set_grad(0, vt::call(g.host, "core::to_device", {g.grad_out(0), g.ctx->device, false}));
}
