/* vt/oppack.h — the op-pack C ABI of vibetensor.
 *
 * This one header is the whole contract between the runtime (the "host") and an op pack (a
 * shared library that defines ops and/or provides kernels for them). It is plain C99 so a pack can
 * be written in C, C++, CUDA or anything that can export a C symbol. It is NOT a tensor library:
 * packs get raw views of memory and call back into the host for everything else.
 *
 * Rules (docs/ABI.md explains them at length):
 *  - A pack exports two symbols, `vt_oppack_abi_version` and `vt_oppack_init` (VT_OPPACK_DEFINE
 *    writes both). The host checks the first, then calls init once at load time.
 *  - A pack loads when its VT_ABI_MAJOR equals the host's and its VT_ABI_MINOR <= the host's.
 *  - vt_host only grows at the end; `size` says how much of it the host filled in. A pack built
 *    against a newer minor checks `size` before touching a newer field (VT_HOST_HAS).
 *  - Every function returns a vt_status; 0 is success. On failure the thread-local error message
 *    is set with host->set_error. C++ exceptions must never cross this boundary.
 *  - dtype and device codes carry DLPack's meanings, so tensors go to/from DLPack without copies.
 */
#ifndef VT_OPPACK_H_
#define VT_OPPACK_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VT_ABI_MAJOR 1
#define VT_ABI_MINOR 1

#if defined(_WIN32)
#define VT_EXPORT __declspec(dllexport)
#else
#define VT_EXPORT __attribute__((visibility("default")))
#endif
#ifdef __cplusplus
#define VT_C_EXPORT extern "C" VT_EXPORT
#else
#define VT_C_EXPORT VT_EXPORT
#endif

/* ---- status codes: each maps to one Python exception class ---------------------------------- */
typedef int32_t vt_status;
enum {
  VT_OK = 0,
  VT_ERR_RUNTIME = 1,   /* RuntimeError: a kernel failed, an invariant broke */
  VT_ERR_VALUE = 2,     /* ValueError: shapes, sizes, out-of-range values */
  VT_ERR_TYPE = 3,      /* TypeError: wrong dtype, wrong argument kind */
  VT_ERR_INDEX = 4,     /* IndexError: dim or index out of range */
  VT_ERR_NOT_IMPL = 5,  /* NotImplementedError: no kernel for this device/dtype */
  VT_ERR_MEMORY = 6,    /* MemoryError: allocation failed */
  VT_ERR_ABI = 7        /* ImportError: pack/host version mismatch, bad pack */
};

/* ---- dtypes and devices (DLPack codes) --------------------------------------------------------- */
enum { VT_DL_INT = 0, VT_DL_UINT = 1, VT_DL_FLOAT = 2, VT_DL_BFLOAT = 4, VT_DL_BOOL = 6 };

typedef struct vt_dtype {
  uint8_t code;   /* VT_DL_* */
  uint8_t bits;   /* 8, 16, 32, 64 */
  uint16_t lanes; /* always 1 here */
} vt_dtype;

/* VT_CPU and VT_CUDA are DLPack's kDLCPU and kDLCUDA. VT_META is ours (DLPack has no such device):
 * a meta tensor has sizes, strides and a dtype but no memory; ops on it run only their meta step. */
enum { VT_CPU = 1, VT_CUDA = 2, VT_META = 64 };

typedef struct vt_device {
  int32_t type;  /* VT_CPU, VT_CUDA or VT_META */
  int32_t index; /* 0 for cpu; the ordinal for cuda */
} vt_device;

/* ---- tensors --------------------------------------------------------------------------------------
 * What a kernel sees of a tensor. The runtime's own tensor object starts with exactly these fields,
 * so a vt_tensor* from the host can be read directly. Packs never write to these fields and never
 * free a tensor themselves: host->release does. `data` already includes the storage offset; strides
 * are in elements. A tensor of ndim 0 is a scalar with numel 1. */
typedef struct vt_tensor {
  void* data;
  const int64_t* sizes;
  const int64_t* strides;
  int64_t numel;
  int32_t ndim;
  vt_dtype dtype;
  vt_device device;
  /* private runtime fields follow; never touch or copy a vt_tensor by value */
} vt_tensor;

