// ops/core/src/copy.cpp — contiguous and copy_ on CPU.
//
// contiguous(self): always a new contiguous copy (the Python side skips the call when self is
// already contiguous). copy_(self, src): writes src, broadcast to self's shape and converted to
// self's dtype, into self (any strides) and returns self. Same-dtype copies move raw bytes, so
// they cover every dtype with four instantiations.
#include "vt/loops.hpp"

namespace {

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
  const vt_tensor* ops[2] = {dst, src};
  const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  if (same) {
    dispatch_bytes(c.op, vt::element_size(dst->dtype), [&](auto tag) {
      using U = typename decltype(tag)::type;
      vt::elementwise<U, U>(c.host, L, [](U v) { return v; });
    });
    return;
  }
  vt::dispatch(vt::kAllTypes, dst->dtype, c.op, [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    vt::dispatch(vt::kAllTypes, src->dtype, c.op, [&](auto stag) {
      using S = typename decltype(stag)::type;
      vt::elementwise<D, S>(c.host, L, [](S v) { return vt::convert<D>(v); });
    });
  });
}

}  // namespace

VT_KERNEL(contiguous_cpu, "core::contiguous") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  vt::Tensor out = c.empty_like(self);
  copy_into(c, out, self);
  c.set_out(0, std::move(out));
}

VT_KERNEL(copy__cpu, "core::copy_") {
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
  copy_into(c, self, src);
  c.set_out_retained(0, self);
}
