// ops/core/cuda/rowwise.cuh — the building blocks of the nn family's row kernels (softmax,
// layer_norm/rms_norm, cross-entropy): how a row is spread over threads, 16-byte slot loads, row
// reductions, and a deterministic column sum. Included by nn.cu, norm.cu and loss.cu only.
//
// Shape legend: M rows of N contiguous elements. A row belongs to a group of `tpr` threads:
//   tpr <= 32  a power of two; a block of kRowBlock threads holds kRowBlock / tpr rows and the
//              row's reductions are warp shuffles within the group (no barrier: the warps of a
//              block never wait for each other). A kernel may be built twice: a warp kernel
//              (GroupOf<true> / RowGroup<true>, Kw slots per thread) for these plans and a block
//              kernel for the rest.
//   tpr > 32   the whole block (a multiple of 32, at most kMaxTpr); block reductions (RowGroup:
//              one barrier each; GroupOf: vt::cuda::block_reduce, two)
// A slot is V = 16 / sizeof(T) consecutive elements: slot s holds elements [s*V, s*V + V). Thread
// `lane` of the group works on K slots at a time (a chunk): chunk c, slot k is slot
// (c*K + k)*tpr + lane, so each of the K loads is coalesced across the group. When one chunk covers
// the row (chunks == 1) the row stays in registers between passes; longer rows are read again
// per pass (the "looped" case), so every N works.
// Slots are one 16-byte access when `vec` (N % V == 0 and every row base 16-byte aligned), else V
// scalar accesses with a bound check (odd N, offset views).
#ifndef VT_CORE_CUDA_ROWWISE_CUH_
#define VT_CORE_CUDA_ROWWISE_CUH_

#include <algorithm>
#include <cstdlib>
#include <string>

#ifdef VT_ROWWISE_EMULATE  // a host build of the row kernels (ops/core/lab/rowwise_emulate.hpp)
#include "rowwise_emulate.hpp"
#else
#include <map>
#include <tuple>

#include "vt/autograd.hpp"
#include "vt/cuda/device.cuh"
#include "vt/cuda/elementwise.cuh"
#include "vt/cuda/reduce.cuh"
#endif

