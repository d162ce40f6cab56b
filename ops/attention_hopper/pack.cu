// ops/attention_hopper/pack.cu — the `attention_hopper` op pack: a third provider ("hopper",
// priority 20, above the attention pack's flash at 10) of attention::sdpa and
// attention::sdpa_backward on cuda: the forward on the Hopper FMHA kernels of CUTLASS's example 88
// (TMA, wgmma, warp specialisation; fmha_run.cuh), the backward our own (FlashAttention-3's
// algorithm on wgmma, written with CuTe; bwd_wgmma.cuh). The ops, their meta steps and the backward
// rule are the attention pack's: load it first (the manifest's "requires" says so).
//
//   vt-ops build ops/attention_hopper        # -> ops/attention_hopper/build/packs/attention_hopper
//   python: vt.ops.load("ops/attention_hopper/build/packs/attention_hopper")   # hopper serves
//           vt.ops.use("attention::sdpa", "flash", "cuda")                      # back to flash
//
// Serves: the forward and the backward in bfloat16 and float16; head dim D == Dv in {64, 128}, and
// the forward also at 256 (its backward declined: flash's compute, then the composed one, serve it);
// GQA/MQA (k, v with Hkv heads, H % Hkv == 0, query head h on kv head h / (H / Hkv)) both ways on the
// default backward, the ws variants, wgmma2 and wgmma3 (declined by example 88's, VT_HOPPER_BWD=cutlass);
// any Tq and Tk (partial tiles masked); causal (top-left) or not; no mask; dropout_p == 0; q, k, v (and out, grad_out) with a unit stride along D, the
// other strides multiples of 8 elements and 16-byte aligned data (TMA's rules); sizes and strides
// within 32 bits (the kernels index with int); the backward without grad_lse. Every other call is
// declined (VT_ERR_NOT_IMPL before anything is written) and the dispatcher runs the next provider
// by priority, flash; pinned to "hopper", the decline is the error the caller sees, with the reason.
// The forward's rng output is [0, 0] (no dropout draw).
// Our backward runs the warp-specialised kernel (bwd_ws.cuh), GQA/MQA included (a CTA walks its kv
// head's group). VT_HOPPER_BWD (read once, at load; kBackwards below): default (that), ws (the same),
// ws1 and ws2 (ws in other orders of a step's products), wgmma2, wgmma3 (the kernel without warp
// specialisation), for A/B timing. VT_HOPPER_BWD=cutlass puts example 88's float16 backward back in place of
// ours for float16 calls, for A/B timing; with it, the causal backward with Tk > Tq, or with Tq > Tk
// and a partial key block, is declined as before (NOTES.md); bfloat16 stays on ours.
// The D = 64 forward runs on FlashAttention-3's 192 x 128 tile (three consumer warp groups) from
// 1024 queries on, and below that on example 88's 128 x 64 tile made persistent (fewer padded query
// rows: miniGPT's 256 would fill 384; one CTA per SM walking tiles hides the short tiles' prologue:
// 1.48x the rate of the plain 128 x 64 at miniGPT's 64x6x256x64 causal, H200 08:30);
// VT_HOPPER_FWD_D64=128x64|128x64p|192x128 (read once, at load) fixes one, for A/B timing.
// This file holds no CUTLASS code: the kernels compile in their own files, in parallel.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "fmha.hpp"
#include "vt/capabilities.h"