/* ---- boxed values: what kernels take and return ----------------------------------------------- */
typedef enum vt_tag {
  VT_NONE = 0,
  VT_TENSOR = 1,
  VT_INT = 2,
  VT_FLOAT = 3,
  VT_BOOL = 4,
  VT_INTS = 5,   /* int[] */
  VT_STR = 6,
  VT_DTYPE = 7,
  VT_DEVICE = 8,
  VT_TENSORS = 9, /* Tensor[] */
  VT_SCALAR = 10  /* schema type `Scalar` (ABI 1.1): the value arrives as VT_INT, VT_FLOAT or
                     VT_BOOL, keeping the Python type, so kernels and type promotion can tell
                     `x + 1` from `x + 1.0`; never a tag of a value itself */
} vt_tag;

typedef struct vt_int_list {
  const int64_t* data;
  int64_t len;
} vt_int_list;

/* Tensor[]: borrowed in arguments. In a backward rule's grad_args the host provides `data` with
 * `len` NULL slots; the rule stores a new reference (or leaves NULL) per element. */
typedef struct vt_tensor_list {
  vt_tensor** data;
  int64_t len;
} vt_tensor_list;

typedef struct vt_value {
  int32_t tag; /* vt_tag */
  int32_t pad_;
  union {
    vt_tensor* t;  /* borrowed in arguments; owned (a new reference) in outputs */
    int64_t i;
    double f;
    int64_t b;     /* bool as 0/1, widened so the union has no padding */
    vt_int_list ints;
    vt_tensor_list ts;
    const char* s;
    vt_dtype dtype;
    vt_device device;
  } v;
} vt_value;

/* ---- handles the host hands out (opaque) ------------------------------------------------------- */
typedef struct vt_pack vt_pack; /* the pack being loaded; passed to registration calls */
typedef struct vt_op vt_op;     /* an op, resolved once by name, called many times */

struct vt_host;

/* What every kernel receives besides its arguments. */
typedef struct vt_kernel_ctx {
  const struct vt_host* host;
  vt_device device; /* the device the call was dispatched to */
  void* stream;     /* cudaStream_t for VT_CUDA (NULL = the legacy default stream); NULL on cpu */
  void* user;       /* the `user` pointer given at registration */
} vt_kernel_ctx;

/* A boxed kernel. `args` are borrowed and match the op's schema (defaults filled in). The kernel
 * allocates each output through host->empty and stores it in outs[i] with tag VT_TENSOR (or
 * another tag for non-tensor outputs); the caller owns them afterwards. On error: set the message
 * with host->set_error, release any outputs already made, return a nonzero status. */
typedef vt_status (*vt_kernel_fn)(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs,
                                  vt_value* outs, int32_t nouts);

/* A backward rule, registered with its op. It receives the forward call's arguments and outputs
 * (only the tensors named in the save masks are kept alive; the others are VT_NONE here), one
 * gradient per output (VT_NONE where no gradient flowed) and fills one gradient per argument
 * (VT_NONE where the argument needs none or is not a tensor). `needs_grad[i]` says whether input i
 * wants a gradient. It computes by calling ops through host->call, so it runs on every device and
 * is itself differentiable. */
typedef vt_status (*vt_backward_fn)(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs,
                                    const vt_value* outs, int32_t nouts, const vt_value* grad_outs,
                                    const uint8_t* needs_grad, vt_value* grad_args);

typedef void (*vt_range_fn)(void* closure, int64_t begin, int64_t end);

/* ---- ABI 1.1: an op = a meta step + per-device compute --------------------------------------
 * The meta step of an op (vt_kernel_fn signature) is registered once, by the pack that defines
 * the op. It checks the arguments and makes the outputs: host->empty on ctx->device (which
 * allocates on cpu/cuda and makes a memory-less tensor on meta), a view (host->as_strided), or a
 * new reference to an argument (in-place ops). It never reads or writes tensor memory.
 * A compute function (registered per device by any provider with register_compute) gets the same
 * arguments and the outputs the meta step made, already in `outs`, and only does arithmetic into
 * them. It may replace an output with another tensor of the same shape, dtype and device
 * (it overwrites outs[i] with its new reference and does NOT release the one it got: the host
 * checks the replacement, then releases the original), e.g. a provider composed of other ops.
 * On the meta device only the meta step runs. Flags of register_meta: */
