// ops/core/src/optim.cpp — fused optimiser steps on CPU, in place: per parameter tensor, and AdamW
// over lists of parameters.
//
// adamw_(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step) -> param
//   torch.optim.AdamW's single-tensor step (amsgrad=False, maximize=False), in its order of
//   operations, with the scalars rounded to the parameter's compute type as torch does:
//     param *= 1 - lr * weight_decay
//     exp_avg += (grad - exp_avg) * (1 - beta1)            (torch's lerp_ for weight < 0.5)
//     exp_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
//     param -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps)
// sgd_(param, grad, momentum_buffer?, lr, momentum, dampening, weight_decay, nesterov) -> param
//     d = grad + weight_decay * param
//     if momentum != 0: buf = momentum * buf + (1 - dampening) * d; d = nesterov ? d + momentum * buf : buf
//     param -= lr * d
//   torch starts the buffer as a copy of d on the first step: pass a zero buffer and dampening=0
//   for that step (0 * momentum + 1 * d == d exactly).
// adamw_multi(params[], grads[], exp_avgs[], exp_avg_sqs[], lr, beta1, beta2, eps, weight_decay, step,
//             lr_t=None, step_t=None) -> ()
//   adamw_ on every parameter of the lists in one call (torch's fused/foreach AdamW): on cuda a
//   few multi-tensor launches for all of them (cuda/optim.cu). Each entry follows adamw_'s rules;
//   entries may differ in dtype. lr_t / step_t (optional, 1-element float32 tensors on the
//   parameters' device) are read by the compute instead of lr / step, so a captured CUDA graph
//   replays with their current values: step_t is first incremented by one and its new value is
//   the step; lr_t holds the learning rate. Not named with a trailing '_' (the runtime treats such
//   an op's first argument as one tensor it writes); the Python optimizer bumps the parameters'
//   version counters itself.
// All tensors share param's shape and dtype (float32/float64, float16/bfloat16 computed in float32)
// and may have any strides. Not differentiable (no backward rules).
// Each op is a meta step (every check; returns param, every device) and a CPU compute (the update);
// the CUDA computes are in cuda/optim.cu.
#include <cmath>
#include <cstdio>

#include "core.hpp"
#include "vt/autograd.hpp"
#include "vt/loops.hpp"

namespace {

void check_like(vt::Call& c, const vt_tensor* p, const vt_tensor* t, const char* name) {
  c.check_same_dtype(p, "param", t, name);
  c.check_same_device(p, "param", t, name);
  if (!vt::same_shape(p, t))
    c.fail(VT_ERR_VALUE, "%s must have param's shape %s, got %s", name, vt::shape_str(p).c_str(), vt::shape_str(t).c_str());
}

// f(T& p, T g, T& a, T& b) over N operands of one shape: flat when all are contiguous, else a
// strided loop (operands that are absent get a dummy pointer with stride 0).
template <class T, int N, class F>
void update(vt::Call& c, const vt_tensor* const (&ts)[N], F f) {
  bool contig = true;
  for (const vt_tensor* t : ts) contig = contig && vt::is_contiguous(t);
  const int64_t n = ts[0]->numel;
  if (contig) {
    T* p[N];
    for (int k = 0; k < N; ++k) p[k] = vt::data<T>(ts[k]);
    vt::parallel_for(c.host, 0, n, vt::kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if constexpr (N == 2) f(p[0][i], p[1][i], p[0][i], p[0][i]);
        else if constexpr (N == 3) f(p[0][i], p[1][i], p[2][i], p[2][i]);
        else f(p[0][i], p[1][i], p[2][i], p[3][i]);
      }
    });
    return;
  }
  const vt::StridedLoop<N> L = vt::loop_over<N>(c.op, ts);
  vt::parallel_for(c.host, 0, L.numel, vt::kGrain, [&](int64_t b, int64_t e) {
    L.run(b, e, [&](char* const* ptr, const int64_t* st, int64_t m) {
      for (int64_t i = 0; i < m; ++i) {
        T* q[N];
        for (int k = 0; k < N; ++k) q[k] = reinterpret_cast<T*>(ptr[k] + i * st[k]);
        if constexpr (N == 2) f(*q[0], *q[1], *q[0], *q[0]);
        else if constexpr (N == 3) f(*q[0], *q[1], *q[2], *q[2]);
        else f(*q[0], *q[1], *q[2], *q[3]);
      }
    });
  });
}

