/* abi10_pack.c — a pack written and compiled against the ABI 1.0 header (tests/packs/compat/
 * abi10/vt/oppack.h): whole kernels through register_kernel, no meta step. A 1.1 host must load
 * and run it: a new op of its own (abi10::twice) and a provider of an op core defines (core::mul,
 * priority 5, counting its calls so the test sees it serve). */
#include <vt/oppack.h>

static const vt_host* g_host;
static int64_t g_calls;

static vt_status twice(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                       int32_t nouts) {
  const vt_tensor* x = args[0].v.t;
  (void)nargs; (void)nouts;
  if (x->dtype.code != VT_DL_FLOAT || x->dtype.bits != 32 || x->device.type != VT_CPU)
    return ctx->host->set_error(VT_ERR_NOT_IMPL, "[abi10::twice] float32 cpu tensors only");
  vt_tensor* out = ctx->host->empty(x->sizes, x->ndim, x->dtype, x->device);
  if (!out) return VT_ERR_MEMORY;
  for (int64_t i = 0; i < x->numel; ++i) ((float*)out->data)[i] = 2.0f * ((const float*)x->data)[i];
  outs[0].tag = VT_TENSOR;
  outs[0].v.t = out;
  return VT_OK;
}

/* core::mul for same-shape contiguous float32 tensors; anything else is refused clearly */
static vt_status mul(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                     int32_t nouts) {
  const vt_tensor* a = args[0].v.t;
  const vt_tensor* b = args[1].v.t;
  (void)nargs; (void)nouts;
  if (a->numel != b->numel || a->ndim != b->ndim || a->dtype.bits != 32 || b->dtype.bits != 32)
    return ctx->host->set_error(VT_ERR_NOT_IMPL, "[core::mul] abi10 provider: same-shape float32 only");
  vt_tensor* out = ctx->host->empty(a->sizes, a->ndim, a->dtype, a->device);
  if (!out) return VT_ERR_MEMORY;
  for (int64_t i = 0; i < a->numel; ++i)
    ((float*)out->data)[i] = ((const float*)a->data)[i] * ((const float*)b->data)[i];
  ++g_calls;
  outs[0].tag = VT_TENSOR;
  outs[0].v.t = out;
  return VT_OK;
}

static vt_status calls(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                       int32_t nouts) {
  (void)ctx; (void)args; (void)nargs; (void)nouts;
  outs[0].tag = VT_INT;
  outs[0].v.i = g_calls;
  return VT_OK;
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status s;
  g_host = host;
  if ((s = host->define_op(pack, "abi10::twice(Tensor x) -> Tensor"))) return s;
  if ((s = host->register_kernel(pack, "abi10::twice", VT_CPU, "abi10", 0, twice, 0))) return s;
  if ((s = host->define_op(pack, "abi10::calls() -> int"))) return s;
  if ((s = host->register_kernel(pack, "abi10::calls", VT_CPU, "abi10", 0, calls, 0))) return s;
  return host->register_kernel(pack, "core::mul", VT_CPU, "abi10", 5, mul, 0);
}

VT_OPPACK_DEFINE(init)
