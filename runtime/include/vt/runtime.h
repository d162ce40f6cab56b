/* vt/runtime.h — the C API of libvtrt, the vibetensor runtime, as the Python binding sees it.
 *
 * Packs never include this: they speak only vt/oppack.h and reach the runtime through the host
 * table. This header is for the cffi binding (runtime/build_binding.py mirrors it) and for
 * native tools. Functions return a status or a pointer; on failure the thread-local error is set
 * (vtrt_last_error / vtrt_last_status) and the pointer is NULL.
 */
#ifndef VT_RUNTIME_H_
#define VT_RUNTIME_H_

#include "vt/oppack.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VT_MAX_DIMS 16 /* views and kernels keep sizes/strides inline up to this rank */
#define VT_MAX_ARGS 32 /* an op's schema may have at most this many arguments */

/* ---- errors ------------------------------------------------------------------------------------ */
const char* vtrt_last_error(void);
vt_status vtrt_last_status(void);
void vtrt_clear_error(void);
void vtrt_set_error_message(vt_status status, const char* message);

/* ---- tensors ----------------------------------------------------------------------------------- */
vt_tensor* vtrt_empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device);
/* Wraps memory the runtime does not own; `deleter(ctx)` runs when the last view is gone. */
vt_tensor* vtrt_from_blob(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim,
                          vt_dtype dtype, vt_device device, void (*deleter)(void* ctx), void* ctx);
vt_tensor* vtrt_as_strided(vt_tensor* base, const int64_t* sizes, const int64_t* strides,
                           int32_t ndim, int64_t offset);
void vtrt_retain(vt_tensor* t);
void vtrt_release(vt_tensor* t);
int64_t vtrt_storage_offset(const vt_tensor* t);    /* in elements */
void* vtrt_storage_data(const vt_tensor* t);         /* start of the storage */
int64_t vtrt_storage_nbytes(const vt_tensor* t);
int32_t vtrt_is_contiguous(const vt_tensor* t);
uint64_t vtrt_version(const vt_tensor* t);           /* bumped by in-place ops (autograd checks) */
void vtrt_bump_version(vt_tensor* t);
int32_t vtrt_same_storage(const vt_tensor* a, const vt_tensor* b);
/* Copies nbytes between contiguous buffers of two tensors, across host and device. */
vt_status vtrt_copy_bytes(vt_tensor* dst, const vt_tensor* src);

/* ---- DLPack (legacy DLManagedTensor, laid out as DLPack 0.8 defines it) --------------------- */
typedef struct vt_dl_device { int32_t device_type; int32_t device_id; } vt_dl_device;
typedef struct vt_dl_tensor {
  void* data;
  vt_dl_device device;
  int32_t ndim;
  vt_dtype dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} vt_dl_tensor;
typedef struct vt_dl_managed {
  vt_dl_tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct vt_dl_managed* self);
} vt_dl_managed;
vt_dl_managed* vtrt_to_dlpack(vt_tensor* t);  /* the result keeps t alive until its deleter runs */
vt_tensor* vtrt_from_dlpack(vt_dl_managed* m); /* takes ownership of m (calls its deleter later) */

/* ---- allocators -------------------------------------------------------------------------------- */
typedef struct vtrt_alloc_stats {
  int64_t allocated;      /* bytes handed out and not yet returned */
  int64_t reserved;       /* allocated + bytes cached for reuse */
  int64_t peak_allocated; /* high-water mark of `allocated` since the last reset */
  int64_t num_allocs;     /* allocation requests served */
  int64_t num_os_allocs;  /* of which went to the system (cache misses) */
} vtrt_alloc_stats;
vt_status vtrt_alloc_stats_get(vt_device device, vtrt_alloc_stats* out);
void vtrt_alloc_reset_peak(vt_device device);
void vtrt_alloc_empty_cache(vt_device device);