namespace rowwise {

using vt::cuda::acc_t;

constexpr int kMaxTpr = 512;    // threads per row at most (one block); kernels use __launch_bounds__(kMaxTpr)
constexpr int kRowBlock = 256;  // threads per block when several rows share one
constexpr int64_t kMaxRow = (int64_t)1 << 30;  // row lengths the row kernels take (int indices)

// The bounds of a row kernel built as a warp kernel (blocks of kRowBlock threads) or a block kernel
// (up to kMaxTpr threads), with at most kRegs registers per thread (64: the lean forward kernels,
// at least 1024 threads per SM; 128: kernels that hold more, e.g. two rows).
#define VT_ROW_KERNEL_BOUNDS(kWarp, kRegs)                                    \
  __launch_bounds__((kWarp) ? rowwise::kRowBlock : rowwise::kMaxTpr,          \
                    65536 / ((kWarp) ? rowwise::kRowBlock : rowwise::kMaxTpr) / (kRegs))

template <class T>  // elements per 16-byte slot
__host__ __device__ constexpr int width() { return sizeof(T) >= 16 ? 1 : (int)(16 / sizeof(T)); }

// How M rows of N elements are spread over the grid (host side, from M and N only, so a result
// never depends on the GPU model: row-order reductions stay the same bits on every device).
struct Plan {
  int tpr = 1;         // threads per row
  int threads = 1;     // threads per block
  int64_t chunks = 1;  // chunks of K slots per thread that cover a row
  unsigned blocks = 1;
  bool vec = false;
  bool warp = false;   // tpr <= 32: a row per group of at most a warp, several rows per block
  bool pipe = false;   // 16-bit forward kernels: rows pipelined through shared memory (plan_pipe)
  bool wide = false;   // 16-bit forward kernels: the wide plan (plan_forward: wide_k slots, one chunk, vec)
  int wide_k = 0;      // the wide plan's slots per thread: wide_slots(), or kWideSlots (plan_forward's `wider`)
  __host__ __device__ int rows_per_block() const { return threads / tpr; }
};

inline bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

// K: slots a thread holds per chunk in the block kernel (and per lane for rows of up to 32 * K
// slots); Kw >= K (0: K): slots per lane of the warp kernel. Rows of up to 32 * Kw slots get a warp
// plan (warp == true, one chunk: the row in registers, shuffles only); longer rows (or rows of more
// than 64 slots when there are few rows) a block of up to kMaxTpr threads, in registers up to
// K * kMaxTpr slots. A warp plan gives a row the threads it would have at K slots each (up to 32),
// so short rows keep their parallelism; only rows of more than 32 * K slots hold more per lane.
inline Plan plan_rows(const vt::Call& c, int64_t M, int64_t N, int V, int K, bool vec, int Kw = 0) {
  if (N >= kMaxRow) c.fail(VT_ERR_NOT_IMPL, "rows of %lld elements are too long for the CUDA kernel (at most %lld)",
                           (long long)N, (long long)kMaxRow - 1);
  if (Kw < K) Kw = K;
  Plan p;
  p.vec = vec && N % V == 0;
  const int64_t nslot = std::max<int64_t>(1, (N + V - 1) / V);
  int64_t want = (nslot + K - 1) / K;
  const bool few = M < 512;
  if (few) want = std::max<int64_t>(want, (nslot + 1) / 2);  // few rows: spread each wider
  int k = K;  // slots per thread of the kernel the plan is for
  if (want <= 32 || (!few && nslot <= (int64_t)32 * Kw)) {
    int t = 1;
    while (t < want && t < 32) t <<= 1;
    p.tpr = t;
    p.threads = kRowBlock;
    p.warp = true;
    k = Kw;
  } else {
    p.tpr = p.threads = (int)std::min<int64_t>(kMaxTpr, (want + 31) / 32 * 32);
  }
  p.chunks = (nslot + (int64_t)k * p.tpr - 1) / ((int64_t)k * p.tpr);
  const int64_t rpb = p.rows_per_block();
  p.blocks = (unsigned)std::max<int64_t>(1, std::min<int64_t>((M + rpb - 1) / rpb, (int64_t)1 << 30));
  return p;
}

// The row group of the calling thread. Indices within a row are int: plan_rows refuses rows of
// kMaxRow elements or more. kWarp: the kernel only runs warp plans (tpr <= 32), so it has no block
// barrier and no shared memory at all; otherwise tpr picks shuffles or a block reduction at run time.
template <bool kWarp>
struct GroupOf {
  int tpr, lane, index;  // index: the group's row within the block
  __device__ __forceinline__ explicit GroupOf(int t) : tpr(t), lane((int)threadIdx.x % t), index((int)threadIdx.x / t) {}
  // every thread of the block must call these (dead rows too): block mode synchronises, and the
  // shuffles name the whole warp
  template <class U, class Op>
  __device__ __forceinline__ U reduce(U v, Op op, U identity) const {
    if (kWarp || tpr <= 32) {
      for (int o = tpr >> 1; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
      return v;
    }
    if constexpr (!kWarp) return vt::cuda::block_reduce(v, op, identity);
    return v;
  }
  template <class U> __device__ __forceinline__ U sum(U v) const { return reduce(v, vt::cuda::Sum{}, U(0)); }
  template <class U> __device__ __forceinline__ U max(U v) const { return reduce(v, vt::cuda::Max{}, U(-INFINITY)); }
  // slot k of chunk c
  __device__ __forceinline__ int slot(int c, int k, int K) const { return (c * K + k) * tpr + lane; }
};
using Group = GroupOf<false>;

// Shared memory for RowGroup's exchanges: two buffers of 32 partials of up to 16 bytes.
#ifdef VT_ROWWISE_EMULATE
inline unsigned char* exchange_buffer(int which) { return emu_block->exchange[which]; }
#else
__device__ __forceinline__ unsigned char* exchange_buffer(int which) {
  __shared__ alignas(16) unsigned char buf[2][32 * 16];
  return buf[which];
}
#endif

// Shared memory where the row groups of a warp-plan block (kRowBlock threads) put per-column values
// (norm_bwd_rows' grad_weight/grad_bias partials) to be added in group order: two arrays of
// kColumnBytes (a lane holds at most 64 bytes of them: a group of tpr lanes, 64 * tpr bytes).
constexpr int kColumnBytes = kRowBlock * 64;
#ifdef VT_ROWWISE_EMULATE
inline unsigned char* column_buffer() { return emu_block->columns; }
#else
__device__ __forceinline__ unsigned char* column_buffer() {
  __shared__ alignas(16) unsigned char buf[2 * kColumnBytes];
  return buf;
}
#endif

// Two values reduced together (one exchange for both); shfl_xor moves a U or a pair of them.
template <class U>
struct Pair {
  U a, b;
};
template <class U>
__device__ __forceinline__ U shfl_xor(U v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
template <class U>
__device__ __forceinline__ Pair<U> shfl_xor(Pair<U> v, int o) { return Pair<U>{shfl_xor(v.a, o), shfl_xor(v.b, o)}; }
struct PairSum {
  template <class U>
  __device__ __forceinline__ Pair<U> operator()(Pair<U> x, Pair<U> y) const { return Pair<U>{x.a + y.a, x.b + y.b}; }
};

// The row group of norm_rows.cuh's and softmax_rows.cuh's kernels (loss.cu keeps GroupOf).
// kWarp: tpr <= 32 lanes, several rows per block, shuffles only. Otherwise the block is one row
// (tpr == blockDim.x, a multiple of 32 up to kMaxTpr): each warp's shuffle tree, then one exchange
// through shared memory with a single barrier (block_reduce takes two): the reductions write their
// warps' partials to two buffers in turn, so a buffer is written again only after the barrier of
// the next reduction, which every thread reaches after it read the buffer. Every warp then combines
// the tpr / 32 <= 16 partials in a fixed 16-lane shuffle tree (straight-line code; the same bits in
// every thread). All threads of the block call reduce.
template <bool kWarp>
struct RowGroup {
  int tpr, lane, index;
  mutable int phase = 0;  // the buffer of the next exchange
  __device__ __forceinline__ explicit RowGroup(int t) : tpr(t), lane((int)threadIdx.x % t), index((int)threadIdx.x / t) {}
  // the group of a plan_rows plan without integer divisions (about 40 instructions each): a warp
  // plan's tpr is a power of two, a block plan's the block
  struct OfPlan {};
  __device__ __forceinline__ RowGroup(int t, OfPlan) : tpr(t) {
    if constexpr (kWarp) {
      const int sh = log2_of_power(t);
      lane = (int)threadIdx.x & (t - 1);
      index = (int)threadIdx.x >> sh;
    } else {
      lane = (int)threadIdx.x;
      index = 0;
    }
  }
  // rows per block: kRowBlock / tpr, or 1
  __device__ __forceinline__ int rows() const { return kWarp ? kRowBlock >> log2_of_power(tpr) : 1; }
  __device__ __forceinline__ static int log2_of_power(int t) {
#ifdef VT_ROWWISE_EMULATE
    int s = 0;
    while ((1 << s) < t) ++s;
    return s;
#else
    return __ffs(t) - 1;
#endif
  }
  // op over the group's values in every thread of the group; identity: op's (for absent partials)
  template <class U, class Op>
  __device__ __forceinline__ U reduce(U v, Op op, U identity) const {
    if constexpr (kWarp) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
        if (o < tpr) v = op(v, shfl_xor(v, o));
      return v;
    } else {
      static_assert(sizeof(U) <= 16, "exchanged partials are at most 16 bytes");
      static_assert(kMaxTpr <= 16 * 32, "the exchange combines up to 16 warps");
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
      U* buf = reinterpret_cast<U*>(exchange_buffer(phase));
      phase ^= 1;
      const int l = (int)threadIdx.x & 31;
      if (l == 0) buf[threadIdx.x >> 5] = v;
      __syncthreads();
      U r = (l & 15) < (tpr >> 5) ? buf[l & 15] : identity;
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) r = op(r, shfl_xor(r, o));
      return r;
    }
  }
  template <class U> __device__ __forceinline__ U sum(U v) const { return reduce(v, vt::cuda::Sum{}, U(0)); }
  template <class U> __device__ __forceinline__ U max(U v) const { return reduce(v, vt::cuda::Max{}, U(-INFINITY)); }
  template <class U>
  __device__ __forceinline__ Pair<U> sum2(U a, U b) const { return reduce(Pair<U>{a, b}, PairSum{}, Pair<U>{U(0), U(0)}); }
  __device__ __forceinline__ int slot(int c, int k, int K) const { return (c * K + k) * tpr + lane; }
};

// A warp plan's fused grad_weight/grad_bias partials (the norm backwards'): the block's groups add
// theirs in column_buffer in group order and the block writes one partial row (a partial row per
// group wrote and column_sum read again a sixth of the rows' bytes: miniGPT's 16384 x 384).
// add_block_partials: the groups' rows already in column_buffer (row g.index of N columns each).
template <class A>
__device__ __forceinline__ void add_block_partials(int N, int rpb, A* part_w, A* part_b) {
  const A* bw = reinterpret_cast<const A*>(column_buffer());
  const A* bb = bw + kColumnBytes / sizeof(A);
  for (int e = (int)threadIdx.x; e < N; e += (int)blockDim.x) {
    A sw = bw[e], sb = bb[e];
    for (int i = 1; i < rpb; ++i) {
      sw += bw[i * N + e];
      sb += bb[i * N + e];
    }
    if (part_w) part_w[(int64_t)blockIdx.x * N + e] = sw;
    if (part_b) part_b[(int64_t)blockIdx.x * N + e] = sb;
  }
}
// write_block_partials: each lane's K slots of V columns from registers first
template <int K, int V, class A>
__device__ __forceinline__ void write_block_partials(const RowGroup<true>& g, const A (&pw)[K][V],
                                                     const A (&pb)[K][V], int N, int rpb, A* part_w, A* part_b) {
  static_assert(K * V * sizeof(A) <= 64, "a lane's partials fit column_buffer");
  A* bw = reinterpret_cast<A*>(column_buffer());
  A* bb = bw + kColumnBytes / sizeof(A);
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int e = g.slot(0, k, K) * V + j;
      if (e < N) {
        bw[g.index * N + e] = pw[k][j];
        bb[g.index * N + e] = pb[k][j];
      }
    }
  __syncthreads();
  add_block_partials(N, rpb, part_w, part_b);
}

