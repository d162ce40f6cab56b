// ops/core/src/loss.cpp — cross_entropy (fused log-softmax + NLL) and mse_loss on CPU, with backward.
//
// cross_entropy(input, target, ignore_index=-100, label_smoothing=0.0, reduction='mean')
//     -> (loss, lse)
//   input (N, C) or (N, C, d1, ...) or (C,) logits; target int64 class indices of shape (N, d1, ...)
//   (or 0-d). Per position: lse = log sum_c exp(x_c), loss = (1 - eps) * (lse - x_t)
//   + eps * (lse - mean_c x_c); positions whose target is ignore_index have loss 0 and do not
//   count for 'mean' (all ignored: nan, as torch). `lse` (one per position, float32 for
//   float16/bfloat16) is kept for the backward op:
// cross_entropy_backward(grad_output, input, target, lse, ignore_index, label_smoothing, reduction)
//   grad_x_c = w * (exp(x_c - lse) - (1 - eps) [c == t] - eps / C), w = grad (sum), grad / count
//   (mean), grad[position] (none); 0 on ignored positions. It has no backward rule: double
//   backward through cross_entropy is not supported.
// cross_entropy_fused(same arguments) -> (loss, lse, grad): cross_entropy that also writes the
//   input's gradient for grad_output 1 in the same pass over the logits (what training calls: the
//   backward then reads the logits no more). Its backward scales that buffer by grad_output in
//   place and hands it out, once (loss_buffer.hpp); a second backward recomputes through
//   cross_entropy_backward. The buffer belongs to the backward: callers drop the third output.
// cross_entropy_grad_scale(grad_output, grad, reduction) -> grad: the fused backward's step,
//   grad *= grad_output in place (per position for 'none'), skipped where grad_output is exactly 1
//   (x * 1 == x); returns a view of `grad`. Not named with '_': the buffer's version must stay the
//   forward's so that a retained graph's second backward is not refused.
// mse_loss(input, target, reduction='mean'): (input - target)^2 with broadcasting, reduced in fixed
//   blocks (thread-count independent); its backward is composed of core ops (differentiable).
// Each op is a meta step (checks, outputs; every device) and a CPU compute into those outputs; the
// check of cross_entropy's target values (data) is in its compute.
#include <cstring>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "core.hpp"
#include "gradops.hpp"
#include "loss_buffer.hpp"
#include "nnmath.hpp"
#include "vt/loops.hpp"

namespace {

enum class Red { None, Mean, Sum };

// the reduction named by s (checked by the meta step with check_reduction)
Red reduction_of(const char* s) {
  if (!std::strcmp(s, "mean")) return Red::Mean;
  if (!std::strcmp(s, "sum")) return Red::Sum;
  return Red::None;
}
Red check_reduction(vt::Call& c, const char* s) {
  if (std::strcmp(s, "mean") && std::strcmp(s, "sum") && std::strcmp(s, "none"))
    c.fail(VT_ERR_VALUE, "reduction must be 'mean', 'sum' or 'none', got '%s'", s);
  return reduction_of(s);
}

struct Contig {
  vt::Tensor own;
  const vt_tensor* t = nullptr;
  Contig(vt::Call& c, const vt_tensor* x) : t(x) {
    if (x && !vt::is_contiguous(x)) {
      own = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(x)});
      t = own;
    }
  }
};

// The (N, C, inner) view of cross_entropy's input; checks target against it.
struct CELayout {
  int64_t N, C, inner;
  int64_t positions() const { return N * inner; }
};

// input (N, C, d1, ...) or (C,) as (N, C, inner) (shapes the meta step accepted)
CELayout layout_of(const vt_tensor* x) {
  if (x->ndim == 1) return {1, x->sizes[0], 1};
  CELayout L{x->sizes[0], x->sizes[1], 1};
  for (int32_t d = 2; d < x->ndim; ++d) L.inner *= x->sizes[d];
  return L;
}

