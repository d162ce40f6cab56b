/* vt/runtime_trace.h — provenance of op calls and per-shape tuned providers (issue 12).
 *
 * Tracing: while enabled, every op call (nested calls that ops make through the host included)
 * appends one record to a process-wide buffer: which provider served it and why, the tensors'
 * dtypes and shapes, the nesting depth and the time. Python drains the buffer
 * (registry/trace.py). Disabled, a call pays one predictable branch.
 *
 * Tuned providers: per op and device type, a table from a call's key to a provider name. The key
 * is the shape bucket (every tensor argument's dtype and sizes rounded up to powers of two) and the
 * call's options (its other arguments, see vtrt_tune_key). A call whose key is in the table runs
 * that provider unless the op is pinned (pins win). registry/tune.py fills it. */
#ifndef VT_RUNTIME_TRACE_H
#define VT_RUNTIME_TRACE_H

#include "vt/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTRT_TRACE_NAME 48    /* provider and pack names are cut to 47 characters */
#define VTRT_TRACE_TENSORS 8  /* the first 8 tensor arguments are described */
#define VTRT_TRACE_DIMS 8     /* and their first 8 sizes (ndim says how many there were) */
#define VTRT_TRACE_OPTIONS 8  /* the first 8 non-tensor arguments are kept */
#define VTRT_TRACE_STR 24     /* a string argument's first 23 bytes */
#define VTRT_TRACE_INTS 3     /* an int[] argument's first 3 elements */

/* Why a call ran the provider it ran. */
enum {
  VTRT_REASON_PRIORITY = 0, /* the highest priority provider of the device */
  VTRT_REASON_PIN = 1,      /* pinned with vtrt_op_pin (vt.ops.use) */
  VTRT_REASON_TUNED = 2,    /* the tuned table's choice for the call's shape bucket */
  VTRT_REASON_FALLBACK = 3, /* the chosen provider declined (VT_ERR_NOT_IMPL): the next served */
  VTRT_REASON_META = 4      /* no provider ran: the op's meta step is its whole result */
};

/* One non-tensor argument of a traced call (None for an optional tensor included), as the
 * dispatcher saw it: after defaults were filled in and ints were widened to float arguments. */
typedef struct vtrt_trace_option {
  int32_t arg; /* its position in the schema */
  int32_t tag; /* its value's vt_tag: VT_NONE, VT_BOOL, VT_INT, VT_FLOAT, VT_STR, VT_INTS, ... */
  int64_t len; /* VT_STR: the string's bytes; VT_INTS: the list's elements (kept: the first few) */
  union {
    int64_t i;                      /* VT_BOOL (0 or 1), VT_INT */
    double f;                       /* VT_FLOAT */
    char s[VTRT_TRACE_STR];         /* VT_STR, NUL-terminated, cut to VTRT_TRACE_STR - 1 bytes */
    int64_t ints[VTRT_TRACE_INTS];  /* VT_INTS */
    vt_dtype dtype;                 /* VT_DTYPE */
    vt_device device;               /* VT_DEVICE */
  } v;
} vtrt_trace_option;

typedef struct vtrt_trace_record {
  const vt_op* op;                   /* vtrt_op_name(op) names it; ops are never freed */
  char provider[VTRT_TRACE_NAME];    /* who served ("" when the call failed before choosing) */
  char pack[VTRT_TRACE_NAME];        /* the pack of that provider */
  char declined[VTRT_TRACE_NAME];    /* reason FALLBACK: the first provider that declined */
  int32_t reason;                    /* VTRT_REASON_* */
  int32_t depth;                     /* 0 for a call from the user, 1 for a call an op made, ... */
  int32_t status;                    /* the call's vt_status */
  vt_device device;
  int64_t start_ns, end_ns;          /* steady clock (CLOCK_MONOTONIC, as time.perf_counter_ns) */
  uint64_t thread;                   /* a number per OS thread */
  int32_t ntensors;                  /* tensor arguments (list elements count one each) */
  vt_dtype dtypes[VTRT_TRACE_TENSORS];
  int32_t ndims[VTRT_TRACE_TENSORS];
  int64_t sizes[VTRT_TRACE_TENSORS][VTRT_TRACE_DIMS];
  int32_t noptions;                  /* non-tensor arguments kept in options (at most 8) */
  int32_t pad_;
  vtrt_trace_option options[VTRT_TRACE_OPTIONS];
} vtrt_trace_record;

/* Turn recording on or off. `capacity` > 0 bounds the buffer (records past it are counted in
 * vtrt_trace_dropped, not kept); 0 keeps the current bound (initially 1,000,000). */
void vtrt_trace_set_enabled(int32_t on, int64_t capacity);
int32_t vtrt_trace_enabled(void);
/* Moves up to `max` of the oldest buffered records into out; returns how many. */
int64_t vtrt_trace_take(vtrt_trace_record* out, int64_t max);
int64_t vtrt_trace_pending(void);
int64_t vtrt_trace_dropped(void); /* since the process started */
int64_t vtrt_trace_now_ns(void);

/* Tuned table. A call's key has two parts:
 *  - the shape bucket: the tensors it passes, in argument order (a Tensor[] counts each element),
 *    as dtypes, ndims and sizes (ndims[i] sizes each, concatenated in `sizes`); the runtime rounds
 *    each size up to a power of two itself (0 and 1 stay);
 *  - the options: every other argument, in argument order, as the dispatcher holds it (defaults
 *    filled in, an int widened to a float argument). `args` has one vt_value per argument of the
 *    op's schema (nargs of them); those with tag VT_TENSOR or VT_TENSORS are the tensors above and
 *    are skipped here (their pointers may be NULL). Each other one adds its position and tag, and:
 *      VT_NONE: nothing more (None, an absent optional tensor included)
 *      VT_BOOL, VT_INT: the value exactly          VT_STR: the string exactly
 *      VT_INTS: the list exactly                   VT_DTYPE: the dtype
 *      VT_DEVICE: the device type (not the index: one table serves every GPU of a type)
 *      VT_FLOAT: only whether it is zero or not (0.0 and -0.0 vs anything else): a continuous
 *        value such as a scale must not split buckets, while zero vs nonzero is what changes
 *        which providers take a call (dropout_p = 0 or not).
 * So `causal=True` and `causal=False` calls of one shape have two keys; `dropout_p` 0.1 and 0.2
 * share one, 0.0 has another. */
/* Sets the provider for the key (an op-checked vtrt_tune_key: nargs must be the schema's argument
 * count). A NULL or empty provider removes the entry. Fails when the provider has no kernel on the
 * device, or on a malformed description. */
vt_status vtrt_op_tune_set(vt_op* op, int32_t device_type, const vt_dtype* dtypes,
                           const int32_t* ndims, const int64_t* sizes, int32_t ntensors,
                           const vt_value* args, int32_t nargs, const char* provider);
/* Forget the op's tuned entries on a device type (device_type < 0: every device). */
vt_status vtrt_op_tune_clear(vt_op* op, int32_t device_type);
int32_t vtrt_op_tune_count(const vt_op* op, int32_t device_type);
/* The key (what the tables are indexed by) of the tensors and arguments described as above, for
 * tests and tools; the dispatcher computes the same from a call's arguments. */
uint64_t vtrt_tune_key(const vt_dtype* dtypes, const int32_t* ndims, const int64_t* sizes,
                       int32_t ntensors, const vt_value* args, int32_t nargs);

#ifdef __cplusplus
}
#endif

#endif /* VT_RUNTIME_TRACE_H */