// How many of slot s's V elements lie in a row of n: <= 0 none (a dead row has n = 0), >= V all.
// Deliberately not clamped to [0, V]: ptxas of CUDA 13.0 (sm_90) fuses min(r, V), max(., 0) and
// the `== V` test of the 16-byte path into one VIMNMX.RELU whose predicate is true at r == 0, so the
// first slot past a row's end was read and written as a whole one (seen on the H200). Users only
// ever compare: j < lim, lim >= V.
template <int V>
__device__ __forceinline__ int valid(int s, int n) {
  return n - s * V;
}

// 16 bytes of a row (V elements of T) as four 32-bit words: 16-bit elements stay packed two to a
// register (an array of __nv_bfloat16 takes a register per element and doubles a kernel's
// registers). get<T>(slot, j) widens element j to A; make_slot<T>(f) rounds V values f(j) to T.
struct alignas(16) Slot {
  uint32_t w[4];
};

template <class T>
__device__ __forceinline__ acc_t<T> get(const Slot& s, int j) {
  if constexpr (std::is_same<T, float>::value) {
    return __uint_as_float(s.w[j]);
  } else if constexpr (std::is_same<T, double>::value) {
    return __hiloint2double((int)s.w[2 * j + 1], (int)s.w[2 * j]);
  } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    const uint32_t w = s.w[j >> 1];
    return __uint_as_float(j & 1 ? w & 0xffff0000u : w << 16);
  } else {
    const uint32_t w = s.w[j >> 1];
    return __half2float(__ushort_as_half((unsigned short)(j & 1 ? w >> 16 : w & 0xffffu)));
  }
}

// get<T> through other instructions (bfloat16: byte permutes instead of a shift and a mask), so
// ptxas cannot take a later pass's widening for an earlier one's and hold the widened values
// across a reduction in the registers (log_softmax_wide spilled them)
template <class T>
__device__ __forceinline__ acc_t<T> get_again(const Slot& s, int j) {
#ifndef VT_ROWWISE_EMULATE
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    uint32_t r;
    if (j & 1) asm("prmt.b32 %0, %1, 0, 0x3244;" : "=r"(r) : "r"(s.w[j >> 1]));
    else asm("prmt.b32 %0, %1, 0, 0x1044;" : "=r"(r) : "r"(s.w[j >> 1]));
    return __uint_as_float(r);
  }
#endif
  return get<T>(s, j);
}

template <class T, class F>
__device__ __forceinline__ Slot make_slot(F f) {
  Slot s;
  if constexpr (std::is_same<T, float>::value) {
#pragma unroll
    for (int j = 0; j < 4; ++j) s.w[j] = __float_as_uint(f(j));
  } else if constexpr (std::is_same<T, double>::value) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const double d = f(j);
      s.w[2 * j] = (uint32_t)__double2loint(d);
      s.w[2 * j + 1] = (uint32_t)__double2hiint(d);
    }
  } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(f(2 * j), f(2 * j + 1));
      s.w[j] = *reinterpret_cast<const uint32_t*>(&h);
    }
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __half2 h = __floats2half2_rn(f(2 * j), f(2 * j + 1));
      s.w[j] = *reinterpret_cast<const uint32_t*>(&h);
    }
  }
  return s;
}

