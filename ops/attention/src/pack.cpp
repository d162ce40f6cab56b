// pack.cpp — the `attention` op pack: scaled dot-product attention, its meta steps, its providers
// and its backward.
//
//   attention::sdpa(q, k, v, mask, causal, scale, dropout_p, enable_gqa) -> (out, lse, rng)
//     meta step (here): every argument check, the three outputs (every device, meta included)
//     provider "flash"    (priority 10): fused tiled compute, flash.cpp (cpu) and flash_fwd.cu
//                         (cuda: tensor cores for bfloat16/float16, FFMA for float32 (flash32_*.cu),
//                         at D in {32, 64, 128}; other calls run the composed compute from inside it)
//     provider "composed" (priority 0):  compute written with core ops, composed.cpp
//     out (B, H, Tq, Dv); lse (B, H, Tq) float32 (float64 for float64 inputs); rng int64 (2,) =
//     [seed, offset] of the dropout's Philox draw ([0, 0] without dropout) — the backward regenerates
//     the mask from it, so it is an output rather than hidden state. The compute fills it on the
//     device (and reserves the Philox numbers); on the meta device it is only made.
//   attention::sdpa_backward(...) -> (dq, dk, dv): the backward from the saved out and lse
//     meta step (here); provider "flash" (cpu, fused: flash.cpp; cuda: flash_bwd.cu), provider
//     "composed" (every device: core ops, composed.cpp)
//   attention::dropout_mask(size, p, seed, offset, device, rng) -> bool mask: the dropout keep rule
//     of attn.hpp at a given Philox seed and offset, or at the [seed, offset] held in the int64 (2,)
//     tensor rng on the mask's device (read there: graph-safe); what the composed backward
//     regenerates. attention::dropout_draw(size, p, rng) -> bool mask: a fresh draw from the
//     device's generator, recording its [seed, offset] into rng (the composed forward's mask).
//     Computes for cpu (composed.cpp) and cuda (dropout_mask.cu).
// On cuda the flash provider's kernels (flash_cuda.cuh) serve what they take and hand the rest to
// the composed compute; a Hopper-specific provider is later work.
//
// One backward rule serves both providers (the engine uses the op's rule whoever ran the forward):
// it calls attention::sdpa_backward through the dispatcher with the saved q, k, v, mask, out, lse and
// the rng output — as a tensor off the cpu, so the kernels read the seed on the device and a
// backward with dropout never waits for the GPU (CUDA-graph capture of a whole training step works). The mask gets no gradient, and sdpa_backward has no rule of its own (no double
// backward through attention).
//
// Argument rules (the meta steps): q (B, H, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), one floating
// dtype and one device; Hkv == H, or with enable_gqa (grouped-query attention, torch's flag; the
// last argument, so a provider reading the first seven by position is unaffected) any Hkv that
// divides H: query head h attends to kv head h / (H / Hkv). sdpa_backward reads the grouping from
// the shapes (its forward checked them) and gives dk, dv k's and v's shapes, summed over the group;
// mask bool (True = keep) or floating (additive, any floating dtype), broadcastable to (B, H, Tq, Tk)
// (the query heads'); dropout_p in [0, 1]. causal keeps key j for query i when j <= i
// (top-left aligned, like torch's is_causal) for any Tq and Tk, so it needs no rule of its own: a
// query row with no key left (Tk == 0) gives out 0 and lse -inf, like a fully masked row.
//
// Output layouts (the meta steps decide them once for every provider and device; the computes
// write through the strides they get): out is dense with its dims in q's memory order (attn.hpp's
// empty_in_layout_of: a head-transposed q gives an out whose transpose(1, 2) is contiguous, a
// contiguous q a contiguous out); lse and rng are contiguous. dq, dk, dv: when q, k, v are packed
// (the three slices of one (B, T, 3C) projection that split(C, dim=-1) and a view/transpose make;
// attn.hpp's packed_qkv_step) they are the same slices of one new (.., 3C) buffer, so the
// backward of the split returns a view of it instead of a cat; otherwise each is dense in its own
// input's memory order.
#include <cmath>
#include <cstring>

#include "attn.hpp"
#include "vt/autograd.hpp"
#include "vt/capabilities.h"

