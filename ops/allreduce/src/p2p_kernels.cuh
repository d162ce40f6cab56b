// p2p_kernels.cuh — the device side of the `p2p` provider: one all-reduce kernel over buffers that
// every rank of one node maps through CUDA IPC (p2p.cu opens them), in four algorithms:
//   one-shot  copy in; barrier; every rank reduces all W buffers (rank order) into its output.
//             Least latency (1 barrier), W-fold reads: small messages.
//   two-shot  copy in; barrier; rank r reduces slice r of all buffers into its own buffer; barrier;
//             every rank gathers the W reduced slices. Medium messages.
//   ring      copy in; barrier; W-1 reduce-scatter steps (rank r pulls a segment from its left
//             neighbour and adds it to its own: the reduce-and-forward) and W-1 all-gather steps
//             (pulls a finished segment), each gated by a flag the left neighbour set.
//             Every byte crosses one link once per step: large messages.
//   push      (two ranks only; their default above 8 MiB) two-shot with remote writes instead of
//             remote reads: each rank writes the peer's half of its tensor into the peer's buffer
//             (no copy-in); barrier; rank r reduces half r from its tensor and that buffer, writes
//             it to its tensor and into the peer's all-gather region; barrier; copies the peer's
//             half from its own all-gather region. NVLink writes are posted, reads wait a round
//             trip: NCCL moves data this way.
// All data moves in 16-byte packs (Pack<T>: 4 fp32 / 8 bf16 / 8 fp16 lanes, loaded and stored as
// one vector); 16-bit floats are combined in float. Each CTA (block b) only ever touches its own
// share of every segment, and the same b on every rank has the same share, so block b of rank r
// synchronises with block b of the peers only: no grid-wide barrier.
//
// Synchronisation (notes/allocator-graphs-allreduce.md: vLLM's custom all-reduce and its pitfalls):
// rank r tells peer q "block b reached slot s of call e" by a system-scope release store of e into
// q's flag[b][s][r]; q waits with system-scope acquire loads of its own memory (local spinning).
// e is the rank's call counter (every launch, so every piece of a long message, is one call), kept
// in device memory and bumped by the kernel itself, so a captured CUDA graph replays with fresh
// epochs and back-to-back calls never mistake an old flag for a new one (flags only grow; compared
// by signed difference). Each block keeps its own copy of the counter (epoch[b]: no block reads a
// word another block of the same launch writes); the last block also bumps the copies of blocks the
// launch left out, so all copies stay equal and every block of every rank agrees on e.
// A wait that spins past `timeout` clock64 cycles writes an error code into the rank's signal area
// and into host-mapped memory, and the kernel returns: the host raises on its next call instead of
// hanging; every later kernel of the group sees the error (in device memory: no PCIe read per call)
// and returns at once.
//
// No closing barrier: the buffers alternate by call parity. Every rank has two sets of regions (acc
// and out, parity 0 and 1), and call e reads and writes, in every rank's buffer, only those of
// parity e % 2 (copy-in, remote reads, push's remote writes into the peer, the ring's forwarding).
// A region call e uses is next written by call e + 2 (by any rank). A rank runs call e + 2 only
// after its call e + 1 kernel has finished (one stream: a rank's kernels run in order), and in
// that kernel block 0 passed the start barrier, which needs every peer's call e + 1 kernel to have
// started, so every peer's call e kernel — its reads after its last barrier included — has finished.
// Kernel boundaries and the release/acquire chain order those reads before the overwrite. Flags:
// a peer can be at most one call ahead (call e + 1's start needs this rank there), so it may store
// e + 1 into a flag this rank still waits on for e; the wait takes any value >= e.
// The cost: 4 regions of buffer_bytes a rank instead of 2 (p2p.cu), and calls of one group must
// be ordered on the device (one stream, or streams joined by events), as they already had to be.
//
// Built two ways: by nvcc for the GPU (p2p.cu), and as host C++ with P2P_EMULATE defined
// (ops/allreduce/lab/p2p_emulate.cpp: every CUDA thread a std::thread, flags std::atomic_ref with
// acquire/release) so the protocol and index arithmetic are tested without a GPU.
#pragma once

