/* dup_ignored.c — defines core::add again but ignores define_op's failure and returns VT_OK. The
 * host must not let the second definition (or a kernel bound to it) replace core's. */
#include <vt/oppack.h>

static vt_status k(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts) {
  (void)args; (void)nargs; (void)outs; (void)nouts;
  return ctx->host->set_error(VT_ERR_RUNTIME, "[dupignored] must never run");
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  (void)host->define_op(pack, "core::add(Tensor self, Tensor other) -> Tensor");
  vt_status st = host->define_op(pack, "dupignored::ok(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  return host->register_kernel(pack, "dupignored::ok", VT_CPU, "dupignored", 0, k, NULL);
}

VT_OPPACK_DEFINE(init)
