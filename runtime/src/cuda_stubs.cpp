// cuda_stubs.cpp — the CUDA glue and vtrt_cuda_* API of a build without CUDA (no nvcc found):
// counts are 0, queries say no, everything else fails with "CUDA is not available: ...".
// Compiled instead of the cuda*.cpp files.
#include <cstring>

#include "internal.hpp"

namespace vt {

namespace {
constexpr const char* kWhy = "CUDA is not available: this vibetensor was built without CUDA";
vt_status na() { return set_error(VT_ERR_RUNTIME, "%s", kWhy); }
}  // namespace

bool cuda_available() { return false; }
void install_cuda_allocator() {}
void* cuda_current_stream(vt_device) { return nullptr; }
int32_t cuda_exchange_device(int32_t) { return -1; }
bool cuda_capturing(vt_device) { return false; }
vt_status cuda_record_stream(vt_tensor*, void*) { return VT_OK; }
void cuda_philox_args(vt_device device, uint64_t count, vt_philox_args* out) {
  out->seed_ptr = out->offset_ptr = nullptr;
  out->offset_intragraph = 0;
  philox_reserve(device, count, &out->seed, &out->offset);
}
vt_status cuda_copy(void*, vt_device, const void*, vt_device, size_t, bool) { return na(); }
void cuda_note_capture(vt_device, Pack*) {}

}  // namespace vt

using vt::na;

extern "C" {
int32_t vtrt_cuda_device_count(void) { return 0; }
vt_status vtrt_cuda_synchronize(int32_t) { return na(); }
int32_t vtrt_cuda_is_built(void) { return 0; }
const char* vtrt_cuda_unavailable_reason(void) { return vt::kWhy; }
vt_status vtrt_cuda_set_device(int32_t) { return na(); }
int32_t vtrt_cuda_current_device(void) { return -1; }
int32_t vtrt_cuda_exchange_device(int32_t) { return -1; }
vt_status vtrt_cuda_get_device_properties(int32_t, vtrt_cuda_device_props*) { return na(); }
vt_status vtrt_cuda_mem_get_info(int32_t, int64_t*, int64_t*) { return na(); }
vt_status vtrt_cuda_can_device_access_peer(int32_t, int32_t, int32_t*) { return na(); }
vt_status vtrt_cuda_stream_from_pool(int32_t, int32_t, void**) { return na(); }
void* vtrt_cuda_current_stream(int32_t) { return nullptr; }
vt_status vtrt_cuda_set_current_stream(int32_t, void*) { return na(); }
void* vtrt_cuda_exchange_stream(int32_t, void*) { return nullptr; }
vt_status vtrt_cuda_stream_synchronize(int32_t, void*) { return na(); }
int32_t vtrt_cuda_stream_query(int32_t, void*) { return na(), -1; }
vt_status vtrt_cuda_stream_wait_event(int32_t, void*, void*) { return na(); }
vt_status vtrt_cuda_stream_priority(void*, int32_t*) { return na(); }
vt_status vtrt_cuda_stream_priority_range(int32_t*, int32_t*) { return na(); }
vt_status vtrt_cuda_event_create(int32_t, int32_t, int32_t, int32_t, void**) { return na(); }
void vtrt_cuda_event_destroy(int32_t, void*) {}
vt_status vtrt_cuda_event_record(int32_t, void*, void*) { return na(); }
int32_t vtrt_cuda_event_query(int32_t, void*) { return na(), -1; }
vt_status vtrt_cuda_event_synchronize(int32_t, void*) { return na(); }
vt_status vtrt_cuda_event_elapsed_time(int32_t, void*, void*, float*) { return na(); }
vt_status vtrt_cuda_memory_stats_get(int32_t, vtrt_cuda_memory_stats*) { return na(); }
vt_status vtrt_cuda_reset_peak_memory_stats(int32_t) { return na(); }
vt_status vtrt_cuda_reset_accumulated_memory_stats(int32_t) { return na(); }
vt_status vtrt_cuda_empty_cache(int32_t) { return na(); }
vt_status vtrt_cuda_set_memory_fraction(int32_t, double) { return na(); }
const char* vtrt_cuda_allocator_backend(void) { return "none"; }
int64_t vtrt_cuda_memory_snapshot(int32_t, vtrt_cuda_block_info*, int64_t) { return na(), -1; }
vt_status vtrt_cuda_record_stream(vt_tensor*, void*) { return VT_OK; }
vt_tensor* vtrt_cuda_empty_pinned(const int64_t*, int32_t, vt_dtype) { return na(), nullptr; }
int32_t vtrt_cuda_is_pinned(const void*) { return 0; }
void vtrt_cuda_host_stats_get(vtrt_cuda_host_stats* out) { std::memset(out, 0, sizeof *out); }
void vtrt_cuda_host_empty_cache(void) {}
vtrt_cuda_graph* vtrt_cuda_graph_new(void) { return na(), nullptr; }
void vtrt_cuda_graph_free(vtrt_cuda_graph*) {}
uint64_t vtrt_cuda_graph_pool_handle(void) { return 0; }
vt_status vtrt_cuda_graph_capture_begin(vtrt_cuda_graph*, uint64_t, int32_t) { return na(); }
vt_status vtrt_cuda_graph_capture_end(vtrt_cuda_graph*) { return na(); }
void vtrt_cuda_graph_capture_abort(vtrt_cuda_graph*) {}
vt_status vtrt_cuda_graph_replay(vtrt_cuda_graph*) { return na(); }
vt_status vtrt_cuda_graph_reset(vtrt_cuda_graph*) { return na(); }
uint64_t vtrt_cuda_graph_pool(const vtrt_cuda_graph*) { return 0; }
int32_t vtrt_cuda_graph_num_packs(const vtrt_cuda_graph*) { return 0; }
const char* vtrt_cuda_graph_pack(const vtrt_cuda_graph*, int32_t) { return nullptr; }
int32_t vtrt_cuda_is_current_stream_capturing(void) { return 0; }
vt_status vtrt_cuda_launch_floor(int32_t, int32_t, int32_t, double*) { return na(); }
}  // extern "C"