namespace {

using vt_fmha::Strides;

// Declines the call: the next provider by priority (flash) serves it unless "hopper" is pinned.
[[noreturn]] void decline(const vt::Call& c, const char* fmt, ...) {
  char why[384];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  c.fail(VT_ERR_NOT_IMPL, "the hopper provider does not serve this call: %s (vt.ops.use('%s', 'flash', 'cuda') "
         "picks the provider that does)", why, c.op);
  __builtin_unreachable();  // Call::fail throws; nvcc's host pass loses its [[noreturn]]
}

bool fits_int(int64_t x) { return x >= 0 && x <= INT_MAX; }

// VT_HOPPER_BWD, read once at load: "default" (unset) or "ws", FlashAttention-3's warp specialisation
// (bwd_ws.cuh), the fastest at both head dims and with GQA (H200, 2026-12-02 13:45, bf16, time against
// torch's: 1.11x / 1.13x causal at 8x16x2048x128, 1.02-1.05x at 2x16x8192x128, 1.00x / 1.14x at GQA's
// 4x32/8x2048x128 where wgmma2 took 1.64x / 1.77x; bench/RESULTS.md); "ws1" ws in the order of a step's
// products it had until 2026-12-02 (dV, dK, barrier, dQ), "ws2" ws with dV issued before the dS store at
// both head dims (ws does so at D = 64 only); "wgmma2" the zero-spill kernel without warp specialisation
// (bwd_wgmma2.cuh), "wgmma3" it with dQ's bulk reduce-add; "cutlass" example 88's float16 backward
// (float16 calls only; bfloat16 stays on the default, GQA declined)
struct BackwardKernel {
  const char* name;
  void (*d64)(vt::Call&, const vt_fmha::Backward&);
  void (*d128)(vt::Call&, const vt_fmha::Backward&);
  bool gqa;  // takes Hkv < H (a row that leaves it out declines GQA/MQA)
};
constexpr BackwardKernel kBackwards[] = {
    {"default", vt_fmha::backward_ws_d64, vt_fmha::backward_ws_d128, true},
    {"wgmma2", vt_fmha::backward_wgmma2_d64, vt_fmha::backward_wgmma2_d128, true},
    {"wgmma3", vt_fmha::backward_wgmma3_d64, vt_fmha::backward_wgmma3_d128, true},
    {"cutlass", vt_fmha::backward_fp16_d64, vt_fmha::backward_fp16_d128},
    {"ws", vt_fmha::backward_ws_d64, vt_fmha::backward_ws_d128, true},
    {"ws1", vt_fmha::backward_ws1_d64, vt_fmha::backward_ws1_d128, true},
    {"ws2", vt_fmha::backward_ws2_d64, vt_fmha::backward_ws2_d128, true}};
const BackwardKernel* g_backward = &kBackwards[0];
bool is_cutlass(const BackwardKernel* k) { return std::strcmp(k->name, "cutlass") == 0; }

// VT_HOPPER_FWD_D64, read once at load: the D = 64 forward's tile (queries x keys per step) for
// every call, for A/B timing; unset: chosen per call by Tq (forward_d64_for). H200, 2026-12-01,
// 4x16x2048x64 bf16 forward against torch's time: 128x64 1.43x / 1.56x causal, 192x128 1.03x /
// 1.29x (a 128x128 tile, 1.31x / 1.25x, was dropped); 08:30: 128x64 283 / 209 TF/s, 128x64p 303 /
// 225, 192x128 324 / 254; at 64x6x256x64: 128x64 52 / 29 TF/s, 128x64p 76 / 43.
struct ForwardTile {
  const char* name;
  void (*run)(vt::Call&, const vt_fmha::Forward&);
};
constexpr ForwardTile kForwardD64[] = {{"128x64", vt_fmha::forward_d64},
                                       {"128x64p", vt_fmha::forward_d64_128x64p},
                                       {"192x128", vt_fmha::forward_d64_192x128}};
void (*g_forward_d64)(vt::Call&, const vt_fmha::Forward&) = nullptr;  // null: by Tq

void forward_d64_for(vt::Call& c, const vt_fmha::Forward& f) {
  if (g_forward_d64) return g_forward_d64(c, f);
  (f.p.Tq >= 1024 ? vt_fmha::forward_d64_192x128 : vt_fmha::forward_d64_128x64p)(c, f);
}

// A 4-d operand TMA can read where it lies: unit stride along the last dim, the other strides
// multiples of 8 elements (16 bytes) within 32 bits, 16-byte aligned data. A dim of size 1 never
// moves the pointer: its stride is replaced by one TMA takes.
bool tma_view(const vt_tensor* t, Strides* s) {
  if (t->strides[3] != 1 || (reinterpret_cast<uintptr_t>(t->data) & 15) != 0) return false;
  int64_t st[3];
  int64_t inner = t->sizes[3];  // the stride a size-1 dim gets: the next inner dim's extent
  for (int i = 2; i >= 0; --i) {
    st[i] = t->sizes[i] == 1 ? inner : t->strides[i];
    if (st[i] % 8 != 0 || !fits_int(st[i])) return false;
    inner = st[i] * t->sizes[i];
  }
  *s = Strides{st[0], st[1], st[2]};
  return true;
}

// The problem, when the kernels take q, k, v of this call; declines otherwise.
vt_fmha::Problem problem_of(const vt::Call& c, const vt_tensor* q, const vt_tensor* k, const vt_tensor* v,
                            const vt_tensor* mask, bool causal, double scale, double p, bool backward) {
  const bool fp16 = vt::same_dtype(q->dtype, vt::kFloat16);
  if (!fp16 && !vt::same_dtype(q->dtype, vt::kBFloat16))
    decline(c, "dtype %s (bfloat16 and float16 only)", vt::dtype_name(q->dtype));
  if (mask) decline(c, "a mask (none, or causal=True, only)");
  if (p != 0.0) decline(c, "dropout_p = %g (0 only)", p);
  const int64_t B = q->sizes[0], H = q->sizes[1], Tq = q->sizes[2], Tk = k->sizes[2], D = q->sizes[3];
  const int64_t Hkv = k->sizes[1];
  // not D = 32 (ViT's heads): example 88's forward there ran at flash's speed on the H200 (both 1.7x
  // torch's time at 128x8x65x32), and our backward has no D = 32; flash serves both. D = 256: the
  // forward only (fwd_d256.cu); the backward goes to flash's compute, which hands it to the composed one
  if (v->sizes[3] != D || (D != 64 && D != 128 && (D != 256 || backward)))
    decline(c, "head dims D = %lld, Dv = %lld (D == Dv in %s only)", (long long)D, (long long)v->sizes[3],
            backward ? "{64, 128} for the backward" : "{64, 128, 256}");
  // GQA/MQA: torch's enable_gqa convention (query head h reads kv head h / (H / Hkv))
  if (Hkv <= 0 || v->sizes[1] != Hkv || H % Hkv != 0)
    decline(c, "q with %lld heads, k with %lld, v with %lld (k and v alike, dividing q's)", (long long)H,
            (long long)Hkv, (long long)v->sizes[1]);
  if (B == 0 || H == 0 || Tq == 0 || Tk == 0)
    decline(c, "B = %lld, H = %lld, Tq = %lld, Tk = %lld (non-empty only)", (long long)B, (long long)H, (long long)Tq,
            (long long)Tk);
  // the kernels' int indexing: the largest contiguous extent is B*H*T*D (and B*H*T rows, T rounded
  // up to 8 for the backward's row statistics)
  if (!fits_int(B * H * (std::max(Tq, Tk) + 7) * D))
    decline(c, "%lld x %lld x %lld x %lld elements (beyond 32-bit indexing)", (long long)B, (long long)H,
            (long long)std::max(Tq, Tk), (long long)D);
  if (!(std::isfinite(scale) && scale != 0.0)) decline(c, "scale = %g (finite, non-zero only)", scale);
  return vt_fmha::Problem{(int)B, (int)H, (int)Tq, (int)Tk, (int)D, fp16, (float)scale, causal, (int)Hkv};
}

// lse (B, H, Tq) copied into rows of stat_row(Tq) floats (any strides in, TMA's layout out)
__global__ void copy_lse_rows(const float* lse, int64_t sb, int64_t sh, int64_t st, int H, int Tq, int row,
                              float* dest) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
  if (t < Tq) dest[((int64_t)b * H + h) * row + t] = lse[b * sb + h * sh + t * st];
}

