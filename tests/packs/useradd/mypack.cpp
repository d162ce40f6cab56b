// mypack.cpp — the user pack of the end-to-end test (tests/test_packs.py). `vt-ops new mypack`
// scaffolds a pack; the test replaces its src/mypack.cpp with this file and builds it.
//
// It provides core::add on the cpu under the provider name "mine" with priority 10, so it takes
// over from the built-in "core" provider (priority 0) as soon as it is loaded. Its kernel computes
// self + alpha * other (same shapes, or a one-element `other`; float32/float64/int64) and counts
// its calls in a global. The pack's own op reads the counter:
//
//   mypack::calls() -> int        how many times this pack's core::add kernel ran
//
// so a test can see which provider served `a + b`.
#include <vt/oppack.hpp>

#include <atomic>
#include <cstdint>

namespace {

std::atomic<int64_t> g_calls{0};

// Calls f(i, off_self, off_other) for every element i of self in row-major order.
template <class F>
void walk(const vt_tensor* self, const vt_tensor* other, bool other_scalar, F&& f) {
  int64_t idx[64] = {0};
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < self->numel; ++i) {
    f(i, oa, other_scalar ? 0 : ob);
    for (int32_t d = self->ndim - 1; d >= 0; --d) {
      if (++idx[d] < self->sizes[d]) {
        oa += self->strides[d];
        if (!other_scalar) ob += other->strides[d];
        break;
      }
      oa -= self->strides[d] * (self->sizes[d] - 1);
      if (!other_scalar) ob -= other->strides[d] * (other->sizes[d] - 1);
      idx[d] = 0;
    }
  }
}

VT_KERNEL(mine_add, "core::add") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* other = c.arg(1, "other").tensor();
  const double alpha = c.arg(2, "alpha").float_();
  c.check_same_dtype(self, "self", other, "other");
  const bool other_scalar = other->numel == 1 && self->numel != 1;
  if (!other_scalar) {
    bool same = self->ndim == other->ndim;
    for (int32_t d = 0; same && d < self->ndim; ++d) same = self->sizes[d] == other->sizes[d];
    if (!same)
      c.fail(VT_ERR_NOT_IMPL, "the 'mine' provider only adds tensors of the same shape, got %s and %s",
             vt::shape_str(self).c_str(), vt::shape_str(other).c_str());
  }
  if (self->ndim > 64) c.fail(VT_ERR_VALUE, "at most 64 dims");
  vt::Tensor out = c.empty_like(self);
  vt::dispatch(vt::types<float, double, int64_t>{}, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = vt::data<T>(self);
    const T* b = vt::data<T>(other);
    T* o = vt::data<T>(out.get());
    const T k = static_cast<T>(alpha);
    walk(self, other, other_scalar, [&](int64_t i, int64_t oa, int64_t ob) { o[i] = a[oa] + k * b[ob]; });
  });
  g_calls.fetch_add(1, std::memory_order_relaxed);  // the observable side effect
  c.set_out(0, std::move(out));
}

vt_status calls_kernel(const vt_kernel_ctx*, const vt_value*, int32_t, vt_value* outs, int32_t) {
  outs[0].tag = VT_INT;
  outs[0].v.i = g_calls.load();
  return VT_OK;
}

vt_status init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "mypack", [&] {
    vt::Registrar r(host, pack, /*provider=*/"mine", /*priority=*/10);
    r.def("mypack::calls() -> int", VT_CPU, calls_kernel);
    r.impl("core::add", VT_CPU, mine_add);  // an op another pack (core) defined
  });
}

}  // namespace

VT_OPPACK_DEFINE(init)
