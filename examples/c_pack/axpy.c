/* axpy.c — a whole op pack in plain C99, written against vt/oppack.h alone.
 *
 *   cexample::axpy(Tensor x, Tensor y, float a) -> Tensor      out = a * x + y
 *
 * x and y: float32, contiguous, same shape, on the cpu. Anything else is refused with a message
 * that starts with the op's name and carries the values. This is the smallest complete pack: one
 * op definition, one kernel, one init. Real packs usually use the C++ helpers in vt/oppack.hpp. */
#include <vt/oppack.h>

#include <string.h>

static int is_contiguous(const vt_tensor* t) {
  int64_t expected = 1;
  int32_t d;
  if (t->numel == 0) return 1; /* no elements: any strides describe it (numpy gives 0-size arrays stride 0) */
  for (d = t->ndim - 1; d >= 0; --d) {
    if (t->sizes[d] != 1 && t->strides[d] != expected) return 0;
    expected *= t->sizes[d];
  }
  return 1;
}

static int is_f32(vt_dtype dt) { return dt.code == VT_DL_FLOAT && dt.bits == 32 && dt.lanes == 1; }

typedef struct axpy_job {
  const float* x;
  const float* y;
  float* out;
  float a;
} axpy_job;

static void axpy_range(void* closure, int64_t begin, int64_t end) {
  const axpy_job* j = (const axpy_job*)closure;
  int64_t i;
  for (i = begin; i < end; ++i) j->out[i] = j->a * j->x[i] + j->y[i];
}

/* args: [x, y, a]; outs: [out] */
static vt_status axpy_cpu(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,
                          int32_t nouts) {
  const vt_host* host = ctx->host;
  const vt_tensor* x = args[0].v.t;
  const vt_tensor* y = args[1].v.t;
  vt_tensor* out;
  axpy_job job;
  int32_t d;
  (void)nargs;
  (void)nouts;

  if (!is_f32(x->dtype) || !is_f32(y->dtype))
    return host->set_error(VT_ERR_TYPE,
                           "[cexample::axpy] only float32 is supported, got x: (code %d, %d bits), "
                           "y: (code %d, %d bits)",
                           x->dtype.code, x->dtype.bits, y->dtype.code, y->dtype.bits);
  if (x->ndim != y->ndim)
    return host->set_error(VT_ERR_VALUE, "[cexample::axpy] x and y must have the same shape, got %d-d and %d-d",
                           x->ndim, y->ndim);
  for (d = 0; d < x->ndim; ++d)
    if (x->sizes[d] != y->sizes[d])
      return host->set_error(VT_ERR_VALUE,
                             "[cexample::axpy] x and y must have the same shape, got size %lld vs %lld at dim %d",
                             (long long)x->sizes[d], (long long)y->sizes[d], d);
  if (!is_contiguous(x) || !is_contiguous(y))
    return host->set_error(VT_ERR_VALUE, "[cexample::axpy] x and y must be contiguous (call .contiguous())");

  out = host->empty(x->sizes, x->ndim, x->dtype, x->device);
  if (!out) return VT_ERR_MEMORY; /* host->empty set the message */
  job.x = (const float*)x->data;
  job.y = (const float*)y->data;
  job.out = (float*)out->data;
  job.a = (float)args[2].v.f;
  host->parallel_for(0, x->numel, 1 << 15, axpy_range, &job);

  outs[0].tag = VT_TENSOR;
  outs[0].v.t = out;
  return VT_OK;
}

static vt_status cexample_init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "cexample::axpy(Tensor x, Tensor y, float a) -> Tensor");
  if (st != VT_OK) return st;
  return host->register_kernel(pack, "cexample::axpy", VT_CPU, "cexample", 0, axpy_cpu, NULL);
}

VT_OPPACK_DEFINE(cexample_init)
