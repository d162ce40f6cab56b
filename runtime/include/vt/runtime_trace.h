/* vt/runtime_trace.h — provenance of op calls and per-shape tuned providers (issue 12).
 *
 * Tracing: while enabled, every op call (nested calls that ops make through the host included)
 * appends one record to a process-wide buffer: which provider served it and why, the tensors'
 * dtypes and shapes, the nesting depth and the time. Python drains the buffer
 * (registry/trace.py). Disabled, a call pays one predictable branch.
 *
 * Tuned providers: per op and device type, a table from a shape bucket (every tensor argument's
 * dtype and sizes rounded up to powers of two) to a provider name. A call whose bucket is in the
 * table runs that provider unless the op is pinned (pins win). registry/tune.py fills it. */
#ifndef VT_RUNTIME_TRACE_H
#define VT_RUNTIME_TRACE_H

#include "vt/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTRT_TRACE_NAME 48    /* provider and pack names are cut to 47 characters */
#define VTRT_TRACE_TENSORS 8  /* the first 8 tensor arguments are described */
#define VTRT_TRACE_DIMS 8     /* and their first 8 sizes (ndim says how many there were) */

/* Why a call ran the provider it ran. */
enum {
  VTRT_REASON_PRIORITY = 0, /* the highest priority provider of the device */
  VTRT_REASON_PIN = 1,      /* pinned with vtrt_op_pin (vt.ops.use) */
  VTRT_REASON_TUNED = 2,    /* the tuned table's choice for the call's shape bucket */
  VTRT_REASON_FALLBACK = 3, /* the chosen provider declined (VT_ERR_NOT_IMPL): the next served */
  VTRT_REASON_META = 4      /* no provider ran: the op's meta step is its whole result */
};

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

/* Tuned table. The bucket is given by the tensors a call would pass, in argument order (ndims[i]
 * sizes each, concatenated in `sizes`); the runtime rounds them to powers of two itself. A NULL
 * or empty provider removes the entry. Fails when the provider has no kernel on the device. */
vt_status vtrt_op_tune_set(vt_op* op, int32_t device_type, const vt_dtype* dtypes,
                           const int32_t* ndims, const int64_t* sizes, int32_t ntensors,
                           const char* provider);
/* Forget the op's tuned entries on a device type (device_type < 0: every device). */
vt_status vtrt_op_tune_clear(vt_op* op, int32_t device_type);
int32_t vtrt_op_tune_count(const vt_op* op, int32_t device_type);
/* The shape bucket's key (what the tables are indexed by), for tests and tools. */
uint64_t vtrt_tune_key(const vt_dtype* dtypes, const int32_t* ndims, const int64_t* sizes,
                       int32_t ntensors);

#ifdef __cplusplus
}
#endif

#endif /* VT_RUNTIME_TRACE_H */
