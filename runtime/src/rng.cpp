// rng.cpp — the state of the counter-based (Philox) random streams, one per device.
// The runtime only hands out (seed, offset) ranges; kernels turn them into numbers, so a result
// depends on the seed and the order of calls, never on the number of threads. CUDA devices hand out
// graph-safe arguments through cuda_philox_args (cuda_graph.cpp), which ends here outside capture.
#include <mutex>

#include "device.hpp"
#include "internal.hpp"

namespace vt {

namespace {
constexpr int kMaxIndex = 64;  // device ordinals per device type
struct Stream {
  uint64_t seed = 0x5eed'ba5e'cafe'f00dULL;
  uint64_t offset = 0;
};
std::mutex g_rng_mu;  // taken once per random op, not per element
Stream g_streams[kDeviceSlots][kMaxIndex];

Stream* stream_for(vt_device d) {
  int slot = device_slot(d.type);
  if (slot < 0 || d.index < 0 || d.index >= kMaxIndex) return nullptr;
  return &g_streams[slot][d.index];
}
}  // namespace

void philox_reserve(vt_device device, uint64_t count, uint64_t* seed, uint64_t* offset) {
  std::lock_guard<std::mutex> g(g_rng_mu);
  Stream* s = stream_for(device);
  if (!s) s = &g_streams[kCpuSlot][0];  // an unknown device was refused before any kernel ran
  *seed = s->seed;
  *offset = s->offset;
  s->offset += (count + 3) / 4 * 4;  // Philox yields 4 numbers per counter: keep ranges aligned
}

// The host table's philox_args: graph-safe on CUDA, a plain (seed, offset) range elsewhere.
void philox_args(vt_device device, uint64_t count, vt_philox_args* out) {
  if (device.type == VT_CUDA) return cuda_philox_args(device, count, out);
  out->seed_ptr = out->offset_ptr = nullptr;
  out->offset_intragraph = 0;
  philox_reserve(device, count, &out->seed, &out->offset);
}

}  // namespace vt

extern "C" {

void vtrt_manual_seed(vt_device device, uint64_t seed) {
  std::lock_guard<std::mutex> g(vt::g_rng_mu);
  if (vt::Stream* s = vt::stream_for(device)) {
    s->seed = seed;
    s->offset = 0;
  }
}

vt_status vtrt_rng_get_state(vt_device device, uint64_t* seed, uint64_t* offset) {
  std::lock_guard<std::mutex> g(vt::g_rng_mu);
  vt::Stream* s = vt::stream_for(device);
  if (!s) return vt::set_error(VT_ERR_VALUE, "get_rng_state: no generator for %s",
                               vt::device_name(device).c_str());
  *seed = s->seed;
  *offset = s->offset;
  return VT_OK;
}

vt_status vtrt_rng_set_state(vt_device device, uint64_t seed, uint64_t offset) {
  std::lock_guard<std::mutex> g(vt::g_rng_mu);
  vt::Stream* s = vt::stream_for(device);
  if (!s) return vt::set_error(VT_ERR_VALUE, "set_rng_state: no generator for %s",
                               vt::device_name(device).c_str());
  if (offset % 4 != 0)
    return vt::set_error(VT_ERR_VALUE, "set_rng_state: the offset must be a multiple of 4, got %llu",
                         static_cast<unsigned long long>(offset));
  s->seed = seed;
  s->offset = offset;
  return VT_OK;
}

}  // extern "C"
