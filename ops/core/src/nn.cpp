// ops/core/src/nn.cpp — softmax, log_softmax and dropout on CPU, with their backward ops and rules.
// Not here: norms (norm.cpp), losses (loss.cpp), attention (ops/attention).
//
// softmax(self, dim) / log_softmax(self, dim): one fused pass per line along `dim` (max, sum of
// exp, write); the backward ops use the saved output:
//   softmax_backward(g, y, dim)     = y * (g - sum(g * y))
//   log_softmax_backward(g, y, dim) = g - exp(y) * sum(g)
// Both backward ops have backward rules of their own written with core ops (double backward).
// Shape legend: the input is seen as (outer, D, inner) around `dim`; lines are the D elements of
// one (outer, inner) position. inner == 1 (dim is the last) reads rows in place; otherwise each
// line is gathered into a buffer. float16/bfloat16 compute in float32; float64 in double.
//
// dropout(input, p, train) -> (out, mask): mask (bool) keeps element i when u_i >= p, u_i the
// uniform float of Philox word i % 4 of group i / 4 (philox.h), so the mask depends only on the
// seed, never on threads; out = input * mask / (1 - p). Not training (or p == 0): out is a copy
// and the mask all true. dropout_backward(g, mask, scale) = g * mask * scale.
//
// Each op is a meta step (checks and outputs, every device) and a CPU compute into those outputs;
// dropout's compute (never its meta step) reserves the Philox numbers.
#include <vector>

#include "core.hpp"
#include "gradops.hpp"
#include "nnmath.hpp"
#include "vt/philox.h"
#include "vt/loops.hpp"

namespace {

// ---- line kernels over contiguous float / double lines ------------------------------------------
void softmax_line(const float* x, float* y, int64_t n, bool log) {
  const float m = nnm::row_max(x, n);
  if (log) {
    const float s = nnm::row_exp_sum(x, nullptr, m, n);
    nnm::row_sub(x, y, m + std::log(s), n);
  } else {
    const float s = nnm::row_exp_sum(x, y, m, n);
    nnm::row_scale(y, 1.0f / s, n);
  }
}
void softmax_line(const double* x, double* y, int64_t n, bool log) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  double s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
    const double l = m + std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - l;
  } else {
    for (int64_t i = 0; i < n; ++i) s += (y[i] = std::exp(x[i] - m));
    const double r = 1.0 / s;
    for (int64_t i = 0; i < n; ++i) y[i] *= r;
  }
}
// gi from g and the saved output y
void softmax_bwd_line(const float* g, const float* y, float* gi, int64_t n, bool log) {
  if (log) {
    const float s = nnm::row_sum(g, n);
    for (int64_t i = 0; i < n; ++i) gi[i] = g[i] - vt::fast_exp(y[i]) * s;
  } else {
    const float s = nnm::row_dot(g, y, n);
    for (int64_t i = 0; i < n; ++i) gi[i] = y[i] * (g[i] - s);
  }
}
void softmax_bwd_line(const double* g, const double* y, double* gi, int64_t n, bool log) {
  double s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += g[i];
    for (int64_t i = 0; i < n; ++i) gi[i] = g[i] - std::exp(y[i]) * s;
  } else {
    for (int64_t i = 0; i < n; ++i) s += g[i] * y[i];
    for (int64_t i = 0; i < n; ++i) gi[i] = y[i] * (g[i] - s);
  }
}

// A contiguous version of t (t itself when it already is).
struct Contig {
  vt::Tensor own;
  const vt_tensor* t;
  Contig(vt::Call& c, const vt_tensor* x) : t(x) {
    if (!vt::is_contiguous(x)) {
      own = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(x)});
      t = own;
    }
  }
};