vt::KernelFn sdpa_flash_cpu;            // flash.cpp
vt::KernelFn sdpa_backward_cpu;         // flash.cpp
vt::KernelFn sdpa_composed;             // composed.cpp (device-neutral)
vt::KernelFn sdpa_backward_composed;    // composed.cpp (device-neutral)
vt::KernelFn dropout_mask_cpu;          // composed.cpp
vt::KernelFn dropout_draw_cpu;          // composed.cpp
#ifdef VT_WITH_CUDA
vt::KernelFn dropout_mask_cuda;         // dropout_mask.cu
vt::KernelFn dropout_draw_cuda;         // dropout_mask.cu
vt::KernelFn sdpa_flash_cuda;           // flash_fwd.cu
vt::KernelFn sdpa_backward_flash_cuda;  // flash_bwd.cu
#endif

namespace {

constexpr const char* kSdpa =
    "attention::sdpa(Tensor q, Tensor k, Tensor v, Tensor? mask=None, bool causal=False, float? scale=None, "
    "float dropout_p=0.0, bool enable_gqa=False) -> (Tensor, Tensor, Tensor)";
constexpr const char* kSdpaBackward =
    "attention::sdpa_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
    "Tensor? mask, bool causal, float scale, float dropout_p, int seed, int offset, Tensor? grad_lse=None, "
    "Tensor? rng=None) -> (Tensor, Tensor, Tensor)";
constexpr const char* kDropoutMask =
    "attention::dropout_mask(int[] size, float p, int seed, int offset, Device? device=None, Tensor? rng=None) "
    "-> Tensor";
constexpr const char* kDropoutDraw = "attention::dropout_draw(int[] size, float p, Tensor rng) -> Tensor";

double num(const vt_value& v, double dflt) {
  return v.tag == VT_FLOAT ? v.v.f : v.tag == VT_INT ? (double)v.v.i : dflt;
}

// ---- argument checks (the meta steps') ----------------------------------------------------------
// gqa: k and v may have Hkv heads dividing q's H (sdpa's enable_gqa; always for sdpa_backward)
attn::Dims check_qkv(vt::Call& c, const vt_tensor* q, const vt_tensor* k, const vt_tensor* v, bool gqa) {
  const vt_tensor* ts[3] = {q, k, v};
  const char* names[3] = {"q", "k", "v"};
  const char* legend[3] = {"(B, H, Tq, D)", "(B, Hkv, Tk, D)", "(B, Hkv, Tk, Dv)"};
  for (int i = 0; i < 3; ++i) {
    if (ts[i]->ndim != 4)
      c.fail(VT_ERR_VALUE, "%s must have 4 dims %s, got shape %s (%d dims)", names[i], legend[i],
             vt::shape_str(ts[i]).c_str(), ts[i]->ndim);
    if (!vt::is_floating(ts[i]->dtype))
      c.fail(VT_ERR_TYPE, "%s must have a floating dtype, got %s", names[i], vt::dtype_name(ts[i]->dtype));
  }
  for (int i = 1; i < 3; ++i) {
    c.check_same_dtype(q, "q", ts[i], names[i]);
    c.check_same_device(q, "q", ts[i], names[i]);
    if (ts[i]->sizes[0] != q->sizes[0])
      c.fail(VT_ERR_VALUE, "%s must have the batch size B of q: q is %s, %s is %s", names[i],
             vt::shape_str(q).c_str(), names[i], vt::shape_str(ts[i]).c_str());
  }
  const long long H = q->sizes[1], Hkv = k->sizes[1];
  if (v->sizes[1] != Hkv)
    c.fail(VT_ERR_VALUE, "v must have the head count of k: k is %s (%lld heads), v is %s (%lld heads)",
           vt::shape_str(k).c_str(), Hkv, vt::shape_str(v).c_str(), (long long)v->sizes[1]);
  if (Hkv != H && !gqa)
    c.fail(VT_ERR_VALUE, "k and v must have the head count H of q, or fewer heads that divide it with "
           "enable_gqa=True (grouped-query attention): q is %s (H = %lld), k is %s (Hkv = %lld)",
           vt::shape_str(q).c_str(), H, vt::shape_str(k).c_str(), Hkv);
  if (Hkv != H && (Hkv == 0 || Hkv > H || H % Hkv != 0))
    c.fail(VT_ERR_VALUE, "k's head count Hkv = %lld must divide q's H = %lld (enable_gqa=True: query head h "
           "attends to kv head h / (H / Hkv)): q is %s, k is %s", Hkv, H, vt::shape_str(q).c_str(),
           vt::shape_str(k).c_str());
  if (k->sizes[3] != q->sizes[3])
    c.fail(VT_ERR_VALUE, "k must have the head dim D of q: q is %s (D = %lld), k is %s (D = %lld)",
           vt::shape_str(q).c_str(), (long long)q->sizes[3], vt::shape_str(k).c_str(), (long long)k->sizes[3]);
  if (v->sizes[2] != k->sizes[2])
    c.fail(VT_ERR_VALUE, "v must have the length Tk of k: k is %s (Tk = %lld), v is %s (Tk = %lld)",
           vt::shape_str(k).c_str(), (long long)k->sizes[2], vt::shape_str(v).c_str(), (long long)v->sizes[2]);
  return attn::dims(q, k, v);
}

void check_mask(vt::Call& c, const vt_tensor* mask, const vt_tensor* q, const attn::Dims& d) {
  if (!mask) return;
  if (!(vt::is_floating(mask->dtype) || vt::scalar_type(mask->dtype) == vt::ScalarType::Bool))
    c.fail(VT_ERR_TYPE, "mask must be bool (True = keep) or a floating additive mask, got %s",
           vt::dtype_name(mask->dtype));
  c.check_same_device(q, "q", mask, "mask");
  const int64_t full[4] = {d.B, d.H, d.Tq, d.Tk};
  bool ok = mask->ndim <= 4;
  for (int32_t i = 0; ok && i < mask->ndim; ++i) {
    const int64_t s = mask->sizes[i], f = full[4 - mask->ndim + i];
    ok = s == f || s == 1;
  }
  if (!ok)
    c.fail(VT_ERR_VALUE, "mask of shape %s cannot broadcast to (B, H, Tq, Tk) = %s", vt::shape_str(mask).c_str(),
           vt::shape_str(full, 4).c_str());
}

void check_dropout(vt::Call& c, double p) {
  if (!(p >= 0.0 && p <= 1.0)) c.fail(VT_ERR_VALUE, "dropout_p must be in [0, 1], got %g", p);
}

// rng: the int64 (2,) [seed, offset] tensor of an sdpa forward, on `device`
void check_rng(vt::Call& c, const vt_tensor* rng, vt_device device) {
  if (!rng) return;
  if (vt::scalar_type(rng->dtype) != vt::ScalarType::Int64 || rng->ndim != 1 || rng->sizes[0] != 2 ||
      rng->strides[0] != 1)
    c.fail(VT_ERR_VALUE, "rng must be the contiguous int64 (2,) [seed, offset] tensor of an sdpa forward, got %s %s",
           vt::dtype_name(rng->dtype), vt::shape_str(rng).c_str());
  if (!vt::same_device(rng->device, device))
    c.fail(VT_ERR_VALUE, "rng must be on the device of the result (%s:%d), got %s:%d", vt::device_name(device),
           device.index, vt::device_name(rng->device), rng->device.index);
}

// t must have q's dtype and the given 4-d shape (grad_out, out) or be acc-typed of shape (B, H, Tq)
void check_like_out(vt::Call& c, const vt_tensor* q, const vt_tensor* t, const char* name, const int64_t* osz) {
  c.check_same_dtype(q, "q", t, name);
  if (t->ndim != 4 || std::memcmp(t->sizes, osz, sizeof(int64_t) * 4) != 0)
    c.fail(VT_ERR_VALUE, "%s must have the shape (B, H, Tq, Dv) = %s, got %s", name, vt::shape_str(osz, 4).c_str(),
           vt::shape_str(t).c_str());
}
void check_stat(vt::Call& c, const vt_tensor* q, const vt_tensor* t, const char* name, const int64_t* osz) {
  const vt_dtype acc = attn::acc_dtype(q->dtype);
  if (!vt::same_dtype(t->dtype, acc))
    c.fail(VT_ERR_TYPE, "%s must be %s for %s inputs, got %s", name, vt::dtype_name(acc), vt::dtype_name(q->dtype),
           vt::dtype_name(t->dtype));
  if (t->ndim != 3 || std::memcmp(t->sizes, osz, sizeof(int64_t) * 3) != 0)
    c.fail(VT_ERR_VALUE, "%s must have the shape (B, H, Tq) = %s, got %s", name, vt::shape_str(osz, 3).c_str(),
           vt::shape_str(t).c_str());
}

// dq, dk, dv: packed q, k, v (attn::packed_qkv_step) get three slices of one new buffer in the
// same arrangement, so the backward of their split joins them without a copy (runtime's
// split_backward); any others each a tensor in its input's layout (attn::empty_in_layout_of).
void set_qkv_grads(vt::Call& c, const vt_tensor* q, const vt_tensor* k, const vt_tensor* v) {
  if (const int64_t step = attn::packed_qkv_step(q, k, v)) {
    const int64_t n = 3 * q->numel;  // dense: the three tile [0, 3 numel) exactly
    vt::Tensor buf = c.empty(&n, 1, q->dtype);
    for (int i = 0; i < 3; ++i) c.set_out(i, c.view(buf.get(), q->sizes, q->strides, 4, i * step));
    return;
  }
  c.set_out(0, attn::empty_in_layout_of(c, q, q->sizes, q->dtype));
  c.set_out(1, attn::empty_in_layout_of(c, k, k->sizes, q->dtype));
  c.set_out(2, attn::empty_in_layout_of(c, v, v->sizes, q->dtype));
}

}  // namespace

