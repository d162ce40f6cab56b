// vt/philox.h — the Philox4x32-10 counter-based generator, for CPU and CUDA kernels of any pack.
// One header for every pack, so packs that must draw the same numbers (core::dropout and the
// attention pack's fused dropout) share one convention by construction.
//
// Philox (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) maps a 64-bit key
// and a 128-bit counter to four 32-bit random words. Because element i of a random tensor is a
// pure function of (seed, counter), results are identical whatever the thread or block layout.
//
// The counter convention of this pack (keep CPU and CUDA kernels to it):
//   host->philox_reserve(device, G, &seed, &offset) reserves G counters; group g = 0..G-1 uses
//   counter (offset + g) as the low 64 bits (the high 64 bits are 0) and key = seed.
//   32-bit results (float32, and float16/bfloat16 computed in float32) take 4 elements per group:
//   element i is in group i / 4. float64 results take 2 elements per group (64 random bits each).
// Checked against the Random123 known-answer vectors in ops/core/tests_native/test_core.cpp.
#ifndef VT_PHILOX_H_
#define VT_PHILOX_H_

#include <stdint.h>

#if defined(__CUDACC__)
#define VT_PHILOX_FN __host__ __device__ __forceinline__
#else
#define VT_PHILOX_FN inline
#endif

namespace vt {
namespace philox {

struct Philox4x32 {
  uint32_t x[4];
};

VT_PHILOX_FN Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;  // the Weyl sequence bumps the key each round
    k1 += 0xBB67AE85u;
  }
  Philox4x32 r;
  r.x[0] = c0; r.x[1] = c1; r.x[2] = c2; r.x[3] = c3;
  return r;
}

// the four words of group `counter` under this pack's convention
VT_PHILOX_FN Philox4x32 philox_group(uint64_t seed, uint64_t counter) {
  return philox4x32_10((uint32_t)counter, (uint32_t)(counter >> 32), 0u, 0u, (uint32_t)seed, (uint32_t)(seed >> 32));
}

// uniform in [0, 1) with 24 / 53 random bits, and in (0, 1] for logarithms
VT_PHILOX_FN float u32_to_unit_float(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }
VT_PHILOX_FN float u32_to_unit_float_open0(uint32_t x) { return (float)((x >> 8) + 1u) * (1.0f / 16777216.0f); }
VT_PHILOX_FN double u64_to_unit_double(uint32_t lo, uint32_t hi) {
  return (double)((((uint64_t)hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}
VT_PHILOX_FN double u64_to_unit_double_open0(uint32_t lo, uint32_t hi) {
  return (double)(((((uint64_t)hi << 32) | lo) >> 11) + 1u) * (1.0 / 9007199254740992.0);
}

}  // namespace philox
}  // namespace vt

#ifdef __CUDACC__
#include "vt/oppack.h"

// Graph-safe Philox on the device. A CUDA random kernel takes the vt_philox_args that
// host->philox_args gave it *by value* and calls this in the kernel: outside graph capture it
// returns the plain (seed, offset); in a captured graph it reads them from the device memory each
// replay refreshes (plus this op's offset within the graph), so replays draw fresh numbers.
struct vt_philox_seed_offset {
  uint64_t seed;
  uint64_t offset;
};

__device__ __forceinline__ vt_philox_seed_offset vt_philox_unpack(const vt_philox_args a) {
  vt_philox_seed_offset r;
  r.seed = a.seed_ptr ? *a.seed_ptr : a.seed;
  r.offset = (a.offset_ptr ? *a.offset_ptr : a.offset) + a.offset_intragraph;
  return r;
}
#endif  // __CUDACC__

#endif  // VT_PHILOX_H_
