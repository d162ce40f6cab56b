/* vt/runtime_cuda.h — libvtrt's CUDA runtime as Python's `vibetensor.cuda` sees it: devices,
 * streams, events, the caching allocators (device and pinned host), copies, graphs, RNG state.
 * Included by vt/runtime.h. In a build without CUDA, or on a machine without a GPU, every function
 * exists: counts are 0, queries say "no", and the rest fail with VT_ERR_RUNTIME and the message
 * "CUDA is not available: <why>" (vtrt_cuda_unavailable_reason()).
 *
 * Handles are the CUDA ones as void*: a stream is a cudaStream_t (NULL = the device's legacy
 * default stream), an event a cudaEvent_t. `device` is always a CUDA ordinal. */
#ifndef VT_RUNTIME_CUDA_H_
#define VT_RUNTIME_CUDA_H_

#include "vt/oppack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- devices ------------------------------------------------------------------------------------ */
int32_t vtrt_cuda_is_built(void);                /* 1 when compiled with CUDA */
const char* vtrt_cuda_unavailable_reason(void);  /* "" when a GPU is usable */
vt_status vtrt_cuda_set_device(int32_t device);
int32_t vtrt_cuda_current_device(void);          /* -1 without CUDA */
int32_t vtrt_cuda_exchange_device(int32_t device); /* returns the previous; -1 without CUDA */
typedef struct vtrt_cuda_device_props {
  char name[256];
  int32_t major, minor;
  int64_t total_memory;
  int32_t multi_processor_count;
} vtrt_cuda_device_props;
vt_status vtrt_cuda_get_device_properties(int32_t device, vtrt_cuda_device_props* out);
vt_status vtrt_cuda_mem_get_info(int32_t device, int64_t* free_bytes, int64_t* total_bytes);
vt_status vtrt_cuda_can_device_access_peer(int32_t device, int32_t peer, int32_t* out);

/* ---- streams (per-thread current stream per device) ------------------------------------------- */
vt_status vtrt_cuda_stream_from_pool(int32_t device, int32_t high_priority, void** out);
void* vtrt_cuda_current_stream(int32_t device);
vt_status vtrt_cuda_set_current_stream(int32_t device, void* stream);
void* vtrt_cuda_exchange_stream(int32_t device, void* stream); /* returns the previous one */
vt_status vtrt_cuda_stream_synchronize(int32_t device, void* stream);
int32_t vtrt_cuda_stream_query(int32_t device, void* stream); /* 1 done, 0 busy, -1 error */
vt_status vtrt_cuda_stream_wait_event(int32_t device, void* stream, void* event);
vt_status vtrt_cuda_stream_priority(void* stream, int32_t* out);
vt_status vtrt_cuda_stream_priority_range(int32_t* least, int32_t* greatest);

/* ---- events -------------------------------------------------------------------------------------- */
vt_status vtrt_cuda_event_create(int32_t device, int32_t enable_timing, int32_t blocking,
                                 int32_t interprocess, void** out);
void vtrt_cuda_event_destroy(int32_t device, void* event);
vt_status vtrt_cuda_event_record(int32_t device, void* event, void* stream);
int32_t vtrt_cuda_event_query(int32_t device, void* event); /* 1 done, 0 busy, -1 error */
vt_status vtrt_cuda_event_synchronize(int32_t device, void* event);
vt_status vtrt_cuda_event_elapsed_time(int32_t device, void* start, void* end, float* ms);

/* ---- the device caching allocator ----------------------------------------------------------------
 * Stats come as torch's: each has current/peak/allocated/freed, for all blocks and for the small
 * (<= 1 MiB) and large pools (index 0, 1, 2). */
typedef struct vtrt_cuda_stat { int64_t current, peak, allocated, freed; } vtrt_cuda_stat;
typedef struct vtrt_cuda_memory_stats {
  vtrt_cuda_stat allocation[3];           /* blocks handed out */
  vtrt_cuda_stat segment[3];              /* cudaMalloc'ed segments */
  vtrt_cuda_stat active[3];               /* allocated, or freed with stream work pending */
  vtrt_cuda_stat inactive_split[3];       /* free pieces of split segments */
  vtrt_cuda_stat allocated_bytes[3];
  vtrt_cuda_stat reserved_bytes[3];
  vtrt_cuda_stat active_bytes[3];
  vtrt_cuda_stat inactive_split_bytes[3];
  vtrt_cuda_stat requested_bytes[3];      /* as asked for, before rounding */
  int64_t num_alloc_retries;              /* cudaMalloc failed, cache freed, retried */
  int64_t num_ooms;
  int64_t num_sync_all_streams;           /* all pending events waited for (OOM, empty_cache) */
  int64_t num_device_alloc, num_device_free; /* cudaMalloc / cudaFree calls */
  int64_t limit_bytes;                    /* the per-process cap; 0 = none */
} vtrt_cuda_memory_stats;
vt_status vtrt_cuda_memory_stats_get(int32_t device, vtrt_cuda_memory_stats* out);
vt_status vtrt_cuda_reset_peak_memory_stats(int32_t device);
vt_status vtrt_cuda_reset_accumulated_memory_stats(int32_t device);
vt_status vtrt_cuda_empty_cache(int32_t device);
vt_status vtrt_cuda_set_memory_fraction(int32_t device, double fraction);
const char* vtrt_cuda_allocator_backend(void); /* "native" or "cudaMallocAsync" */