// The meta step's checks of input and target.
CELayout ce_layout(vt::Call& c, const vt_tensor* x, const vt_tensor* t) {
  if (!vt::is_floating(x->dtype))
    c.fail(VT_ERR_TYPE, "input must have a floating dtype, got %s", vt::dtype_name(x->dtype));
  if (vt::scalar_type(t->dtype) != vt::ScalarType::Int64)
    c.fail(VT_ERR_TYPE, "target must be int64 class indices, got %s", vt::dtype_name(t->dtype));
  c.check_same_device(x, "input", t, "target");
  vt::check_ndim(c.op, x, "input");
  if (x->ndim == 0) c.fail(VT_ERR_VALUE, "input must have at least 1 dim (classes), got a 0-d tensor");
  const CELayout L = layout_of(x);
  if (x->ndim == 1) {
    if (t->ndim != 0) c.fail(VT_ERR_VALUE, "for input %s (one sample) target must be 0-d, got %s",
                             vt::shape_str(x).c_str(), vt::shape_str(t).c_str());
    return L;
  }
  bool ok = t->ndim == x->ndim - 1 && t->sizes[0] == L.N;
  for (int32_t d = 2; ok && d < x->ndim; ++d) ok = t->sizes[d - 1] == x->sizes[d];
  if (!ok)
    c.fail(VT_ERR_VALUE, "target %s does not match input %s (expected (N, d1, ...) for input (N, C, d1, ...))",
           vt::shape_str(t).c_str(), vt::shape_str(x).c_str());
  return L;
}

// The arguments, read by name once (meta step and compute alike).
struct CEArgs {  // cross_entropy(input, target, ignore_index, label_smoothing, reduction)
  const vt_tensor *x, *t;
  int64_t ignore;
  double eps;
  const char* reduction;
  explicit CEArgs(const vt::Call& c)
      : x(c.arg(0, "input").tensor()), t(c.arg(1, "target").tensor()), ignore(c.arg(2, "ignore_index").int_()),
        eps(c.arg(3, "label_smoothing").float_()), reduction(c.arg(4, "reduction").str()) {}
};
struct CEBackwardArgs {  // cross_entropy_backward(grad_output, input, target, lse, ignore_index, ...)
  const vt_tensor *go, *x, *t, *lse;
  int64_t ignore;
  double eps;
  const char* reduction;
  explicit CEBackwardArgs(const vt::Call& c)
      : go(c.arg(0, "grad_output").tensor()), x(c.arg(1, "input").tensor()), t(c.arg(2, "target").tensor()),
        lse(c.arg(3, "lse").tensor()), ignore(c.arg(4, "ignore_index").int_()),
        eps(c.arg(5, "label_smoothing").float_()), reduction(c.arg(6, "reduction").str()) {}
};

[[noreturn]] void target_out_of_range(vt::Call& c, const int64_t* tp, int64_t p, int64_t C, int64_t ignore) {
  c.fail(VT_ERR_INDEX, "target %lld at position %lld is out of range for %lld classes (ignore_index %lld)",
         (long long)tp[p], (long long)p, (long long)C, (long long)ignore);
}

// log-sum-exp, x_t and sum_c x_c of one position's logits (C of them, stride `st`, as float A)
template <class A>
void ce_stats(const A* row, int64_t C, A* lse, A* sum) {
  if constexpr (std::is_same<A, float>::value) {
    nnm::row_lse_and_sum(row, C, lse, sum);
  } else {
    A m = -INFINITY, s = 0, t = 0;
    for (int64_t i = 0; i < C; ++i) m = row[i] > m ? row[i] : m;
    for (int64_t i = 0; i < C; ++i) { s += std::exp(row[i] - m); t += row[i]; }
    *lse = m + std::log(s);
    *sum = t;
  }
}