enum {
  VT_META_COMPLETE = 1 /* the meta step's outputs are the result on every device (views, ops
                          composed of other ops through host->call): no compute is needed */
};

/* Philox arguments of one random op (ABI 1.1, host->philox_args). Outside CUDA graph capture
 * seed/offset are plain values; while a graph is being captured they live in device memory
 * (seed_ptr/offset_ptr non-NULL) so each replay draws fresh numbers, and a kernel must use
 * vt_philox_unpack (vt/philox.h) on the device to get its (seed, offset). */
typedef struct vt_philox_args {
  uint64_t seed;
  uint64_t offset;
  const uint64_t* seed_ptr;   /* device pointers while capturing, else NULL */
  const uint64_t* offset_ptr;
  uint64_t offset_intragraph; /* added to *offset_ptr */
} vt_philox_args;

/* ---- the host function table --------------------------------------------------------------------
 * Append-only. Never reorder or remove a field; add new ones at the end and bump VT_ABI_MINOR. */
typedef struct vt_host {
  uint32_t size; /* sizeof(vt_host) in the host's build */
  uint16_t abi_major;
  uint16_t abi_minor;

  /* errors: sets this thread's message (printf-style) and returns `status` for convenience */
  vt_status (*set_error)(vt_status status, const char* fmt, ...);

  /* registration (only valid during vt_oppack_init) ---------------------------------------------
   * define_op: "ns::name(Tensor self, Tensor other, *, float alpha=1.0) -> Tensor". Argument types:
   * Tensor, Tensor?, Tensor[], int, int?, float, float?, bool, int[], int[]?, str, str?,
   * ScalarType?, Device?. Returns: Tensor, several as (Tensor, Tensor), or int/float/bool.
   * An op whose name ends in '_' mutates its first argument in place: the host bumps that
   * tensor's version counter after the kernel ran (autograd uses it to detect stale saves). */
  vt_status (*define_op)(vt_pack* pack, const char* schema);
  /* provide a kernel for an op (defined by this or any loaded pack) on a device type */
  vt_status (*register_kernel)(vt_pack* pack, const char* op_name, int32_t device_type,
                               const char* provider, int32_t priority, vt_kernel_fn fn,
                               void* user);
  /* attach the backward rule of an op this pack defined. Bit i of save_args / save_outs keeps
   * argument / output i alive for backward. */
  vt_status (*register_backward)(vt_pack* pack, const char* op_name, vt_backward_fn fn,
                                 uint64_t save_args, uint64_t save_outs);

  /* calling ops (from kernels and backward rules) --------------------------------------------- */
  vt_op* (*find_op)(const char* name); /* NULL (+ error set) when unknown */
  vt_status (*call)(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts);

  /* tensors ------------------------------------------------------------------------------------- */
  /* a new contiguous tensor; memory from the runtime's allocator for that device (uninitialised) */
  vt_tensor* (*empty)(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device);
  /* a view sharing `base`'s storage; offset in elements relative to base's data pointer */
  vt_tensor* (*as_strided)(vt_tensor* base, const int64_t* sizes, const int64_t* strides,
                           int32_t ndim, int64_t offset);
  void (*retain)(vt_tensor* t);
  void (*release)(vt_tensor* t);

  /* parallelism: runs fn over [begin, end) in chunks of at least `grain` on the runtime's one
   * thread pool; returns when all chunks are done. Runs inline when the range is small. */
  void (*parallel_for)(int64_t begin, int64_t end, int64_t grain, vt_range_fn fn, void* closure);
  int32_t (*num_threads)(void);

  /* random numbers: reserves `count` counter values of the device's Philox stream and returns the
   * seed and first offset; a kernel generating N numbers derives element i from (seed, offset+i),
   * so results do not depend on thread count. */
  void (*philox_reserve)(vt_device device, uint64_t count, uint64_t* seed, uint64_t* offset);

  /* CUDA (NULL-safe to call on a CPU-only host: returns NULL) ----------------------------------- */
  void* (*current_stream)(vt_device device);

  /* ---- added in ABI 1.1 (a 1.0 host refuses packs built against 1.1, so they may use these) - */
  /* the meta step of an op this pack defines (see above); flags: VT_META_* */
  vt_status (*register_meta)(vt_pack* pack, const char* op_name, vt_kernel_fn meta,
                             uint32_t flags);
  /* a compute function for an op that has (or will get, in the same init) a meta step */
  vt_status (*register_compute)(vt_pack* pack, const char* op_name, int32_t device_type,
                                const char* provider, int32_t priority, vt_kernel_fn fn,
                                void* user);
  /* torch's type promotion, the one implementation: of two dtypes, and of a tensor dtype with a
   * Python scalar of tag VT_BOOL/VT_INT/VT_FLOAT (a scalar never widens a tensor's dtype within
   * its category: int32 + 1 -> int32, float16 + 1.0 -> float16, int64 + 1.0 -> float32). */
  vt_dtype (*promote_types)(vt_dtype a, vt_dtype b);
  vt_dtype (*result_type_scalar)(vt_dtype tensor, int32_t scalar_tag);
  /* Philox state for `count` numbers on `device` (graph-safe on CUDA; see vt_philox_args) */
  void (*philox_args)(vt_device device, uint64_t count, vt_philox_args* out);
  /* makes `index` the calling thread's current CUDA device; returns the previous one (-1 when
   * CUDA is absent). The dispatcher already sets the call's device around every kernel. */
  int32_t (*cuda_exchange_device)(int32_t index);
  /* marks `t`'s memory as in use on `stream` until the work queued there now is done, so the
   * caching allocator does not hand it out again earlier (torch's Tensor.record_stream) */
  vt_status (*record_stream)(vt_tensor* t, void* stream);
  /* copies all of `src` into `dst`: both contiguous, the same number of bytes, any devices
   * (host<->device, device<->device). Ordered on the current stream of the CUDA side; with
   * non_blocking it returns before the copy is done where that is safe (pinned host memory) */
  vt_status (*copy_bytes)(vt_tensor* dst, const vt_tensor* src, int32_t non_blocking);
} vt_host;

