// composed.cpp — provider "composed" of attention::sdpa and attention::sdpa_backward: the textbook
// formulas written with core ops through the host (resolved at call time, so the attention pack
// does not depend on core's load order). Device-neutral: registered for cpu and cuda (on cuda it is
// the attention until the fused Hopper kernels exist). It materialises the (B, H, Tq, Tk) scores:
// it is the reference the tests compare the fused provider with, and the demonstration of
// vt.ops.use("attention::sdpa", provider="composed").
//
// Forward:
//   S = (q @ k^T) * scale;  S = masked_fill(S, !mask, -inf) or S + mask;  S = masked_fill(S, triu, -inf)
//   lse = logsumexp(S, -1);  P = exp(S - lse) (0 on fully masked rows);  P = dropout(P);  out = P @ v
// Backward (from the saved out and lse; P recomputed, the dropout mask regenerated from the
// forward's seed and offset by attention::dropout_mask, the keep rule of attn.hpp):
//   Pd = P * keep / (1 - p);  dv = Pd^T @ dout;  dP = (dout @ v^T) * keep / (1 - p)
//   Dr = rowsum(dout * out) - grad_lse;  dS = P * (dP - Dr);  dq = dS @ k * scale;  dk = dS^T @ q * scale
//
// Grouped-query attention (k, v with Hkv heads dividing q's H): k and v are expanded over the group
// first, (B, Hkv, Tk, D) -> (B, Hkv, G, Tk, D) -> (B, H, Tk, D) (torch's repeat_interleave), and the
// backward sums dk, dv of the expanded heads back over the group: (B, H, ..) -> (B, Hkv, G, ..) -> sum.
// float16/bfloat16 inputs compute in float32 like the fused provider. Dropout draws its keep mask
// with attention::dropout_draw (the rule of attn.hpp, core::dropout's), which records the draw's
// seed and offset into the rng output on the device; the backward regenerates the mask from that
// tensor with attention::dropout_mask. Nothing is read on the host, so both directions work under
// CUDA-graph capture (each replay draws fresh numbers). The computes get arguments checked and
// outputs made by the ops' meta steps (pack.cpp); the results are copied into those outputs.
#include "attn.hpp"
#include "vt/autograd.hpp"

using vt::V;

namespace {
vt::Tensor op1(const vt_host* h, const char* name, std::initializer_list<V> args) { return vt::call(h, name, args); }

// the dropout keep rule of attn.hpp (core::dropout's) at (seed, offset), into n bools
void fill_keep_mask(const vt_host* host, bool* m, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const uint32_t thr = attn::dropout_threshold(p);
  vt::parallel_for(host, 0, (n + 3) / 4, 2048, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)g);
      for (int64_t w = 0; w < 4 && g * 4 + w < n; ++w) m[g * 4 + w] = (r.x[w] >> 8) >= thr;
    }
  });
}

// q, k, v (and more) converted to the accumulation type where they are 16-bit; `hold` owns the
// converted copies
void to_acc(const vt_host* H, vt_dtype acc, std::initializer_list<vt_tensor**> ts, vt::Tensor* hold) {
  for (vt_tensor** t : ts) {
    if (*t && !vt::same_dtype((*t)->dtype, acc)) {
      *hold = op1(H, "core::to_dtype", {*t, acc});
      *t = hold->get();
    }
    ++hold;
  }
}

// k or v (B, Hkv, T, E) repeated over the group of G query heads each kv head serves: (B, Hkv * G, T, E)
vt::Tensor expand_heads(const vt_host* H, vt_tensor* t, int64_t G) {
  const std::vector<int64_t> five = {t->sizes[0], t->sizes[1], G, t->sizes[2], t->sizes[3]};
  const std::vector<int64_t> four = {t->sizes[0], t->sizes[1] * G, t->sizes[2], t->sizes[3]};
  vt::Tensor u = op1(H, "core::unsqueeze", {t, (int64_t)2});
  return op1(H, "core::reshape", {op1(H, "core::expand", {u, V(five)}), V(four)});
}

// the gradient of expand_heads: g (B, Hkv * G, T, E) summed over each group, (B, Hkv, T, E)
vt::Tensor sum_heads(const vt_host* H, vt_tensor* g, int64_t G) {
  const std::vector<int64_t> five = {g->sizes[0], g->sizes[1] / G, G, g->sizes[2], g->sizes[3]}, group = {2};
  return op1(H, "core::sum", {op1(H, "core::reshape", {g, V(five)}), V(group), false});
}