// Runs f(in0_line, in1_line, out_line, D) (in1 may be null) over every line along dim of
// contiguous tensors of one shape: in place for inner == 1 and T == A, else through buffers.
template <class T, int NIN, class F>
void for_lines(vt::Call& c, const vt_tensor* const (&in)[NIN], const vt_tensor* out, int32_t dim, F f) {
  using A = vt::acc_t<T>;
  const vt_tensor* x = in[0];
  int64_t outer = 1, inner = 1;
  const int64_t D = x->ndim ? x->sizes[dim] : 1;
  for (int32_t d = 0; d < dim; ++d) outer *= x->sizes[d];
  for (int32_t d = dim + 1; d < x->ndim; ++d) inner *= x->sizes[d];
  const int64_t lines = outer * inner;
  if (lines == 0 || D == 0) return;
  const T* ip[2] = {vt::data<const T>(in[0]), NIN > 1 ? vt::data<const T>(in[NIN - 1]) : nullptr};
  T* op = vt::data<T>(out);
  const int64_t grain = std::max<int64_t>(1, vt::kGrain / D);
  vt::parallel_for(c.host, 0, lines, grain, [&](int64_t l0, int64_t l1) {
    if (std::is_same<T, A>::value && inner == 1) {
      for (int64_t l = l0; l < l1; ++l)
        f(reinterpret_cast<const A*>(ip[0] + l * D), NIN > 1 ? reinterpret_cast<const A*>(ip[1] + l * D) : nullptr,
          reinterpret_cast<A*>(op + l * D), D);
      return;
    }
    std::vector<A> buf((size_t)(D * (NIN + 1)));
    A* b0 = buf.data();
    A* b1 = b0 + D;
    A* bo = b0 + D * NIN;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t o = l / inner, i = l % inner;
      const int64_t base = o * D * inner + i;
      for (int64_t k = 0; k < D; ++k) b0[k] = (A)ip[0][base + k * inner];
      if (NIN > 1)
        for (int64_t k = 0; k < D; ++k) b1[k] = (A)ip[1][base + k * inner];
      f(b0, NIN > 1 ? b1 : nullptr, bo, D);
      for (int64_t k = 0; k < D; ++k) op[base + k * inner] = vt::convert<T>(bo[k]);
    }
  });
}

// dim wrapped into [0, ndim) without a check (the meta step did it)
int32_t dim_of(int64_t dim, int32_t ndim) { return (int32_t)(dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim); }

void softmax_meta(vt::Call& c) {
  const vt_tensor* self = c.arg(0, "self").tensor();
  vt::wrap_dim(c.op, c.arg(1, "dim").int_(), self->ndim);
  vt::check_ndim(c.op, self, "self");
  if (!vt::is_floating(self->dtype))
    c.fail(VT_ERR_TYPE, "self must have a floating dtype, got %s", vt::dtype_name(self->dtype));
  c.set_out(0, c.empty_like(self));
}

void softmax_fwd(vt::Call& c, bool log) {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const int32_t dim = dim_of(c.arg(1, "dim").int_(), self->ndim);
  const vt_tensor* out = c.out(0);
  Contig x(c, self);
  vt::dispatch(vt::kFloatingTypes, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const vt_tensor* ins[1] = {x.t};
    for_lines<T, 1>(c, ins, out, dim, [log](const A* a, const A*, A* y, int64_t n) { softmax_line(a, y, n, log); });
  });
}

void softmax_bwd_meta(vt::Call& c) {
  const vt_tensor* g = c.arg(0, "grad_output").tensor();
  const vt_tensor* y = c.arg(1, "output").tensor();
  c.check_same_dtype(g, "grad_output", y, "output");
  c.check_same_device(g, "grad_output", y, "output");
  if (!vt::same_shape(g, y))
    c.fail(VT_ERR_VALUE, "grad_output %s and output %s must have the same shape", vt::shape_str(g).c_str(),
           vt::shape_str(y).c_str());
  vt::wrap_dim(c.op, c.arg(2, "dim").int_(), y->ndim);
  vt::dispatch(vt::kFloatingTypes, y->dtype, c.op, [](auto) {});  // refuse other dtypes on every device
  c.set_out(0, c.empty_like(y));
}

void softmax_bwd(vt::Call& c, bool log) {
  const vt_tensor* g = c.arg(0, "grad_output").tensor();
  const vt_tensor* y = c.arg(1, "output").tensor();
  const int32_t dim = dim_of(c.arg(2, "dim").int_(), y->ndim);
  const vt_tensor* out = c.out(0);
  Contig gc(c, g), yc(c, y);
  vt::dispatch(vt::kFloatingTypes, y->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const vt_tensor* ins[2] = {gc.t, yc.t};
    for_lines<T, 2>(c, ins, out, dim,
                    [log](const A* a, const A* b, A* o, int64_t n) { softmax_bwd_line(a, b, o, n, log); });
  });
}

}  // namespace

VT_META_FN(softmax_meta_fn, "core::softmax") { softmax_meta(c); }
VT_META_FN(log_softmax_meta_fn, "core::log_softmax") { softmax_meta(c); }
VT_META_FN(softmax_backward_meta_fn, "core::softmax_backward") { softmax_bwd_meta(c); }
VT_META_FN(log_softmax_backward_meta_fn, "core::log_softmax_backward") { softmax_bwd_meta(c); }
VT_COMPUTE(softmax_cpu, "core::softmax") { softmax_fwd(c, false); }
VT_COMPUTE(log_softmax_cpu, "core::log_softmax") { softmax_fwd(c, true); }
VT_COMPUTE(softmax_backward_cpu, "core::softmax_backward") { softmax_bwd(c, false); }
VT_COMPUTE(log_softmax_backward_cpu, "core::log_softmax_backward") { softmax_bwd(c, true); }

