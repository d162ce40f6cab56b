/* fail_init.c — init registers an op, its kernel, its backward rule and a high-priority provider
 * of core::add, then fails. The host must roll every one of those back. */
#include <vt/oppack.h>

static vt_status ghost_kernel(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                              int32_t nouts) {
  (void)args; (void)nargs; (void)outs; (void)nouts;
  return ctx->host->set_error(VT_ERR_RUNTIME, "[failinit::ghost] must never run");
}

static vt_status ghost_backward(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs,
                                const vt_value* outs, int32_t nouts, const vt_value* grad_outs,
                                const uint8_t* needs_grad, vt_value* grad_args) {
  (void)args; (void)nargs; (void)outs; (void)nouts; (void)grad_outs; (void)needs_grad; (void)grad_args;
  return ctx->host->set_error(VT_ERR_RUNTIME, "[failinit::ghost] backward must never run");
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "failinit::ghost(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  st = host->register_kernel(pack, "failinit::ghost", VT_CPU, "failinit", 0, ghost_kernel, NULL);
  if (st != VT_OK) return st;
  st = host->register_backward(pack, "failinit::ghost", ghost_backward, 1, 0);
  if (st != VT_OK) return st;
  st = host->register_kernel(pack, "core::add", VT_CPU, "failinit", 100, ghost_kernel, NULL);
  if (st != VT_OK) return st;
  return host->set_error(VT_ERR_VALUE, "failinit: deliberately failing after 4 registrations");
}

VT_OPPACK_DEFINE(init)
