// flash_cuda.cuh — what the CUDA kernels of provider "flash" share (flash_fwd.cu, flash_bwd.cu):
// the tile sizes, the tensor-core primitives (cp.async, ldmatrix, mma.sync m16n8k16: sm80 and
// newer), the swizzled shared-memory tile, the score rule (scale, causal, masks) and the dropout
// keep rule of attn.hpp on the device, and the checks that decide whether the kernels take a call
// (what they do not take runs on the composed provider: see takes()).
// Not here: the kernels (flash_fwd.cu, flash_bwd.cu; short sequences: flash_short.cu; float32:
// flash32.cuh, flash32_*.cu), the CPU provider (flash.cpp).
//
// Shape legend as in attn.hpp: q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, D) (the kernels
// take Dv == D only), out (B, H, Tq, D), lse (B, H, Tq) float32. Grouped-query attention: query
// head h reads kv head h / group (group = H / Hkv, 1 without it); the dK/dV kernels run one CTA
// per kv head and key block and loop over the group's query heads, so dk, dv are sums kept in
// registers (deterministic: no atomics, a fixed order). When that grid is too small for the GPU
// (MQA at a small batch), kv_split CTAs share a kv head, each walking group / kv_split query heads
// into its own slot of a (B, Hkv * kv_split, Tk, D) scratch that the launcher sums over the slots. The outputs (out; dq, dk, dv) are
// written through the strides the meta step chose (pack.cpp: q's memory order, or one packed qkv
// buffer), never assumed contiguous.
//
// Fragment layouts of mma.sync.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4:
//   A (16 x 16, row major), 4 regs of 2 halves: a0 (row g, k 2t..2t+1), a1 (row g+8, k 2t..),
//     a2 (row g, k 2t+8..), a3 (row g+8, k 2t+8..)
//   B (16 x 8, "col": for each n, consecutive k), 2 regs: b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C/D (16 x 8 floats), 4 regs: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, cols 2t, 2t+1)
// so the C fragments of two neighbouring n-tiles are the A fragment of one 16-wide k-step
// (pack_a): scores become the A operand of the next GEMM without touching shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "vt/philox.h"
#ifdef FLASH_EMULATE
// ops/attention/lab/flash_emulate.cpp compiles the kernels as host C++ (threads stand in for the
// CUDA threads; ldmatrix, mma, shuffles and barriers emulated) to check their index arithmetic
// without a GPU: it provides the CUDA keywords and the primitives below
#include "flash_emulate.hpp"
#else
#include <cuda_runtime.h>

#include "attn.hpp"
#include "vt/autograd.hpp"  // vt::call
#include "vt/cuda/launch.cuh"
#endif