#include <cstdint>

#ifdef P2P_EMULATE
#include "p2p_emulate.hpp"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
__device__ __forceinline__ void spin_pause() {}
template <class P>
__device__ __forceinline__ void emu_after_wait(const P&, uint32_t) {}  // the emulation's slow-reader hook
#endif
#ifdef P2P_EMULATE
#define P2P_UNROLL
#else
#define P2P_UNROLL _Pragma("unroll")
#endif

namespace p2p {

constexpr int kMaxRanks = 16;                        // peers one kernel addresses (one node)
constexpr int kMaxBlocks = 64;                       // CTAs of one launch at most
// flag slots (compile-time, so the same on every rank); ring step s uses kSlotRing + s. No closing
// barrier, so no slot for it (the regions alternate by call parity instead: top of file).
constexpr int kSlotStart = 0, kSlotMid = 1, kSlotRing = 2;
constexpr int kSlots = kSlotRing + 2 * kMaxRanks - 2;

enum Algo : int { OneShot = 0, TwoShot = 1, Ring = 2, Push = 3 };
enum Op : int { Sum = 0, Avg = 1, Max = 2 };  // the reductions p2p takes (others go to the fallback)

// The head of every rank's IPC allocation (zeroed when it is made).
struct Signal {
  uint32_t flag[kMaxBlocks][kSlots][kMaxRanks];  // written by peers, read by this rank
  uint32_t epoch[kMaxBlocks];                      // calls this rank has made: one copy per block, all equal
  uint32_t error;                                  // this rank's error_code once a wait gave up
};
constexpr int64_t kSignalBytes = (sizeof(Signal) + 4095) / 4096 * 4096;

// An error code: which rank a wait gave up on, at which slot (0: no error).
__host__ __device__ inline uint32_t error_code(int rank, int slot) { return 0x80000000u | (uint32_t)slot << 8 | (uint32_t)rank; }
inline int error_rank(uint32_t code) { return (int)(code & 0xff); }
inline int error_slot(uint32_t code) { return (int)((code >> 8) & 0xff); }

struct Params {
  Signal* sig[kMaxRanks];  // every rank's signal area, as mapped in this process (own included)
  char* acc[kMaxRanks];    // every rank's input/reduction region of parity 0 (16-byte aligned)
  char* out[kMaxRanks];    // every rank's all-gather region of parity 0 (ring, push)
  int64_t parity_bytes;    // from a parity-0 region (acc or out, any rank) to its parity-1 twin
  const void* input;       // this rank's tensor (the call is in place: input == output allowed)
  void* output;
  int64_t n;               // elements
  int rank, world, algo, op;
  long long timeout;       // clock64 cycles a wait may spin
  uint32_t* error_host;    // host-mapped copy of sig[rank]->error, for the host to raise
};

// ---- what a launch looks like: the same on every rank for the same message ---------------------
struct Plan {
  int algo;
  int blocks;       // CTAs
  int64_t packs;    // 16-byte packs of the message
  int64_t seg;      // packs of a segment (two-shot slice, ring segment); one-shot: packs
};
// bytes up to which one-shot / two-shot are used (larger: ring); `forced` >= 0 pins an algorithm.
// Measured on 2 H200s (NVLink, bench/RESULTS.md): one-shot was the fastest of the three up to 8 MiB
// (1 MiB in a graph: 11.7 µs vs two-shot 15.2); with two ranks it reads no more than the others do.
// With more ranks it reads W - 1 peers' whole buffers, so it stops at 1 MiB there. Above 8 MiB two
// ranks push (2026-11-30: 8 MiB 37.8 µs vs one-shot 39.4; 64 MiB 242 µs vs ring 274 and NCCL 269).
constexpr int64_t kOneShotMax = 1 << 20, kTwoShotMax = 8 << 20;

__host__ __device__ inline Plan make_plan(int64_t n, int esize, int world, int max_blocks, int forced) {
  Plan p;
  p.packs = (n * esize + 15) / 16;
  const int64_t bytes = n * esize;
  const bool one_shot = world <= 2 ? bytes <= kTwoShotMax : bytes <= kOneShotMax;
  p.algo = forced >= 0 ? forced : one_shot ? OneShot : world == 2 ? Push : bytes <= kTwoShotMax ? TwoShot : Ring;
  if (p.algo == Push && world != 2) p.algo = TwoShot;  // push is written for two ranks
  if (world == 1) p.algo = OneShot;
  p.seg = p.algo == OneShot ? p.packs : (p.packs + world - 1) / world;
  // a CTA gets at least 32 packs (512 bytes) of a segment
  int64_t b = (p.seg + 31) / 32;
  p.blocks = (int)(b < 1 ? 1 : b > max_blocks ? max_blocks : b);
  return p;
}

// ---- 16-byte packs -------------------------------------------------------------------------------
template <class T>
struct alignas(16) Pack {
  static constexpr int V = 16 / sizeof(T);
  T v[V];
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <class T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float combine(int op, float a, float b) {
  if (op == Max) return (a != a || a >= b) ? a : b;  // NaN wins, like torch.max
  return a + b;
}

// element i*V .. i*V+V-1 of a tensor: one vector when whole and aligned; lanes past n read as 0
template <class T>
__device__ __forceinline__ Pack<T> load_tensor(const T* x, int64_t i, int64_t n, bool aligned) {
  constexpr int V = Pack<T>::V;
  if (aligned && (i + 1) * V <= n) return reinterpret_cast<const Pack<T>*>(x)[i];
  Pack<T> r;
  for (int j = 0; j < V; ++j) r.v[j] = i * V + j < n ? x[i * V + j] : from_f<T>(0.f);
  return r;
}
template <class T>
__device__ __forceinline__ void store_tensor(T* x, int64_t i, int64_t n, bool aligned, const Pack<T>& r) {
  constexpr int V = Pack<T>::V;
  if (aligned && (i + 1) * V <= n) {
    reinterpret_cast<Pack<T>*>(x)[i] = r;
    return;
  }
  for (int j = 0; j < V && i * V + j < n; ++j) x[i * V + j] = r.v[j];
}
template <class T>
__device__ __forceinline__ Pack<T>& pack_at(char* region, int64_t i) {
  return reinterpret_cast<Pack<T>*>(region)[i];
}

// ---- flags ----------------------------------------------------------------------------------------
__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
#ifdef P2P_EMULATE
  emu_store_release(p, v);
#else
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
#endif
}
__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
#ifdef P2P_EMULATE
  return emu_load_acquire(p);
#else
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
#endif
}
__device__ __forceinline__ uint32_t load_error(const uint32_t* e) {
#ifdef P2P_EMULATE
  return emu_load_acquire(e);
#else
  return *reinterpret_cast<const volatile uint32_t*>(e);
#endif
}
// the kernels poll the device word (cheap); the host reads the mapped copy without a sync
__device__ __forceinline__ void set_error(const Params& p, uint32_t code) {
#ifdef P2P_EMULATE
  emu_store_release(&p.sig[p.rank]->error, code);
  emu_store_release(p.error_host, code);
#else
  *reinterpret_cast<volatile uint32_t*>(&p.sig[p.rank]->error) = code;
  *reinterpret_cast<volatile uint32_t*>(p.error_host) = code;
  __threadfence_system();
#endif
}

