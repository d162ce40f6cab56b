"""cffi declarations of vt/runtime_cuda.h (the CUDA runtime: devices, streams, events, caching
allocators, copies, graphs, RNG state), appended to build_binding.CDEF."""

CDEF_CUDA = r"""
int32_t vtrt_cuda_is_built(void);
const char* vtrt_cuda_unavailable_reason(void);
vt_status vtrt_cuda_set_device(int32_t device);
int32_t vtrt_cuda_current_device(void);
int32_t vtrt_cuda_exchange_device(int32_t device);
typedef struct vtrt_cuda_device_props {
  char name[256]; int32_t major; int32_t minor; int64_t total_memory; int32_t multi_processor_count;
} vtrt_cuda_device_props;
vt_status vtrt_cuda_get_device_properties(int32_t device, vtrt_cuda_device_props* out);
vt_status vtrt_cuda_mem_get_info(int32_t device, int64_t* free_bytes, int64_t* total_bytes);
vt_status vtrt_cuda_can_device_access_peer(int32_t device, int32_t peer, int32_t* out);

vt_status vtrt_cuda_stream_from_pool(int32_t device, int32_t high_priority, void** out);
void* vtrt_cuda_current_stream(int32_t device);
vt_status vtrt_cuda_set_current_stream(int32_t device, void* stream);
void* vtrt_cuda_exchange_stream(int32_t device, void* stream);
vt_status vtrt_cuda_stream_synchronize(int32_t device, void* stream);
int32_t vtrt_cuda_stream_query(int32_t device, void* stream);
vt_status vtrt_cuda_stream_wait_event(int32_t device, void* stream, void* event);
vt_status vtrt_cuda_stream_priority(void* stream, int32_t* out);
vt_status vtrt_cuda_stream_priority_range(int32_t* least, int32_t* greatest);

vt_status vtrt_cuda_event_create(int32_t device, int32_t enable_timing, int32_t blocking,
                                 int32_t interprocess, void** out);
void vtrt_cuda_event_destroy(int32_t device, void* event);
vt_status vtrt_cuda_event_record(int32_t device, void* event, void* stream);
int32_t vtrt_cuda_event_query(int32_t device, void* event);
vt_status vtrt_cuda_event_synchronize(int32_t device, void* event);
vt_status vtrt_cuda_event_elapsed_time(int32_t device, void* start, void* end, float* ms);

typedef struct vtrt_cuda_stat { int64_t current; int64_t peak; int64_t allocated; int64_t freed; } vtrt_cuda_stat;
typedef struct vtrt_cuda_memory_stats {
  vtrt_cuda_stat allocation[3]; vtrt_cuda_stat segment[3]; vtrt_cuda_stat active[3];
  vtrt_cuda_stat inactive_split[3]; vtrt_cuda_stat allocated_bytes[3];
  vtrt_cuda_stat reserved_bytes[3]; vtrt_cuda_stat active_bytes[3];
  vtrt_cuda_stat inactive_split_bytes[3]; vtrt_cuda_stat requested_bytes[3];
  int64_t num_alloc_retries; int64_t num_ooms; int64_t num_sync_all_streams;
  int64_t num_device_alloc; int64_t num_device_free; int64_t limit_bytes;
} vtrt_cuda_memory_stats;
vt_status vtrt_cuda_memory_stats_get(int32_t device, vtrt_cuda_memory_stats* out);
vt_status vtrt_cuda_reset_peak_memory_stats(int32_t device);
vt_status vtrt_cuda_reset_accumulated_memory_stats(int32_t device);
vt_status vtrt_cuda_empty_cache(int32_t device);
vt_status vtrt_cuda_set_memory_fraction(int32_t device, double fraction);
const char* vtrt_cuda_allocator_backend(void);
typedef struct vtrt_cuda_block_info {
  uint64_t segment_address; int64_t segment_size; uint64_t address; int64_t size;
  int64_t requested_size; int32_t state; int32_t small_pool; uint64_t stream; uint64_t private_pool;
} vtrt_cuda_block_info;
int64_t vtrt_cuda_memory_snapshot(int32_t device, vtrt_cuda_block_info* out, int64_t cap);
vt_status vtrt_cuda_record_stream(vt_tensor* t, void* stream);

vt_tensor* vtrt_cuda_empty_pinned(const int64_t* sizes, int32_t ndim, vt_dtype dtype);
int32_t vtrt_cuda_is_pinned(const void* ptr);
typedef struct vtrt_cuda_host_stats {
  int64_t allocated; int64_t reserved; int64_t num_host_allocs; int64_t num_allocs;
} vtrt_cuda_host_stats;
void vtrt_cuda_host_stats_get(vtrt_cuda_host_stats* out);
void vtrt_cuda_host_empty_cache(void);

typedef struct vtrt_cuda_graph vtrt_cuda_graph;
vtrt_cuda_graph* vtrt_cuda_graph_new(void);
void vtrt_cuda_graph_free(vtrt_cuda_graph* g);
uint64_t vtrt_cuda_graph_pool_handle(void);
vt_status vtrt_cuda_graph_capture_begin(vtrt_cuda_graph* g, uint64_t pool, int32_t mode);
vt_status vtrt_cuda_graph_capture_end(vtrt_cuda_graph* g);
void vtrt_cuda_graph_capture_abort(vtrt_cuda_graph* g);
vt_status vtrt_cuda_graph_replay(vtrt_cuda_graph* g);
int32_t vtrt_cuda_graph_num_packs(const vtrt_cuda_graph* g);
const char* vtrt_cuda_graph_pack(const vtrt_cuda_graph* g, int32_t i);
vt_status vtrt_cuda_graph_reset(vtrt_cuda_graph* g);
uint64_t vtrt_cuda_graph_pool(const vtrt_cuda_graph* g);
int32_t vtrt_cuda_is_current_stream_capturing(void);
vt_status vtrt_cuda_launch_floor(int32_t device, int32_t n, int32_t via_driver, double* us);

vt_status vtrt_rng_get_state(vt_device device, uint64_t* seed, uint64_t* offset);
vt_status vtrt_rng_set_state(vt_device device, uint64_t seed, uint64_t offset);
"""