namespace flashcu {

// ---- tile sizes ---------------------------------------------------------------------------------
constexpr int kWarps = 4;                 // every kernel: 4 warps, each owning 16 rows of the tile
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerCta = 16 * kWarps;  // 64: queries per forward / dQ block, keys per dK/dV block
constexpr int kKeys = 64;                 // keys per step of the forward and dQ loops
// the forward: each warp owns 2 m16 tiles (32 queries), so every K/V fragment it loads feeds 2 MMAs;
// keys a step: 64, and 32 at D = 128 (O's 2 x 64 floats a thread leave room for 2 x 16 scores only)
constexpr int kFwdTiles = 2;
constexpr int kFwdRows = 16 * kFwdTiles * kWarps;  // 128 queries a forward CTA
template <int D> constexpr int kFwdKeys = D == 128 ? 32 : 64;
// queries per step of the dK/dV loop: 32 at D = 128 keeps dK, dV (64 + 64 floats a thread) and
// the two score tiles within the register file
template <int D> constexpr int kBwdQueries = D == 128 ? 32 : 64;
// D = 32 keeps these tiles (ptxas -v, sm_90, no spills): the forward at 238 registers (64 keys a
// step; 128 would spill 336 bytes, and 3 CTAs an SM 240), dQ at 134 (4 CTAs an SM would spill 68
// bytes), dK/dV at 203 with kDkdvMinCtas = 1: left to itself ptxas aims for 3 CTAs an SM (168
// registers) and spills 12 bytes. 0 leaves __launch_bounds__' minimum to ptxas (as at D 64, 128).
template <int D> constexpr int kDkdvMinCtas = D == 32 ? 1 : 0;
constexpr int kStatPad = 64;              // lse/delta rows padded per (b, h) to a multiple of this
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

enum MaskKind { kNoMask = 0, kBoolMask = 1, kAddMask = 2 };

// ---- arguments ----------------------------------------------------------------------------------
// A (B, H, T, D) operand: element (b, h, t, d) at p + b * sb + h * sh + t * st + d (unit last stride,
// 16-byte aligned rows: what cp.async needs; the launchers copy anything else to contiguous).
struct Operand {
  const void* p;
  int64_t sb, sh, st;
};

// An output (B, H, T, D) where the meta step laid it out: element (b, h, t, d) at p + b * sb + h * sh
// + t * st + d (unit last stride, 16-byte aligned rows: the kernels store 16 bytes at a time; the
// launchers give any other layout a contiguous scratch, copied into the output after the kernels).
struct Dest {
  void* p;
  int64_t sb, sh, st;
};

// The mask broadcast to (B, H, Tq, Tk) (strides 0 where broadcast); an additive mask is float32.
struct Mask {
  const void* p = nullptr;
  int kind = kNoMask;
  int64_t sb = 0, sh = 0, st = 0, sd = 0;
};

// The dropout of one call: the keep threshold and the 1 / (1 - p) of kept values (the Philox seed
// and offset travel beside it: the forward's as host->philox_args, unpacked on the device; the
// backward's as the values the forward recorded).
struct Dropout {
  bool on = false;
  uint32_t thr = 0;
  float rs = 1.f;
};

// What the forward kernels take (flash_fwd.cu: 16-bit; flash32_fwd.cu: float32).
struct FwdParams {
  Operand q, k, v;
  Dest out;        // (B, H, Tq, D)
  float* lse;      // (B, H, Tq) contiguous
  int64_t* rng;    // (2,): [seed, offset]
  Mask mask;
  int H, BH, Tq, Tk, nqb;  // H, BH: query heads, B * H
  int group = 1;           // query heads per kv head (H / Hkv)
  float scale_log2;
  bool causal;
  Dropout drop;
  vt_philox_args philox;
};

// What the backward kernels take (flash_bwd.cu: prepass and 16-bit; flash32_bwd.cu: float32).
struct BwdParams {
  Operand q, k, v, dout;       // dout: unit last stride, 16-byte rows (cp.async)
  const void* o;               // any strides (prepass only)
  int64_t o_sb, o_sh, o_st, o_sd;
  const float* lse;            // (B, H, Tq), any strides
  int64_t l_sb, l_sh, l_st;
  const float* glse;           // (B, H, Tq) or null
  int64_t g_sb, g_sh, g_st;
  Dest dq, dk, dv;             // outputs, shaped like q, k, v
  float *lse2, *delta;         // scratch (BH, Tq_pad)
  Mask mask;
  int D, H, BH, Tq, Tk, Tq_pad;  // H, BH: query heads, B * H
  int group = 1;                 // query heads per kv head (H / Hkv)
  int kv_split = 1;              // dK/dV CTAs per kv head and key block (divides group): the grid is
                                 // B * Hkv * kv_split * key blocks, dk/dv (B, Hkv * kv_split, Tk, D)
  float scale_log2, scale;
  bool causal;
  Dropout drop;
  uint64_t seed, offset;
  const int64_t* rng;  // when set, [seed, offset] on the device instead of the two above
};

// Element (b, h, 0, 0) of an operand.
template <class T>
__device__ __forceinline__ const T* head_of(const Operand& x, int b, int h) {
  return static_cast<const T*>(x.p) + b * x.sb + h * x.sh;
}
// Element (b, h, 0, 0) of an output.
template <class T>
__device__ __forceinline__ T* head_of(const Dest& x, int b, int h) {
  return static_cast<T*>(x.p) + b * x.sb + h * x.sh;
}

// The forward's dropout seed and offset, unpacked on the device (graph-safe; 0 without dropout);
// the first thread of block 0 records them as the rng output.
__device__ __forceinline__ void forward_philox(const FwdParams& p, uint64_t& seed, uint64_t& offset) {
  seed = offset = 0;
  if (p.drop.on) {
    const vt_philox_seed_offset so = vt_philox_unpack(p.philox);
    seed = so.seed, offset = so.offset;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    p.rng[0] = (int64_t)seed;
    p.rng[1] = (int64_t)offset;
  }
}

__device__ __forceinline__ uint64_t drop_seed(const BwdParams& p) { return p.rng ? (uint64_t)p.rng[0] : p.seed; }
__device__ __forceinline__ uint64_t drop_offset(const BwdParams& p) { return p.rng ? (uint64_t)p.rng[1] : p.offset; }

// ---- device primitives ----------------------------------------------------------------------------
#ifndef FLASH_EMULATE
// the CTA's dynamic shared memory (the launch's third argument; 16-byte aligned for cp.async)
__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char smem[];
  return smem;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, asynchronously; rows past the end are zero-filled (src_bytes = 0 reads
// nothing, but the address must still be valid: callers pass the operand's base then).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// c += a * b on tensor cores (16-bit inputs, float32 accumulators)
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif  // FLASH_EMULATE

// two floats as one register of two 16-bit values (lo in the low half: the lower k / column)
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// The A fragment of k-step kk from the C fragments of n-tiles 2kk and 2kk+1 (see the top).
template <class T>
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}

// ---- the shared-memory tile ---------------------------------------------------------------------------
// R rows x D 16-bit elements, row major, 16-byte chunks XOR-swizzled so that the 8 rows an ldmatrix
// 8x8 reads (one chunk each, rows 8a .. 8a + 7) sit in 8 different 16-byte bank groups of a 128-byte
// line: by (row % 8) when a row is 128 bytes or more (D >= 64); at D = 32 a row is half a line (4
// chunks), so rows 2r and 2r + 1 share one and the chunk is XORed with (row / 2) % 4 (which also keeps
// it within the row's 4 chunks).
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  static_assert(D == 32 || D % 64 == 0, "rows of 4 chunks (D 32) or a multiple of 8");
  if constexpr (D == 32) return row * D + ((chunk ^ ((row >> 1) & 3)) << 3);
  else return row * D + ((chunk ^ (row & 7)) << 3);
}

