/* rl.c — the pack tests/test_reload.py builds twice with a changed kernel: rl::scale(x) = SCALE * x
 * for float32 cpu tensors. The test rewrites the SCALE line (and the INIT_FAILS line, to get a
 * build whose init fails) between builds. */
#include <vt/oppack.h>

#define SCALE 2.0f
#define INIT_FAILS 0

static vt_status scale(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                       int32_t nouts) {
  const vt_tensor* x = args[0].v.t;
  int64_t i;
  vt_tensor* out;
  (void)nargs; (void)nouts;
  if (x->dtype.code != VT_DL_FLOAT || x->dtype.bits != 32 || x->device.type != VT_CPU)
    return ctx->host->set_error(VT_ERR_NOT_IMPL, "[rl::scale] float32 cpu tensors only");
  out = ctx->host->empty(x->sizes, x->ndim, x->dtype, x->device);
  if (!out) return VT_ERR_MEMORY;
  for (i = 0; i < x->numel; ++i) ((float*)out->data)[i] = SCALE * ((const float*)x->data)[i];
  outs[0].tag = VT_TENSOR;
  outs[0].v.t = out;
  return VT_OK;
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status s;
  if (INIT_FAILS) return host->set_error(VT_ERR_RUNTIME, "rl: this build refuses to initialise");
  if ((s = host->define_op(pack, "rl::scale(Tensor x) -> Tensor"))) return s;
  return host->register_kernel(pack, "rl::scale", VT_CPU, "rl", 0, scale, 0);
}

VT_OPPACK_DEFINE(init)
