/* caps_pack.c — a tiny pack for the capability tests (tests/test_capabilities.py): one op,
 * caps::twice(x) = 2 * x for float32, served by provider "plain" on cpu and on cuda and by a
 * provider "fast" on cuda only (priority 10) that the tests keep off GPUs its declaration rules
 * out. The cuda kernels are never run (the tests have no GPU); they only exist to be registered
 * or dropped. It declares its capabilities the way any pack does (vt/capabilities.h). */
#include <vt/capabilities.h>

static vt_status twice(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                       int32_t nouts) {
  const vt_tensor* x = args[0].v.t;
  int64_t i;
  vt_tensor* out;
  (void)nargs; (void)nouts;
  if (x->dtype.code != VT_DL_FLOAT || x->dtype.bits != 32 || x->device.type != VT_CPU)
    return ctx->host->set_error(VT_ERR_NOT_IMPL, "[caps::twice] float32 cpu tensors only");
  out = ctx->host->empty(x->sizes, x->ndim, x->dtype, x->device);
  if (!out) return VT_ERR_MEMORY;
  for (i = 0; i < x->numel; ++i) ((float*)out->data)[i] = 2.0f * ((const float*)x->data)[i];
  outs[0].tag = VT_TENSOR;
  outs[0].v.t = out;
  return VT_OK;
}

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status s;
  if ((s = host->define_op(pack, "caps::twice(Tensor x) -> Tensor"))) return s;
  if ((s = host->register_kernel(pack, "caps::twice", VT_CPU, "plain", 0, twice, 0))) return s;
  if ((s = host->register_kernel(pack, "caps::twice", VT_CUDA, "plain", 0, twice, 0))) return s;
  return host->register_kernel(pack, "caps::twice", VT_CUDA, "fast", 10, twice, 0);
}

VT_OPPACK_DEFINE(init)

VT_OPPACK_CAPABILITIES(
    "{\"abi_minor\": 0, \"requires\": {\"core\": \">=0.1,<1\"},\n"
    " \"providers\": [\n"
    "  {\"provider\": \"plain\", \"device\": \"cpu\", \"dtypes\": [\"float32\"], \"deterministic\": true},\n"
    "  {\"provider\": \"fast\", \"device\": \"cuda\", \"compute_capability\": {\"min\": \"8.0\"},\n"
    "   \"dtypes\": [\"float32\"], \"cuda_graphs\": true, \"shapes\": \"last dim 64 or 128\",\n"
    "   \"limits\": [{\"arg\": \"x\", \"dim\": -1, \"one_of\": [64, 128]}]}]}")