// Spins until *f has reached e; false when it gave up (timeout: error set; or an error already set).
__device__ inline bool wait_flag(const Params& p, const uint32_t* f, uint32_t e, int peer, int slot) {
  const long long start = clock64();
  for (uint32_t spins = 1;; ++spins) {
    if ((int32_t)(load_acquire_sys(f) - e) >= 0) return true;
    if ((spins & 255) == 0) {
      if (load_error(&p.sig[p.rank]->error) != 0) return false;
      if (clock64() - start > p.timeout) {
        set_error(p, error_code(peer, slot));
        return false;
      }
    }
    spin_pause();
  }
}

// This block's writes so far are visible to every rank's block b, which have all reached `slot`.
// Returns false (in every thread of the block) when a wait gave up.
__device__ inline bool barrier_all(const Params& p, int slot, uint32_t e) {
  __syncthreads();
  const int b = blockIdx.x;
  // no extra fence: the release store is cumulative over the block's writes that __syncthreads
  // ordered before it (vLLM's custom all-reduce relies on the same)
  for (int q = threadIdx.x; q < p.world; q += blockDim.x) store_release_sys(&p.sig[q]->flag[b][slot][p.rank], e);
  bool ok = true;
  for (int q = threadIdx.x; q < p.world; q += blockDim.x)
    ok = ok && wait_flag(p, &p.sig[p.rank]->flag[b][slot][q], e, q, slot);
  emu_after_wait(p, e);
  return !__syncthreads_or(!ok);
}

