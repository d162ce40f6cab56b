// pack.cpp — the `attention` op pack: scaled dot-product attention, its providers and its backward.
//
//   attention::sdpa(q, k, v, mask, causal, scale, dropout_p) -> (out, lse, rng)
//     provider "flash"    (priority 10): fused tiled kernel, flash.cpp
//     provider "composed" (priority 0):  core ops, composed.cpp
//     out (B, H, Tq, Dv); lse (B, H, Tq) float32 (float64 for float64 inputs); rng int64 (2,) =
//     [seed, offset] of the dropout's Philox draw ([0, 0] without dropout) — the backward rule reads
//     it to regenerate the mask, so it is an output rather than hidden state.
//   attention::sdpa_backward(...) -> (dq, dk, dv): the fused backward from the saved out and lse.
//
// One backward rule serves both providers (the engine uses the op's rule whoever ran the forward):
// it calls attention::sdpa_backward through the dispatcher with the saved q, k, v, mask, out, lse and
// the rng output. The mask gets no gradient, and sdpa_backward has no rule of its own (no double
// backward through attention).
#include <cmath>

#include "attn.hpp"
#include "vt/autograd.hpp"

vt::KernelFn sdpa_flash_cpu;      // flash.cpp
vt::KernelFn sdpa_backward_cpu;   // flash.cpp
vt::KernelFn sdpa_composed_cpu;   // composed.cpp

namespace {

constexpr const char* kSdpa =
    "attention::sdpa(Tensor q, Tensor k, Tensor v, Tensor? mask=None, bool causal=False, float? scale=None, "
    "float dropout_p=0.0) -> (Tensor, Tensor, Tensor)";
constexpr const char* kSdpaBackward =
    "attention::sdpa_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
    "Tensor? mask, bool causal, float scale, float dropout_p, int seed, int offset, Tensor? grad_lse=None) "
    "-> (Tensor, Tensor, Tensor)";

double num(const vt_value& v, double dflt) {
  return v.tag == VT_FLOAT ? v.v.f : v.tag == VT_INT ? (double)v.v.i : dflt;
}

}  // namespace

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
  const int64_t* sd = vt::data<const int64_t>(rng);
  vt::Tensor zeros;
  if (!go) {
    zeros = vt::call(g.host, "core::zeros", {vt::V::sizes(out), out->dtype, out->device});
    go = zeros.get();
  }
  std::vector<vt::Tensor> r = vt::call_n(g.host, "attention::sdpa_backward",
                                         {go, q, g.saved(1), g.saved(2), out, g.out(1), mask, causal, scale, p,
                                          sd[0], sd[1], glse},
                                         3);
  for (int i = 0; i < 3; ++i) g.set_grad(i, std::move(r[(size_t)i]));
}

namespace {

vt_status attention_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "attention", [&] {
    vt::Registrar flash(host, pack, "flash", 10);
    flash.def(kSdpa, VT_CPU, sdpa_flash_cpu, sdpa_bw_rule, /*save_args q,k,v,mask*/ 0b1111, /*out,lse,rng*/ 0b111);
    flash.def(kSdpaBackward, VT_CPU, sdpa_backward_cpu);
    vt::Registrar composed(host, pack, "composed", 0);
    composed.impl("attention::sdpa", VT_CPU, sdpa_composed_cpu);
  });
}

}  // namespace

VT_OPPACK_DEFINE(attention_init)