/* A device allocator (the CUDA one plugs in here): allocate/free on a stream. */
typedef struct vtrt_allocator {
  void* (*alloc)(void* self, size_t nbytes, int32_t device_index, void* stream);
  void (*free)(void* self, void* ptr, size_t nbytes, int32_t device_index, void* stream);
  void* self;
} vtrt_allocator;
vt_status vtrt_set_allocator(int32_t device_type, const vtrt_allocator* allocator);

/* ---- CUDA (all fail with VT_ERR_NOT_IMPL in a build without CUDA) -------------------------- */
int32_t vtrt_cuda_device_count(void); /* 0 without CUDA or without a GPU */
vt_status vtrt_cuda_synchronize(int32_t device_index);

/* ---- ops and dispatch ------------------------------------------------------------------------ */
vt_op* vtrt_find_op(const char* name);
int32_t vtrt_op_count(void);
const char* vtrt_op_name_at(int32_t i); /* the i-th defined op's name, for listing */
const char* vtrt_op_name(const vt_op* op);
const char* vtrt_op_schema(const vt_op* op);
vt_status vtrt_check_schema(const char* schema); /* parse only: 0, or the error */
int32_t vtrt_op_defined(const vt_op* op); /* 0 once the defining pack is unloaded */

typedef struct vtrt_arg_info {
  const char* name;
  int32_t type;       /* vt_tag of the argument's type (VT_TENSOR, VT_INT, ...) */
  int32_t optional;   /* accepts None */
  int32_t kwonly;     /* after `*` in the schema */
  int32_t has_default;
  const char* default_text; /* as written in the schema, "" when none */
} vtrt_arg_info;
int32_t vtrt_op_num_args(const vt_op* op);
int32_t vtrt_op_num_outputs(const vt_op* op);
vt_status vtrt_op_arg(const vt_op* op, int32_t i, vtrt_arg_info* out);
int32_t vtrt_op_output_type(const vt_op* op, int32_t i); /* vt_tag */

/* The boxed call: missing trailing arguments take their defaults; outputs are new references. */
vt_status vtrt_call(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts);
/* Fast paths for the commonest shapes of call (one tensor output). NULL on error. */
vt_tensor* vtrt_call_t(vt_op* op, vt_tensor* a);
vt_tensor* vtrt_call_tt(vt_op* op, vt_tensor* a, vt_tensor* b);
/* (tensor, Python float / int) for ops whose second argument is a `Scalar` */
vt_tensor* vtrt_call_tf(vt_op* op, vt_tensor* a, double b);
vt_tensor* vtrt_call_ti(vt_op* op, vt_tensor* a, int64_t b);

/* Providers: which implementations an op has on a device type, best first. */
typedef struct vtrt_provider_info {
  const char* provider;
  const char* pack;
  int32_t priority;
  int32_t active;
} vtrt_provider_info;
int32_t vtrt_op_num_providers(const vt_op* op, int32_t device_type);
vt_status vtrt_op_provider(const vt_op* op, int32_t device_type, int32_t i, vtrt_provider_info* out);
/* Pin a provider (NULL: back to the best by priority). Publishes a new dispatch snapshot. */
vt_status vtrt_op_pin(vt_op* op, int32_t device_type, const char* provider);
const char* vtrt_op_pinned(const vt_op* op, int32_t device_type); /* NULL when unpinned */

/* ---- packs --------------------------------------------------------------------------------- */
typedef struct vtrt_pack vtrt_pack;
/* dlopen, ABI check, init (staged: every registration is rolled back if init fails), publish. */
vtrt_pack* vtrt_pack_load(const char* path, const char* name);
/* The same for a library the caller opened (and checked: its hash, owner, mode) as `fd`: loads
 * exactly that file, whatever happens to `path` meanwhile; `path` names it in messages and in
 * vtrt_pack_is_mapped. The caller keeps and closes fd. */