// Ring step `step` of this block is done: tell the right neighbour.
__device__ inline void signal_right(const Params& p, int step, uint32_t e) {
  __syncthreads();
  if (threadIdx.x == 0) store_release_sys(&p.sig[(p.rank + 1) % p.world]->flag[blockIdx.x][kSlotRing + step][p.rank], e);
}
// Wait until the left neighbour finished ring step `step`.
__device__ inline bool wait_left(const Params& p, int step, uint32_t e) {
  const int left = (p.rank + p.world - 1) % p.world;
  bool ok = true;
  if (threadIdx.x == 0) ok = wait_flag(p, &p.sig[p.rank]->flag[blockIdx.x][kSlotRing + step][left], e, left,
                                       kSlotRing + step);
  emu_after_wait(p, e);
  return !__syncthreads_or(!ok);
}

// This block's share [lo, hi) of packs [a, b): the same on every rank.
struct Range {
  int64_t lo, hi;
};
__device__ __forceinline__ Range share(int64_t a, int64_t b) {
  const int64_t per = (b - a + gridDim.x - 1) / gridDim.x;
  int64_t lo = a + per * blockIdx.x, hi = lo + per;
  if (lo > b) lo = b;
  if (hi > b) hi = b;
  return {lo, hi};
}
__device__ __forceinline__ Range segment(const Params& p, int64_t packs, int64_t seg, int k) {
  int64_t a = seg * k, b = a + seg;
  if (a > packs) a = packs;
  if (b > packs) b = packs;
  return share(a, b);
}

// Each thread moves kUnroll packs per step, all loads issued before any store: peer memory is
// ~1 µs away over NVLink, so one 16-byte load in flight per thread left the link half idle.
constexpr int kUnroll = 4;

// f(i) for every pack i of this block's share s: kUnroll strided packs per thread per step, with
// load(i) (all of them) before store(i, v) (all of them)
template <class V, class Load, class Store>
__device__ __forceinline__ void move_packs(Range s, Load load, Store store) {
  const int64_t B = blockDim.x;
  for (int64_t i0 = s.lo + threadIdx.x; i0 < s.hi; i0 += kUnroll * B) {
    V v[kUnroll];
    P2P_UNROLL
    for (int u = 0; u < kUnroll; ++u)
      if (i0 + u * B < s.hi) v[u] = load(i0 + u * B);
    P2P_UNROLL
    for (int u = 0; u < kUnroll; ++u)
      if (i0 + u * B < s.hi) store(i0 + u * B, v[u]);
  }
}

