// cuda_pending.cpp — TEMPORARY weak fallbacks for the CUDA glue being written in cuda_*.cpp;
// the strong definitions there replace these at link time. Delete once they have landed.
#include "internal.hpp"

namespace vt {
__attribute__((weak)) int32_t cuda_exchange_device(int32_t) { return -1; }
__attribute__((weak)) bool cuda_capturing(vt_device) { return false; }
__attribute__((weak)) vt_status cuda_record_stream(vt_tensor*, void*) { return VT_OK; }
__attribute__((weak)) void cuda_philox_args(vt_device d, uint64_t count, vt_philox_args* out) {
  *out = vt_philox_args{};
  philox_reserve(d, count, &out->seed, &out->offset);
}
__attribute__((weak)) void philox_args(vt_device d, uint64_t count, vt_philox_args* out) {
  *out = vt_philox_args{};
  philox_reserve(d, count, &out->seed, &out->offset);
}
__attribute__((weak)) vt_status cuda_copy(void* dst, vt_device dd, const void* src, vt_device sd,
                                          size_t n, bool) {
  return cuda_memcpy(dst, dd, src, sd, n);
}
}  // namespace vt