// Rows [t0, t0 + R) of one (b, h) of an operand into a tile (rows >= T zero-filled), by all
// kThreads threads, asynchronously (the caller commits and waits).
template <class T, int R, int D>
__device__ __forceinline__ void load_tile(T* tile, const T* base, int64_t st, int t0, int T_) {
  constexpr int kChunks = D / 8;
  for (int idx = threadIdx.x; idx < R * kChunks; idx += kThreads) {
    const int r = idx / kChunks, ch = idx % kChunks;
    const bool ok = t0 + r < T_;
    const T* src = ok ? base + (int64_t)(t0 + r) * st + ch * 8 : base;
    cp_async16(tile + swz<D>(r, ch), src, ok);
  }
}

// Rows [row0, row0 + R) of a tile (a warp's own rows) to global rows t0 + r < T_ of an output head
// (rows st elements apart, unit stride along D), 16 bytes a lane (the warp wrote them with
// store_frag first).
template <class T, int D, int R = 16>
__device__ __forceinline__ void store_rows(const T* tile, T* out, int64_t st, int t0, int T_, int row0, int lane) {
  constexpr int kChunks = D / 8;
  for (int idx = lane; idx < R * kChunks; idx += 32) {
    const int r = row0 + idx / kChunks, ch = idx % kChunks;
    if (t0 + r < T_)
      *reinterpret_cast<uint4*>(out + (int64_t)(t0 + r) * st + ch * 8) =
          *reinterpret_cast<const uint4*>(tile + swz<D>(r, ch));
  }
}

// A warp's accumulators acc[D / 8][4] (16 rows from row0, D columns) times s into the tile.
template <class T, int D>
__device__ __forceinline__ void store_frag(T* tile, const float (&acc)[D / 8][4], float s, int row0, int lane) {
  const int r = row0 + lane / 4, c = 2 * (lane % 4);
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + c;
    *reinterpret_cast<uint32_t*>(tile + swz<D>(r, col / 8) + col % 8) = pack2<T>(acc[nt][0] * s, acc[nt][1] * s);
    *reinterpret_cast<uint32_t*>(tile + swz<D>(r + 8, col / 8) + col % 8) = pack2<T>(acc[nt][2] * s, acc[nt][3] * s);
  }
}