// ---- the kernel ----------------------------------------------------------------------------------
template <class T>
__global__ void __launch_bounds__(512) all_reduce_kernel(const Params p) {
  const int W = p.world, r = p.rank;
  Signal* me = p.sig[r];
  if (__syncthreads_or(load_error(&me->error) != 0)) return;  // an earlier call gave up: the group is broken
  const uint32_t e = me->epoch[blockIdx.x] + 1;  // this call's number, the same in every block and rank
  // this call's regions: parity e % 2 of every rank's acc and out (top of file: why that is safe)
  const int64_t region = (int64_t)(e & 1) * p.parity_bytes;
  auto acc = [&](int q) { return p.acc[q] + region; };
  auto out = [&](int q) { return p.out[q] + region; };
  const Plan plan = make_plan(p.n, (int)sizeof(T), W, kMaxBlocks, p.algo);
  const int64_t packs = plan.packs, seg = plan.seg;
  const T* x = static_cast<const T*>(p.input);
  T* y = static_cast<T*>(p.output);
  const bool xa = ((uintptr_t)x & 15) == 0, ya = ((uintptr_t)y & 15) == 0;
  const float inv_w = 1.0f / (float)W;
  constexpr int V = Pack<T>::V;

  if (plan.algo == Push) {  // the peer's half of this tensor, written into the peer's buffer
    const int peer = 1 - r;
    move_packs<Pack<T>>(segment(p, packs, seg, peer), [&](int64_t i) { return load_tensor(x, i, p.n, xa); },
                        [&](int64_t i, const Pack<T>& v) { pack_at<T>(acc(peer), i) = v; });
  } else {  // copy in: this block's share of every segment
    for (int k = 0; k < (plan.algo == OneShot ? 1 : W); ++k)
      move_packs<Pack<T>>(segment(p, packs, seg, k), [&](int64_t i) { return load_tensor(x, i, p.n, xa); },
                          [&](int64_t i, const Pack<T>& v) { pack_at<T>(acc(r), i) = v; });
  }
  if (!barrier_all(p, kSlotStart, e)) return;

  // reduce over all ranks, in rank order, of packs of segment k: into dst (and the tensor)
  // (kUnroll packs per thread at a time: each rank's kUnroll loads are in flight together)
  auto reduce_all = [&](Range s, char* dst) {
    const int64_t B = blockDim.x;
    for (int64_t i0 = s.lo + threadIdx.x; i0 < s.hi; i0 += kUnroll * B) {
      float a[kUnroll][V];
      for (int q = 0; q < W; ++q) {
        Pack<T> v[kUnroll];
        P2P_UNROLL
        for (int u = 0; u < kUnroll; ++u)
          if (i0 + u * B < s.hi) v[u] = pack_at<T>(acc(q), i0 + u * B);
        P2P_UNROLL
        for (int u = 0; u < kUnroll; ++u)
          for (int j = 0; j < V; ++j) a[u][j] = q == 0 ? to_f(v[u].v[j]) : combine(p.op, a[u][j], to_f(v[u].v[j]));
      }
      P2P_UNROLL
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t i = i0 + u * B;
        if (i >= s.hi) continue;
        Pack<T> o;
        for (int j = 0; j < V; ++j) o.v[j] = from_f<T>(p.op == Avg ? a[u][j] * inv_w : a[u][j]);
        if (dst) pack_at<T>(dst, i) = o;
        store_tensor(y, i, p.n, ya, o);
      }
    }
  };

  if (plan.algo == OneShot) {
    reduce_all(segment(p, packs, seg, 0), nullptr);
  } else if (plan.algo == TwoShot) {
    reduce_all(segment(p, packs, seg, r), acc(r));  // slice r, reduced in place in this rank's buffer
    if (!barrier_all(p, kSlotMid, e)) return;
    for (int k = 0; k < W; ++k) {
      if (k == r) continue;
      move_packs<Pack<T>>(segment(p, packs, seg, k), [&](int64_t i) { return pack_at<T>(acc(k), i); },
                          [&](int64_t i, const Pack<T>& v) { store_tensor(y, i, p.n, ya, v); });
    }
  } else if (plan.algo == Push) {
    const int peer = 1 - r;
    struct Two {
      Pack<T> mine, theirs;
    };
    // half r: this rank's tensor combined with what the peer wrote here, in rank order (the same
    // bits as the other algorithms), into the tensor and into the peer's all-gather region
    move_packs<Two>(segment(p, packs, seg, r),
                    [&](int64_t i) { return Two{load_tensor(x, i, p.n, xa), pack_at<T>(acc(r), i)}; },
                    [&](int64_t i, const Two& t) {
                      const Pack<T>& first = r == 0 ? t.mine : t.theirs;
                      const Pack<T>& second = r == 0 ? t.theirs : t.mine;
                      Pack<T> o;
                      for (int j = 0; j < V; ++j) {
                        const float v = combine(p.op, to_f(first.v[j]), to_f(second.v[j]));
                        o.v[j] = from_f<T>(p.op == Avg ? v * inv_w : v);
                      }
                      store_tensor(y, i, p.n, ya, o);
                      pack_at<T>(out(peer), i) = o;
                    });
    if (!barrier_all(p, kSlotMid, e)) return;
    move_packs<Pack<T>>(segment(p, packs, seg, peer), [&](int64_t i) { return pack_at<T>(out(r), i); },
                        [&](int64_t i, const Pack<T>& v) { store_tensor(y, i, p.n, ya, v); });
  } else {  // ring
    const int left = (r + W - 1) % W;
    // reduce-scatter: step s adds the left neighbour's segment (r - s - 1) to this rank's
    for (int s = 0; s < W - 1; ++s) {
      if (s > 0 && !wait_left(p, s - 1, e)) return;
      const int k = (r - s - 1 + 2 * W) % W;
      const bool last = s == W - 2;
      struct Two {
        Pack<T> mine, theirs;
      };
      move_packs<Two>(segment(p, packs, seg, k),
                      [&](int64_t i) { return Two{pack_at<T>(acc(r), i), pack_at<T>(acc(left), i)}; },
                      [&](int64_t i, const Two& t) {
                        Pack<T> o;
                        for (int j = 0; j < V; ++j) {
                          // the left partial first: segment k sums ranks k, k+1, ..., k-1 in that
                          // order (every rank then copies the same bits)
                          const float v = combine(p.op, to_f(t.theirs.v[j]), to_f(t.mine.v[j]));
                          o.v[j] = from_f<T>(last && p.op == Avg ? v * inv_w : v);
                        }
                        pack_at<T>(acc(r), i) = o;
                        if (last) store_tensor(y, i, p.n, ya, o);  // segment r + 1 is final here
                      });
      signal_right(p, s, e);
    }
    // all-gather: step s pulls the finished segment (r - s) from the left neighbour (its buffer at
    // s = 0, where it finished it; its all-gather region after)
    for (int s = 0; s < W - 1; ++s) {
      const int step = W - 1 + s;
      if (!wait_left(p, step - 1, e)) return;
      const int k = (r - s + W) % W;
      const char* src = s == 0 ? acc(left) : out(left);
      move_packs<Pack<T>>(segment(p, packs, seg, k), [&](int64_t i) { return reinterpret_cast<const Pack<T>*>(src)[i]; },
                          [&](int64_t i, const Pack<T>& v) {
                            if (s < W - 2) pack_at<T>(out(r), i) = v;  // the right neighbour pulls it next step
                            store_tensor(y, i, p.n, ya, v);
                          });
      if (s < W - 2) signal_right(p, step, e);
    }
  }
  // No closing barrier: peers may still read this call's regions, which only call e + 2 writes again,
  // after call e + 1's start barrier (top of file). The call is counted in every block's copy:
  // blocks this launch left out (a smaller message) get it from the last block.
  if (threadIdx.x == 0) me->epoch[blockIdx.x] = e;
  if (blockIdx.x == gridDim.x - 1)
    for (int b = (int)gridDim.x + (int)threadIdx.x; b < kMaxBlocks; b += (int)blockDim.x) me->epoch[b] = e;
}

}  // namespace p2p
