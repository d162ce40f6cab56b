// composed.cpp — provider "composed" of attention::sdpa: the textbook formula written with core ops
// through the host (resolved at call time, so the attention pack does not depend on core's load
// order). It materialises the (B, H, Tq, Tk) scores: it is the reference the tests compare the fused
// provider with, and the demonstration of vt.ops.use("attention::sdpa", provider="composed").
//
//   S = (q @ k^T) * scale;  S = masked_fill(S, !mask, -inf) or S + mask;  S = masked_fill(S, triu, -inf)
//   lse = logsumexp(S, -1);  P = exp(S - lse) (0 on fully masked rows);  P = dropout(P);  out = P @ v
//
// float16/bfloat16 inputs compute in float32 like the fused provider. Dropout uses core::dropout,
// whose Philox keep rule is the one attn.hpp documents; the seed and offset it will draw are read
// just before the call (a reservation of 0 counters) and returned in the rng output, so the op's
// one backward rule regenerates the same mask. (A concurrent random op on another thread between
// the read and core::dropout's own reservation would shift it; the fused provider has no such gap.)
// It is a compute: the arguments were checked and the outputs made by the op's meta step
// (pack.cpp); the results are copied into those outputs.
#include "attn.hpp"
#include "vt/autograd.hpp"

using vt::V;

namespace {
vt::Tensor op1(const vt_host* h, const char* name, std::initializer_list<V> args) { return vt::call(h, name, args); }
}  // namespace

// Arguments checked and outputs made by the meta step (pack.cpp); the last core ops write into
// them (core::copy_, which also converts float32 back to a float16/bfloat16 out).
VT_COMPUTE(sdpa_composed_cpu, "attention::sdpa") {
  const vt_host* H = c.host;
  const attn::SdpaArgs a(c);
  vt_tensor *q = a.q, *k = a.k, *v = a.v, *mask = a.mask;
  const bool causal = a.causal;
  const attn::Dims d = attn::dims(q, k, v);
  const double scale = a.scale(d.D), p = a.p;
  const vt_device dev = c.ctx->device;
  const vt_dtype acc = attn::acc_dtype(q->dtype);
  const bool cast = !vt::same_dtype(q->dtype, acc);
  vt::Tensor qa, ka, va;
  if (cast) {
    qa = op1(H, "core::to_dtype", {q, acc});
    ka = op1(H, "core::to_dtype", {k, acc});
    va = op1(H, "core::to_dtype", {v, acc});
    q = qa.get(), k = ka.get(), v = va.get();
  }
  const std::vector<int64_t> scalar_shape;
  vt::Tensor kt = op1(H, "core::transpose", {k, (int64_t)-2, (int64_t)-1});
  vt::Tensor s = op1(H, "core::matmul", {q, kt});
  vt::Tensor sc = op1(H, "core::full", {V(scalar_shape), scale, V(acc), V(dev)});
  s = op1(H, "core::mul", {s, sc});
  if (mask && vt::scalar_type(mask->dtype) == vt::ScalarType::Bool) {
    vt::Tensor drop = op1(H, "core::logical_not", {mask});
    s = op1(H, "core::masked_fill", {s, drop, -INFINITY});
  } else if (mask) {
    vt::Tensor m = vt::same_dtype(mask->dtype, acc) ? op1(H, "core::contiguous", {mask})
                                                      : op1(H, "core::to_dtype", {mask, acc});
    s = op1(H, "core::add", {s, m});
  }
  if (causal) {
    const std::vector<int64_t> tt = {d.Tq, d.Tk};
    vt::Tensor ones = op1(H, "core::ones", {V(tt), V(vt::kBool), V(dev)});
    vt::Tensor above = op1(H, "core::triu", {ones, (int64_t)1});
    s = op1(H, "core::masked_fill", {s, above, -INFINITY});
  }
  const std::vector<int64_t> last = {-1};
  vt::Tensor lse = op1(H, "core::logsumexp", {s, V(last), true});
  vt::Tensor ninf = op1(H, "core::full", {V(scalar_shape), -INFINITY, V(acc), V(dev)});
  vt::Tensor dead = op1(H, "core::eq", {lse, ninf});
  vt::Tensor lse0 = op1(H, "core::masked_fill", {lse, dead, 0.0});
  vt::Tensor pr = op1(H, "core::exp", {op1(H, "core::sub", {s, lse0})});
  uint64_t seed = 0, offset = 0;
  if (p > 0 && d.B * d.H * d.Tq * d.Tk > 0) {
    c.host->philox_reserve(dev, 0, &seed, &offset);  // what core::dropout will draw
    std::vector<vt::Tensor> dr = vt::call_n(H, "core::dropout", {pr, p, true}, 2);
    pr = std::move(dr[0]);
  }
  vt::call(H, "core::copy_", {c.out(0), op1(H, "core::matmul", {pr, v})});
  vt::call(H, "core::copy_", {c.out(1), op1(H, "core::squeeze", {lse, V(last)})});
  int64_t* rng = vt::data<int64_t>(c.out(2));
  rng[0] = (int64_t)seed;
  rng[1] = (int64_t)offset;
}