// ldmatrix addresses (see the fragment layouts at the top). Each loads one x4:
//   a_addr:       the A fragment of rows row0..row0+15, k-step kk of a row-major tile
//   bn_addr:      B fragments of two n-tiles (rows n0..n0+15 of the tile are n, its columns k):
//                 regs {b0, b1} of n-tile n0 and {b0, b1} of n-tile n0+8, k-step kk
//   bt_addr:      B fragments of two n-tiles (rows k0..k0+15 of the tile are k, its columns
//                 n = 16 np ..): regs {b0, b1} of n-tile 2np and of 2np+1 (ldmatrix .trans)
template <int D, class T>
__device__ __forceinline__ const T* a_addr(const T* tile, int row0, int kk, int lane) {
  return tile + swz<D>(row0 + (lane & 15), kk * 2 + (lane >> 4));
}
template <int D, class T>
__device__ __forceinline__ const T* bn_addr(const T* tile, int n0, int kk, int lane) {
  return tile + swz<D>(n0 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1));
}
template <int D, class T>
__device__ __forceinline__ const T* bt_addr(const T* tile, int k0, int np, int lane) {
  return tile + swz<D>(k0 + (lane & 7) + (((lane >> 3) & 1) << 3), np * 2 + (lane >> 4));
}

// ---- the score rule ---------------------------------------------------------------------------------
// The score of query i and key j in log2 units: s * scale * log2(e) (+ mask * log2(e)), -inf where
// the causal rule (j > i, top-left aligned) or a bool mask drops it. Callers guarantee i < Tq and
// j < Tk whenever a mask is read.
__device__ __forceinline__ float masked_score(float s, float scale_log2, const Mask& m, int64_t mb, int i, int j,
                                             bool causal) {
  float x = s * scale_log2;
  if (causal && j > i) return -INFINITY;
  if (m.kind == kBoolMask) {
    if (!static_cast<const uint8_t*>(m.p)[mb + i * m.st + j * m.sd]) x = -INFINITY;
  } else if (m.kind == kAddMask) {
    x += static_cast<const float*>(m.p)[mb + i * m.st + j * m.sd] * kLog2e;
  }
  return x;
}

// ---- dropout (the keep rule of attn.hpp) ----------------------------------------------------------
// Element e of the (B, H, Tq, Tk) probabilities is kept when (word e % 4 of Philox group
// offset + e / 4 under key seed) >> 8 >= thr.
__device__ __forceinline__ bool keep1(uint64_t seed, uint64_t offset, uint64_t e, uint32_t thr) {
  const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (e >> 2));
  return (r.x[e & 3] >> 8) >= thr;
}
// elements e and e + 1: one Philox group when e is even (both in the same group of four)
__device__ __forceinline__ void keep2(uint64_t seed, uint64_t offset, uint64_t e, uint32_t thr, bool& k0,
                                      bool& k1) {
  if ((e & 1) == 0) {
    const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (e >> 2));
    k0 = (r.x[e & 3] >> 8) >= thr;
    k1 = (r.x[(e & 3) + 1] >> 8) >= thr;
  } else {
    k0 = keep1(seed, offset, e, thr);
    k1 = keep1(seed, offset, e + 1, thr);
  }
}

}  // namespace flashcu

#ifndef FLASH_EMULATE
// ---- host side: what the kernels take ---------------------------------------------------------------
namespace flashcu {

// The device's compute capability major (cached per device index).
int device_cc_major(int index);

// Whether the flash kernels take a call with these inputs: float16/bfloat16 (tensor cores) or
// float32 (CUDA cores: flash32_*.cu), head dims D == Dv in {32, 64, 128}, every size > 0 and within
// int range, an sm80+ device. Anything else runs on the composed provider (called from the flash
// compute: the dispatcher has no fall-through).
inline bool takes(const vt_tensor* q, const attn::Dims& d, int device_index) {
  const vt::ScalarType st = vt::scalar_type(q->dtype);
  if (st != vt::ScalarType::Float16 && st != vt::ScalarType::BFloat16 && st != vt::ScalarType::Float32) return false;
  if (d.D != d.Dv || (d.D != 32 && d.D != 64 && d.D != 128)) return false;
  if (d.B <= 0 || d.H <= 0 || d.Tq <= 0 || d.Tk <= 0) return false;
  if (d.Tq > (1 << 30) || d.Tk > (1 << 30) || d.B * d.H > (1 << 30)) return false;
  const int64_t blocks = (std::max(d.Tq, d.Tk) + kRowsPerCta - 1) / kRowsPerCta * d.B * d.H;
  if (blocks > INT32_MAX) return false;  // one grid dimension
  return device_cc_major(device_index) >= 8;
}

// An operand of cp.async-friendly layout (unit last stride, 16-byte aligned base and row strides),
// else a contiguous copy (held by `hold`).
inline Operand operand(vt::Call& c, const vt_tensor* t, vt::Tensor& hold) {
  const int64_t es = vt::scalar_type(t->dtype) == vt::ScalarType::Float32 ? 4 : 2;
  auto fits = [&](const vt_tensor* x) {
    if (x->strides[3] != 1 && x->sizes[3] != 1) return false;
    if (reinterpret_cast<uintptr_t>(x->data) % 16 != 0) return false;
    for (int i = 0; i < 3; ++i)
      if (x->sizes[i] != 1 && (x->strides[i] * es) % 16 != 0) return false;
    return true;
  };
  if (!fits(t)) {
    hold = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(t)});
    t = hold.get();
  }
  return Operand{t->data, t->strides[0], t->strides[1], t->strides[2]};
}