// The valid elements of slot s, lim = valid<V>(s, n) (one 16-byte access when vec and the slot
// is whole); the others are 0.
template <class T>
__device__ __forceinline__ Slot load_slot(const T* row, int s, int lim, bool vec) {
  constexpr int V = width<T>();
  if (vec && lim >= V) {
    const uint4 u = reinterpret_cast<const uint4*>(row)[s];
    return Slot{{u.x, u.y, u.z, u.w}};
  }
  Slot r{{0u, 0u, 0u, 0u}};
  const T* p = row + (int64_t)s * V;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    if (j >= lim) break;
    if constexpr (sizeof(T) == 2) {
      r.w[j >> 1] |= (uint32_t)reinterpret_cast<const unsigned short*>(p)[j] << (16 * (j & 1));
    } else if constexpr (sizeof(T) == 4) {
      r.w[j] = reinterpret_cast<const uint32_t*>(p)[j];
    } else {
      const unsigned long long v = reinterpret_cast<const unsigned long long*>(p)[j];
      r.w[2 * j] = (uint32_t)v;
      r.w[2 * j + 1] = (uint32_t)(v >> 32);
    }
  }
  return r;
}

// The K slots of chunk ch of a row of n elements, all loads issued before any is used: a kernel
// that loads slot k and uses it before loading slot k + 1 waits one memory latency per slot (the
// loads sit in branches, which ptxas does not schedule across). For vec rows each load is one
// predicated 16-byte access; missing slots are 0.
template <class T, int K, class G>
__device__ __forceinline__ void load_chunk(Slot (&c)[K], const T* row, const G& g, int ch, int n, bool vec) {
  constexpr int V = width<T>();
  if (vec) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int s = g.slot(ch, k, K);
      c[k] = Slot{{0u, 0u, 0u, 0u}};
      if (valid<V>(s, n) >= V) {
        const uint4 u = reinterpret_cast<const uint4*>(row)[s];
        c[k] = Slot{{u.x, u.y, u.z, u.w}};
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int s = g.slot(ch, k, K);
      c[k] = load_slot<T>(row, s, valid<V>(s, n), false);
    }
  }
}

template <class T>
__device__ __forceinline__ void store_slot(T* row, int s, int lim, bool vec, const Slot& v) {
  constexpr int V = width<T>();
  if (vec && lim >= V) {
    reinterpret_cast<uint4*>(row)[s] = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
    return;
  }
  T* p = row + (int64_t)s * V;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    if (j >= lim) break;
    if constexpr (sizeof(T) == 2) {
      reinterpret_cast<unsigned short*>(p)[j] = (unsigned short)(v.w[j >> 1] >> (16 * (j & 1)));
    } else if constexpr (sizeof(T) == 4) {
      reinterpret_cast<uint32_t*>(p)[j] = v.w[j];
    } else {
      reinterpret_cast<unsigned long long*>(p)[j] = (unsigned long long)v.w[2 * j + 1] << 32 | v.w[2 * j];
    }
  }
}

// Slot accesses for kernels built per access kind: kVec (every slot of the row is whole or absent:
// N % V == 0, 16-byte aligned bases) compiles to predicated 16-byte accesses only, with none of the
// scalar fallback's code (which made the row kernels several times larger and missed the
// instruction cache).
template <class T, bool kVec>
__device__ __forceinline__ Slot load_slot_as(const T* row, int s, int lim) {
  constexpr int V = width<T>();
  if constexpr (kVec) {
    Slot r{{0u, 0u, 0u, 0u}};
    if (lim >= V) {
      const uint4 u = reinterpret_cast<const uint4*>(row)[s];
      r = Slot{{u.x, u.y, u.z, u.w}};
    }
    return r;
  } else {
    return load_slot<T>(row, s, lim, false);
  }
}
template <class T, bool kVec>
__device__ __forceinline__ void store_slot_as(T* row, int s, int lim, const Slot& v) {
  constexpr int V = width<T>();
  if constexpr (kVec) {
    if (lim >= V) reinterpret_cast<uint4*>(row)[s] = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
  } else {
    store_slot<T>(row, s, lim, false, v);
  }
}
// Marks a slot's registers as changed here, so the compiler keeps it packed across a loop instead
// of hoisting its elements widened to A (a loop-invariant 16-bit weight slot took 8 registers more
// that way, and spilled a kernel at the 128-register cap).
__device__ __forceinline__ void opaque(Slot& s) {
#ifndef VT_ROWWISE_EMULATE
#pragma unroll
  for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(s.w[i]));
#endif
}

// ---- the wide plan (16-bit forward rows of one chunk) ---------------------------------------------
// Why the classic 16-bit forward lagged float32 at the same row count (8192x4096 on the H200: bf16
// 0.70-0.85 of the copy ceiling, float32 0.92-0.98): at 4 slots per thread a thread holds 64 bytes
// of its row, so the 1024 threads an SM keeps at 64 registers have 64 KB of loads in flight, half
// of float32's 128 KB (8 slots), and a byte of 16-bit row is twice the elements to unpack, reduce
// and pack; with the generic kernel's per-slot bounds, chunk loops and branchy weight loads,
// layer_norm took about 24 instructions per element (SASS), two thirds of the SM's issue slots at
// 0.9 of the copy rate. The wide plan holds 8 slots per thread (64 16-bit elements: a 4096-element
// row in 64 threads, 128 KB per SM in flight at 64 registers) and runs a kernel made for rows that
// one chunk covers with 16-byte slots only: a thread's slots sit at fixed offsets and are either
// whole or absent (a bit mask computed once), all its loads are issued before any arithmetic,
// 16-bit pairs are unpacked with one shift or mask each and packed two per cvt, weight loads are
// predicated (the output pass is built per affine kind), the softmax max is taken on packed pairs
// (exact), rows are read and written with evict-first hints (each byte once): about 18 instructions
// per element for layer_norm, 12 for rms_norm. Its sums run in the generic kernel's order at the
// same plan, so it gives the generic kernel's bits at its K (checked in the host emulation).
constexpr int kWideSlots = 8;  // VT_ROWS_PLAN=wide8; the default runs at 4 slots (RowsPlan says why)
// Registers of the wide kernels: bfloat16 64 (16 blocks of 64 threads per SM: 128 KB of a row's
// loads in flight, and 8192 rows are 3.9 waves where 72 registers made them 4.4, a last wave less
// than half full); float16 72 (its widening is a conversion: at 64, log_softmax spilled 92 bytes).
// At 4 slots per thread (the default) 44 (11 blocks of 128 threads per SM, 88 KB in flight).
#ifdef VT_ROWWISE_EMULATE
#define VT_WIDE_KERNEL_BOUNDS(T, K)
#else
#define VT_WIDE_KERNEL_BOUNDS(T, K) __maxnreg__(((K) == 4 ? 44 : std::is_same<T, __nv_bfloat16>::value ? 64 : 72))
#endif

