// ops/core/src/factory.cpp — fill_, zeros, ones, full, arange: meta steps and CPU computes.
//
// Factories allocate on the device the call was dispatched to (ctx->device, which the dispatcher
// takes from their `device` argument, cpu when None), so one meta step serves cpu, cuda and meta.
// dtype=None means float32 (the Python layer picks int64 for an all-integer arange before
// calling). The computes only write values.
#include <cmath>
#include <limits>

#include "core.hpp"
#include "vt/loops.hpp"

namespace {

// every element of t (any strides, at most kMaxDims dims) = value converted to t's dtype
void fill(vt::Call& c, const vt_tensor* t, double value) {
  if (t->numel == 0) return;
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

// a fresh contiguous t = value (all-zero bits for 0 in every dtype)
void fill_new(vt::Call& c, const vt_tensor* t, double value) {
  if (value == 0.0 && t->numel > 0)
    std::memset(t->data, 0, (size_t)(t->numel * vt::element_size(t->dtype)));
  else
    fill(c, t, value);
}

// the meta step of zeros/ones/full: a new tensor of `size` (arg 0) and dtype (arg `dtype_index`,
// None = float32)
void full_meta(vt::Call& c, int32_t dtype_index) {
  const vt_int_list size = c.arg(0, "size").ints();
  const vt_dtype dtype = c.arg(dtype_index, "dtype").dtype_or(vt::kFloat32);
  c.check_sizes("size", size);
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "size has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  c.set_out(0, c.empty(size.data, (int32_t)size.len, dtype));
}

}  // namespace

namespace core {
// A fill value stored into an integer dtype must fit it: the cast of nan, +-inf or an out-of-range
// double is undefined behaviour in C++ (x86 gives INT_MIN), so the meta steps of fill_, full and
// masked_fill refuse it as torch does. bool takes any value (!= 0). Floats keep inf and nan but,
// as in torch, refuse a finite value beyond their largest (1e6 into float16 would become inf).
void check_fill_value(vt::Call& c, vt_dtype dtype, double value, const char* name) {
  if (dtype.code == VT_DL_FLOAT || dtype.code == VT_DL_BFLOAT) {
    const double max = dtype.code == VT_DL_BFLOAT ? 3.3895313892515355e38  // bfloat16
                       : dtype.bits == 16         ? 65504.0                 // float16
                       : dtype.bits == 32         ? 3.4028234663852886e38   // float32
                                                  : INFINITY;
    if (std::isfinite(value) && std::fabs(value) > max)
      c.fail(VT_ERR_VALUE, "%s %g cannot be converted to %s without overflow", name, value, vt::dtype_name(dtype));
    return;
  }
  if (!vt::is_integral(dtype, false)) return;
  vt::dispatch(vt::types<int64_t, int32_t, uint8_t, int8_t>{}, dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // [lowest, max + 1): both powers of two, exact in double (int64's max itself is not)
    const double lo = (double)std::numeric_limits<T>::lowest(), hi = (double)std::numeric_limits<T>::max() + 1.0;
    if (!(value >= lo && value < hi))
      c.fail(VT_ERR_VALUE, "%s %g cannot be converted to %s without overflow", name, value, vt::dtype_name(dtype));
  });
}
}  // namespace core

VT_META_FN(fill__meta, "core::fill_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, self, "self");
  core::check_fill_value(c, self->dtype, c.arg(1, "value").float_(), "value");
  c.set_out_retained(0, self);
}
VT_COMPUTE(fill__cpu, "core::fill_") { fill(c, c.out(0), c.arg(1, "value").float_()); }

VT_META_FN(zeros_meta, "core::zeros") { full_meta(c, 1); }
VT_META_FN(ones_meta, "core::ones") { full_meta(c, 1); }
VT_META_FN(full_meta_fn, "core::full") {
  full_meta(c, 2);
  core::check_fill_value(c, c.out(0)->dtype, c.arg(1, "fill_value").float_(), "fill_value");
}
VT_COMPUTE(zeros_cpu, "core::zeros") { fill_new(c, c.out(0), 0.0); }
VT_COMPUTE(ones_cpu, "core::ones") { fill_new(c, c.out(0), 1.0); }
VT_COMPUTE(full_cpu, "core::full") { fill_new(c, c.out(0), c.arg(1, "fill_value").float_()); }

// arange(start, end, step): ceil((end - start) / step) values start + i * step, computed in double.
VT_META_FN(arange_meta, "core::arange") {
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
  vt::dispatch(vt::kArithTypes, dtype, c.op, [](auto) {});  // refuse other dtypes on every device
  const int64_t n = (int64_t)count;
  c.set_out(0, c.empty(&n, 1, dtype));
}

VT_COMPUTE(arange_cpu, "core::arange") {
  const double start = c.arg(0, "start").float_();
  const double step = c.arg(2, "step").float_();
  const vt_tensor* out = c.out(0);
  const int64_t n = out->numel;
  vt::dispatch(vt::kArithTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    vt::parallel_for(c.host, 0, n, vt::kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = vt::convert<T>(start + (double)i * step);
    });
  });
}