// Output `t` as the kernels write it: where it lies when its layout suits the 16-byte stores
// (unit last stride, 16-byte aligned base and row strides), else a new contiguous scratch in
// `scratch`, which the caller copies into t after the kernels (finish_dest).
inline Dest dest(vt::Call& c, vt_tensor* t, vt::Tensor& scratch) {
  const int64_t es = vt::element_size(t->dtype);
  bool fits = (t->strides[3] == 1 || t->sizes[3] == 1) && reinterpret_cast<uintptr_t>(t->data) % 16 == 0;
  for (int i = 0; i < 3; ++i)
    if (t->sizes[i] != 1 && (t->strides[i] * es) % 16 != 0) fits = false;
  if (!fits) {
    scratch = c.empty_like(t);
    t = scratch.get();
  }
  return Dest{t->data, t->strides[0], t->strides[1], t->strides[2]};
}
inline void finish_dest(vt::Call& c, vt_tensor* t, const vt::Tensor& scratch) {
  if (scratch) vt::call(c.host, "core::copy_", {t, scratch.get()});
}

// The mask argument as the kernels read it (an additive mask converted to float32; `hold` keeps
// the copy alive).
inline Mask mask_of(vt::Call& c, const vt_tensor* mask, vt::Tensor& hold) {
  Mask m;
  if (!mask || mask->numel == 0) return m;
  if (vt::scalar_type(mask->dtype) == vt::ScalarType::Bool) {
    m.kind = kBoolMask;
  } else {
    m.kind = kAddMask;
    if (!vt::same_dtype(mask->dtype, vt::kFloat32)) {
      hold = vt::call(c.host, "core::to_dtype", {const_cast<vt_tensor*>(mask), vt::kFloat32});
      mask = hold.get();
    }
  }
  const attn::Strides4 s = attn::mask_strides(mask);
  m.p = mask->data;
  m.sb = s.b, m.sh = s.h, m.st = s.t, m.sd = s.d;
  return m;
}

// The short-sequence kernels (flash_short.cu): one CTA a whole (b, h). They take what takes()
// accepted when it is 16-bit, D 32 or 64, Tq and Tk <= 128 and without dropout (the backward also
// one query head a kv head); VT_FLASH_SHORT=0, read once, leaves every call to the tiled kernels
// (an A/B switch for the benchmarks and tests).
inline bool short_takes(const vt_tensor* q, const attn::Dims& d, double p, bool backward) {
  static const bool on = [] {
    const char* v = std::getenv("VT_FLASH_SHORT");
    return !(v && v[0] == '0' && v[1] == 0);
  }();
  const vt::ScalarType st = vt::scalar_type(q->dtype);
  return on && st != vt::ScalarType::Float32 && (d.D == 32 || d.D == 64) && d.Tq <= 128 && d.Tk <= 128 &&
         p == 0 && (!backward || d.group() == 1);
}
void launch_short_fwd(const vt::Call& c, const FwdParams& p, int D, bool bf16);
void launch_short_bwd(const vt::Call& c, const BwdParams& p, int D, bool bf16);

// The float32 kernels (flash32_fwd.cu, flash32_bwd.cu): the forward for D in {32, 64, 128}, and the
// dK/dV and dQ kernels after the caller's prepass (flash_bwd_prepass<float>).
void launch_fwd32(const vt::Call& c, const FwdParams& p, int D);
void launch_bwd32(const vt::Call& c, const BwdParams& p);

// Dynamic shared memory above the default 48 KiB needs the kernel's opt-in (every launch: cheap,
// and right for whichever device is current).
template <class K>
inline void allow_smem(const vt::Call& c, K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    vt::cuda::check(c, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                    "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
}

}  // namespace flashcu
#endif  // FLASH_EMULATE