// The 16-byte slots of one thread in a row that one chunk covers (a vec plan): slot k is row slot
// k * tpr + lane, present (bit k of `have`) when it lies in the row; the same for every row.
template <int K>
struct WideSlots {
  unsigned have = 0;
  unsigned first, step;  // byte offsets in a row: slot 0's, and between slots (32-bit: a 64-bit
                         // offset per slot hoisted out of the row loop spilled norm_rows_wide)
  template <class G>
  __device__ __forceinline__ WideSlots(const G& g, int N, int V) : first(16u * g.lane), step(16u * g.tpr) {
#pragma unroll
    for (int k = 0; k < K; ++k) have |= (N - (k * g.tpr + g.lane) * V >= V ? 1u : 0u) << k;
  }
  // the slots present in a live row (0 for a dead one)
  __device__ __forceinline__ unsigned on(bool live) const { return live ? have : 0u; }
  // a copy whose offsets the compiler must compute where it is used: taken at the top of a row
  // loop, so the K slot offsets (the same for every row) are not hoisted out of the loop and held
  // in registers (spilled at 64 registers; the loop mostly runs once)
  __device__ __forceinline__ WideSlots fresh() const {
    WideSlots r = *this;
#ifndef VT_ROWWISE_EMULATE
    asm volatile("" : "+r"(r.first), "+r"(r.step));
#endif
    return r;
  }
  template <class T>
  __device__ __forceinline__ const uint4* at(const T* row, int k) const {
    return reinterpret_cast<const uint4*>(reinterpret_cast<const unsigned char*>(row) + (first + k * step));
  }
  // all K loads issued before any is used (predicated, no branches); absent slots are 0. The rows
  // are read once: evict-first (ld.global.cs), which leaves the cache to the weights.
  template <class T>
  __device__ __forceinline__ void load(Slot (&c)[K], const T* row, unsigned on) const {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      uint4 u = make_uint4(0u, 0u, 0u, 0u);
#ifdef VT_ROWWISE_EMULATE
      if (on >> k & 1u) u = *at(row, k);
#else
      if (on >> k & 1u) u = __ldcs(at(row, k));
#endif
      c[k] = Slot{{u.x, u.y, u.z, u.w}};
    }
  }
  // slot k of a row read for every row (a weight: ld.global.nc, a cache hit after the first row),
  // its address computed after `after` is known (so the compiler neither issues every slot's loads
  // before the row's reductions nor holds their addresses across rows: either spilled); absent
  // slots are 0 (left unset, ptxas held them live from the kernel's start and spilled)
  template <class T>
  __device__ __forceinline__ Slot load_kept(const T* row, int k, unsigned on, uint32_t after) const {
    unsigned o = first + k * step;
#ifndef VT_ROWWISE_EMULATE
    asm volatile("" : "+r"(o) : "r"(after));
#endif
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    const uint4* a = reinterpret_cast<const uint4*>(reinterpret_cast<const unsigned char*>(row) + o);
#ifdef VT_ROWWISE_EMULATE
    (void)after;
    if (on >> k & 1u) u = *a;
#else
    if (on >> k & 1u) u = __ldg(a);
#endif
    return Slot{{u.x, u.y, u.z, u.w}};
  }
  // 16 bytes written once and not read again here: st.global.cs (evict first)
  template <class T>
  __device__ __forceinline__ void store(T* row, int k, unsigned on, const Slot& v) const {
    if (!(on >> k & 1u)) return;
    uint4* p = const_cast<uint4*>(at(row, k));
#ifdef VT_ROWWISE_EMULATE
    *p = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
#else
    __stcs(p, make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]));
#endif
  }
};

// The larger of each of two packed pairs of 16-bit values, exactly (a NaN loses, as fmax); lowest_pair:
// a pair of -inf.
template <class T>
__device__ __forceinline__ uint32_t max_pair(uint32_t a, uint32_t b) {
  static_assert(sizeof(T) == 2, "packed pairs of 16-bit values");
#ifdef VT_ROWWISE_EMULATE
  uint32_t r = 0;
  for (int h = 0; h < 2; ++h) {
    Slot sa{{a, 0u, 0u, 0u}}, sb{{b, 0u, 0u, 0u}};
    const float x = get<T>(sa, h), y = get<T>(sb, h);
    r |= ((x > y || y != y) ? a : b) & (0xffffu << (16 * h));
  }
  return r;
#else
  uint32_t r;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) asm("max.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  else asm("max.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
#endif
}
template <class T>
__host__ __device__ constexpr uint32_t lowest_pair() {
  return std::is_same<T, __nv_bfloat16>::value ? 0xff80ff80u : 0xfc00fc00u;
}

