// ops/core/src/optim.cpp — fused optimiser steps on CPU, one call per parameter tensor, in place.
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
// All tensors share param's shape and dtype (float32/float64, float16/bfloat16 computed in float32)
// and may have any strides. Not differentiable (no backward rules).
// Each op is a meta step (every check; returns param, every device) and a CPU compute (the update).
#include <cmath>

#include "core.hpp"
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
  if (!(lr >= 0.0)) c.fail(VT_ERR_VALUE, "lr must be >= 0, got %g", lr);
  if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0))
    c.fail(VT_ERR_VALUE, "betas must be in [0, 1), got (%g, %g)", beta1, beta2);
  c.set_out_retained(0, param);
}

VT_COMPUTE(adamw__cpu, "core::adamw_") {
  const AdamWArgs a(c);
  const vt_tensor *param = a.param, *grad = a.grad, *m = a.m, *v = a.v;
  const double lr = a.lr, beta1 = a.beta1, beta2 = a.beta2, eps = a.eps, wd = a.wd;
  const int64_t step = a.step;
  const double bc1 = 1.0 - std::pow(beta1, (double)step);
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, (double)step));
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

using core::OpDef;

const OpDef kOptimOps[] = {
    {"core::adamw_(Tensor param, Tensor grad, Tensor exp_avg, Tensor exp_avg_sq, float lr, float beta1, float beta2, "
     "float eps, float weight_decay, int step) -> Tensor", adamw__meta, adamw__cpu},
    {"core::sgd_(Tensor param, Tensor grad, Tensor? momentum_buffer, float lr, float momentum=0.0, "
     "float dampening=0.0, float weight_decay=0.0, bool nesterov=False) -> Tensor", sgd__meta, sgd__cpu},
};
VT_OP_TABLE(kOptimOps)
