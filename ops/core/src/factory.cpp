// ops/core/src/factory.cpp — fill_, zeros, ones, full, arange on CPU.
//
// Factories allocate on the device the call was dispatched to (ctx->device); their `device`
// argument is how the dispatcher chose this kernel. dtype=None means float32 (the Python layer
// picks int64 for an all-integer arange before calling).
#include <cmath>

#include "vt/loops.hpp"

namespace {

// every element of t (any strides) = value converted to t's dtype
void fill(vt::Call& c, const vt_tensor* t, double value) {
  if (t->numel == 0) return;
  vt::check_ndim(c.op, t, "self");
  vt::dispatch(vt::kAllTypes, t->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = vt::convert<T>(value);
    auto f = [v]() { return v; };
    if (vt::is_contiguous(t)) {
      vt::elementwise_contiguous<T>(c.host, t->numel, f, vt::data<T>(t));
    } else {
      const vt_tensor* ops[1] = {t};
      vt::elementwise<T>(c.host, vt::loop_over<1>(c.op, ops), f);
    }
  });
}

// a new tensor of `size` (arg 0) and dtype (arg `dtype_index`, None = float32), filled with value
void make_full(vt::Call& c, int32_t dtype_index, double value) {
  const vt_int_list size = c.arg(0, "size").ints();
  const vt_dtype dtype = c.arg(dtype_index, "dtype").dtype_or(vt::kFloat32);
  c.check_sizes("size", size);
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "size has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  vt::Tensor out = c.empty(size.data, (int32_t)size.len, dtype);
  if (value == 0.0 && out->numel > 0)  // all-zero bits for every dtype
    std::memset(out->data, 0, (size_t)(out->numel * vt::element_size(dtype)));
  else
    fill(c, out, value);
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(fill__cpu, "core::fill_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  fill(c, self, c.arg(1, "value").float_());
  c.set_out_retained(0, self);
}

VT_KERNEL(zeros_cpu, "core::zeros") { make_full(c, 1, 0.0); }
VT_KERNEL(ones_cpu, "core::ones") { make_full(c, 1, 1.0); }
VT_KERNEL(full_cpu, "core::full") { make_full(c, 2, c.arg(1, "fill_value").float_()); }

// arange(start, end, step): ceil((end - start) / step) values start + i * step, computed in double.
VT_KERNEL(arange_cpu, "core::arange") {
  const double start = c.arg(0, "start").float_();
  const double end = c.arg(1, "end").float_();
  const double step = c.arg(2, "step").float_();
  const vt_dtype dtype = c.arg(3, "dtype").dtype_or(vt::kFloat32);
  if (!std::isfinite(start) || !std::isfinite(end)) c.fail(VT_ERR_VALUE, "start and end must be finite, got %g and %g", start, end);
  if (step == 0.0 || !std::isfinite(step)) c.fail(VT_ERR_VALUE, "step must be nonzero and finite, got %g", step);
  if ((end - start) * step < 0)
    c.fail(VT_ERR_VALUE, "upper bound and lower bound inconsistent with step sign (start %g, end %g, step %g)", start, end, step);
  const double count = std::ceil((end - start) / step);
  if (count > 9.0e15) c.fail(VT_ERR_VALUE, "too many elements: %g", count);
  const int64_t n = (int64_t)count;
  vt::Tensor out = c.empty(&n, 1, dtype);
  vt::dispatch(vt::kArithTypes, dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    vt::parallel_for(c.host, 0, n, vt::kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = vt::convert<T>(start + (double)i * step);
    });
  });
  c.set_out(0, std::move(out));
}