// ---- meta steps ------------------------------------------------------------------------------------
VT_META_FN(sdpa_meta, "attention::sdpa") {
  const attn::SdpaArgs a(c);
  const attn::Dims d = check_qkv(c, a.q, a.k, a.v, a.enable_gqa);
  check_mask(c, a.mask, a.q, d);
  check_dropout(c, a.p);
  const int64_t osz[4] = {d.B, d.H, d.Tq, d.Dv}, two = 2;
  c.set_out(0, attn::empty_in_layout_of(c, a.q, osz, a.q->dtype));
  c.set_out(1, c.empty(osz, 3, attn::acc_dtype(a.q->dtype)));
  c.set_out(2, c.empty(&two, 1, vt::kInt64));
}

VT_META_FN(sdpa_backward_meta, "attention::sdpa_backward") {
  const attn::SdpaBackwardArgs a(c);
  const vt_tensor* q = a.q;
  const attn::Dims d = check_qkv(c, q, a.k, a.v, /*gqa*/ true);
  check_mask(c, a.mask, q, d);
  check_dropout(c, a.p);
  const int64_t osz[4] = {d.B, d.H, d.Tq, d.Dv};
  check_like_out(c, q, a.go, "grad_out", osz);
  check_like_out(c, q, a.out, "out", osz);
  check_stat(c, q, a.lse, "lse", osz);
  if (a.glse) check_stat(c, q, a.glse, "grad_lse", osz);
  check_rng(c, a.rng, q->device);
  set_qkv_grads(c, q, a.k, a.v);
}

