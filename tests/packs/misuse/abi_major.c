/* abi_major.c — a pack that claims op-pack ABI 2.0 (this runtime speaks 1.x), written by hand
 * instead of with VT_OPPACK_DEFINE. The host must refuse it before calling init; if init ever ran,
 * the op `abimajor::op` would exist, which the test checks for. */
#include <vt/oppack.h>

#include <stdio.h>

/* Announces every dlopen, so a test can tell "refused from the manifest, never opened" from
 * "opened, then refused by the runtime". */
__attribute__((constructor)) static void announce(void) {
  fputs("abimajor: library constructor ran\n", stderr);
  fflush(stderr);
}

static vt_status op_kernel(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                           int32_t nouts) {
  (void)args; (void)nargs; (void)outs; (void)nouts;
  return ctx->host->set_error(VT_ERR_RUNTIME, "[abimajor::op] must never run");
}

VT_EXPORT uint32_t vt_oppack_abi_version(void) { return (2u << 16) | 0u; }

VT_EXPORT vt_status vt_oppack_init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "abimajor::op(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  return host->register_kernel(pack, "abimajor::op", VT_CPU, "abimajor", 0, op_kernel, NULL);
}