void operand(const vt::Call& c, const vt_tensor* t, const char* name, Strides* s) {
  if (!tma_view(t, s))
    decline(c, "%s with strides (%lld, %lld, %lld, %lld) at %p (TMA needs a unit last stride, the others multiples "
            "of 8 within 32 bits, 16-byte aligned data)", name, (long long)t->strides[0], (long long)t->strides[1],
            (long long)t->strides[2], (long long)t->strides[3], t->data);
}

}  // namespace

// Arguments checked and outputs made by the attention pack's meta step.
VT_COMPUTE(sdpa_hopper, "attention::sdpa") {
  const vt_tensor* q = c.arg(0, "q").tensor();
  const vt_tensor* k = c.arg(1, "k").tensor();
  const vt_tensor* v = c.arg(2, "v").tensor();
  const vt_tensor* mask = c.arg(3, "mask").tensor_or_null();
  const bool causal = c.arg(4, "causal").bool_();
  const double D = (double)q->sizes[3];
  const double scale = c.arg(5, "scale").float_or(D > 0 ? 1.0 / std::sqrt(D) : 1.0);
  vt_fmha::Forward f{};
  f.p = problem_of(c, q, k, v, mask, causal, scale, c.arg(6, "dropout_p").float_(), false);
  operand(c, q, "q", &f.sq);
  operand(c, k, "k", &f.sk);
  operand(c, v, "v", &f.sv);
  f.q = q->data, f.k = k->data, f.v = v->data;
  operand(c, c.out(0), "out", &f.so);
  f.out = c.out(0)->data;
  f.lse = static_cast<float*>(c.out(1)->data);
  // GQA: one launch per member of a group, its query heads G apart (fmha_run.cuh): G x the head strides
  const int64_t G = f.p.group();
  if (!fits_int(G * f.sq.h) || !fits_int(G * f.so.h) || !fits_int((int64_t)f.p.H * f.p.Tq))
    decline(c, "q or out head strides %lld, %lld x %lld query heads a group (beyond 32 bits)", (long long)f.sq.h,
            (long long)f.so.h, (long long)G);
  if (f.p.D == 64) forward_d64_for(c, f);
  else if (f.p.D == 128) vt_fmha::forward_d128(c, f);
  else vt_fmha::forward_d256(c, f);
  const cudaError_t e =
      cudaMemsetAsync(c.out(2)->data, 0, 2 * sizeof(int64_t), static_cast<cudaStream_t>(c.ctx->stream));
  if (e != cudaSuccess) c.fail(VT_ERR_RUNTIME, "CUDA error in clearing rng: %s", cudaGetErrorString(e));
}