// Calls f(position, const A* logits_row, A* scratch_row) with the position's C logits as a
// contiguous A row (in place for float32/float64 with inner == 1).
template <class T, class F>
void for_positions(vt::Call& c, const T* x, const CELayout& L, F f) {
  using A = vt::acc_t<T>;
  const int64_t P = L.positions(), C = L.C, inner = L.inner;
  vt::parallel_for(c.host, 0, P, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(C, 1)), [&](int64_t p0, int64_t p1) {
    std::vector<A> buf((size_t)C), scratch((size_t)C);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / inner, i = p % inner;
      const T* base = x + n * C * inner + i;
      const A* row;
      if (std::is_same<T, A>::value && inner == 1) {
        row = reinterpret_cast<const A*>(base);
      } else {
        for (int64_t k = 0; k < C; ++k) buf[(size_t)k] = (A)base[k * inner];
        row = buf.data();
      }
      f(p, row, scratch.data());
    }
  });
}

// the dtype of cross_entropy's lse output (what cross_entropy_backward reads): float32 for the
// 16-bit floats, else the input's
vt_dtype lse_dtype(vt_dtype x) { return vt::is_floating(x) && x.bits == 16 ? vt::kFloat32 : x; }

// One position's gradient row for weight w (see cross_entropy_backward above) into out[k * inner],
// from its C logits `row` (scratch: C values). The backward op and the fused forward share it, so
// at grad_output 1 their gradients are the same bits.
template <class T, class A>
void ce_grad_row(const A* row, A* sc, T* out, int64_t C, int64_t inner, A l, A w, A eC, A keep, int64_t t, bool ign) {
  if (ign) {
    for (int64_t k = 0; k < C; ++k) out[k * inner] = vt::convert<T>((A)0);
    return;
  }
  if constexpr (std::is_same<A, float>::value) {
    nnm::row_softmax_grad(row, sc, l, w, eC, C);
  } else {
    for (int64_t k = 0; k < C; ++k) sc[k] = w * (std::exp(row[k] - l) - eC);
  }
  sc[t] -= w * keep;
  for (int64_t k = 0; k < C; ++k) out[k * inner] = vt::convert<T>(sc[k]);
}

// The targets' check (serially: an error must not depend on threads); returns how many are kept.
int64_t check_targets(vt::Call& c, const int64_t* tp, int64_t P, int64_t C, int64_t ignore) {
  int64_t count = 0;
  for (int64_t p = 0; p < P; ++p) {
    if (tp[p] == ignore) continue;
    if (tp[p] < 0 || tp[p] >= C) target_out_of_range(c, tp, p, C, ignore);
    ++count;
  }
  return count;
}

// The meta step of cross_entropy and cross_entropy_fused (which adds the gradient buffer).
void ce_forward_meta(vt::Call& c, bool fused) {
  const CEArgs a(c);
  const vt_tensor *x = a.x, *t = a.t;
  const double eps = a.eps;
  const Red red = check_reduction(c, a.reduction);
  if (!(eps >= 0.0 && eps <= 1.0)) c.fail(VT_ERR_VALUE, "label_smoothing must be in [0, 1], got %g", eps);
  ce_layout(c, x, t);
  const vt_dtype sd = lse_dtype(x->dtype);
  c.set_out(0, red == Red::None ? c.empty(t->sizes, t->ndim, x->dtype) : c.empty(nullptr, 0, x->dtype));
  c.set_out(1, c.empty(t->sizes, t->ndim, sd));
  if (fused) c.set_out(2, c.empty_like(x));
}

