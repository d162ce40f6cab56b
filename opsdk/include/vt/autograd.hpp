// vt/autograd.hpp — writing backward rules, and calling ops from C++ (header-only, C++17).
//
// A backward rule is registered with its op (Registrar::def's 4th-6th arguments) and computes
// input gradients by calling ops through the host, so it runs on every device and is itself
// differentiable (create_graph=True records it). Contract (the runtime's autograd engine):
//   - g.arg(i) is the forward's argument i (defaults filled in). Tensor arguments are there only
//     when their bit is set in `save_args`; non-tensor arguments are always there.
//   - g.out(j) is forward output j when its bit is in `save_outs`, else null.
//   - g.grad_out(j) is the gradient of output j, or null when none flowed (treat as zeros).
//   - for each i with g.needs(i), set g.set_grad(i, ...) to a tensor of exactly argument i's
//     shape and dtype (undo broadcasting with core::sum_to_size); leave others unset.
//     Tensor[] arguments: g.set_grad(i, k, ...) for element k.
//
//   VT_BACKWARD(mul_backward, "core::mul") {          // dL/da = g * b, dL/db = g * a
//     vt_tensor* go = g.grad_out(0);
//     if (g.needs(0)) g.set_grad(0, g.sum_to(vt::call(g.host, "core::mul", {go, g.arg(1).t()}), 0));
//     ...
//   }
#ifndef VT_AUTOGRAD_HPP_
#define VT_AUTOGRAD_HPP_

#include <initializer_list>
#include <atomic>
#include <vector>

#include "vt/oppack.hpp"

namespace vt {

// A boxed value built in place for a call: V(tensor), V(int64_t), V(double), V(bool),
// V::ints({1, 2}), V::none(), V(dtype), V(device). Lists it points to must outlive the call.
struct V {
  vt_value v;
  V() { v.tag = VT_NONE; v.pad_ = 0; v.v.i = 0; }
  V(vt_tensor* t) : V() { v.tag = t ? VT_TENSOR : VT_NONE; v.v.t = t; }
  V(const Tensor& t) : V(t.get()) {}
  V(int64_t i) : V() { v.tag = VT_INT; v.v.i = i; }
  V(int i) : V(static_cast<int64_t>(i)) {}
  V(double f) : V() { v.tag = VT_FLOAT; v.v.f = f; }
  V(bool b) : V() { v.tag = VT_BOOL; v.v.b = b; }
  V(const char* s) : V() { v.tag = s ? VT_STR : VT_NONE; v.v.s = s; }  // not V(bool)
  V(vt_dtype d) : V() { v.tag = VT_DTYPE; v.v.dtype = d; }
  V(vt_device d) : V() { v.tag = VT_DEVICE; v.v.device = d; }
  V(vt_int_list l) : V() { v.tag = VT_INTS; v.v.ints = l; }
  V(const std::vector<int64_t>& l) : V() {
    v.tag = VT_INTS;
    v.v.ints = {l.data(), static_cast<int64_t>(l.size())};
  }
  static V none() { return V(); }
  static V sizes(const vt_tensor* t) {  // the shape of t as an int[] (points into t)
    V r;
    r.v.tag = VT_INTS;
    r.v.v.ints = {t->sizes, t->ndim};
    return r;
  }
};

// The handle of op `name`, resolved once per name string: the cache is keyed by the string's
// address (callers pass literals) and lock-free. Handles stay valid for the life of the process:
// the runtime never frees an op and gives the same one back when its pack is reloaded.
inline vt_op* op_handle(const vt_host* host, const char* name) {
  struct Entry {
    std::atomic<const char*> key{nullptr};
    std::atomic<vt_op*> op{nullptr};
  };
  constexpr size_t kSlots = 512;
  static Entry cache[kSlots];
  size_t i = (reinterpret_cast<uintptr_t>(name) >> 3) % kSlots;
  for (size_t probe = 0; probe < 8; ++probe, i = (i + 1) % kSlots) {
    const char* k = cache[i].key.load(std::memory_order_acquire);
    if (k == name) {
      vt_op* op = cache[i].op.load(std::memory_order_acquire);
      return op ? op : host->find_op(name);  // claimed, value not stored yet
    }
    if (k == nullptr) {
      vt_op* op = host->find_op(name);
      if (!op) return nullptr;  // not cached: the op may be defined later
      const char* expected = nullptr;
      if (cache[i].key.compare_exchange_strong(expected, name, std::memory_order_acq_rel)) {
        cache[i].op.store(op, std::memory_order_release);
        return op;
      }
      if (expected == name) return op;  // another thread claimed the slot for this name
    }
  }
  return host->find_op(name);  // a crowded neighbourhood: look it up (lock-free in the host)
}

// Calls op `name` and returns its outputs; throws vt::Error with the callee's message on failure.
inline std::vector<Tensor> call_n(const vt_host* host, const char* name, std::initializer_list<V> args,
                                  int32_t nouts) {
  vt_op* op = op_handle(host, name);
  if (!op) throw Error(VT_ERR_NOT_IMPL);
  vt_value in[32];
  int32_t n = 0;
  for (const V& a : args) in[n++] = a.v;
  vt_value out[8];
  vt_status s = host->call(op, in, n, out, nouts);
  if (s != VT_OK) throw Error(s);
  std::vector<Tensor> r;
  for (int32_t j = 0; j < nouts; ++j) r.emplace_back(host, out[j].tag == VT_TENSOR ? out[j].v.t : nullptr);
  return r;
}

inline Tensor call(const vt_host* host, const char* name, std::initializer_list<V> args) {
  vt_op* op = op_handle(host, name);
  if (!op) throw Error(VT_ERR_NOT_IMPL);
  vt_value in[32];
  int32_t n = 0;
  for (const V& a : args) in[n++] = a.v;
  vt_value out;
  vt_status s = host->call(op, in, n, &out, 1);
  if (s != VT_OK) throw Error(s);
  return Tensor(host, out.v.t);
}

// The view of one backward call that a VT_BACKWARD body works with.
class Grad {
 public:
  Grad(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, const vt_value* outs,
       int32_t nouts, const vt_value* grad_outs, const uint8_t* needs, vt_value* grad_args,
       const char* op)
      : ctx(ctx), host(ctx->host), op(op), args_(args), nargs_(nargs), outs_(outs), nouts_(nouts),
        grad_outs_(grad_outs), needs_(needs), grad_args_(grad_args) {}