VT_META_FN(dropout_mask_meta, "attention::dropout_mask") {
  const vt_int_list size = c.arg(0, "size").ints();
  check_dropout(c, c.arg(1, "p").float_());
  c.arg(2, "seed").int_();
  c.arg(3, "offset").int_();
  c.check_sizes("size", size);
  c.set_out(0, c.empty(size.data, (int32_t)size.len, vt::kBool));
  // a tensor argument picks the call's device; a `device` naming another one is a mistake
  const vt_tensor* rng = c.arg(5, "rng").tensor_or_null();
  check_rng(c, rng, c.arg(4, "device").device_or(c.out(0)->device));
  check_rng(c, rng, c.out(0)->device);
}

VT_META_FN(dropout_draw_meta, "attention::dropout_draw") {
  const vt_int_list size = c.arg(0, "size").ints();
  check_dropout(c, c.arg(1, "p").float_());
  const vt_tensor* rng = c.arg(2, "rng").tensor();
  check_rng(c, rng, rng->device);
  c.check_sizes("size", size);
  c.set_out(0, c.empty(size.data, (int32_t)size.len, vt::kBool));
}

// ---- backward rule ---------------------------------------------------------------------------------
VT_BACKWARD(sdpa_bw_rule, "attention::sdpa") {
  vt_tensor* go = g.grad_out(0);
  vt_tensor* glse = g.grad_out(1);
  if ((!go && !glse) || !(g.needs(0) || g.needs(1) || g.needs(2))) return;
  vt_tensor* q = g.saved(0);
  vt_tensor* out = g.out(0);
  vt_tensor* rng = g.out(2);
  vt_tensor* mask = g.arg(3).tag == VT_TENSOR ? g.arg(3).v.t : nullptr;
  const bool causal = g.arg(4).v.b != 0;
  const double scale = num(g.arg(5), attn::default_scale(q->sizes[3]));
  const double p = num(g.arg(6), 0.0);
  // the forward's Philox seed/offset: read here on cpu; elsewhere the rng tensor itself goes down and
  // the kernels read it on the device (no host wait: a captured backward with dropout works); none
  // on the meta device (nothing was drawn)
  int64_t sd[2] = {0, 0};
  vt_tensor* rng_arg = nullptr;
  if (p > 0.0 && rng->device.type == VT_CPU) std::memcpy(sd, rng->data, sizeof sd);
  else if (p > 0.0 && rng->device.type != VT_META) rng_arg = rng;
  vt::Tensor zeros;
  if (!go) {
    zeros = vt::call(g.host, "core::zeros", {vt::V::sizes(out), out->dtype, out->device});
    go = zeros.get();
  }
  std::vector<vt::Tensor> r = vt::call_n(g.host, "attention::sdpa_backward",
                                         {go, q, g.saved(1), g.saved(2), out, g.out(1), mask, causal, scale, p,
                                          sd[0], sd[1], glse, rng_arg},
                                         3);
  for (int i = 0; i < 3; ++i) g.set_grad(i, std::move(r[(size_t)i]));
}