// Checks the target values (data: here, not in the meta step), then computes loss and lse, and
// with `grad` (cross_entropy_fused) the input's gradient for grad_output 1 from the same rows.
void ce_forward_cpu(vt::Call& c, const vt_tensor* grad) {
  const CEArgs a(c);
  const vt_tensor *x = a.x, *t = a.t;
  const int64_t ignore = a.ignore;
  const double eps = a.eps;
  const Red red = reduction_of(a.reduction);
  const CELayout L = layout_of(x);
  Contig xc(c, x), tc(c, t);
  const int64_t P = L.positions();
  const vt_tensor* loss = c.out(0);
  const vt_tensor* lse = c.out(1);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  const int64_t count = check_targets(c, tp, P, L.C, ignore);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    A* lp = vt::data<A>(lse);
    std::vector<A> per(red == Red::None ? 0 : (size_t)P);
    T* lo = red == Red::None ? vt::data<T>(loss) : nullptr;
    T* gp = grad ? vt::data<T>(grad) : nullptr;
    const A e = (A)eps, eC = (A)(eps / (double)std::max<int64_t>(L.C, 1)), keep = (A)(1.0 - eps);
    // the weight at grad_output 1, as the backward op computes it (1 * (1 / count) for 'mean')
    const A w1 = red == Red::Mean ? (A)1 * (A)(1.0 / (double)count) : (A)1;
    const int64_t C = L.C, inner = L.inner;
    for_positions<T>(c, vt::data<const T>(xc.t), L, [&](int64_t p, const A* row, A* sc) {
      A l, s;
      ce_stats<A>(row, C, &l, &s);
      lp[p] = l;
      const bool ign = tp[p] == ignore;
      A v = 0;
      if (!ign) v = ((A)1 - e) * (l - row[tp[p]]) + (e != (A)0 ? e * (l - s / (A)C) : (A)0);
      if (lo) lo[p] = vt::convert<T>(v);
      else per[(size_t)p] = v;
      if (gp) ce_grad_row<T, A>(row, sc, gp + p / inner * C * inner + p % inner, C, inner, l, w1, eC, keep, tp[p], ign);
    });
    if (red != Red::None) {  // in order: deterministic
      double total = 0;
      for (int64_t p = 0; p < P; ++p) total += (double)per[(size_t)p];
      const double r = red == Red::Sum ? total : total / (double)count;  // 0/0 = nan, as torch
      *vt::data<T>(loss) = vt::convert<T>(r);
    }
  });
}

// Handed-out fused buffers (loss_buffer.hpp): (device type, index, address) of each claimed one.
std::mutex g_claimed_mu;
std::set<std::tuple<int32_t, int32_t, uintptr_t>> g_claimed;
std::tuple<int32_t, int32_t, uintptr_t> buffer_key(const vt_tensor* b) {
  return {b->device.type, b->device.index, (uintptr_t)b->data};
}

}  // namespace

void core::ce_buffer_fresh(const vt_tensor* buf) {
  std::lock_guard<std::mutex> lock(g_claimed_mu);
  g_claimed.erase(buffer_key(buf));
}
bool core::ce_buffer_claim(const vt_tensor* buf) {
  std::lock_guard<std::mutex> lock(g_claimed_mu);
  return g_claimed.insert(buffer_key(buf)).second;
}

VT_META_FN(cross_entropy_meta, "core::cross_entropy") { ce_forward_meta(c, false); }
VT_COMPUTE(cross_entropy_cpu, "core::cross_entropy") { ce_forward_cpu(c, nullptr); }

VT_META_FN(cross_entropy_fused_meta, "core::cross_entropy_fused") { ce_forward_meta(c, true); }
VT_COMPUTE(cross_entropy_fused_cpu, "core::cross_entropy_fused") {
  core::ce_buffer_fresh(c.out(2));
  ce_forward_cpu(c, c.out(2));
}