vtrt_pack* vtrt_pack_load_fd(int32_t fd, const char* path, const char* name);
/* The same, dropping the kernels init registers for the listed (device type, provider) pairs: the
 * registry's capability check found those providers unfit for this machine (docs/LAYOUT.md). */
vtrt_pack* vtrt_pack_load_fd_skipping(int32_t fd, const char* path, const char* name,
                                      const int32_t* skip_device_types,
                                      const char* const* skip_providers, int32_t nskip);
/* Removes the pack's kernels and ops at once; its code stays mapped until nothing refers to it. */
vt_status vtrt_pack_unload(vtrt_pack* pack);
int32_t vtrt_pack_is_mapped(const char* path); /* 1 while the library is still dlopen'ed */
int64_t vtrt_pack_refs(const vtrt_pack* pack);
/* One more reference that is never dropped: the pack's code stays mapped (and the descriptor
 * naming it open) for the life of the process; hot reload keeps replaced code alive with it. */
void vtrt_pack_retain(vtrt_pack* pack);
/* Hot reload: loads the library open as `fd` as the new code of the loaded pack `old` (its name)
 * and swaps it in at once. The new init runs while the old pack keeps serving; it may define the
 * old pack's ops and register its providers again, and must define exactly the `nops` ops named
 * in `ops` (its manifest's list). Then, under one hold of the registry lock, each op's dispatch
 * snapshot goes from the old kernels to the new in one atomic store: a call on another thread
 * runs one build or the other, never neither, and an op defined again with the same schema keeps
 * its handle (one with another schema is a new op: the old handle reports it unloaded). On
 * failure nothing changed and NULL is returned. On success `old` is unloaded and marked replaced
 * (CUDA graphs that captured its kernels refuse to replay), and its loaded reference is kept for
 * good: replaced code stays mapped for the life of the process. */
vtrt_pack* vtrt_pack_reload_fd(vtrt_pack* old, int32_t fd, const char* path,
                               const char* const* ops, int32_t nops,
                               const int32_t* skip_device_types,
                               const char* const* skip_providers, int32_t nskip);

/* The packs whose code something captured (a CUDA graph keeps one such set; this C API makes the
 * set and its replay-time check usable, and testable, without a GPU). Each noted pack is
 * referenced until the set is freed. check() fails (VT_ERR_RUNTIME, naming the pack and `what`)
 * when a noted pack was replaced by vtrt_pack_reload_fd since. */
typedef struct vtrt_code_uses vtrt_code_uses;
vtrt_code_uses* vtrt_code_uses_new(void);
void vtrt_code_uses_free(vtrt_code_uses* uses);
void vtrt_code_uses_note(vtrt_code_uses* uses, vtrt_pack* pack);
int32_t vtrt_code_uses_count(const vtrt_code_uses* uses);
const char* vtrt_code_uses_pack(const vtrt_code_uses* uses, int32_t i); /* its name; NULL past the end */
vt_status vtrt_code_uses_check(const vtrt_code_uses* uses, const char* what);

/* ---- autograd (see runtime/src/autograd.hpp) ----------------------------------------------- */
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

/* ---- type promotion (torch's rules; the only implementation) ----------------------------- */
vt_dtype vtrt_promote_types(vt_dtype a, vt_dtype b); /* lanes == 0 (+ error) when unsupported */
vt_dtype vtrt_result_type_scalar(vt_dtype tensor, int32_t scalar_tag); /* VT_BOOL/INT/FLOAT */

/* ---- threads and RNG ------------------------------------------------------------------------ */
void vtrt_set_num_threads(int32_t n);
int32_t vtrt_get_num_threads(void);
void vtrt_manual_seed(vt_device device, uint64_t seed);

const vt_host* vtrt_host(void);

#ifdef __cplusplus
}
#endif

#include "vt/runtime_cuda.h" /* streams, events, caching allocators, graphs (vibetensor.cuda) */
#endif /* VT_RUNTIME_H_ */
