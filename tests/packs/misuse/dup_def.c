/* dup_def.c — defines its own op, then core::add again (core already defines it). The second
 * define_op fails; init passes the failure on, so the host rolls the first one back too. */
#include <vt/oppack.h>

static vt_status k(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts) {
  (void)args; (void)nargs; (void)outs; (void)nouts;
  return ctx->host->set_error(VT_ERR_RUNTIME, "[dupdef] must never run");
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "dupdef::first(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  st = host->register_kernel(pack, "dupdef::first", VT_CPU, "dupdef", 0, k, NULL);
  if (st != VT_OK) return st;
  st = host->define_op(pack, "core::add(Tensor self, Tensor other, float alpha=1.0) -> Tensor");
  if (st != VT_OK) return st;
  return host->register_kernel(pack, "core::add", VT_CPU, "dupdef", 100, k, NULL);
}

VT_OPPACK_DEFINE(init)