namespace {

vt_status attention_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "attention", [&] {
    vt::Registrar flash(host, pack, "flash", 10);
    flash.define(kSdpa, sdpa_meta, sdpa_bw_rule, /*save_args q,k,v,mask*/ 0b1111, /*out,lse,rng*/ 0b111);
    flash.define(kSdpaBackward, sdpa_backward_meta);
    flash.define(kDropoutMask, dropout_mask_meta);
    flash.define(kDropoutDraw, dropout_draw_meta);
    flash.compute("attention::sdpa", VT_CPU, sdpa_flash_cpu);
    flash.compute("attention::sdpa_backward", VT_CPU, sdpa_backward_cpu);
    vt::Registrar composed(host, pack, "composed", 0);
    composed.compute("attention::dropout_mask", VT_CPU, dropout_mask_cpu);
    composed.compute("attention::dropout_draw", VT_CPU, dropout_draw_cpu);
    composed.compute("attention::sdpa", VT_CPU, sdpa_composed);
    composed.compute("attention::sdpa_backward", VT_CPU, sdpa_backward_composed);
#ifdef VT_WITH_CUDA
    // flash on cuda: bfloat16/float16 (tensor cores), float32 (FFMA), D == Dv in {32, 64, 128}, sm80+;
    // any other call runs the composed compute from inside it (the dispatcher has no fall-through
    // between providers)
    flash.compute("attention::sdpa", VT_CUDA, sdpa_flash_cuda);
    flash.compute("attention::sdpa_backward", VT_CUDA, sdpa_backward_flash_cuda);
    composed.compute("attention::sdpa", VT_CUDA, sdpa_composed);
    composed.compute("attention::sdpa_backward", VT_CUDA, sdpa_backward_composed);
    composed.compute("attention::dropout_mask", VT_CUDA, dropout_mask_cuda);
    composed.compute("attention::dropout_draw", VT_CUDA, dropout_draw_cuda);
#endif
  });
}

}  // namespace

VT_OPPACK_DEFINE(attention_init)

// What the providers need and promise (vt/capabilities.h; checked at load, shown by vt-ops info).
// The composed provider calls core's ops, hence the requirement on core.
VT_OPPACK_CAPABILITIES(R"json({
  "abi_minor": 1,
  "requires": {"core": ">=0.1,<1"},
  "providers": [
    {"provider": "flash", "device": "cpu", "dtypes": ["float32", "float64", "float16", "bfloat16"],
     "deterministic": true,
     "shapes": "q, k, v 4-D (B, H, T, D), k and v with Hkv dividing H (enable_gqa); fused and tiled, the T x T scores never exist"},
    {"provider": "flash", "device": "cuda", "compute_capability": {"min": "8.0"},
     "dtypes": ["bfloat16", "float16", "float32"], "cuda_graphs": true, "deterministic": true,
     "shapes": "head dim D == Dv in {32, 64, 128}, GQA/MQA; any other call runs the composed compute inside it",
     "limits": [{"arg": "q", "dim": -1, "one_of": [32, 64, 128]},
                {"arg": "v", "dim": -1, "one_of": [32, 64, 128]}]},
    {"provider": "composed", "device": "cpu", "deterministic": true,
     "shapes": "any 4-D q, k, v; core ops (matmul, softmax), the T x T scores materialised"},
    {"provider": "composed", "device": "cuda", "cuda_graphs": true, "deterministic": true,
     "shapes": "any 4-D q, k, v; core ops (matmul, softmax), the T x T scores materialised"}
  ]
})json")
