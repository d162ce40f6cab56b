// rowwise_emulate.hpp — what rowwise.cuh takes from CUDA and the vt headers, for a host build of the
// row kernels (rowwise_emulate.cpp, with -DVT_ROWWISE_EMULATE): every CUDA thread of a block is a
// std::thread, __shfl_xor_sync and __syncthreads are barriers over the warp's or block's threads,
// block_reduce and RowGroup's exchanges go through per-block buffers. The 16-bit types and their
// conversions are the toolkit's host versions. What it checks: the plan, the slot/lane/row index
// arithmetic, tails, dead rows and groups, the reductions' combination (a real race between
// threads, e.g. an exchange buffer reused too early, can show as a wrong value). What it cannot:
// timing, register pressure, what ptxas makes of the code (the VIMNMX miscompile noted in
// rowwise.cuh was a ptxas one).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <barrier>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "vt/cuda/host_emulation.hpp"  // CUDA qualifiers as C++, threadIdx & co. thread-local

// one block's shared state: a barrier for the block and one per warp, each lane's shuffle operand,
// and block_reduce's slots
struct EmuBlock {
  explicit EmuBlock(int threads) : bar(threads), nwarps((threads + 31) / 32) {
    for (int w = 0; w < nwarps; ++w) warp_bar[w] = std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w));
  }
  std::barrier<> bar;
  int nwarps;
  std::unique_ptr<std::barrier<>> warp_bar[32];
  alignas(16) unsigned char lane_val[1024][8];
  alignas(16) unsigned char reduce_slots[32][8];
  alignas(16) unsigned char exchange[2][32 * 16];  // rowwise::RowGroup's two buffers
  alignas(16) unsigned char pipe[40 * 1024];       // rowwise::RowPipe's two row buffers (pipe_bytes <= 40 KB)
  alignas(16) unsigned char columns[2 * 256 * 64];  // rowwise::column_buffer (2 * kColumnBytes)
};
inline thread_local EmuBlock* emu_block = nullptr;

inline void __syncthreads() { emu_block->bar.arrive_and_wait(); }

// a launch on the host: one std::thread per CUDA thread of a block, running the blocks one after
// another (a barrier after each: the next block reuses the shared buffers)
template <class... P, class... Args>
void emu_launch(void (*kernel)(P...), unsigned blocks, unsigned threads, Args... args) {
  EmuBlock blk((int)threads);
  std::vector<std::thread> ts;
  ts.reserve(threads);
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      threadIdx.x = t;
      blockDim.x = threads;
      gridDim.x = blocks;
      emu_block = &blk;
      for (unsigned b = 0; b < blocks; ++b) {
        blockIdx.x = b;
        kernel(args...);
        blk.bar.arrive_and_wait();
      }
    });
  for (auto& th : ts) th.join();
}

template <class U>
inline U __shfl_xor_sync(unsigned, U v, int m) {
  static_assert(sizeof(U) <= 8, "emulated shuffles take up to 8 bytes");
  const unsigned t = threadIdx.x, base = t & ~31u;
  std::barrier<>& b = *emu_block->warp_bar[t / 32];
  std::memcpy(emu_block->lane_val[t], &v, sizeof(U));
  b.arrive_and_wait();
  U r;
  std::memcpy(&r, emu_block->lane_val[base + ((t - base) ^ (unsigned)m)], sizeof(U));
  b.arrive_and_wait();
  return r;
}

inline float __uint_as_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline double __hiloint2double(int hi, int lo) {
  const uint64_t b = (uint64_t)(uint32_t)hi << 32 | (uint32_t)lo;
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}
inline int __double2loint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)b; }
inline int __double2hiint(double d) { uint64_t b; std::memcpy(&b, &d, 8); return (int)(uint32_t)(b >> 32); }
inline float __expf(float x) { return std::exp(x); }

// the vt pieces rowwise.cuh uses
#define VT_ERR_NOT_IMPL 1
namespace vt {
struct Call {
  [[noreturn]] void fail(int, const char* fmt, ...) const {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    throw std::runtime_error(buf);
  }
};
namespace cuda {
template <class T>
using acc_t = typename std::conditional<std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value,
                                        float, T>::type;
struct Sum {
  template <class T> T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <class T> T operator()(T a, T b) const { return (a > b || a != a) ? a : b; }
};
// vt/cuda/reduce.cuh's order: each warp's shuffle tree, then the warps' results by every warp
template <class T, class Op>
T block_reduce(T v, Op op, T identity) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) std::memcpy(emu_block->reduce_slots[warp], &v, sizeof(T));
  __syncthreads();
  T s = identity;
  if (lane < emu_block->nwarps) std::memcpy(&s, emu_block->reduce_slots[lane], sizeof(T));
  for (int o = 16; o > 0; o >>= 1) s = op(s, __shfl_xor_sync(0xffffffffu, s, o));
  return s;
}
}  // namespace cuda
}  // namespace vt