VT_META_FN(cross_entropy_backward_meta, "core::cross_entropy_backward") {
  const CEBackwardArgs a(c);
  const vt_tensor *go = a.go, *x = a.x, *t = a.t, *lse = a.lse;
  const Red red = check_reduction(c, a.reduction);
  const CELayout L = ce_layout(c, x, t);
  c.check_same_dtype(go, "grad_output", x, "input");
  const int64_t P = L.positions();
  if (lse->numel != P) c.fail(VT_ERR_VALUE, "lse must have %lld elements, got %s", (long long)P, vt::shape_str(lse).c_str());
  // the computes read lse as the forward wrote it (float32 for float16/bfloat16): another dtype
  // would be read past its end
  if (!vt::same_dtype(lse->dtype, lse_dtype(x->dtype)))
    c.fail(VT_ERR_TYPE, "lse must be %s (cross_entropy's second output for %s input), got %s",
           vt::dtype_name(lse_dtype(x->dtype)), vt::dtype_name(x->dtype), vt::dtype_name(lse->dtype));
  if (red == Red::None ? go->numel != P : go->numel != 1)
    c.fail(VT_ERR_VALUE, "grad_output %s does not match the loss of reduction '%s'", vt::shape_str(go).c_str(),
           a.reduction);
  c.set_out(0, c.empty_like(x));
}

VT_COMPUTE(cross_entropy_backward_cpu, "core::cross_entropy_backward") {
  const CEBackwardArgs a(c);
  const vt_tensor *go = a.go, *x = a.x, *t = a.t, *lse = a.lse;
  const int64_t ignore = a.ignore;
  const double eps = a.eps;
  const Red red = reduction_of(a.reduction);
  const CELayout L = layout_of(x);
  const int64_t P = L.positions();
  Contig xc(c, x), tc(c, t), gc(c, go), lc(c, lse);
  const vt_tensor* gin = c.out(0);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  const int64_t count = check_targets(c, tp, P, L.C, ignore);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const T* gp = vt::data<const T>(gc.t);
    const A* lp = vt::data<const A>(lc.t);
    T* ip = vt::data<T>(gin);
    const A g0 = red == Red::None ? (A)0 : (A)gp[0];
    const A wscale = red == Red::Mean ? (A)(1.0 / (double)count) : (A)1;
    const A eC = (A)(eps / (double)std::max<int64_t>(L.C, 1)), keep = (A)(1.0 - eps);
    const int64_t C = L.C, inner = L.inner;
    for_positions<T>(c, vt::data<const T>(xc.t), L, [&](int64_t p, const A* row, A* sc) {
      const bool ign = tp[p] == ignore;
      const A w = ign ? (A)0 : (red == Red::None ? (A)gp[p] : g0 * wscale);
      ce_grad_row<T, A>(row, sc, ip + p / inner * C * inner + p % inner, C, inner, lp[p], w, eC, keep, tp[p], ign);
    });
  });
}

VT_META_FN(cross_entropy_grad_scale_meta, "core::cross_entropy_grad_scale") {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* gr = c.arg(1, "grad").tensor();
  const char* rs = c.arg(2, "reduction").str();
  const Red red = check_reduction(c, rs);
  if (!vt::is_floating(gr->dtype))
    c.fail(VT_ERR_TYPE, "grad must have a floating dtype, got %s", vt::dtype_name(gr->dtype));
  c.check_same_dtype(go, "grad_output", gr, "grad");
  c.check_same_device(go, "grad_output", gr, "grad");
  vt::check_ndim(c.op, gr, "grad");
  if (gr->ndim == 0) c.fail(VT_ERR_VALUE, "grad must have at least 1 dim (classes), got a 0-d tensor");
  if (!vt::is_contiguous(gr))
    c.fail(VT_ERR_VALUE, "grad must be contiguous (cross_entropy_fused's third output), got strides of %s",
           vt::shape_str(gr).c_str());
  const int64_t P = layout_of(gr).positions();
  if (red == Red::None ? go->numel != P : go->numel != 1)
    c.fail(VT_ERR_VALUE, "grad_output %s does not match the loss of reduction '%s' for grad %s",
           vt::shape_str(go).c_str(), rs, vt::shape_str(gr).c_str());
  // the result is grad itself (a view of it): the compute scales it in place
  c.set_out(0, vt::Tensor(c.host, c.host->as_strided(const_cast<vt_tensor*>(gr), gr->sizes, gr->strides, gr->ndim, 0)));
}