// ---- the next row in flight (16-bit block kernels) ----------------------------------------------
// A 16-bit row of 4096 elements is 8 KB: a block holding one row in registers has 8 KB in flight
// while it loads and none while it reduces and writes, and 8 such blocks per SM left the H200 at
// 0.79-0.87 of the copy ceiling (float32 rows, twice the bytes per block, reach 0.92-0.98).
// A pipelined kernel (a persistent grid: block b takes rows b, b + gridDim.x, ...) copies its next
// row into shared memory with cp.async (no registers) before it works on the current one, so a
// row's load overlaps the previous row's reductions and stores. Two buffers: row i in buffer i % 2.
// Each thread copies and reads back only its own slots (slot s at [s]), so no barrier is needed.

// dynamic shared memory of a pipelined kernel: 0 when the plan cannot pipeline (warp plans,
// scalar accesses, rows over one chunk, float32/float64, or buffers over 40 KB: with the static
// exchange buffers a block stays within the 48 KB it may have without opting in)
template <class T, int K>
__host__ __device__ inline int pipe_bytes(const Plan& p) {
  if (sizeof(T) != 2 || p.warp || !p.vec || p.chunks != 1) return 0;
  const int b = 2 * K * p.tpr * 16;
  return b <= 40 * 1024 ? b : 0;
}
// Which row plans run, from the environment variable VT_ROWS_PLAN when first asked (A/B runs on a
// GPU): unset, the fused cross-entropy's rows pipeline (ce_fwd_rows_piped), the 16-bit norm/softmax
// forward rows that fit one chunk run the wide plan (norm_rows_wide / softmax_rows_wide), the others
// the classic kernels; "classic", the same without the wide plan (the classic kernels at 4 slots per
// thread); "piped", classic plus the norm/softmax row pipeline; "plain", classic with no pipeline at
// all. Measured on an H200 (2026-12-01, 8192x4096 bf16, of the copy ceiling, one run): the pipelined
// norm/softmax rows were no faster (layer_norm 0.72 vs 0.73, rms_norm 0.73 vs 0.81, softmax 0.77 vs
// 0.80), the pipelined cross-entropy was (16384x50304 forward+backward 943 us vs 1169).
// The wide kernels run at 4 slots per thread, the classic plan's (a 4096-element row in 128
// threads; the classic kernels' bits); "wide8" runs them at kWideSlots = 8 (64 threads), the default
// until 2026-12-02; "wide4" names the default. Kernel time alone (ops/core/lab/rows16_bench.cu, H200,
// one run, of a device copy of the same 64 MB, bfloat16 rows of 768..8192 elements; layer_norm /
// rms_norm / softmax / log_softmax): 4 slots 0.84-0.95 / 0.96-0.98 / 0.97-0.99 / 0.97-1.00, 8 slots
// 0.83-0.93 / 0.95-0.97 / 0.90-0.97 / 0.97-0.99 (8192x4096: 0.95 / 0.96 / 0.98 / 0.98 against 0.91 /
// 0.95 / 0.96 / 0.99); 8 slots won only layer_norm of 768 (0.87 vs 0.84) and three log_softmax rows
// by 0.01. float16 likewise, its log_softmax 0.97-1.00 against 0.86-0.91.
enum class RowsPlan { Default, Classic, Piped, Plain, Wide4, Wide8 };
inline RowsPlan rows_plan_named(const char* v) {
  const std::string s = v ? v : "";
  return s == "plain" ? RowsPlan::Plain : s == "piped" ? RowsPlan::Piped : s == "classic" ? RowsPlan::Classic
         : s == "wide4" ? RowsPlan::Wide4 : s == "wide8" ? RowsPlan::Wide8 : RowsPlan::Default;
}
inline RowsPlan rows_plan() {
  static const RowsPlan plan = rows_plan_named(std::getenv("VT_ROWS_PLAN"));
  return plan;
}
inline bool pipe_enabled() { return rows_plan() != RowsPlan::Plain; }  // the fused cross-entropy's rows
inline bool wide_enabled() {
  return rows_plan() == RowsPlan::Default || rows_plan() == RowsPlan::Wide4 || rows_plan() == RowsPlan::Wide8;
}
inline int wide_slots() { return rows_plan() == RowsPlan::Wide8 ? kWideSlots : 4; }  // the wide kernels' K
// Sets p.pipe for a norm/softmax forward plan of K slots and returns the launch's dynamic shared
// memory (0: none; only under VT_ROWS_PLAN=piped).
template <class T, int K>
inline int plan_pipe(Plan& p) {
  const int b = rows_plan() == RowsPlan::Piped && !p.wide ? pipe_bytes<T, K>(p) : 0;
  p.pipe = b != 0;
  return b;
}
// The plan of a 16-bit norm/softmax forward: the wide plan (p.wide) where it applies (16-byte
// slots, the row in one chunk of wide_slots() slots per thread) and VT_ROWS_PLAN allows it, else the
// classic plan of K slots per thread (Kw in the warp kernel). `wider` (a caller whose kernel_for
// picks the wide kernel by p.wide_k): rows that 4 slots per thread leave over one chunk (16-bit rows
// of 16385..32768 elements, a vocabulary's softmax) take the wide plan at kWideSlots = 8, as they
// did before 4 became the default, rather than the classic kernels, which read them once per pass.
template <class T>
inline Plan plan_forward(const vt::Call& c, int64_t M, int64_t N, bool vec, int K, int Kw, bool wider = false) {
  if (sizeof(T) == 2 && wide_enabled()) {
    for (int k = wide_slots();; k = kWideSlots) {
      Plan p = plan_rows(c, M, N, width<T>(), k, vec);
      if (p.vec && p.chunks == 1) {
        p.wide = true;
        p.wide_k = k;
        return p;
      }
      if (!wider || k == kWideSlots) break;
    }
  }
  return plan_rows(c, M, N, width<T>(), K, vec, Kw);
}
// the grid of a pipelined kernel: at most the blocks resident at once, so each takes several rows
// (rows are independent: the grid never changes a result)
inline unsigned pipe_grid(const Plan& p, int64_t resident) {
  return (unsigned)std::max<int64_t>(1, std::min<int64_t>(p.blocks, resident));
}