VT_COMPUTE(sdpa_backward_hopper, "attention::sdpa_backward") {
  const vt_tensor* go = c.arg(0, "grad_out").tensor();
  const vt_tensor* q = c.arg(1, "q").tensor();
  const vt_tensor* k = c.arg(2, "k").tensor();
  const vt_tensor* v = c.arg(3, "v").tensor();
  const vt_tensor* out = c.arg(4, "out").tensor();
  const vt_tensor* lse = c.arg(5, "lse").tensor();
  const vt_tensor* mask = c.arg(6, "mask").tensor_or_null();
  const bool causal = c.arg(7, "causal").bool_();
  const double scale = c.arg(8, "scale").float_();
  const double p = c.arg(9, "dropout_p").float_();
  if (c.arg(12, "grad_lse").tensor_or_null()) decline(c, "a gradient of lse (grad_lse None only)");
  vt_fmha::Backward b{};
  b.p = problem_of(c, q, k, v, mask, causal, scale, p, true);
  // our backward's grid is (key blocks, H, B): H and B within a grid's y and z
  if (b.p.H > 65535 || b.p.B > 65535) decline(c, "B = %d, H = %d (65535 at most each)", b.p.B, b.p.H);
  const BackwardKernel* kernel = is_cutlass(g_backward) && !b.p.fp16 ? &kBackwards[0] : g_backward;
  const bool cutlass_backward = is_cutlass(kernel);
  if (b.p.Hkv != b.p.H && !kernel->gqa)
    decline(c, "GQA/MQA (q with %d heads, k and v with %d) under VT_HOPPER_BWD=%s (every other "
            "backward takes it)", b.p.H, b.p.Hkv, kernel->name);
  if (cutlass_backward) {
    // example 88's causal mask is key > query alone (fmha_run.cuh says why): the rows past Tk
    // would see the zero-filled keys of a partial last key block
    if (causal && b.p.Tq > b.p.Tk && b.p.Tk % vt_fmha::kBackwardKeyBlock != 0)
      decline(c, "causal with Tq = %d > Tk = %d and Tk not a multiple of %d (VT_HOPPER_BWD=cutlass)", b.p.Tq,
              b.p.Tk, vt_fmha::kBackwardKeyBlock);
    // causal with more keys than queries: a key block past the last query tile has no query block
    // to walk, and example 88's load warp then still issues a step its consumers never take (its
    // skip loop has no exit test, the consumers' has) — on an H200 the 1x2x128x384 fp16 case never
    // finished (2026-12-01). Such calls go to flash.
    if (causal && b.p.Tk > b.p.Tq)
      decline(c, "causal with Tk = %d > Tq = %d (VT_HOPPER_BWD=cutlass)", b.p.Tk, b.p.Tq);
  }
  operand(c, q, "q", &b.sq);
  operand(c, k, "k", &b.sk);
  operand(c, v, "v", &b.sv);
  operand(c, out, "out", &b.so);
  operand(c, go, "grad_out", &b.sgo);
  operand(c, c.out(0), "dq", &b.sdq);
  operand(c, c.out(1), "dk", &b.sdk);
  operand(c, c.out(2), "dv", &b.sdv);
  // lse (B, H, Tq) float32 as example 88's TMA reads it: unit stride along Tq, the others multiples
  // of 4 (16 bytes), 16-byte aligned data; otherwise (Tq % 4 != 0 when contiguous, or a view) a copy
  // in rows of stat_row(Tq). Ours (cp.async of 4 bytes a row) needs only the unit stride; it reads
  // the copy all the same.
  const int64_t lb = lse->sizes[0] == 1 ? (int64_t)b.p.H * b.p.Tq : lse->strides[0];
  const int64_t lh = lse->sizes[1] == 1 ? (int64_t)b.p.Tq : lse->strides[1];
  b.lse = static_cast<const float*>(lse->data);
  b.slse = Strides{lb, lh, 1};
  vt::Tensor lse_rows;  // held until the kernels are queued: freed earlier, their buffers could take it
  if (lse->strides[2] != 1 || lb % 4 != 0 || lh % 4 != 0 || !fits_int(lb) || !fits_int(lh) ||
      (reinterpret_cast<uintptr_t>(lse->data) & 15) != 0) {
    const int row = vt_fmha::stat_row(b.p.Tq);
    const int64_t n = (int64_t)b.p.B * b.p.H * row;
    lse_rows = c.empty(&n, 1, vt::kFloat32);
    float* dest = static_cast<float*>(lse_rows->data);
    const dim3 grid((b.p.Tq + 127) / 128, b.p.H, b.p.B);
    copy_lse_rows<<<grid, 128, 0, static_cast<cudaStream_t>(c.ctx->stream)>>>(
        b.lse, lse->strides[0], lse->strides[1], lse->strides[2], b.p.H, b.p.Tq, row, dest);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) c.fail(VT_ERR_RUNTIME, "CUDA error in copying lse into TMA's rows: %s", cudaGetErrorString(e));
    b.lse = dest;
    b.slse = Strides{(int64_t)b.p.H * row, row, 1};
  }
  b.q = q->data, b.k = k->data, b.v = v->data, b.out = out->data, b.grad_out = go->data;
  b.dq = c.out(0)->data, b.dk = c.out(1)->data, b.dv = c.out(2)->data;
  (b.p.D == 64 ? kernel->d64 : kernel->d128)(c, b);
}