// The arguments, read by name once (meta step and compute alike).
struct AdamWArgs {  // adamw_(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step)
  vt_tensor *param, *grad, *m, *v;
  double lr, beta1, beta2, eps, wd;
  int64_t step;
  explicit AdamWArgs(const vt::Call& c)
      : param(c.arg(0, "param").tensor()), grad(c.arg(1, "grad").tensor()), m(c.arg(2, "exp_avg").tensor()),
        v(c.arg(3, "exp_avg_sq").tensor()), lr(c.arg(4, "lr").float_()), beta1(c.arg(5, "beta1").float_()),
        beta2(c.arg(6, "beta2").float_()), eps(c.arg(7, "eps").float_()), wd(c.arg(8, "weight_decay").float_()),
        step(c.arg(9, "step").int_()) {}
};
struct SGDArgs {  // sgd_(param, grad, momentum_buffer?, lr, momentum, dampening, weight_decay, nesterov)
  vt_tensor *param, *grad, *buf;
  double lr, momentum, damp, wd;
  bool nesterov;
  explicit SGDArgs(const vt::Call& c)
      : param(c.arg(0, "param").tensor()), grad(c.arg(1, "grad").tensor()),
        buf(c.arg(2, "momentum_buffer").tensor_or_null()), lr(c.arg(3, "lr").float_()),
        momentum(c.arg(4, "momentum").float_()), damp(c.arg(5, "dampening").float_()),
        wd(c.arg(6, "weight_decay").float_()), nesterov(c.arg(7, "nesterov").bool_()) {}
};

// one parameter's adamw_ update on cpu; bc1 = 1 - beta1^step, bc2_sqrt = sqrt(1 - beta2^step)
void adamw_cpu_one(vt::Call& c, const vt_tensor* param, const vt_tensor* grad, const vt_tensor* m,
                   const vt_tensor* v, double lr, double beta1, double beta2, double eps, double wd, double step) {
  const double bc1 = 1.0 - std::pow(beta1, step);
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, step));
  vt::dispatch(vt::kFloatingTypes, param->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const A decay = (A)(1.0 - lr * wd), w1 = (A)(1.0 - beta1), b2 = (A)beta2, w2 = (A)(1.0 - beta2);
    const A step_size = (A)(lr / bc1), bc2s = (A)bc2_sqrt, e = (A)eps;
    const vt_tensor* ts[4] = {param, grad, m, v};
    update<T, 4>(c, ts, [=](T& p, T g, T& ea, T& es) {
      A pa = (A)p, ga = (A)g, ma = (A)ea, va = (A)es;
      if (wd != 0.0) pa = vt::convert<A>(vt::convert<T>(pa * decay));
      ma = vt::convert<A>(vt::convert<T>(w1 < (A)0.5 ? ma + w1 * (ga - ma) : ga - (ga - ma) * ((A)1 - w1)));
      va = vt::convert<A>(vt::convert<T>(va * b2 + ga * ga * w2));
      const A denom = std::sqrt(va) / bc2s + e;
      p = vt::convert<T>(pa - step_size * (ma / denom));
      ea = vt::convert<T>(ma);
      es = vt::convert<T>(va);
    });
  });
}

void check_hyper(vt::Call& c, double lr, double beta1, double beta2, bool check_lr) {
  if (check_lr && !(lr >= 0.0)) c.fail(VT_ERR_VALUE, "lr must be >= 0, got %g", lr);
  if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0))
    c.fail(VT_ERR_VALUE, "betas must be in [0, 1), got (%g, %g)", beta1, beta2);
}

vt_tensor_list tensor_list(const vt::Call& c, int32_t i, const char* name) {
  if (i >= c.nargs || c.args[i].tag != VT_TENSORS) c.fail(VT_ERR_TYPE, "argument '%s' must be Tensor[]", name);
  return c.args[i].v.ts;
}

