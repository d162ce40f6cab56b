// rng.cpp — the state of the counter-based (Philox) random streams, one per device.
// The runtime only hands out (seed, offset) ranges; kernels turn them into numbers, so a result
// depends on the seed and the order of calls, never on the number of threads.
#include <mutex>

#include "internal.hpp"

namespace vt {

namespace {
struct Stream {
  uint64_t seed = 0x5eed'ba5e'cafe'f00dULL;
  uint64_t offset = 0;
};
std::mutex g_rng_mu;  // taken once per random op, not per element
Stream g_streams[2][16];  // [cpu, cuda][device index]

Stream& stream_for(vt_device d) {
  int kind = d.type == VT_CUDA ? 1 : 0;
  int index = d.index >= 0 && d.index < 16 ? d.index : 0;
  return g_streams[kind][index];
}
}  // namespace

void philox_reserve(vt_device device, uint64_t count, uint64_t* seed, uint64_t* offset) {
  std::lock_guard<std::mutex> g(g_rng_mu);
  Stream& s = stream_for(device);
  *seed = s.seed;
  *offset = s.offset;
  s.offset += (count + 3) / 4 * 4;  // Philox yields 4 numbers per counter: keep ranges aligned
}

}  // namespace vt

extern "C" void vtrt_manual_seed(vt_device device, uint64_t seed) {
  std::lock_guard<std::mutex> g(vt::g_rng_mu);
  vt::Stream& s = vt::stream_for(device);
  s.seed = seed;
  s.offset = 0;
}
