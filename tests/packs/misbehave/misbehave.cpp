// misbehave.cpp — kernels that fail, each in its own way. Every op takes a tensor and returns one:
//
//   misbehave::status_msg       returns VT_ERR_VALUE with a "[op] ..." message (the C way)
//   misbehave::status_unprefixed returns VT_ERR_TYPE with a message lacking the "[op]" prefix
//   misbehave::status_nomsg     returns VT_ERR_RUNTIME without setting any message
//   misbehave::throws           VT_KERNEL body throws std::runtime_error
//   misbehave::throws_vt        VT_KERNEL body fails with c.fail(VT_ERR_INDEX, ...)
//   misbehave::throws_after_out VT_KERNEL allocates and stores its output, then throws
//   misbehave::throws_guarded   hand-written kernel with VT_KERNEL_BEGIN/END around a throw
//   misbehave::throws_bad_alloc VT_KERNEL body throws std::bad_alloc
//   misbehave::no_output        returns VT_OK without writing its output
//   misbehave::ok               copies its input (proves the pack itself works)
#include <vt/oppack.hpp>

#include <cstring>
#include <new>
#include <stdexcept>

namespace {

vt_status status_msg(const vt_kernel_ctx* ctx, const vt_value*, int32_t, vt_value*, int32_t) {
  return ctx->host->set_error(VT_ERR_VALUE, "[misbehave::status_msg] deliberate failure, code %d", 42);
}

vt_status status_unprefixed(const vt_kernel_ctx* ctx, const vt_value*, int32_t, vt_value*, int32_t) {
  return ctx->host->set_error(VT_ERR_TYPE, "message without the op prefix");
}

vt_status status_nomsg(const vt_kernel_ctx*, const vt_value*, int32_t, vt_value*, int32_t) {
  return VT_ERR_RUNTIME;
}

VT_KERNEL(throws, "misbehave::throws") {
  (void)c;
  throw std::runtime_error("kaboom from C++, value 7");
}

VT_KERNEL(throws_vt, "misbehave::throws_vt") {
  c.fail(VT_ERR_INDEX, "index %d is out of range", 99);
}

VT_KERNEL(throws_after_out, "misbehave::throws_after_out") {
  const vt_tensor* x = c.arg(0, "x").tensor();
  vt::Tensor out = c.empty_like(x);
  c.set_out(0, std::move(out));
  throw std::runtime_error("thrown after the output was stored");
}

vt_status throws_guarded(const vt_kernel_ctx* ctx, const vt_value*, int32_t, vt_value*, int32_t) {
  VT_KERNEL_BEGIN
  throw std::logic_error("guarded throw");
  return VT_OK;
  VT_KERNEL_END(ctx->host, "misbehave::throws_guarded")
}

VT_KERNEL(throws_bad_alloc, "misbehave::throws_bad_alloc") {
  (void)c;
  throw std::bad_alloc();
}

vt_status no_output(const vt_kernel_ctx*, const vt_value*, int32_t, vt_value*, int32_t) { return VT_OK; }

VT_KERNEL(ok, "misbehave::ok") {
  const vt_tensor* x = c.arg(0, "x").tensor();
  if (!vt::is_contiguous(x)) c.fail(VT_ERR_NOT_IMPL, "contiguous input only");
  vt::Tensor out = c.empty_like(x);
  std::memcpy(out->data, x->data, (size_t)(x->numel * vt::element_size(x->dtype)));
  c.set_out(0, std::move(out));
}

vt_status init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "misbehave", [&] {
    vt::Registrar r(host, pack, "misbehave", 0);
    r.def("misbehave::status_msg(Tensor x) -> Tensor", VT_CPU, status_msg);
    r.def("misbehave::status_unprefixed(Tensor x) -> Tensor", VT_CPU, status_unprefixed);
    r.def("misbehave::status_nomsg(Tensor x) -> Tensor", VT_CPU, status_nomsg);
    r.def("misbehave::throws(Tensor x) -> Tensor", VT_CPU, throws);
    r.def("misbehave::throws_vt(Tensor x) -> Tensor", VT_CPU, throws_vt);
    r.def("misbehave::throws_after_out(Tensor x) -> Tensor", VT_CPU, throws_after_out);
    r.def("misbehave::throws_guarded(Tensor x) -> Tensor", VT_CPU, throws_guarded);
    r.def("misbehave::throws_bad_alloc(Tensor x) -> Tensor", VT_CPU, throws_bad_alloc);
    r.def("misbehave::no_output(Tensor x) -> Tensor", VT_CPU, no_output);
    r.def("misbehave::ok(Tensor x) -> Tensor", VT_CPU, ok);
  });
}

}  // namespace

VT_OPPACK_DEFINE(init)