  const vt_kernel_ctx* ctx;
  const vt_host* host;
  const char* op;

  const vt_value& arg(int32_t i) const { return args_[i]; }
  vt_tensor* saved(int32_t i) const {  // a saved tensor argument
    if (args_[i].tag != VT_TENSOR)
      throw Error(host->set_error(VT_ERR_RUNTIME, "[%s] backward: argument %d was not saved", op, i));
    return args_[i].v.t;
  }
  vt_tensor* out(int32_t j) const {
    if (j >= nouts_ || outs_[j].tag != VT_TENSOR)
      throw Error(host->set_error(VT_ERR_RUNTIME, "[%s] backward: output %d was not saved", op, j));
    return outs_[j].v.t;
  }
  vt_tensor* grad_out(int32_t j) const {
    return j < nouts_ && grad_outs_[j].tag == VT_TENSOR ? grad_outs_[j].v.t : nullptr;
  }
  bool needs(int32_t i) const { return i < nargs_ && needs_[i]; }

  void set_grad(int32_t i, Tensor&& t) {
    if (!needs(i)) return;  // computed anyway: drop it
    grad_args_[i].tag = VT_TENSOR;
    grad_args_[i].v.t = t.release();
  }
  void set_grad(int32_t i, int64_t k, Tensor&& t) {  // element k of a Tensor[] argument
    if (!needs(i) || grad_args_[i].tag != VT_TENSORS || k >= grad_args_[i].v.ts.len) return;
    grad_args_[i].v.ts.data[k] = t.release();
  }
  // Sum a gradient down to the shape of `like` (undoing broadcasting); a no-op when equal.
  Tensor sum_to(Tensor&& grad, const vt_tensor* like) const {
    if (grad->ndim == like->ndim &&
        std::memcmp(grad->sizes, like->sizes, sizeof(int64_t) * like->ndim) == 0)
      return std::move(grad);
    return call(host, "core::sum_to_size", {grad, V::sizes(like)});
  }
  void drop() noexcept {  // on failure, release what was set (the ABI's rule)
    for (int32_t i = 0; i < nargs_; ++i) {
      if (grad_args_[i].tag == VT_TENSOR && grad_args_[i].v.t) {
        host->release(grad_args_[i].v.t);
        grad_args_[i].tag = VT_NONE;
      } else if (grad_args_[i].tag == VT_TENSORS) {
        for (int64_t k = 0; k < grad_args_[i].v.ts.len; ++k)
          if (grad_args_[i].v.ts.data[k]) {
            host->release(grad_args_[i].v.ts.data[k]);
            grad_args_[i].v.ts.data[k] = nullptr;
          }
      }
    }
  }

 private:
  const vt_value* args_;
  int32_t nargs_;
  const vt_value* outs_;
  int32_t nouts_;
  const vt_value* grad_outs_;
  const uint8_t* needs_;
  vt_value* grad_args_;
};

using BackwardFn = std::remove_pointer<vt_backward_fn>::type;

// VT_BACKWARD(fn, "ns::op") { body using `vt::Grad& g` } defines a vt_backward_fn whose body may
// throw; declare it elsewhere with `vt::BackwardFn fn;`.
#define VT_BACKWARD(fn, opname)                                                                   \
  static void fn##_body(::vt::Grad& g);                                                           \
  vt_status fn(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, const vt_value* outs, \
               int32_t nouts, const vt_value* grad_outs, const uint8_t* needs, vt_value* grad_args) { \
    ::vt::Grad g(ctx, args, nargs, outs, nouts, grad_outs, needs, grad_args, opname);             \
    try {                                                                                         \
      fn##_body(g);                                                                               \
      return VT_OK;                                                                               \
    } catch (...) {                                                                               \
      g.drop();                                                                                   \
      return ::vt::status_from_exception(ctx->host, opname);                                     \
    }                                                                                             \
  }                                                                                               \
  static void fn##_body(::vt::Grad& g)

}  // namespace vt

#endif  // VT_AUTOGRAD_HPP_
