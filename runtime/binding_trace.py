"""cffi declarations of vt/runtime_trace.h (call provenance and tuned providers, issue 12),
appended to build_binding.CDEF."""

CDEF_TRACE = r"""
#define VTRT_TRACE_NAME ...
#define VTRT_TRACE_TENSORS ...
#define VTRT_TRACE_DIMS ...
#define VTRT_TRACE_OPTIONS ...
#define VTRT_TRACE_STR ...
#define VTRT_TRACE_INTS ...
#define VTRT_REASON_PRIORITY ...
#define VTRT_REASON_PIN ...
#define VTRT_REASON_TUNED ...
#define VTRT_REASON_FALLBACK ...
#define VTRT_REASON_META ...
typedef struct vtrt_trace_option {
  int32_t arg; int32_t tag; int64_t len;
  union { int64_t i; double f; char s[24]; int64_t ints[3]; vt_dtype dtype; vt_device device; } v;
} vtrt_trace_option;
typedef struct vtrt_trace_record {
  const vt_op* op;
  char provider[48]; char pack[48]; char declined[48];
  int32_t reason; int32_t depth; int32_t status; vt_device device;
  int64_t start_ns; int64_t end_ns; uint64_t thread;
  int32_t ntensors;
  vt_dtype dtypes[8]; int32_t ndims[8]; int64_t sizes[8][8];
  int32_t noptions; int32_t pad_;
  vtrt_trace_option options[8];
} vtrt_trace_record;
void vtrt_trace_set_enabled(int32_t on, int64_t capacity);
int32_t vtrt_trace_enabled(void);
int64_t vtrt_trace_take(vtrt_trace_record* out, int64_t max);
int64_t vtrt_trace_pending(void);
int64_t vtrt_trace_dropped(void);
int64_t vtrt_trace_now_ns(void);
vt_status vtrt_op_tune_set(vt_op* op, int32_t device_type, const vt_dtype* dtypes,
                           const int32_t* ndims, const int64_t* sizes, int32_t ntensors,
                           const vt_value* args, int32_t nargs, const char* provider);
vt_status vtrt_op_tune_clear(vt_op* op, int32_t device_type);
int32_t vtrt_op_tune_count(const vt_op* op, int32_t device_type);
uint64_t vtrt_tune_key(const vt_dtype* dtypes, const int32_t* ndims, const int64_t* sizes,
                       int32_t ntensors, const vt_value* args, int32_t nargs);
"""