// The arguments of adamw_multi (meta step and computes).
struct AdamWMultiArgs {
  vt_tensor_list params, grads, ms, vs;
  double lr, beta1, beta2, eps, wd;
  int64_t step;
  vt_tensor *lr_t, *step_t;
  explicit AdamWMultiArgs(const vt::Call& c)
      : params(tensor_list(c, 0, "params")), grads(tensor_list(c, 1, "grads")), ms(tensor_list(c, 2, "exp_avgs")),
        vs(tensor_list(c, 3, "exp_avg_sqs")), lr(c.arg(4, "lr").float_()), beta1(c.arg(5, "beta1").float_()),
        beta2(c.arg(6, "beta2").float_()), eps(c.arg(7, "eps").float_()), wd(c.arg(8, "weight_decay").float_()),
        step(c.arg(9, "step").int_()), lr_t(c.arg(10, "lr_t").tensor_or_null()),
        step_t(c.arg(11, "step_t").tensor_or_null()) {}
};

void check_scalar_t(vt::Call& c, const vt_tensor* t, const char* name) {
  if (!t) return;
  if (t->numel != 1 || vt::scalar_type(t->dtype) != vt::ScalarType::Float32)
    c.fail(VT_ERR_VALUE, "%s must be a 1-element float32 tensor, got %s of shape %s", name, vt::dtype_name(t->dtype),
           vt::shape_str(t).c_str());
}

}  // namespace

// The meta steps check every tensor against param and the hyper-parameters, and return param.
VT_META_FN(adamw__meta, "core::adamw_") {
  const AdamWArgs a(c);
  vt_tensor* param = a.param;
  const vt_tensor *grad = a.grad, *m = a.m, *v = a.v;
  const double lr = a.lr, beta1 = a.beta1, beta2 = a.beta2;
  const int64_t step = a.step;
  if (!vt::is_floating(param->dtype))
    c.fail(VT_ERR_TYPE, "param must have a floating dtype, got %s", vt::dtype_name(param->dtype));
  check_like(c, param, grad, "grad");
  check_like(c, param, m, "exp_avg");
  check_like(c, param, v, "exp_avg_sq");
  vt::check_ndim(c.op, param, "param");
  if (step < 1) c.fail(VT_ERR_VALUE, "step must be >= 1 (the step count after this update), got %lld", (long long)step);
  check_hyper(c, lr, beta1, beta2, true);
  c.set_out_retained(0, param);
}

VT_COMPUTE(adamw__cpu, "core::adamw_") {
  const AdamWArgs a(c);
  adamw_cpu_one(c, a.param, a.grad, a.m, a.v, a.lr, a.beta1, a.beta2, a.eps, a.wd, (double)a.step);
}

VT_META_FN(adamw_multi_meta, "core::adamw_multi") {
  const AdamWMultiArgs a(c);
  const int64_t n = a.params.len;
  const vt_tensor_list* others[3] = {&a.grads, &a.ms, &a.vs};
  const char* names[3] = {"grads", "exp_avgs", "exp_avg_sqs"};
  for (int k = 0; k < 3; ++k)
    if (others[k]->len != n)
      c.fail(VT_ERR_VALUE, "%s has %lld tensors, params has %lld", names[k], (long long)others[k]->len, (long long)n);
  char name[64];
  for (int64_t i = 0; i < n; ++i) {
    const vt_tensor* p = a.params.data[i];
    if (!vt::is_floating(p->dtype))
      c.fail(VT_ERR_TYPE, "params[%lld] must have a floating dtype, got %s", (long long)i, vt::dtype_name(p->dtype));
    vt::check_ndim(c.op, p, "param");
    for (int k = 0; k < 3; ++k) {
      std::snprintf(name, sizeof name, "%s[%lld]", names[k], (long long)i);
      check_like(c, p, others[k]->data[i], name);
    }
  }
  check_scalar_t(c, a.lr_t, "lr_t");
  check_scalar_t(c, a.step_t, "step_t");
  if (!a.step_t && a.step < 1)
    c.fail(VT_ERR_VALUE, "step must be >= 1 (the step count after this update), got %lld", (long long)a.step);
  check_hyper(c, a.lr, a.beta1, a.beta2, !a.lr_t);
}