// S = q @ k^T * scale with the mask and the causal rule applied (-inf where a key is dropped)
vt::Tensor masked_scores(const vt_host* H, vt_tensor* q, vt_tensor* k, vt_tensor* mask, bool causal, double scale,
                         const attn::Dims& d, vt_dtype acc, vt_device dev) {
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
  return s;
}

// P = exp(S - lse) with lse (B, H, Tq, 1); 0 on rows whose lse is -inf (every key masked)
vt::Tensor probs(const vt_host* H, vt_tensor* s, vt_tensor* lse, vt_dtype acc, vt_device dev) {
  const std::vector<int64_t> scalar_shape;
  vt::Tensor ninf = op1(H, "core::full", {V(scalar_shape), -INFINITY, V(acc), V(dev)});
  vt::Tensor dead = op1(H, "core::eq", {lse, ninf});
  vt::Tensor lse0 = op1(H, "core::masked_fill", {lse, dead, 0.0});
  return op1(H, "core::exp", {op1(H, "core::sub", {s, lse0})});
}
}  // namespace

// Arguments checked and outputs made by the meta step (pack.cpp); the last core ops write into
// them (core::copy_, which also converts float32 back to a float16/bfloat16 out).
VT_COMPUTE(sdpa_composed, "attention::sdpa") {
  const vt_host* H = c.host;
  const attn::SdpaArgs a(c);
  vt_tensor *q = a.q, *k = a.k, *v = a.v, *mask = a.mask;
  const attn::Dims d = attn::dims(q, k, v);
  const double scale = a.scale(d.D), p = a.p;
  const vt_device dev = c.ctx->device;
  const vt_dtype acc = attn::acc_dtype(q->dtype);
  vt::Tensor hold[3], kx, vx;
  to_acc(H, acc, {&q, &k, &v}, hold);
  if (d.group() != 1) {
    kx = expand_heads(H, k, d.group()), vx = expand_heads(H, v, d.group());
    k = kx.get(), v = vx.get();
  }
  vt::Tensor s = masked_scores(H, q, k, mask, a.causal, scale, d, acc, dev);
  const std::vector<int64_t> last = {-1};
  vt::Tensor lse = op1(H, "core::logsumexp", {s, V(last), true});
  vt::Tensor pr = probs(H, s, lse, acc, dev);
  if (p > 0 && d.B * d.H * d.Tq * d.Tk > 0) {  // records its [seed, offset] into the rng output
    const std::vector<int64_t> sz = {d.B, d.H, d.Tq, d.Tk};
    vt::Tensor keep = op1(H, "attention::dropout_draw", {V(sz), p, c.out(2)});
    pr = op1(H, "core::dropout_backward", {pr, keep, p < 1.0 ? 1.0 / (1.0 - p) : 0.0});
  } else {
    vt::call(H, "core::fill_", {c.out(2), 0.0});  // [0, 0]: no draw
  }
  vt::call(H, "core::copy_", {c.out(0), op1(H, "core::matmul", {pr, v})});
  vt::call(H, "core::copy_", {c.out(1), op1(H, "core::squeeze", {lse, V(last)})});
}

