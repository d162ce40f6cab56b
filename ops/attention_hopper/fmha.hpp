// ops/attention_hopper/fmha.hpp — one attention problem as the pack's kernels take it, and the
// kernels (fwd_d64.cu, fwd_d128.cu, bwd_d64.cu, bwd_d128.cu: one head dim each, so they compile in
// parallel). pack.cu checks and plans; the kernels only run. No CUTLASS here: pack.cu stays cheap.
//
// Shape legend (attention::sdpa's): q (B, H, Tq, D), k and v (B, Hkv, Tk, D), out (B, H, Tq, D),
// lse (B, H, Tq) float32 — the natural-log sum-exp of the scaled scores of each query row. Every
// 4-d operand has a unit stride along D; Strides holds its other three, in elements.
// GQA/MQA: H % Hkv == 0 and query head h reads key/value head h / (H / Hkv) (torch's enable_gqa);
// Hkv == H is plain multi-head attention.
#pragma once

#include <cstdint>

#include "vt/oppack.hpp"

namespace vt_fmha {

struct Strides {
  int64_t b, h, t;
};

struct Problem {
  int B, H, Tq, Tk, D;
  bool fp16;    // float16, else bfloat16
  float scale;  // multiplies q @ k^T before the softmax
  bool causal;  // key j kept for query i when j <= i (top-left aligned, like torch's is_causal)
  int Hkv;      // key/value heads (H for plain attention)
  int group() const { return H / Hkv; }  // query heads sharing one key/value head
};

struct Forward {
  Problem p;
  const void *q, *k, *v;
  Strides sq, sk, sv;
  void* out;   // (B, H, Tq, D) in the layout the meta step chose (q's), unit stride along D
  Strides so;
  float* lse;  // contiguous (B, H, Tq)
};

// The per-row statistics the backward reads through TMA (lse, rowsum(dO * O)) need 16-byte strides:
// rows of Tq rounded up to 8 floats, as the example's own backward lays them out.
constexpr int stat_row(int Tq) { return (Tq + 7) / 8 * 8; }

// Keys per CTA of the backward kernels; a partial last block (Tk % kBackwardKeyBlock != 0) needs
// its zero-filled keys masked (fmha_run.cuh).
constexpr int kBackwardKeyBlock = 128;

struct Backward {
  Problem p;
  const void *q, *k, *v, *out, *grad_out;
  Strides sq, sk, sv, so, sgo;
  const float* lse;  // 16-byte aligned; unit stride along Tq
  Strides slse;      // (b, h, t = 1), b and h multiples of 4
  void *dq, *dk, *dv;  // shaped like q, k, v, in the layouts the meta step chose; unit stride along D
  Strides sdq, sdk, sdv;
};

// On the call's stream: the forward in bfloat16 or float16, the backward in float16 only (see
// fmha_run.cuh). They fail the call with VT_ERR_NOT_IMPL (nothing written) when CUTLASS's own checks
// refuse the problem, so the dispatcher hands it to the next provider.
void forward_d64(vt::Call& c, const Forward& f);
void forward_d128(vt::Call& c, const Forward& f);
// D = 64 on FlashAttention-3's forward tile (fwd_d64_192x128.cu): 192 queries over three warp groups,
// 128 keys a step; pack.cu picks it for long sequences (or VT_HOPPER_FWD_D64 for every call).
void forward_d64_192x128(vt::Call& c, const Forward& f);
// D = 64 on 128 x 64 tiles, persistent (fwd_d64_persistent.cu): one CTA per SM walking tiles.
void forward_d64_128x64p(vt::Call& c, const Forward& f);
// D = 256 (fwd_d256.cu), forward only: the backward at D = 256 is declined (flash/composed serve it).
void forward_d256(vt::Call& c, const Forward& f);
void backward_fp16_d64(vt::Call& c, const Backward& b);
void backward_fp16_d128(vt::Call& c, const Backward& b);
// Our own backward (bwd_wgmma2.cuh, on bwd_wgmma.cuh's tiles and launches): bfloat16 and float16, causal
// or not, any Tq and Tk, lse with a unit stride along Tq (VT_HOPPER_BWD=wgmma2; VT_HOPPER_BWD=cutlass
// picks example 88's for float16), and GQA/MQA (Hkv < H: a CTA walks its key block's whole group of query heads, dK and dV summed in
// registers). The other backwards decline Hkv != H.
void backward_wgmma2_d64(vt::Call& c, const Backward& b);
void backward_wgmma2_d128(vt::Call& c, const Backward& b);
// ... with dQ through shared tiles and bulk reduce-adds (VT_HOPPER_BWD=wgmma3; also bwd_wgmma2.cuh).
void backward_wgmma3_d64(vt::Call& c, const Backward& b);
void backward_wgmma3_d128(vt::Call& c, const Backward& b);
// FlashAttention-3's warp specialisation on that arithmetic: a TMA producer warp, a dQ writer warp,
// two consumer groups at 240 registers (bwd_ws.cuh; VT_HOPPER_BWD=ws), and two other orders of a step's
// products (VT_HOPPER_BWD=ws2: dV first; ws1: the first order), for A/B timing.
void backward_ws_d64(vt::Call& c, const Backward& b);
void backward_ws_d128(vt::Call& c, const Backward& b);
void backward_ws1_d64(vt::Call& c, const Backward& b);
void backward_ws1_d128(vt::Call& c, const Backward& b);
void backward_ws2_d64(vt::Call& c, const Backward& b);
void backward_ws2_d128(vt::Call& c, const Backward& b);

}  // namespace vt_fmha