VT_COMPUTE(adamw_multi_cpu, "core::adamw_multi") {
  const AdamWMultiArgs a(c);
  double step = (double)a.step, lr = a.lr;
  if (a.step_t) {
    float* s = vt::data<float>(a.step_t);
    *s += 1.0f;
    step = *s;
  }
  if (a.lr_t) lr = *vt::data<const float>(a.lr_t);
  for (int64_t i = 0; i < a.params.len; ++i)
    adamw_cpu_one(c, a.params.data[i], a.grads.data[i], a.ms.data[i], a.vs.data[i], lr, a.beta1, a.beta2, a.eps, a.wd,
                  step);
}

VT_META_FN(sgd__meta, "core::sgd_") {
  const SGDArgs a(c);
  vt_tensor* param = a.param;
  const vt_tensor *grad = a.grad, *buf = a.buf;
  const double momentum = a.momentum, damp = a.damp;
  const bool nesterov = a.nesterov;
  if (!vt::is_floating(param->dtype))
    c.fail(VT_ERR_TYPE, "param must have a floating dtype, got %s", vt::dtype_name(param->dtype));
  check_like(c, param, grad, "grad");
  vt::check_ndim(c.op, param, "param");
  if (momentum != 0.0 && !buf)
    c.fail(VT_ERR_VALUE, "momentum %g needs a momentum_buffer (start with zeros and dampening=0)", momentum);
  if (buf) check_like(c, param, buf, "momentum_buffer");
  if (nesterov && (momentum <= 0.0 || damp != 0.0))
    c.fail(VT_ERR_VALUE, "nesterov needs momentum > 0 and dampening = 0, got momentum %g, dampening %g", momentum, damp);
  c.set_out_retained(0, param);
}

VT_COMPUTE(sgd__cpu, "core::sgd_") {
  const SGDArgs a(c);
  const vt_tensor *param = a.param, *grad = a.grad, *buf = a.buf;
  const double lr = a.lr, momentum = a.momentum, damp = a.damp, wd = a.wd;
  const bool nesterov = a.nesterov;
  vt::dispatch(vt::kFloatingTypes, param->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const A a_lr = (A)lr, a_m = (A)momentum, a_d = (A)(1.0 - damp), a_wd = (A)wd;
    if (momentum != 0.0) {
      const vt_tensor* ts[3] = {param, grad, buf};
      update<T, 3>(c, ts, [=](T& p, T g, T& b, T&) {
        A d = (A)g;
        if (wd != 0.0) d = vt::convert<A>(vt::convert<T>(d + a_wd * (A)p));
        const A nb = vt::convert<A>(vt::convert<T>((A)b * a_m + a_d * d));
        b = vt::convert<T>(nb);
        const A step = nesterov ? vt::convert<A>(vt::convert<T>(d + a_m * nb)) : nb;
        p = vt::convert<T>((A)p - a_lr * step);
      });
    } else {
      const vt_tensor* ts[2] = {param, grad};
      update<T, 2>(c, ts, [=](T& p, T g, T&, T&) {
        A d = (A)g;
        if (wd != 0.0) d = vt::convert<A>(vt::convert<T>(d + a_wd * (A)p));
        p = vt::convert<T>((A)p - a_lr * d);
      });
    }
  });
}

// ---- clip_grad_norm (the fused step of vt.nn.utils.clip_grad_norm_; writes its Tensor[] in place, as adamw_multi) ----------------------------------------------------------------------------
// The joint norm (2 or inf) of all gradients, and every gradient scaled in place by
// min(1, max_norm / (norm + 1e-6)) (that factor in float32, rounded to each gradient's dtype, as
// torch's clip_grad_norm_ multiplies). Returns the norm as a 0-d float32 tensor; nothing leaves the
// device (the factor is read there), so a CUDA graph can capture it.
namespace {
struct ClipArgs {
  vt_tensor_list grads;
  double max_norm, norm_type;
  explicit ClipArgs(const vt::Call& c)
      : grads(tensor_list(c, 0, "grads")), max_norm(c.arg(1, "max_norm").float_()),
        norm_type(c.arg(2, "norm_type").float_()) {}
};

// the factor min(1, max_norm / (total + 1e-6)) in float32; NaN stays NaN (the gradients become NaN)
float clip_coef(float total, double max_norm) {
  const float coef = (float)max_norm / (total + 1e-6f);
  return coef > 1.0f ? 1.0f : coef;
}
}  // namespace