// The backward from the saved out and lse (see the top of this file). Arguments checked and
// outputs (dq, dk, dv) made by the meta step (pack.cpp).
VT_COMPUTE(sdpa_backward_composed, "attention::sdpa_backward") {
  const vt_host* H = c.host;
  const attn::SdpaBackwardArgs a(c);
  vt_tensor *go = a.go, *q = a.q, *k = a.k, *v = a.v, *out = a.out;
  const attn::Dims d = attn::dims(q, k, v);
  const vt_device dev = c.ctx->device;
  const vt_dtype acc = attn::acc_dtype(q->dtype);
  vt::Tensor hold[5], kx, vx;
  to_acc(H, acc, {&go, &q, &k, &v, &out}, hold);
  if (d.group() != 1) {
    kx = expand_heads(H, k, d.group()), vx = expand_heads(H, v, d.group());
    k = kx.get(), v = vx.get();
  }
  const std::vector<int64_t> scalar_shape, last = {-1};
  vt::Tensor s = masked_scores(H, q, k, a.mask, a.causal, a.scale, d, acc, dev);
  vt::Tensor lse = op1(H, "core::unsqueeze", {a.lse, (int64_t)-1});
  vt::Tensor pr = probs(H, s, lse, acc, dev);
  s.reset();
  // dropout: the forward's keep mask, regenerated; Pd = P * keep / (1 - p)
  const bool drop = a.p > 0 && d.B * d.H * d.Tq * d.Tk > 0;
  const double dscale = a.p < 1.0 ? 1.0 / (1.0 - a.p) : 0.0;
  vt::Tensor keep, pdrop;
  if (drop) {
    const std::vector<int64_t> sz = {d.B, d.H, d.Tq, d.Tk};
    keep = op1(H, "attention::dropout_mask", {V(sz), a.p, a.seed, a.offset, V(dev), a.device_rng()});
    pdrop = op1(H, "core::dropout_backward", {pr, keep, dscale});
  }
  vt::Tensor pdt = op1(H, "core::transpose", {drop ? pdrop.get() : pr.get(), (int64_t)-2, (int64_t)-1});
  vt::Tensor dv = op1(H, "core::matmul", {pdt, go});
  pdt.reset();
  pdrop.reset();
  vt::Tensor vt_ = op1(H, "core::transpose", {v, (int64_t)-2, (int64_t)-1});
  vt::Tensor dp = op1(H, "core::matmul", {go, vt_});
  if (drop) dp = op1(H, "core::dropout_backward", {dp, keep, dscale});
  // Dr = rowsum(dout * out) - grad_lse; dS = P * (dP - Dr)
  vt::Tensor dr = op1(H, "core::sum", {op1(H, "core::mul", {go, out}), V(last), true});
  if (a.glse) dr = op1(H, "core::sub", {dr, op1(H, "core::unsqueeze", {a.glse, (int64_t)-1})});
  vt::Tensor ds = op1(H, "core::mul", {pr, op1(H, "core::sub", {dp, dr})});
  pr.reset();
  dp.reset();
  vt::Tensor sc = op1(H, "core::full", {V(scalar_shape), a.scale, V(acc), V(dev)});
  vt::Tensor dq = op1(H, "core::mul", {op1(H, "core::matmul", {ds, k}), sc});
  vt::Tensor dst = op1(H, "core::transpose", {ds, (int64_t)-2, (int64_t)-1});
  vt::Tensor dk = op1(H, "core::mul", {op1(H, "core::matmul", {dst, q}), sc});
  if (d.group() != 1) dk = sum_heads(H, dk.get(), d.group()), dv = sum_heads(H, dv.get(), d.group());
  vt::call(H, "core::copy_", {c.out(0), dq.get()});
  vt::call(H, "core::copy_", {c.out(1), dk.get()});
  vt::call(H, "core::copy_", {c.out(2), dv.get()});
}

// attention::dropout_mask on cpu: element e keeps when (word e % 4 of group offset + e / 4) >> 8
// >= ceil(p * 2^24), the rule of attn.hpp (and core::dropout's); at the rng tensor's values when
// one is given
VT_COMPUTE(dropout_mask_cpu, "attention::dropout_mask") {
  const vt_tensor* out = c.out(0);
  const vt_tensor* rng = c.arg(5, "rng").tensor_or_null();
  uint64_t seed = (uint64_t)c.arg(2, "seed").int_(), offset = (uint64_t)c.arg(3, "offset").int_();
  if (rng) {
    seed = (uint64_t)vt::data<const int64_t>(rng)[0];
    offset = (uint64_t)vt::data<const int64_t>(rng)[1];
  }
  fill_keep_mask(c.host, vt::data<bool>(out), out->numel, c.arg(1, "p").float_(), seed, offset);
}

// attention::dropout_draw on cpu: reserves the mask's Philox groups from the cpu generator (the
// count core::dropout reserves for as many elements) and records where they start into rng
VT_COMPUTE(dropout_draw_cpu, "attention::dropout_draw") {
  const vt_tensor* out = c.out(0);
  vt_tensor* rng = c.arg(2, "rng").tensor();
  uint64_t seed = 0, offset = 0;
  c.host->philox_reserve(c.ctx->device, (uint64_t)((out->numel + 3) / 4), &seed, &offset);
  vt::data<int64_t>(rng)[0] = (int64_t)seed;
  vt::data<int64_t>(rng)[1] = (int64_t)offset;
  fill_keep_mask(c.host, vt::data<bool>(out), out->numel, c.arg(1, "p").float_(), seed, offset);
}
