"""Generates the C source of the cffi binding `vibetensor.runtime._vtrt_cffi` (API / out-of-line
mode). CMake runs this at build time and compiles the result against libvtrt, so a mismatch between
the declarations below and vt/oppack.h / vt/runtime.h is a compile error, not a silent crash.

    python build_binding.py OUT.c
"""
import sys

import cffi

sys.path.insert(0, __import__("os").path.dirname(__file__))  # binding_cuda.py lives next to us
from binding_cuda import CDEF_CUDA  # noqa: E402
from binding_trace import CDEF_TRACE  # noqa: E402

CDEF = r"""
#define VT_ABI_MAJOR ...
#define VT_ABI_MINOR ...
#define VT_MAX_DIMS ...
typedef int32_t vt_status;
typedef struct vt_dtype { uint8_t code; uint8_t bits; uint16_t lanes; } vt_dtype;
typedef struct vt_device { int32_t type; int32_t index; } vt_device;
typedef struct vt_tensor {
  void* data; const int64_t* sizes; const int64_t* strides; int64_t numel; int32_t ndim;
  vt_dtype dtype; vt_device device; ...;
} vt_tensor;
typedef struct vt_int_list { const int64_t* data; int64_t len; } vt_int_list;
typedef struct vt_tensor_list { vt_tensor** data; int64_t len; } vt_tensor_list;
typedef struct vt_value {
  int32_t tag;
  union { vt_tensor* t; int64_t i; double f; int64_t b; vt_int_list ints; vt_tensor_list ts;
          const char* s;
          vt_dtype dtype; vt_device device; } v;
} vt_value;
typedef struct vt_op vt_op;
typedef struct vt_host vt_host;

const char* vtrt_last_error(void);
vt_status vtrt_last_status(void);
void vtrt_clear_error(void);
void vtrt_set_error_message(vt_status status, const char* message);

vt_tensor* vtrt_empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device);
vt_tensor* vtrt_from_blob(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim,
                          vt_dtype dtype, vt_device device, void (*deleter)(void* ctx), void* ctx);
vt_tensor* vtrt_as_strided(vt_tensor* base, const int64_t* sizes, const int64_t* strides,
                           int32_t ndim, int64_t offset);
void vtrt_retain(vt_tensor* t);
void vtrt_release(vt_tensor* t);
int64_t vtrt_storage_offset(const vt_tensor* t);
void* vtrt_storage_data(const vt_tensor* t);
int64_t vtrt_storage_nbytes(const vt_tensor* t);
int32_t vtrt_is_contiguous(const vt_tensor* t);
uint64_t vtrt_version(const vt_tensor* t);
void vtrt_bump_version(vt_tensor* t);
int32_t vtrt_same_storage(const vt_tensor* a, const vt_tensor* b);
vt_status vtrt_copy_bytes(vt_tensor* dst, const vt_tensor* src);

typedef struct vt_dl_managed vt_dl_managed;
vt_dl_managed* vtrt_to_dlpack(vt_tensor* t);
vt_tensor* vtrt_from_dlpack(vt_dl_managed* m);

typedef struct vtrt_alloc_stats {
  int64_t allocated; int64_t reserved; int64_t peak_allocated; int64_t num_allocs;
  int64_t num_os_allocs;
} vtrt_alloc_stats;
vt_status vtrt_alloc_stats_get(vt_device device, vtrt_alloc_stats* out);
void vtrt_alloc_reset_peak(vt_device device);
void vtrt_alloc_empty_cache(vt_device device);

int32_t vtrt_cuda_device_count(void);
vt_status vtrt_cuda_synchronize(int32_t device_index);

vt_dtype vtrt_promote_types(vt_dtype a, vt_dtype b);
vt_dtype vtrt_result_type_scalar(vt_dtype tensor, int32_t scalar_tag);

vt_op* vtrt_find_op(const char* name);
int32_t vtrt_op_count(void);
const char* vtrt_op_name_at(int32_t i);
const char* vtrt_op_name(const vt_op* op);
const char* vtrt_op_schema(const vt_op* op);
vt_status vtrt_check_schema(const char* schema); /* parse only: 0, or the error */
int32_t vtrt_op_defined(const vt_op* op);
typedef struct vtrt_arg_info {
  const char* name; int32_t type; int32_t optional; int32_t kwonly; int32_t has_default;
  const char* default_text;
} vtrt_arg_info;
int32_t vtrt_op_num_args(const vt_op* op);
int32_t vtrt_op_num_outputs(const vt_op* op);
vt_status vtrt_op_arg(const vt_op* op, int32_t i, vtrt_arg_info* out);
int32_t vtrt_op_output_type(const vt_op* op, int32_t i);
vt_status vtrt_call(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts);
vt_tensor* vtrt_call_t(vt_op* op, vt_tensor* a);
vt_tensor* vtrt_call_tt(vt_op* op, vt_tensor* a, vt_tensor* b);
vt_tensor* vtrt_call_tf(vt_op* op, vt_tensor* a, double b);
vt_tensor* vtrt_call_ti(vt_op* op, vt_tensor* a, int64_t b);

typedef struct vtrt_provider_info {
  const char* provider; const char* pack; int32_t priority; int32_t active;
} vtrt_provider_info;
int32_t vtrt_op_num_providers(const vt_op* op, int32_t device_type);
vt_status vtrt_op_provider(const vt_op* op, int32_t device_type, int32_t i, vtrt_provider_info* out);
vt_status vtrt_op_pin(vt_op* op, int32_t device_type, const char* provider);
const char* vtrt_op_pinned(const vt_op* op, int32_t device_type);

typedef struct vtrt_pack vtrt_pack;
vtrt_pack* vtrt_pack_load(const char* path, const char* name);
vtrt_pack* vtrt_pack_load_fd(int32_t fd, const char* path, const char* name);
vtrt_pack* vtrt_pack_load_fd_skipping(int32_t fd, const char* path, const char* name,
                                      const int32_t* skip_device_types,
                                      const char* const* skip_providers, int32_t nskip);
vt_status vtrt_pack_unload(vtrt_pack* pack);
int32_t vtrt_pack_is_mapped(const char* path);
int64_t vtrt_pack_refs(const vtrt_pack* pack);
void vtrt_pack_retain(vtrt_pack* pack);
vtrt_pack* vtrt_pack_reload_fd(vtrt_pack* old, int32_t fd, const char* path,
                               const char* const* ops, int32_t nops,
                               const int32_t* skip_device_types,
                               const char* const* skip_providers, int32_t nskip);
typedef struct vtrt_code_uses vtrt_code_uses;
vtrt_code_uses* vtrt_code_uses_new(void);
void vtrt_code_uses_free(vtrt_code_uses* uses);
void vtrt_code_uses_note(vtrt_code_uses* uses, vtrt_pack* pack);
int32_t vtrt_code_uses_count(const vtrt_code_uses* uses);
const char* vtrt_code_uses_pack(const vtrt_code_uses* uses, int32_t i);
vt_status vtrt_code_uses_check(const vtrt_code_uses* uses, const char* what);

int32_t vtrt_is_grad_enabled(void);
void vtrt_set_grad_enabled(int32_t on);
int32_t vtrt_requires_grad(vt_tensor* t);
vt_status vtrt_set_requires_grad(vt_tensor* t, int32_t on);
int32_t vtrt_is_leaf(vt_tensor* t);
vt_tensor* vtrt_grad(vt_tensor* t);                   /* new reference, NULL when none */
vt_status vtrt_set_grad(vt_tensor* t, vt_tensor* g);  /* g may be NULL (clears) */
const char* vtrt_grad_fn_name(vt_tensor* t);          /* "" for leaves */
vt_tensor* vtrt_detach(vt_tensor* t);                 /* same storage, no history */
typedef vt_status (*vtrt_hook_fn)(void* ctx, vt_tensor* grad, vt_tensor** replacement);
vt_status vtrt_register_hook(vt_tensor* t, vtrt_hook_fn fn, void* ctx, void (*release)(void* ctx));
vt_status vtrt_retain_grad(vt_tensor* t);
typedef vt_status (*vtrt_custom_backward_fn)(void* ctx, vt_tensor* const* grad_outs, int32_t nouts,
                                             vt_tensor** grad_ins, int32_t nins);
vt_status vtrt_record_custom(vt_tensor* const* inputs, int32_t nin, vt_tensor* const* outputs,
                             int32_t nout, vtrt_custom_backward_fn fn, void* ctx,
                             void (*release)(void* ctx), const char* name);
/* n views of self along dim, of the given sizes (summing to its size there); their backward is one
   cat of the pieces' gradients. outs receives n new references. */
vt_status vtrt_split(vt_tensor* self, const int64_t* sizes, int32_t n, int64_t dim, vt_tensor** outs);
vt_status vtrt_backward(vt_tensor* const* roots, vt_tensor* const* grads, int32_t n,
                        int32_t retain_graph, int32_t create_graph, vt_tensor* const* inputs,
                        int32_t ninputs, vt_tensor** out_grads);
void vtrt_set_num_threads(int32_t n);
int32_t vtrt_get_num_threads(void);
void vtrt_manual_seed(vt_device device, uint64_t seed);
const vt_host* vtrt_host(void);

/* defined in the binding's own C source below */
extern "Python" void vt_py_release(void* ctx);
extern "Python" vt_status vt_py_hook(void* ctx, vt_tensor* grad, vt_tensor** replacement);
extern "Python" vt_status vt_py_function_backward(void* ctx, vt_tensor* const* grad_outs,
                                                  int32_t nouts, vt_tensor** grad_ins, int32_t nins);
extern "Python" void vt_py_release_callback(void* ctx);
void* vt_py_capsule_destructor(void);
"""

SOURCE = r"""
#include "vt/runtime.h"
#include "vt/runtime_trace.h"

/* DLPack capsules: when a "dltensor" capsule is destroyed without having been consumed, the
 * producer must free the managed tensor. This needs Python's C API, which libvtrt avoids. */
static void vt_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    vt_dl_managed* m = (vt_dl_managed*)PyCapsule_GetPointer(capsule, "dltensor");
    if (m && m->deleter) m->deleter(m);
  }
}
static void* vt_py_capsule_destructor(void) { return (void*)vt_capsule_destructor; }
"""


def main(out: str) -> None:
    ffi = cffi.FFI()
    ffi.cdef(CDEF + CDEF_CUDA + CDEF_TRACE)
    ffi.set_source("vibetensor.runtime._vtrt_cffi", SOURCE)
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main(sys.argv[1])