namespace {

vt_status attention_hopper_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "attention_hopper", [&] {
    const char* bwd = std::getenv("VT_HOPPER_BWD");
    const BackwardKernel* backward = &kBackwards[0];
    if (bwd && *bwd) {
      backward = nullptr;
      for (const BackwardKernel& k : kBackwards)
        if (std::strcmp(bwd, k.name) == 0) backward = &k;
    }
    if (!backward)
      vt::fail(VT_ERR_VALUE, "VT_HOPPER_BWD='%s': 'default' (ws, GQA/MQA included), 'wgmma2' (ours, zero-spill), 'wgmma3' "
               "(wgmma2 with dQ's bulk reduce-add), 'cutlass' (example 88's, float16), 'ws' (warp-specialised: TMA "
               "producer, dQ writer, two consumer groups), 'ws1' (ws in its first order of a step's products) or 'ws2' "
               "(ws with dV issued before the dS store)", bwd);
    g_backward = backward;
    const char* tile = std::getenv("VT_HOPPER_FWD_D64");
    g_forward_d64 = nullptr;
    if (tile && *tile) {
      for (const ForwardTile& t : kForwardD64)
        if (std::strcmp(tile, t.name) == 0) g_forward_d64 = t.run;
      if (!g_forward_d64)
        vt::fail(VT_ERR_VALUE, "VT_HOPPER_FWD_D64='%s': the D = 64 forward's tile for every call, '128x64', "
                 "'128x64p' (persistent) or '192x128' (unset: 192x128 from 1024 queries on, else 128x64p)", tile);
    }
    vt::Registrar r(host, pack, "hopper", 20);  // above flash (10): serves what it takes, declines the rest
    r.compute("attention::sdpa", VT_CUDA, sdpa_hopper);
    r.compute("attention::sdpa_backward", VT_CUDA, sdpa_backward_hopper);
  });
}

}  // namespace

