// flash_emulate.hpp — the CUDA keywords and warp primitives of flash_cuda.cuh for a host build of
// the flash kernels (flash_emulate.cpp): every CUDA thread of a CTA is a std::thread; ldmatrix,
// mma.sync m16n8k16, __shfl_xor_sync and the barriers are emulated with the PTX ISA's fragment
// layouts, and cp.async copies at once. What it checks: the index arithmetic (tiles, swizzle,
// fragment layouts, masks, dropout counters, bounds). What it cannot: timing, races between
// cp.async and readers (copies here are synchronous), register pressure.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vt/oppack.h"

#include "vt/cuda/host_emulation.hpp"  // CUDA qualifiers as C++, threadIdx & co. thread-local

struct vt_philox_seed_offset {
  uint64_t seed;
  uint64_t offset;
};
inline vt_philox_seed_offset vt_philox_unpack(const vt_philox_args a) {
  return {a.seed_ptr ? *a.seed_ptr : a.seed, (a.offset_ptr ? *a.offset_ptr : a.offset) + a.offset_intragraph};
}

namespace flashcu {
using std::min;

struct EmuWarp {
  std::barrier<> bar{32};
  alignas(16) unsigned char slot[32][32];  // each lane's operands of the current collective
};
struct EmuCta {
  explicit EmuCta(int threads) : bar(threads) {}
  std::barrier<> bar;
  EmuWarp warp[8];
};
inline thread_local EmuCta* emu_cta = nullptr;
// the CTA's dynamic shared memory: exactly the launch's size, on the heap (AddressSanitizer then
// sees an access past it)
inline unsigned char* emu_smem = nullptr;
inline unsigned char* dynamic_smem() { return emu_smem; }

inline EmuWarp& emu_warp() { return emu_cta->warp[threadIdx.x / 32]; }
inline int emu_lane() { return (int)(threadIdx.x % 32); }

inline void __syncthreads() { emu_cta->bar.arrive_and_wait(); }
inline void __syncwarp() { emu_warp().bar.arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float v, int m) {
  EmuWarp& w = emu_warp();
  std::memcpy(w.slot[emu_lane()], &v, 4);
  w.bar.arrive_and_wait();
  float r;
  std::memcpy(&r, w.slot[emu_lane() ^ m], 4);
  w.bar.arrive_and_wait();
  return r;
}

inline void cp_async16(void* dst, const void* src, bool valid) {
  if (valid) std::memcpy(dst, src, 16);
  else std::memset(dst, 0, 16);
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {}

// ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i; lane l gets, of matrix i, row
// l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 (.trans: element l / 4 of rows 2 (l % 4), 2 (l % 4) + 1)
inline void emu_ldmatrix(uint32_t (&r)[4], const void* p, bool trans) {
  EmuWarp& w = emu_warp();
  const int l = emu_lane();
  std::memcpy(w.slot[l], &p, sizeof p);
  w.bar.arrive_and_wait();
  for (int i = 0; i < 4; ++i) {
    auto row = [&](int rr) {
      const void* q;
      std::memcpy(&q, w.slot[8 * i + rr], sizeof q);
      return static_cast<const uint16_t*>(q);
    };
    uint16_t lo, hi;
    if (!trans) {
      lo = row(l / 4)[2 * (l % 4)], hi = row(l / 4)[2 * (l % 4) + 1];
    } else {
      lo = row(2 * (l % 4))[l / 4], hi = row(2 * (l % 4) + 1)[l / 4];
    }
    r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  w.bar.arrive_and_wait();
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) { emu_ldmatrix(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) { emu_ldmatrix(r, p, true); }

template <class T>
inline float emu_half(uint16_t bits) {
  T v;
  std::memcpy(&v, &bits, 2);
  return static_cast<float>(v);
}

// c += a b with the m16n8k16 fragment layouts (g = lane / 4, t = lane % 4):
// a0 A[g][2t..], a1 A[g+8][2t..], a2 A[g][2t+8..], a3 A[g+8][2t+8..]; b0 B[2t..][g], b1 B[2t+8..][g];
// c0, c1 C[g][2t, 2t+1], c2, c3 C[g+8][2t, 2t+1]
template <class T>
inline void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  EmuWarp& w = emu_warp();
  const int l = emu_lane();
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  std::memcpy(w.slot[l], mine, sizeof mine);
  w.bar.arrive_and_wait();
  float A[16][16], B[16][8];
  for (int ln = 0; ln < 32; ++ln) {
    uint32_t f[6];
    std::memcpy(f, w.slot[ln], sizeof f);
    const int g = ln / 4, t = ln % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = emu_half<T>((uint16_t)(f[0] >> (16 * h)));
      A[g + 8][2 * t + h] = emu_half<T>((uint16_t)(f[1] >> (16 * h)));
      A[g][2 * t + 8 + h] = emu_half<T>((uint16_t)(f[2] >> (16 * h)));
      A[g + 8][2 * t + 8 + h] = emu_half<T>((uint16_t)(f[3] >> (16 * h)));
      B[2 * t + h][g] = emu_half<T>((uint16_t)(f[4] >> (16 * h)));
      B[2 * t + 8 + h][g] = emu_half<T>((uint16_t)(f[5] >> (16 * h)));
    }
  }
  w.bar.arrive_and_wait();
  const int g = l / 4, t = l % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >> 1) * 8, col = 2 * t + (e & 1);
    float s = 0.f;
    for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
    c[e] += s;
  }
}

// Runs kernel(params) on a grid of `blocks` CTAs of `threads` threads (one CTA at a time), with
// `smem_bytes` of dynamic shared memory poisoned with NaN first.
template <class P>
void emu_launch(void (*kernel)(P), unsigned blocks, const P& p, unsigned threads, size_t smem_bytes);

}  // namespace flashcu