VT_BACKWARD(softmax_bw_rule, "core::softmax") {
  vt_tensor* go = g.grad_out(0);
  if (!go || !g.needs(0)) return;
  g.set_grad(0, vt::call(g.host, "core::softmax_backward", {go, g.out(0), g.arg(1).v.i}));
}
VT_BACKWARD(log_softmax_bw_rule, "core::log_softmax") {
  vt_tensor* go = g.grad_out(0);
  if (!go || !g.needs(0)) return;
  g.set_grad(0, vt::call(g.host, "core::log_softmax_backward", {go, g.out(0), g.arg(1).v.i}));
}
// double backward. softmax_backward(g, y): gi = y * (g - s), s = sum(g * y); with h = d/d gi:
//   d g = softmax_backward(h, y),  d y = h * (g - s) - g * sum(h * y)
VT_BACKWARD(softmax_backward_bw_rule, "core::softmax_backward") {
  const vt_host* h = g.host;
  vt_tensor* hh = g.grad_out(0);
  if (!hh) return;
  vt_tensor* go = g.saved(0);
  vt_tensor* y = g.saved(1);
  const int64_t dim = g.arg(2).v.i;
  if (g.needs(0)) g.set_grad(0, vt::call(h, "core::softmax_backward", {hh, y, dim}));
  if (g.needs(1)) {
    vt::Tensor gy = gops::mul(h, go, y);
    vt::Tensor s = gops::sum_keep(h, gy, {dim});
    vt::Tensor hy = gops::mul(h, hh, y);
    vt::Tensor t = gops::sum_keep(h, hy, {dim});
    vt::Tensor gs = gops::sub(h, go, s);
    vt::Tensor a = gops::mul(h, hh, gs);
    vt::Tensor b = gops::mul(h, go, t);
    g.set_grad(1, gops::sub(h, a, b));
  }
}
// log_softmax_backward(g, y): gi = g - exp(y) * sum(g); d g = h - sum(h * exp(y)),
// d y = -h * exp(y) * sum(g)
VT_BACKWARD(log_softmax_backward_bw_rule, "core::log_softmax_backward") {
  const vt_host* h = g.host;
  vt_tensor* hh = g.grad_out(0);
  if (!hh) return;
  vt_tensor* go = g.saved(0);
  vt_tensor* y = g.saved(1);
  const int64_t dim = g.arg(2).v.i;
  vt::Tensor e = vt::call(h, "core::exp", {y});
  vt::Tensor he = gops::mul(h, hh, e);
  if (g.needs(0)) {
    vt::Tensor s = gops::sum_keep(h, he, {dim});
    g.set_grad(0, gops::sub(h, hh, s));
  }
  if (g.needs(1)) {
    vt::Tensor s = gops::sum_keep(h, go, {dim});
    vt::Tensor r = gops::mul(h, he, s);
    g.set_grad(1, vt::call(h, "core::neg", {r}));
  }
}

// ---- dropout -----------------------------------------------------------------------------------
VT_META_FN(dropout_meta, "core::dropout") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const double p = c.arg(1, "p").float_();
  c.arg(2, "train").bool_();
  if (!(p >= 0.0 && p <= 1.0)) c.fail(VT_ERR_VALUE, "p must be in [0, 1], got %g", p);
  if (!vt::is_floating(x->dtype))
    c.fail(VT_ERR_TYPE, "input must have a floating dtype, got %s", vt::dtype_name(x->dtype));
  vt::check_ndim(c.op, x, "input");
  c.set_out(0, c.empty_like(x));
  c.set_out(1, c.empty(x->sizes, x->ndim, vt::kBool));
}

