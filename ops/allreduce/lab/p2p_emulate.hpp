// p2p_emulate.hpp — what src/p2p_kernels.cuh needs from CUDA, for a host build (p2p_emulate.cpp):
// every CUDA thread is a std::thread, a CTA's barriers are a std::barrier, the system-scope
// release/acquire flags are std::atomic_ref with release/acquire order, clock64() counts
// nanoseconds. Each rank's "device memory" is a host buffer and its "peer mappings" are plain
// pointers to the other ranks' buffers, so the protocol runs as it would between GPUs: what it
// checks is the ordering (a reader that passes a flag sees the data written before it), epochs,
// timeouts and the index arithmetic; what it cannot check is timing, NVLink and IPC themselves.
#pragma once

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "vt/cuda/host_emulation.hpp"  // CUDA qualifiers as C++, threadIdx & co. thread-local

struct EmuCta {
  explicit EmuCta(int threads) : bar(threads) {}
  std::barrier<> bar;
  std::atomic<int> any[3] = {0, 0, 0};  // __syncthreads_or's rounds (a slot is reused every third)
};
inline thread_local EmuCta* emu_cta = nullptr;
inline thread_local unsigned emu_round = 0;

inline void __syncthreads() { emu_cta->bar.arrive_and_wait(); }
inline int __syncthreads_or(int v) {
  EmuCta& c = *emu_cta;
  const unsigned r = emu_round++;
  // the slot of the next round was last read two rounds ago, which every thread has finished
  if (threadIdx.x == 0) c.any[(r + 1) % 3].store(0, std::memory_order_relaxed);
  if (v) c.any[r % 3].store(1, std::memory_order_relaxed);
  c.bar.arrive_and_wait();
  return c.any[r % 3].load(std::memory_order_relaxed);
}
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline void spin_pause() { std::this_thread::yield(); }  // 2 cores, many emulated threads

// The slow-reader case (p2p_emulate.cpp): every thread of rank emu_slow_rank, after each wait it
// passes in call e, holds on until every peer has finished call e and arrived at call e + 1's start
// (its block 0's start flag here holds e + 1), then 5 ms more while the peers' other blocks copy
// call e + 1 in; or 40 ms at most where the peers cannot get there (they wait for this rank later in
// call e). So the others write call e + 1's data while this rank has yet to read call e's. The
// kernel calls this hook after every wait; on the GPU it is empty.
inline std::atomic<int> emu_slow_rank{-1};
template <class P>
void emu_after_wait(const P& p, uint32_t e) {
  if (p.rank != emu_slow_rank.load(std::memory_order_relaxed)) return;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(40);
  for (;;) {
    bool ahead = true;
    for (int q = 0; q < p.world; ++q)  // flag[block 0][slot 0: start][q]
      if (q != p.rank && (int32_t)(std::atomic_ref<uint32_t>(p.sig[p.rank]->flag[0][0][q]).load() - (e + 1)) < 0)
        ahead = false;
    if (ahead) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return;
    }
    if (std::chrono::steady_clock::now() > give_up) return;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Flags are published after a random few yields: peers then see them at varied points of their own
// progress, which explores more interleavings than the scheduler's alone.
inline void emu_jitter() {
  thread_local uint32_t s = (uint32_t)std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1u;
  s ^= s << 13, s ^= s >> 17, s ^= s << 5;
  for (uint32_t i = 0; i < (s & 3); ++i) std::this_thread::yield();
}
inline void emu_store_release(uint32_t* p, uint32_t v) {
  emu_jitter();
  std::atomic_ref<uint32_t>(*p).store(v, std::memory_order_release);
}
inline uint32_t emu_load_acquire(const uint32_t* p) {
  return std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(p)).load(std::memory_order_acquire);
}

// The threads of one rank's launch, started (not joined): grid CTAs of `threads` threads each.
template <class P>
void emu_start(std::vector<std::thread>& out, std::vector<std::unique_ptr<EmuCta>>& ctas, void (*kernel)(P),
               unsigned grid, unsigned threads, const P& p) {
  for (unsigned b = 0; b < grid; ++b) {
    ctas.push_back(std::make_unique<EmuCta>((int)threads));
    EmuCta* cta = ctas.back().get();
    for (unsigned t = 0; t < threads; ++t)
      out.emplace_back([=] {
        emu_cta = cta;
        threadIdx.x = t;
        blockIdx.x = b;
        blockDim.x = threads;
        gridDim.x = grid;
        kernel(p);
      });
  }
}