#define VT_HOST_HAS(host, field) \
  ((host)->size >= offsetof(vt_host, field) + sizeof(((vt_host*)0)->field))

/* The pack's initialiser. Called once; registrations made before a nonzero return are all rolled
 * back by the host. During init a pack may define ops, register kernels and backward rules and
 * look ops up with find_op; it must not compute, allocate tensors, touch CUDA or start threads.
 * The host fills grad_args with VT_NONE before calling a backward rule. */
typedef vt_status (*vt_oppack_init_fn)(const vt_host* host, vt_pack* pack);
#define VT_OPPACK_INIT_SYMBOL "vt_oppack_init"
/* Packs also export their compile-time ABI version so the host can refuse before calling init. */
#define VT_OPPACK_ABI_SYMBOL "vt_oppack_abi_version"
typedef uint32_t (*vt_oppack_abi_fn)(void); /* returns (major << 16) | minor */

/* Define both exports in one line: VT_OPPACK_DEFINE(my_init) where
 * `vt_status my_init(const vt_host*, vt_pack*)` is the pack's initialiser. */
#define VT_OPPACK_DEFINE(init_fn)                                                              \
  VT_C_EXPORT uint32_t vt_oppack_abi_version(void) {                                             \
    return ((uint32_t)VT_ABI_MAJOR << 16) | (uint32_t)VT_ABI_MINOR;                            \
  }                                                                                            \
  VT_C_EXPORT vt_status vt_oppack_init(const vt_host* host, vt_pack* pack) {                     \
    return init_fn(host, pack);                                                                \
  }

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VT_OPPACK_H_ */