// Reserves the Philox numbers (only when it draws any) and computes out and mask.
VT_COMPUTE(dropout_cpu, "core::dropout") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const double p = c.arg(1, "p").float_();
  const bool train = c.arg(2, "train").bool_();
  const vt_tensor* out = c.out(0);
  const int64_t n = x->numel;
  bool* m = vt::data<bool>(c.out(1));
  Contig xc(c, x);
  if (!train || p == 0.0 || n == 0) {
    if (n) std::memset(m, 1, (size_t)n);
    if (n) std::memcpy(out->data, xc.t->data, (size_t)(n * vt::element_size(x->dtype)));
    return;
  }
  const int64_t groups = (n + 3) / 4;
  uint64_t seed = 0, offset = 0;
  c.host->philox_reserve(c.ctx->device, (uint64_t)groups, &seed, &offset);
  // keep when the 24-bit uniform u >= p, i.e. when its integer (x >> 8) >= ceil(p * 2^24)
  const double thr_d = std::ceil(p * 16777216.0);
  const uint32_t thr = (uint32_t)thr_d;
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const A scale = p < 1.0 ? (A)(1.0 / (1.0 - p)) : (A)0;
    const T* xi = vt::data<const T>(xc.t);
    T* o = vt::data<T>(out);
    vt::parallel_for(c.host, 0, groups, 2048, [&](int64_t g0, int64_t g1) {
      for (int64_t gi = g0; gi < g1; ++gi) {
        const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + (uint64_t)gi);
        const int64_t i0 = gi * 4, cnt = std::min<int64_t>(4, n - i0);
        for (int64_t j = 0; j < cnt; ++j) {
          const bool keep = (r.x[j] >> 8) >= thr;
          m[i0 + j] = keep;
          o[i0 + j] = keep ? vt::convert<T>((A)xi[i0 + j] * scale) : T(0.0f);
        }
      }
    });
  });
}

VT_META_FN(dropout_backward_meta, "core::dropout_backward") {
  const vt_tensor* g = c.arg(0, "grad_output").tensor();
  const vt_tensor* mask = c.arg(1, "mask").tensor();
  c.arg(2, "scale").float_();
  if (vt::scalar_type(mask->dtype) != vt::ScalarType::Bool)
    c.fail(VT_ERR_TYPE, "mask must be bool, got %s", vt::dtype_name(mask->dtype));
  if (!vt::same_shape(g, mask))
    c.fail(VT_ERR_VALUE, "grad_output %s and mask %s must have the same shape", vt::shape_str(g).c_str(),
           vt::shape_str(mask).c_str());
  vt::dispatch(vt::kFloatingTypes, g->dtype, c.op, [](auto) {});  // refuse other dtypes on every device
  c.set_out(0, c.empty_like(g));
}

VT_COMPUTE(dropout_backward_cpu, "core::dropout_backward") {
  const vt_tensor* g = c.arg(0, "grad_output").tensor();
  const vt_tensor* mask = c.arg(1, "mask").tensor();
  const double scale = c.arg(2, "scale").float_();
  const vt_tensor* out = c.out(0);
  vt::dispatch(vt::kFloatingTypes, g->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const A s = (A)scale;
    const vt_tensor* ops[3] = {out, g, mask};
    vt::elementwise<T, T, bool>(c.host, vt::loop_over<3>(c.op, ops),
                                [s](T v, bool k) { return k ? vt::convert<T>((A)v * s) : T(0.0f); });
  });
}

VT_BACKWARD(dropout_bw_rule, "core::dropout") {
  vt_tensor* go = g.grad_out(0);
  if (!go || !g.needs(0)) return;
  const double p = gops::num(g.arg(1));
  const bool train = g.arg(2).v.b != 0;
  const double scale = !train || p == 0.0 ? 1.0 : p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  g.set_grad(0, vt::call(g.host, "core::dropout_backward", {go, g.out(1), scale}));
}
VT_BACKWARD(dropout_backward_bw_rule, "core::dropout_backward") {  // linear in grad_output
  vt_tensor* hh = g.grad_out(0);
  if (!hh || !g.needs(0)) return;
  g.set_grad(0, vt::call(g.host, "core::dropout_backward", {hh, g.saved(1), gops::num(g.arg(2))}));
}

using core::OpDef;

const OpDef kNNOps[] = {
    {"core::softmax(Tensor self, int dim) -> Tensor", softmax_meta_fn, softmax_cpu, softmax_bw_rule, 0, 0b1},
    {"core::log_softmax(Tensor self, int dim) -> Tensor", log_softmax_meta_fn, log_softmax_cpu, log_softmax_bw_rule, 0, 0b1},
    {"core::softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor", softmax_backward_meta_fn,
     softmax_backward_cpu, softmax_backward_bw_rule, 0b11, 0},
    {"core::log_softmax_backward(Tensor grad_output, Tensor output, int dim) -> Tensor", log_softmax_backward_meta_fn,
     log_softmax_backward_cpu, log_softmax_backward_bw_rule, 0b11, 0},
    {"core::dropout(Tensor input, float p, bool train=True) -> (Tensor, Tensor)", dropout_meta, dropout_cpu,
     dropout_bw_rule, 0, 0b10},
    {"core::dropout_backward(Tensor grad_output, Tensor mask, float scale) -> Tensor", dropout_backward_meta,
     dropout_backward_cpu, dropout_backward_bw_rule, 0b10, 0},
};
VT_OP_TABLE(kNNOps)