VT_COMPUTE(cross_entropy_grad_scale_cpu, "core::cross_entropy_grad_scale") {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* gr = c.out(0);
  const Red red = reduction_of(c.arg(2, "reduction").str());
  const CELayout L = layout_of(gr);
  Contig gc(c, go);
  vt::dispatch(vt::kFloatingTypes, gr->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const T* sp = vt::data<const T>(gc.t);
    T* gp = vt::data<T>(gr);
    const int64_t C = L.C, inner = L.inner, P = L.positions();
    // position p's C elements (stride inner) times s; nothing to do where s is exactly 1
    auto scale = [&](int64_t p, A s) {
      if (s == (A)1) return;
      T* row = gp + p / inner * C * inner + p % inner;
      for (int64_t k = 0; k < C; ++k) row[k * inner] = vt::convert<T>(s * (A)row[k * inner]);
    };
    const int64_t grain = std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(C, 1));
    if (red != Red::None && (A)sp[0] == (A)1) return;
    vt::parallel_for(c.host, 0, P, grain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) scale(p, red == Red::None ? (A)sp[p] : (A)sp[0]);
    });
  });
}

VT_BACKWARD(cross_entropy_bw_rule, "core::cross_entropy") {
  vt_tensor* go = g.grad_out(0);
  if (!go || !g.needs(0)) return;
  g.set_grad(0, vt::call(g.host, "core::cross_entropy_backward",
                         {go, g.saved(0), g.saved(1), g.out(1), g.arg(2).v.i, gops::num(g.arg(3)),
                          gops::str(g.arg(4).v.s)}));
}

// The first backward hands out the forward's gradient buffer, scaled by grad_output; any later
// one (a retained graph) recomputes from the saved logits, as cross_entropy's rule does.
VT_BACKWARD(cross_entropy_fused_bw_rule, "core::cross_entropy_fused") {
  vt_tensor* go = g.grad_out(0);
  if (!go || !g.needs(0)) return;
  vt_tensor* buf = g.out(2);
  if (core::ce_buffer_claim(buf)) {
    g.set_grad(0, vt::call(g.host, "core::cross_entropy_grad_scale", {go, buf, gops::str(g.arg(4).v.s)}));
    return;
  }
  g.set_grad(0, vt::call(g.host, "core::cross_entropy_backward",
                         {go, g.saved(0), g.saved(1), g.out(1), g.arg(2).v.i, gops::num(g.arg(3)),
                          gops::str(g.arg(4).v.s)}));
}

// ---- mse_loss ----------------------------------------------------------------------------------
VT_META_FN(mse_loss_meta, "core::mse_loss") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* y = c.arg(1, "target").tensor();
  const Red red = check_reduction(c, c.arg(2, "reduction").str());
  c.check_same_dtype(x, "input", y, "target");
  c.check_same_device(x, "input", y, "target");
  if (!vt::is_floating(x->dtype))
    c.fail(VT_ERR_TYPE, "input must have a floating dtype, got %s", vt::dtype_name(x->dtype));
  int64_t shape[vt::kMaxDims];
  const int32_t nd = vt::broadcast_shape(c.op, x, "input", y, "target", shape);
  c.set_out(0, red == Red::None ? c.empty(shape, nd, x->dtype) : c.empty(nullptr, 0, x->dtype));
}