VT_META_FN(clip_grad_norm_meta, "core::clip_grad_norm") {
  const ClipArgs a(c);
  if (a.grads.len == 0) c.fail(VT_ERR_VALUE, "grads is empty (at least one gradient expected)");
  if (a.norm_type != 2.0 && !std::isinf(a.norm_type))
    c.fail(VT_ERR_VALUE, "norm_type must be 2 or inf, got %g (vt.nn.utils.clip_grad_norm_ computes other orders "
           "op by op)", a.norm_type);
  if (a.norm_type < 0) c.fail(VT_ERR_VALUE, "norm_type must be 2 or inf, got %g", a.norm_type);
  const vt_tensor* g0 = a.grads.data[0];
  char name[48];
  for (int64_t i = 0; i < a.grads.len; ++i) {
    const vt_tensor* g = a.grads.data[i];
    std::snprintf(name, sizeof name, "grads[%lld]", (long long)i);
    if (!vt::is_floating(g->dtype))
      c.fail(VT_ERR_TYPE, "%s must have a floating dtype, got %s", name, vt::dtype_name(g->dtype));
    c.check_same_device(g0, "grads[0]", g, name);
  }
  c.set_out(0, c.empty(nullptr, 0, vt::kFloat32));
}

VT_COMPUTE(clip_grad_norm_cpu, "core::clip_grad_norm") {
  const ClipArgs a(c);
  const bool inf = std::isinf(a.norm_type);
  double acc = 0.0;
  for (int64_t i = 0; i < a.grads.len; ++i) {
    vt::Tensor own;  // a dense copy of a strided gradient, for the sum
    const vt_tensor* g = a.grads.data[i];
    if (!vt::is_contiguous(g)) {
      own = vt::call(c.host, "core::contiguous", {a.grads.data[i]});
      g = own.get();
    }
    vt::dispatch(vt::kFloatingTypes, g->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x = vt::data<const T>(g);
      for (int64_t k = 0; k < g->numel; ++k) {
        const double v = (double)vt::convert<float>(x[k]);
        if (inf) acc = std::fabs(v) > acc || v != v ? std::fabs(v) : acc;
        else acc += v * v;
      }
    });
  }
  const float total = (float)(inf ? acc : std::sqrt(acc));
  *vt::data<float>(c.out(0)) = total;
  const float coef = clip_coef(total, a.max_norm);
  for (int64_t i = 0; i < a.grads.len; ++i) {
    vt_tensor* g = a.grads.data[i];
    vt::dispatch(vt::kFloatingTypes, g->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T k = vt::convert<T>(coef);  // torch multiplies by coef.to(g.dtype)
      if (vt::convert<float>(k) == 1.0f) return;  // x * 1 is x: nothing to write
      vt::Tensor kt = c.empty(nullptr, 0, g->dtype);
      *vt::data<T>(kt.get()) = k;
      vt::call(c.host, "core::mul_", {g, kt});
    });
  }
}

using core::OpDef;

const OpDef kOptimOps[] = {
    {"core::adamw_(Tensor param, Tensor grad, Tensor exp_avg, Tensor exp_avg_sq, float lr, float beta1, float beta2, "
     "float eps, float weight_decay, int step) -> Tensor", adamw__meta, adamw__cpu},
    {"core::adamw_multi(Tensor[] params, Tensor[] grads, Tensor[] exp_avgs, Tensor[] exp_avg_sqs, float lr, "
     "float beta1, float beta2, float eps, float weight_decay, int step, Tensor? lr_t=None, Tensor? step_t=None) -> ()",
     adamw_multi_meta, adamw_multi_cpu},
    {"core::sgd_(Tensor param, Tensor grad, Tensor? momentum_buffer, float lr, float momentum=0.0, "
     "float dampening=0.0, float weight_decay=0.0, bool nesterov=False) -> Tensor", sgd__meta, sgd__cpu},
    {"core::clip_grad_norm(Tensor[] grads, float max_norm, float norm_type=2.0) -> Tensor", clip_grad_norm_meta,
     clip_grad_norm_cpu},
};
VT_OP_TABLE(kOptimOps)