typedef struct vtrt_cuda_block_info {
  uint64_t segment_address;
  int64_t segment_size;
  uint64_t address;
  int64_t size;
  int64_t requested_size;
  int32_t state;         /* 0 free, 1 allocated, 2 freed but waiting for stream work (events) */
  int32_t small_pool;
  uint64_t stream;
  uint64_t private_pool; /* 0: the device's pools; else a graph pool id */
} vtrt_cuda_block_info;
/* Writes up to `cap` blocks, segment by segment in address order; returns how many exist (-1 on
 * error), so a caller can size its buffer and ask again. */
int64_t vtrt_cuda_memory_snapshot(int32_t device, vtrt_cuda_block_info* out, int64_t cap);

/* t's memory (a CUDA tensor, or a pinned host tensor) is in use on `stream` until the work queued
 * there now completes: the caching allocator will not reuse it earlier. */
vt_status vtrt_cuda_record_stream(vt_tensor* t, void* stream);

/* ---- pinned host memory and copies ----------------------------------------------------------- */
/* A cpu tensor in page-locked memory from the cached pinned allocator (vt.Tensor.pin_memory). */
vt_tensor* vtrt_cuda_empty_pinned(const int64_t* sizes, int32_t ndim, vt_dtype dtype);
int32_t vtrt_cuda_is_pinned(const void* ptr);
typedef struct vtrt_cuda_host_stats { int64_t allocated, reserved, num_host_allocs, num_allocs; } vtrt_cuda_host_stats;
void vtrt_cuda_host_stats_get(vtrt_cuda_host_stats* out);
void vtrt_cuda_host_empty_cache(void);

/* ---- CUDA graphs ---------------------------------------------------------------------------------- */
typedef struct vtrt_cuda_graph vtrt_cuda_graph;
vtrt_cuda_graph* vtrt_cuda_graph_new(void);
void vtrt_cuda_graph_free(vtrt_cuda_graph* g);
uint64_t vtrt_cuda_graph_pool_handle(void); /* a fresh private-pool id to share between graphs */
/* mode: 0 global, 1 thread_local, 2 relaxed (cudaStreamCaptureMode*); pool 0: a new one */
vt_status vtrt_cuda_graph_capture_begin(vtrt_cuda_graph* g, uint64_t pool, int32_t mode);
vt_status vtrt_cuda_graph_capture_end(vtrt_cuda_graph* g);
/* Ends a capture that failed and forgets it (after an exception inside `with graph(g)`). */
void vtrt_cuda_graph_capture_abort(vtrt_cuda_graph* g);
/* Fails (VT_ERR_RUNTIME, naming the pack) when a pack whose kernels the capture ran was reloaded
 * since (vtrt_pack_reload_fd): the graph would run the old code; capture again. */
vt_status vtrt_cuda_graph_replay(vtrt_cuda_graph* g);
/* The packs whose kernels the capture ran (by name; NULL past the end). The graph references them
 * until reset or freed, so their code stays mapped even after vt.ops.unload. */
int32_t vtrt_cuda_graph_num_packs(const vtrt_cuda_graph* g);
const char* vtrt_cuda_graph_pack(const vtrt_cuda_graph* g, int32_t i);
vt_status vtrt_cuda_graph_reset(vtrt_cuda_graph* g);
uint64_t vtrt_cuda_graph_pool(const vtrt_cuda_graph* g);
int32_t vtrt_cuda_is_current_stream_capturing(void);

/* host microseconds per launch of an empty kernel on the current stream (benchmarks only); via_driver:
   through the driver's cuLaunchKernel instead of the runtime's launch */
vt_status vtrt_cuda_launch_floor(int32_t device, int32_t n, int32_t via_driver, double* us);

/* ---- RNG state of any device (Philox seed and offset) --------------------------------------- */
vt_status vtrt_rng_get_state(vt_device device, uint64_t* seed, uint64_t* offset);
vt_status vtrt_rng_set_state(vt_device device, uint64_t seed, uint64_t offset);

#ifdef __cplusplus
}
#endif
#endif /* VT_RUNTIME_CUDA_H_ */