VT_COMPUTE(mse_loss_cpu, "core::mse_loss") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* y = c.arg(1, "target").tensor();
  const Red red = reduction_of(c.arg(2, "reduction").str());
  const vt_tensor* out = c.out(0);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    if (red == Red::None) {  // the squared differences are the loss
      const vt_tensor* ops[3] = {out, x, y};
      vt::elementwise<T, T, T>(c.host, vt::loop_over<3>(c.op, ops), [](T a, T b) {
        const A d = (A)a - (A)b;
        return vt::convert<T>(d * d);
      });
      return;
    }
    // squared differences into a scratch tensor of the compute type (the broadcast shape), then
    // reduced in fixed blocks
    int64_t shape[vt::kMaxDims];
    const int32_t nd = vt::broadcast_shape(c.op, x, "input", y, "target", shape);
    vt::Tensor sq = c.empty(shape, nd, vt::dtype_of<A>());
    const vt_tensor* ops[3] = {sq, x, y};
    vt::elementwise<A, T, T>(c.host, vt::loop_over<3>(c.op, ops), [](T a, T b) {
      const A d = (A)a - (A)b;
      return d * d;
    });
    const int64_t n = sq->numel;
    const A* s = vt::data<const A>(sq);
    const int64_t nblocks = (n + vt::kGrain - 1) / vt::kGrain;
    std::vector<double> part((size_t)nblocks);
    vt::parallel_for(c.host, 0, nblocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t i0 = b * vt::kGrain, i1 = std::min(n, i0 + vt::kGrain);
        double acc = 0;
        if constexpr (std::is_same<A, float>::value) acc = nnm::row_sum(s + i0, i1 - i0);
        else for (int64_t i = i0; i < i1; ++i) acc += s[i];
        part[(size_t)b] = acc;
      }
    });
    double total = 0;
    for (double v : part) total += v;
    if (red == Red::Mean) total /= (double)n;  // n == 0: nan, as torch
    *vt::data<T>(out) = vt::convert<T>(total);
  });
}

// d input = g * 2 (input - target) [/ n], d target = -that; summed back to each operand's shape
VT_BACKWARD(mse_loss_bw_rule, "core::mse_loss") {
  const vt_host* h = g.host;
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  vt_tensor* x = g.saved(0);
  vt_tensor* y = g.saved(1);
  const char* red = g.arg(2).v.s;
  vt::Tensor d = gops::sub(h, x, y);
  double k = 2.0;
  if (!std::strcmp(red, "mean")) k /= (double)std::max<int64_t>(d->numel, 1);
  vt::Tensor d2 = gops::scale(h, d, k);
  vt::Tensor gd = gops::mul(h, d2, go);
  if (g.needs(1)) {
    vt::Tensor n = vt::call(h, "core::neg", {gd.get()});
    g.set_grad(1, g.sum_to(std::move(n), y));
  }
  if (g.needs(0)) g.set_grad(0, g.sum_to(std::move(gd), x));
}

using core::OpDef;

const OpDef kLossOps[] = {
    {"core::cross_entropy(Tensor input, Tensor target, int ignore_index=-100, float label_smoothing=0.0, "
     "str reduction='mean') -> (Tensor, Tensor)", cross_entropy_meta, cross_entropy_cpu, cross_entropy_bw_rule, 0b11, 0b10},
    {"core::cross_entropy_backward(Tensor grad_output, Tensor input, Tensor target, Tensor lse, int ignore_index, "
     "float label_smoothing, str reduction) -> Tensor", cross_entropy_backward_meta, cross_entropy_backward_cpu},
    // saves input and target (a second backward recomputes), lse and the gradient buffer
    {"core::cross_entropy_fused(Tensor input, Tensor target, int ignore_index=-100, float label_smoothing=0.0, "
     "str reduction='mean') -> (Tensor, Tensor, Tensor)", cross_entropy_fused_meta, cross_entropy_fused_cpu,
     cross_entropy_fused_bw_rule, 0b11, 0b110},
    {"core::cross_entropy_grad_scale(Tensor grad_output, Tensor grad, str reduction) -> Tensor",
     cross_entropy_grad_scale_meta, cross_entropy_grad_scale_cpu},
    {"core::mse_loss(Tensor input, Tensor target, str reduction='mean') -> Tensor", mse_loss_meta, mse_loss_cpu,
     mse_loss_bw_rule, 0b11, 0},
};
VT_OP_TABLE(kLossOps)
