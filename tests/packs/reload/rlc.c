/* rlc.c — the pack tests/test_reload_graphs.py reloads under a captured CUDA graph:
 * rlc::scale(x) = SCALE * x, on cuda only, composed of core::add (x + (SCALE - 1) * x) so it needs
 * no nvcc. The test rewrites the SCALE line between builds. */
#include <vt/oppack.h>

#define SCALE 2.0f

static vt_status scale(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                       int32_t nouts) {
  vt_op* add = ctx->host->find_op("core::add");
  vt_value a[3];
  (void)nargs;
  if (!add) return VT_ERR_RUNTIME;
  a[0] = args[0];
  a[1] = args[0];
  a[2].tag = VT_FLOAT;
  a[2].v.f = SCALE - 1.0;
  return ctx->host->call(add, a, 3, outs, nouts);
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status s;
  if ((s = host->define_op(pack, "rlc::scale(Tensor x) -> Tensor"))) return s;
  return host->register_kernel(pack, "rlc::scale", VT_CUDA, "rlc", 0, scale, 0);
}

VT_OPPACK_DEFINE(init)