// Shared-memory addresses of the pipe buffers: a 32-bit shared-space address on the GPU (computed
// once per kernel, not a generic pointer converted per access), a pointer into the emulated block.
#ifdef VT_ROWWISE_EMULATE
using SharedAddr = unsigned char*;
inline SharedAddr pipe_base() { return emu_block->pipe; }
inline void copy_async16(SharedAddr dst, const void* src) { std::memcpy(dst, src, 16); }
inline void copy_async16(Slot* dst, const void* src) { std::memcpy(dst, src, 16); }
inline Slot load_shared(SharedAddr a) {
  Slot s;
  std::memcpy(&s, a, 16);
  return s;
}
inline void copy_async_commit() {}
template <int kPending>
inline void copy_async_wait() {}
#else
using SharedAddr = uint32_t;
__device__ __forceinline__ SharedAddr pipe_base() {
  extern __shared__ Slot vt_row_pipe[];  // pipe_bytes of dynamic shared memory: two buffers
  return (SharedAddr)__cvta_generic_to_shared(vt_row_pipe);
}
// 16 bytes global -> shared, not cached in L1 (each element is read once)
__device__ __forceinline__ void copy_async16(SharedAddr dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void copy_async16(Slot* dst, const void* src) {
  copy_async16((SharedAddr)__cvta_generic_to_shared(dst), src);
}
// volatile: stays after the copy_async_wait before it
__device__ __forceinline__ Slot load_shared(SharedAddr a) {
  Slot s;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(s.w[0]), "=r"(s.w[1]), "=r"(s.w[2]), "=r"(s.w[3])
               : "r"(a));
  return s;
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// waits until at most kPending of this thread's committed groups are still in flight
template <int kPending>
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"); }
#endif

// The rows a pipelined block takes (block plans of one chunk, 16-byte slots: p.pipe), handed over
// in registers: rows b, b + step, ... of M rows of N elements. Thread `lane` owns slots
// s = k * tpr + lane (k < K) of every row: at byte s * 16 of the row and of its buffer alike, so one
// offset per slot serves both; have bit k: slot k lies in the row (the same for every row).
template <class T, int K, class G>
struct RowPipe {
  const unsigned char* x;  // the rows, as bytes
  int64_t M, step, row_bytes;
  SharedAddr base;  // this thread's slot 0 in buffer 0
  int stride;       // bytes between a thread's slots (16 * tpr)
  unsigned have = 0;
  int it = 0;
  __device__ __forceinline__ RowPipe(const T* x_, int64_t M_, int N, int64_t first, int64_t step_, const G& g)
      : x(reinterpret_cast<const unsigned char*>(x_) + 16 * g.lane), M(M_), step(step_),
        row_bytes((int64_t)N * (int64_t)sizeof(T)), base(pipe_base() + 16 * g.lane), stride(16 * g.tpr) {
    constexpr int V = width<T>();
#pragma unroll
    for (int k = 0; k < K; ++k) have |= (valid<V>(g.slot(0, k, K), N) >= V ? 1u : 0u) << k;
    if (first < M) prefetch(0, first);
  }
  // starts copying row r into buffer b (one group)
  __device__ __forceinline__ void prefetch(int b, int64_t r) {
    const unsigned char* src = x + r * row_bytes;
    const SharedAddr dst = base + b * K * stride;
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (have >> k & 1u) copy_async16(dst + k * stride, src + k * stride);
    copy_async_commit();
  }
  // row r's slots in c (missing ones 0): the copy of row r + step is started first, then row r's
  // awaited, so two rows are in flight
  __device__ __forceinline__ void take(Slot (&c)[K], int64_t r) {
    if (r + step < M) {
      prefetch((it + 1) & 1, r + step);
      copy_async_wait<1>();
    } else {
      copy_async_wait<0>();
    }
    const SharedAddr src = base + (it & 1) * K * stride;
#pragma unroll
    for (int k = 0; k < K; ++k) c[k] = have >> k & 1u ? load_shared(src + k * stride) : Slot{{0u, 0u, 0u, 0u}};
    ++it;
  }
};

// a slot of V copies of a (rounded to T)
template <class T>
__device__ __forceinline__ Slot splat(acc_t<T> a) {
  return make_slot<T>([&](int) { return a; });
}

// e^x as the MUFU's 2^x of x log2 e, ~2 ulp; its flush-to-zero form (results below 2^-126 are 0)
// needs no range fix-up, which the plain form (__expf) adds as several instructions per element
__device__ __forceinline__ float fexp(float x) {
#ifdef VT_ROWWISE_EMULATE
  return __expf(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
  return y;
#endif
}
__device__ __forceinline__ double fexp(double x) { return exp(x); }
__device__ __forceinline__ float flog(float x) { return logf(x); }
__device__ __forceinline__ double flog(double x) { return log(x); }

// Online log-sum-exp state: m the running max, s the sum of exp(x - m). Rows (or their partial
// sums) that are all -inf keep s = 0 instead of exp(-inf - -inf) = nan; a row whose max is -inf
// still ends as nan through its output pass, as on cpu.
template <class A>
struct LSE {
  A m = A(-INFINITY), s = A(0);
  // folds in a chunk whose max is cm, given f(nm) = sum of exp(x - nm) over the chunk
  template <class F>
  __device__ __forceinline__ void add(A cm, F f) {
    const A nm = vt::cuda::Max{}(m, cm);
    const A scale = m == nm ? A(1) : fexp(m - nm);
    s = s * scale + (nm == A(-INFINITY) ? A(0) : f(nm));
    m = nm;
  }
  // the group's (max, sum) in every thread of the group
  template <bool kWarp>
  __device__ __forceinline__ void combine(const GroupOf<kWarp>& g) {
    const A gm = g.max(m);
    s = g.sum(m == gm ? s : s * fexp(m - gm));
    m = gm;
  }
};

#ifndef VT_ROWWISE_EMULATE
// Column sums of G partial rows of N, one slice of `rows` of them (the last may be shorter) per
// blockIdx.y: dst[s * N + j] = sum over g in slice s of part[g*N + j], in g order split into 8
// interleaved runs added in a fixed tree: the same bits on every run. Block (32, 8); one slice of
// rows = G is the whole sum.
template <class A, class T>
__global__ void __launch_bounds__(256)
    column_sum(const A* __restrict__ part, int64_t G, int64_t N, int64_t rows, T* __restrict__ dst) {
  __shared__ A acc[8][33];
  const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
  const int64_t g0 = (int64_t)blockIdx.y * rows, g1 = g0 + rows < G ? g0 + rows : G;
  A s = A(0);
  if (j < N)
    for (int64_t g = g0 + threadIdx.y; g < g1; g += 8) s += part[g * N + j];
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < N) {
    A t = A(0);
#pragma unroll
    for (int k = 0; k < 8; ++k) t += acc[k][threadIdx.x];
    dst[(int64_t)blockIdx.y * N + j] = T(t);
  }
}

// dst = the column sums of G partial rows of N. A grid of N / 32 blocks alone leaves most SMs idle
// when N is small and G large (layer_norm's backward at N = 384: 12 blocks reading 4096 partial
// rows, 21 us on an H200), so many partial rows are first cut into slices summed by blocks of their
// own, then the slices' sums are added. Both stages add in a fixed order: the same bits every run.
template <class A, class T>
void launch_column_sum(const vt::Call& c, const A* part, int64_t G, int64_t N, T* dst) {
  if (N == 0) return;
  const int64_t col_blocks = (N + 31) / 32;
  const int64_t want = (int64_t)vt::cuda::sm_count(c) * 4;  // blocks enough to fill the GPU
  if (G > 64 && col_blocks < want) {
    int64_t slices = std::min<int64_t>((want + col_blocks - 1) / col_blocks, (G + 31) / 32);
    const int64_t rows = (G + slices - 1) / slices;
    slices = (G + rows - 1) / rows;
    const int64_t sz[1] = {slices * N};
    vt::Tensor mid = c.empty(sz, 1, vt::dtype_of<A>());
    A* m = vt::data<A>(mid.get());
    vt::cuda::launch(c, "column_sum (slices)", column_sum<A, A>, dim3((unsigned)col_blocks, (unsigned)slices),
                     dim3(32, 8), 0, part, G, N, rows, m);
    vt::cuda::launch(c, "column_sum", column_sum<A, T>, dim3((unsigned)col_blocks), dim3(32, 8), 0, (const A*)m,
                     slices, N, slices, dst);
    return;
  }
  vt::cuda::launch(c, "column_sum", column_sum<A, T>, dim3((unsigned)col_blocks), dim3(32, 8), 0, part, G, N, G, dst);
}

// The grad_weight / grad_bias partial rows of a norm backward (layer_norm's, rms_norm's,
// add_layer_norm's): G rows of N accumulator columns each, made once the plan says how many, then
// added into the gradients in a fixed order by launch_column_sum (G = 0: the sums are 0).
template <class A>
struct ColumnPartials {
  int64_t G = 0;
  vt::Tensor w_rows, b_rows;
  void make(const vt::Call& c, int64_t groups, int64_t N, bool want_w, bool want_b) {
    G = groups;
    const int64_t sz[1] = {G * N};
    if (want_w) w_rows = c.empty(sz, 1, vt::dtype_of<A>());
    if (want_b) b_rows = c.empty(sz, 1, vt::dtype_of<A>());
  }
  A* w() const { return w_rows ? vt::data<A>(w_rows) : nullptr; }
  A* b() const { return b_rows ? vt::data<A>(b_rows) : nullptr; }
  template <class T>
  void sum_into(const vt::Call& c, int64_t N, T* grad_w, T* grad_b) const {
    if (grad_w) launch_column_sum<A, T>(c, w(), G, N, grad_w);
    if (grad_b) launch_column_sum<A, T>(c, b(), G, N, grad_b);
  }
};

// Blocks of `kernel` (threads, smem bytes of dynamic shared memory) resident per SM on the call's
// device, asked once per (kernel, threads, smem, device) and thread: a pipelined launch's grid is this
// times the SM count. A cache per thread keeps the launch path free of locks (the CUDA query is
// thread-safe; a thread asks at most once per key).
inline int resident_per_sm(const vt::Call& c, const void* kernel, int threads, int smem) {
  thread_local std::map<std::tuple<const void*, int, int, int>, int> seen;
  const int dev = c.ctx->device.index;
  const auto key = std::make_tuple(kernel, threads, smem, dev);
  auto it = seen.find(key);
  if (it != seen.end()) return it->second;
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, (size_t)smem) != cudaSuccess || n < 1) {
    (void)cudaGetLastError();
    n = 1;
  }
  seen.emplace(key, n);
  return n;
}
// the grid of a row kernel's launch with `smem` bytes of pipe buffers (plan_pipe's; 0: p.blocks)
inline unsigned launch_grid(const vt::Call& c, const void* kernel, const Plan& p, int smem) {
  if (smem == 0) return p.blocks;
  return pipe_grid(p, (int64_t)vt::cuda::sm_count(c) * resident_per_sm(c, kernel, p.threads, smem));
}

// A contiguous version of a tensor (itself when it already is), through core::contiguous on the
// call's device.
struct Contig {
  vt::Tensor own;
  const vt_tensor* t = nullptr;
  Contig(const vt::Call& c, const vt_tensor* x) : t(x) {
    if (x && !vt::is_contiguous(x)) {
      own = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(x)});
      t = own;
    }
  }
};

#endif  // VT_ROWWISE_EMULATE

}  // namespace rowwise

#endif  // VT_CORE_CUDA_ROWWISE_CUH_