VT_OPPACK_DEFINE(attention_hopper_init)

// What the provider needs and promises (vt/capabilities.h; checked at load, shown by vt-ops info):
// the ops are the attention pack's; wgmma and TMA in sm_90a code run on compute capability 9.0
// only. The limits are the shape rules above that a tool can check from shapes alone.
VT_OPPACK_CAPABILITIES(R"json({
  "abi_minor": 1,
  "requires": {"attention": ">=0.1,<1"},
  "providers": [
    {"provider": "hopper", "device": "cuda", "compute_capability": {"min": "9.0", "max": "9.0"},
     "dtypes": ["bfloat16", "float16"], "cuda_graphs": true, "deterministic": false,
     "shapes": "D == Dv in {64, 128, 256}, any Tq and Tk, GQA/MQA, no mask, no dropout; the rest: flash",
     "limits": [{"arg": "q", "dim": -1, "one_of": [64, 128, 256]}, {"arg": "v", "dim": -1, "one_of": [64, 128, 256]}]},
    {"provider": "hopper", "device": "cuda", "ops": ["attention::sdpa_backward"],
     "shapes": "D == Dv in {64, 128}, any Tq and Tk, GQA/MQA, no mask, no dropout, no grad_lse; the rest: flash",
     "limits": [{"arg": "q", "dim": -1, "one_of": [64, 128]}, {"arg": "v", "dim": -1, "one_of": [64, 128]}]}
  ]
})json")
