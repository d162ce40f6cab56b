// vt/oppack.hpp — the header-only C++17 layer for op-pack authors, on top of the C ABI (vt/oppack.h).
//
// What it gives a kernel author, in file order:
//   1. vt::Error and the exception -> status boundary (VT_KERNEL, VT_KERNEL_BEGIN/END), so C++
//      exceptions never cross the ABI;
//   2. dtypes: vt::ScalarType, names, sizes, vt::convert, vt::acc_t and the dtype switch vt::dispatch;
//   3. tensor helpers on `const vt_tensor*` and vt::Tensor, an owning reference that releases itself;
//   4. vt::parallel_for over the runtime's one thread pool (packs never start threads);
//   5. vt::Call, the boxed arguments of one kernel call read with errors that name op and argument;
//   6. vt::Registrar for vt_oppack_init.
// Broadcasting and strided loops are in vt/loops.hpp; half/bfloat16 storage types in vt/half.hpp.
//
// Performance contract: nothing here allocates or formats strings on the success path. Messages
// are built only when something is about to fail.
//
// A kernel looks like this (ops/core/src/*.cpp has real ones):
//
//   VT_KERNEL(neg_cpu, "mine::neg") {                 // defines vt_status neg_cpu(ctx, args, ...)
//     const vt_tensor* self = c.arg(0, "self").tensor();
//     vt::Tensor out = c.empty_like(self);
//     ... compute ...
//     c.set_out(0, std::move(out));
//   }
#ifndef VT_OPPACK_HPP_
#define VT_OPPACK_HPP_

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "vt/half.hpp"
#include "vt/oppack.h"

namespace vt {

// ================================================================================================
// 1. Errors. Throw vt::Error anywhere in a kernel; the VT_KERNEL boundary turns it into
//    host->set_error + the status. Messages start with "[ns::op] " (vt::Call::fail adds it).
// ================================================================================================
class Error : public std::exception {
 public:
  Error(vt_status status, std::string msg) : status_(status), msg_(std::move(msg)), has_msg_(true) {}
  // An error whose message the host already set (e.g. host->empty failed): only the status travels.
  explicit Error(vt_status status) : status_(status), has_msg_(false) {}
  vt_status status() const { return status_; }
  bool has_message() const { return has_msg_; }
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  vt_status status_;
  std::string msg_;
  bool has_msg_;
};

inline std::string vformat(const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap2);
  va_end(ap2);
  std::string s(n > 0 ? (size_t)n : 0, '\0');
  if (n > 0) std::vsnprintf(&s[0], (size_t)n + 1, fmt, ap);
  return s;
}

// throw vt::Error(status, printf(fmt, ...)). Callers include the "[ns::op] " prefix themselves.
[[noreturn]] inline void fail(vt_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
[[noreturn]] inline void fail(vt_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string msg = vformat(fmt, ap);
  va_end(ap);
  throw Error(status, std::move(msg));
}

// Must be called from inside a catch block: maps the in-flight exception to a status and sets the
// thread's error message through the host. Never throws.
inline vt_status status_from_exception(const vt_host* host, const char* op) noexcept {
  try {
    throw;
  } catch (const Error& e) {
    if (e.has_message()) host->set_error(e.status(), "%s", e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    return host->set_error(VT_ERR_MEMORY, "[%s] out of memory (std::bad_alloc)", op);
  } catch (const std::exception& e) {
    return host->set_error(VT_ERR_RUNTIME, "[%s] %s", op, e.what());
  } catch (...) {
    return host->set_error(VT_ERR_RUNTIME, "[%s] unknown C++ exception", op);
  }
}

// The raw boundary for hand-written vt_kernel_fn's:
//   vt_status k(const vt_kernel_ctx* ctx, ...) { VT_KERNEL_BEGIN ...; return VT_OK; VT_KERNEL_END(ctx->host, "ns::op") }
#define VT_KERNEL_BEGIN try {
#define VT_KERNEL_END(host, op)                       \
  }                                                   \
  catch (...) {                                       \
    return ::vt::status_from_exception((host), (op)); \
  }

// ================================================================================================
// 2. dtypes
// ================================================================================================
// Our own small enum over the DLPack codes the runtime supports; Unknown for anything else.
enum class ScalarType : uint8_t { Bool, UInt8, Int8, Int32, Int64, Float16, BFloat16, Float32, Float64, Unknown };

constexpr vt_dtype make_dtype(uint8_t code, uint8_t bits) { return vt_dtype{code, bits, 1}; }
constexpr vt_dtype kBool = make_dtype(VT_DL_BOOL, 8);
constexpr vt_dtype kUInt8 = make_dtype(VT_DL_UINT, 8);
constexpr vt_dtype kInt8 = make_dtype(VT_DL_INT, 8);
constexpr vt_dtype kInt32 = make_dtype(VT_DL_INT, 32);
constexpr vt_dtype kInt64 = make_dtype(VT_DL_INT, 64);
constexpr vt_dtype kFloat16 = make_dtype(VT_DL_FLOAT, 16);
constexpr vt_dtype kBFloat16 = make_dtype(VT_DL_BFLOAT, 16);
constexpr vt_dtype kFloat32 = make_dtype(VT_DL_FLOAT, 32);
constexpr vt_dtype kFloat64 = make_dtype(VT_DL_FLOAT, 64);

inline bool same_dtype(vt_dtype a, vt_dtype b) { return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes; }
inline bool same_device(vt_device a, vt_device b) { return a.type == b.type && a.index == b.index; }

inline ScalarType scalar_type(vt_dtype d) {
  if (d.lanes != 1) return ScalarType::Unknown;
  switch (d.code) {
    case VT_DL_BOOL: return d.bits == 8 ? ScalarType::Bool : ScalarType::Unknown;
    case VT_DL_UINT: return d.bits == 8 ? ScalarType::UInt8 : ScalarType::Unknown;
    case VT_DL_INT:
      return d.bits == 8 ? ScalarType::Int8 : d.bits == 32 ? ScalarType::Int32
           : d.bits == 64 ? ScalarType::Int64 : ScalarType::Unknown;
    case VT_DL_FLOAT:
      return d.bits == 16 ? ScalarType::Float16 : d.bits == 32 ? ScalarType::Float32
           : d.bits == 64 ? ScalarType::Float64 : ScalarType::Unknown;
    case VT_DL_BFLOAT: return d.bits == 16 ? ScalarType::BFloat16 : ScalarType::Unknown;
    default: return ScalarType::Unknown;
  }
}

inline vt_dtype to_dtype(ScalarType s) {
  switch (s) {
    case ScalarType::Bool: return kBool;
    case ScalarType::UInt8: return kUInt8;
    case ScalarType::Int8: return kInt8;
    case ScalarType::Int32: return kInt32;
    case ScalarType::Int64: return kInt64;
    case ScalarType::Float16: return kFloat16;
    case ScalarType::BFloat16: return kBFloat16;
    case ScalarType::Float32: return kFloat32;
    case ScalarType::Float64: return kFloat64;
    default: return make_dtype(0, 0);
  }
}

// torch's names, used in every message
inline const char* dtype_name(vt_dtype d) {
  switch (scalar_type(d)) {
    case ScalarType::Bool: return "bool";
    case ScalarType::UInt8: return "uint8";
    case ScalarType::Int8: return "int8";
    case ScalarType::Int32: return "int32";
    case ScalarType::Int64: return "int64";
    case ScalarType::Float16: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Float32: return "float32";
    case ScalarType::Float64: return "float64";
    default: return "unknown dtype";
  }
}

inline int64_t element_size(vt_dtype d) { return (int64_t)((d.bits * d.lanes + 7) / 8); }
inline bool is_floating(vt_dtype d) { return d.code == VT_DL_FLOAT || d.code == VT_DL_BFLOAT; }
inline bool is_integral(vt_dtype d, bool include_bool) {
  return d.code == VT_DL_INT || d.code == VT_DL_UINT || (include_bool && d.code == VT_DL_BOOL);
}

// C++ type <-> ScalarType
template <class T> struct scalar_type_of;
template <> struct scalar_type_of<bool> { static constexpr ScalarType value = ScalarType::Bool; };
template <> struct scalar_type_of<uint8_t> { static constexpr ScalarType value = ScalarType::UInt8; };
template <> struct scalar_type_of<int8_t> { static constexpr ScalarType value = ScalarType::Int8; };
template <> struct scalar_type_of<int32_t> { static constexpr ScalarType value = ScalarType::Int32; };
template <> struct scalar_type_of<int64_t> { static constexpr ScalarType value = ScalarType::Int64; };
template <> struct scalar_type_of<half> { static constexpr ScalarType value = ScalarType::Float16; };
template <> struct scalar_type_of<bfloat16> { static constexpr ScalarType value = ScalarType::BFloat16; };
template <> struct scalar_type_of<float> { static constexpr ScalarType value = ScalarType::Float32; };
template <> struct scalar_type_of<double> { static constexpr ScalarType value = ScalarType::Float64; };
template <class T> vt_dtype dtype_of() { return to_dtype(scalar_type_of<T>::value); }

template <class T>
constexpr bool is_reduced_float_v = std::is_same<T, half>::value || std::is_same<T, bfloat16>::value;

// The type arithmetic on T is done in: float for the 16-bit floats, T itself otherwise.
template <class T> using acc_t = typename std::conditional<is_reduced_float_v<T>, float, T>::type;

// Value conversion between any two supported types (what copy_ and casts do). Goes through float
// for the 16-bit floats; bool is "!= 0" like torch.
template <class To, class From>
inline To convert(From x) {
  if constexpr (std::is_same<To, From>::value) {
    return x;
  } else if constexpr (is_reduced_float_v<From>) {
    return convert<To>(static_cast<float>(x));
  } else if constexpr (is_reduced_float_v<To>) {
    return To(static_cast<float>(x));
  } else if constexpr (std::is_same<To, bool>::value) {
    return x != From(0);
  } else {
    return static_cast<To>(x);
  }
}

// ---- the dtype switch ---------------------------------------------------------------------------
// vt::dispatch(vt::kFloatingTypes, t->dtype, "ns::op", [&](auto tag) {
//   using T = typename decltype(tag)::type;   // float, double, vt::half, ...
//   ...
// });
// Calls the lambda with the tag of the one matching type; an unlisted dtype is VT_ERR_NOT_IMPL
// naming the op, the dtype and what is supported. One `if` per listed type, no tables.
template <class T> struct type_tag { using type = T; };
template <class... Ts> struct types {};

constexpr types<float, double> kFloatTypes{};
constexpr types<float, double, half, bfloat16> kFloatingTypes{};
constexpr types<float, double, int64_t, int32_t, half, bfloat16> kArithTypes{};
// every dtype but bool: what torch's add/sub/mul/div take (integers wrap around)
constexpr types<float, double, int64_t, int32_t, half, bfloat16, uint8_t, int8_t> kNumberTypes{};
constexpr types<float, double, int64_t, int32_t, half, bfloat16, bool, uint8_t, int8_t> kAllTypes{};

template <class... Ts>
std::string type_list_names() {
  std::string s;
  const char* names[] = {dtype_name(dtype_of<Ts>())...};
  for (const char* n : names) { if (!s.empty()) s += ", "; s += n; }
  return s;
}

template <class... Ts, class F>
void dispatch(types<Ts...>, vt_dtype dtype, const char* op, F&& f) {
  const ScalarType st = scalar_type(dtype);
  const bool done = ((st == scalar_type_of<Ts>::value ? (f(type_tag<Ts>{}), true) : false) || ...);
  if (!done)
    fail(VT_ERR_NOT_IMPL, "[%s] not implemented for dtype %s (supported: %s)", op, dtype_name(dtype),
         type_list_names<Ts...>().c_str());
}

// ================================================================================================
// 3. Tensors. Kernels read `const vt_tensor*` directly (see the C header); these are helpers.
// ================================================================================================
inline bool is_contiguous(const vt_tensor* t) {
  int64_t expected = 1;
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    const int64_t n = t->sizes[d];
    if (n == 0) return true;  // no elements: any strides describe it
    if (n != 1 && t->strides[d] != expected) return false;
    expected *= n;
  }
  return true;
}

template <class T> T* data(const vt_tensor* t) { return static_cast<T*>(t->data); }

// "(2, 3)" — for messages; "()" for a scalar, "(5,)" like Python for one dim.
inline std::string shape_str(const int64_t* sizes, int32_t ndim) {
  std::string s = "(";
  for (int32_t i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}
inline std::string shape_str(const vt_tensor* t) { return shape_str(t->sizes, t->ndim); }

inline const char* device_name(vt_device d) {
  return d.type == VT_CPU ? "cpu" : d.type == VT_CUDA ? "cuda" : d.type == VT_META ? "meta" : "unknown";
}

// Wraps negative dims; out of range is VT_ERR_INDEX naming dim and ndim. A 0-d tensor accepts
// dims 0 and -1, like torch.
inline int32_t wrap_dim(const char* op, int64_t dim, int32_t ndim) {
  const int64_t n = ndim > 0 ? ndim : 1;
  if (dim < -n || dim >= n)
    fail(VT_ERR_INDEX, "[%s] dim %lld is out of range for a tensor of ndim %d (expected %lld..%lld)", op,
         (long long)dim, ndim, (long long)-n, (long long)(n - 1));
  return (int32_t)(dim < 0 ? dim + n : dim);
}

// An owned reference to a vt_tensor (a new reference from host->empty, host->as_strided or a
// call's output). Releases itself, so an exception between allocation and set_out leaks nothing.
class Tensor {
 public:
  Tensor() = default;
  Tensor(const vt_host* host, vt_tensor* t) : host_(host), t_(t) {}
  Tensor(Tensor&& o) noexcept : host_(o.host_), t_(o.t_) { o.t_ = nullptr; }
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) { reset(); host_ = o.host_; t_ = o.t_; o.t_ = nullptr; }
    return *this;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() { reset(); }

  vt_tensor* get() const { return t_; }
  vt_tensor* operator->() const { return t_; }
  // Only from a named Tensor: `vt_tensor* t = c.empty(...)` would release the temporary at once.
  operator vt_tensor*() const& { return t_; }
  operator vt_tensor*() const&& = delete;
  explicit operator bool() const { return t_ != nullptr; }
  vt_tensor* release() { vt_tensor* t = t_; t_ = nullptr; return t; }  // hand the reference on
  void reset() { if (t_) host_->release(t_); t_ = nullptr; }

 private:
  const vt_host* host_ = nullptr;
  vt_tensor* t_ = nullptr;
};

// host->empty, throwing when the host could not allocate (it has set the message already).
inline Tensor empty(const vt_host* host, const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device) {
  vt_tensor* t = host->empty(sizes, ndim, dtype, device);
  if (!t) throw Error(VT_ERR_MEMORY);
  return Tensor(host, t);
}

// ================================================================================================
// 4. parallel_for: f(begin, end) over chunks of [begin, end) on the runtime's pool.
//    Ranges of at most `grain` run inline with no call into the host (the tiny-tensor fast path).
//    An exception in any chunk is caught on its thread (it must not unwind through the host's C
//    code) and the first one is rethrown here once all chunks are done.
// ================================================================================================
constexpr int64_t kGrain = 32768;  // elements per chunk for cheap elementwise work

template <class F>
void parallel_for(const vt_host* host, int64_t begin, int64_t end, int64_t grain, F&& f) {
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  if (end - begin <= grain || host->num_threads() <= 1) {
    f(begin, end);
    return;
  }
  struct Closure {
    F* f;
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex mu;
  } cl;
  cl.f = &f;
  host->parallel_for(begin, end, grain, [](void* p, int64_t b, int64_t e) {
    Closure* c = static_cast<Closure*>(p);
    if (c->failed.load(std::memory_order_relaxed)) return;  // give up early once one chunk failed
    try {
      (*c->f)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(c->mu);
      if (!c->error) c->error = std::current_exception();
      c->failed.store(true, std::memory_order_relaxed);
    }
  }, &cl);
  if (cl.error) std::rethrow_exception(cl.error);
}

// ================================================================================================
// 5. vt::Call — one kernel invocation: reads arguments by position (with the schema's name for
//    messages), allocates outputs, stores them, and formats errors with the op's name.
// ================================================================================================
class Call;

// One boxed argument. Accessors check the tag and fail with "[op] argument 'name' ...".
class Arg {
 public:
  Arg(const Call* call, const vt_value* v, int32_t index, const char* name) : c_(call), v_(v), i_(index), name_(name) {}
  bool is_none() const { return v_->tag == VT_NONE; }
  vt_tensor* tensor() const { expect(VT_TENSOR, "Tensor"); return v_->v.t; }
  vt_tensor* tensor_or_null() const { return is_none() ? nullptr : tensor(); }  // for Tensor?
  int64_t int_() const {
    if (v_->tag == VT_BOOL) return v_->v.b;
    expect(VT_INT, "int");
    return v_->v.i;
  }
  double float_() const {  // an int is accepted where a float is expected, like Python
    if (v_->tag == VT_INT) return (double)v_->v.i;
    expect(VT_FLOAT, "float");
    return v_->v.f;
  }
  bool bool_() const {
    if (v_->tag == VT_INT) return v_->v.i != 0;
    expect(VT_BOOL, "bool");
    return v_->v.b != 0;
  }
  vt_int_list ints() const { expect(VT_INTS, "int[]"); return v_->v.ints; }
  const char* str() const { expect(VT_STR, "str"); return v_->v.s; }
  vt_dtype dtype() const { expect(VT_DTYPE, "ScalarType"); return v_->v.dtype; }
  // a `Scalar` argument: its value with the Python type it came as (VT_BOOL, VT_INT or VT_FLOAT)
  vt_value scalar() const {
    if (v_->tag != VT_INT && v_->tag != VT_FLOAT && v_->tag != VT_BOOL)
      expect(VT_FLOAT, "Scalar");
    return *v_;
  }
  vt_device device() const { expect(VT_DEVICE, "Device"); return v_->v.device; }
  // optionals: the default when the value is None
  int64_t int_or(int64_t d) const { return is_none() ? d : int_(); }
  double float_or(double d) const { return is_none() ? d : float_(); }
  vt_dtype dtype_or(vt_dtype d) const { return is_none() ? d : dtype(); }
  vt_device device_or(vt_device d) const { return is_none() ? d : device(); }

 private:
  inline void expect(int32_t tag, const char* type) const;
  const Call* c_;
  const vt_value* v_;
  int32_t i_;
  const char* name_;
};

class Call {
 public:
  Call(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts, const char* op)
      : ctx(ctx), host(ctx->host), args(args), nargs(nargs), outs(outs), nouts(nouts), op(op) {}

  const vt_kernel_ctx* ctx;
  const vt_host* host;
  const vt_value* args;
  int32_t nargs;
  vt_value* outs;
  int32_t nouts;
  const char* op;  // "ns::name", the prefix of every message

  // Argument i of the schema; `name` is the schema's name for it, used only in messages.
  Arg arg(int32_t i, const char* name) const {
    if (i >= nargs)
      fail(VT_ERR_TYPE, "missing argument '%s' (position %d; the kernel received %d arguments)", name, i, nargs);
    return Arg(this, &args[i], i, name);
  }

  // throw vt::Error(status, "[op] " + printf(fmt, ...))
  [[noreturn]] void fail(vt_status status, const char* fmt, ...) const
#if defined(__GNUC__)
      __attribute__((format(printf, 3, 4)))
#endif
      ;

  // Output i as the meta step made it (in a compute function).
  vt_tensor* out(int32_t i) const {
    if (i >= nouts || outs[i].tag != VT_TENSOR || !outs[i].v.t)
      fail(VT_ERR_RUNTIME, "output %d was not made by the meta step", i);
    return outs[i].v.t;
  }
  bool is_meta() const { return ctx->device.type == VT_META; }

  // Outputs are allocated on the device the call was dispatched to.
  Tensor empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype) const {
    return vt::empty(host, sizes, ndim, dtype, ctx->device);
  }
  Tensor empty_like(const vt_tensor* t) const { return empty(t->sizes, t->ndim, t->dtype); }
  // A view of base's memory (offset in elements from base's data pointer); throws when the host
  // refuses it (it has set the message: the view would leave the storage).
  Tensor view(vt_tensor* base, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset) const {
    vt_tensor* v = host->as_strided(base, sizes, strides, ndim, offset);
    if (!v) throw Error(VT_ERR_VALUE);
    return Tensor(host, v);
  }

  // Stores an owned tensor as output i; the caller of the kernel owns it from here on.
  void set_out(int32_t i, Tensor&& t) {
    if (i >= nouts) fail(VT_ERR_RUNTIME, "output %d out of range (the op has %d outputs)", i, nouts);
    outs[i].tag = VT_TENSOR;
    outs[i].v.t = t.release();
    if (i + 1 > nset_) nset_ = i + 1;
  }
  // An in-place op returns its argument as a new reference.
  void set_out_retained(int32_t i, vt_tensor* t) {
    host->retain(t);
    set_out(i, Tensor(host, t));
  }
  // On failure the boundary releases the outputs already stored, as the ABI asks.
  void drop_outputs() noexcept {
    for (int32_t i = 0; i < nset_; ++i)
      if (outs[i].tag == VT_TENSOR && outs[i].v.t) { host->release(outs[i].v.t); outs[i].tag = VT_NONE; outs[i].v.t = nullptr; }
    nset_ = 0;
  }

  // Shared checks with the standard messages.
  void check_same_dtype(const vt_tensor* a, const char* an, const vt_tensor* b, const char* bn) const {
    if (!same_dtype(a->dtype, b->dtype))
      fail(VT_ERR_TYPE, "dtype mismatch: %s is %s, %s is %s", an, dtype_name(a->dtype), bn, dtype_name(b->dtype));
  }
  void check_same_device(const vt_tensor* a, const char* an, const vt_tensor* b, const char* bn) const {
    if (!same_device(a->device, b->device))
      fail(VT_ERR_VALUE, "device mismatch: %s is on %s:%d, %s is on %s:%d", an, device_name(a->device),
           a->device.index, bn, device_name(b->device), b->device.index);
  }
  // Sizes given as int[] (e.g. the `size` of a factory) must be >= 0.
  void check_sizes(const char* name, vt_int_list l) const {
    for (int64_t i = 0; i < l.len; ++i)
      if (l.data[i] < 0) fail(VT_ERR_VALUE, "argument '%s' has a negative size %lld at position %lld", name,
                              (long long)l.data[i], (long long)i);
  }

 private:
  int32_t nset_ = 0;
};

inline void Call::fail(vt_status status, const char* fmt, ...) const {
  va_list ap;
  va_start(ap, fmt);
  std::string msg = "[" + std::string(op) + "] " + vformat(fmt, ap);
  va_end(ap);
  throw Error(status, std::move(msg));
}

inline const char* value_tag_name(int32_t tag) {
  switch (tag) {
    case VT_NONE: return "None";
    case VT_TENSOR: return "Tensor";
    case VT_INT: return "int";
    case VT_FLOAT: return "float";
    case VT_BOOL: return "bool";
    case VT_INTS: return "int[]";
    case VT_STR: return "str";
    case VT_DTYPE: return "ScalarType";
    case VT_DEVICE: return "Device";
    default: return "unknown";
  }
}

inline void Arg::expect(int32_t tag, const char* type) const {
  if (v_->tag != tag)
    c_->fail(VT_ERR_TYPE, "argument '%s' (position %d) must be %s, got %s", name_, i_, type, value_tag_name(v_->tag));
  if (tag == VT_TENSOR && v_->v.t == nullptr)
    c_->fail(VT_ERR_TYPE, "argument '%s' (position %d) is a null tensor", name_, i_);
}

// VT_KERNEL(fn, "ns::op") { body using `vt::Call& c` }
// defines `vt_status fn(const vt_kernel_ctx*, const vt_value*, int32_t, vt_value*, int32_t)`, a
// vt_kernel_fn, whose body may throw; declare it elsewhere with `vt::KernelFn fn;`.
using KernelFn = std::remove_pointer<vt_kernel_fn>::type;

#define VT_KERNEL(fn, opname)                                                                      \
  static void fn##_body(::vt::Call& c);                                                            \
  vt_status fn(const vt_kernel_ctx* ctx, const vt_value* args, int32_t nargs, vt_value* outs,      \
               int32_t nouts) {                                                                    \
    ::vt::Call c(ctx, args, nargs, outs, nouts, opname);                                           \
    try {                                                                                          \
      fn##_body(c);                                                                                \
      return VT_OK;                                                                                \
    } catch (...) {                                                                                \
      c.drop_outputs();                                                                            \
      return ::vt::status_from_exception(ctx->host, opname);                                      \
    }                                                                                              \
  }                                                                                                \
  static void fn##_body(::vt::Call& c)

// An op's meta step and its compute functions are VT_KERNELs too (same signature); the names say
// which half they are. A meta step makes outputs with c.empty/c.set_out and never touches data; a
// compute function reads c.out(i) and only computes.
#define VT_META_FN(fn, opname) VT_KERNEL(fn, opname)
#define VT_COMPUTE(fn, opname) VT_KERNEL(fn, opname)

// ================================================================================================
// 6. Registration, for vt_oppack_init. Every call throws vt::Error(status) when the host refuses
//    (the host set the message); `vt::init_guard` turns that back into a status.
// ================================================================================================
// "ns::name(Tensor self) -> Tensor" -> "ns::name" into buf; throws when it does not fit.
inline const char* op_name_of(const char* schema, char* buf, size_t size) {
  size_t n = 0;
  while (schema[n] && schema[n] != '(') ++n;
  if (n + 1 > size) fail(VT_ERR_VALUE, "op name too long in schema '%s'", schema);
  std::memcpy(buf, schema, n);
  buf[n] = '\0';
  return buf;
}

class Registrar {
 public:
  Registrar(const vt_host* host, vt_pack* pack, const char* provider, int32_t priority)
      : host(host), pack(pack), provider(provider), priority(priority) {}
  const vt_host* host;
  vt_pack* pack;
  const char* provider;
  int32_t priority;

  // define an op and (optionally) its kernel on `device` and backward rule
  void def(const char* schema, int32_t device, vt_kernel_fn fn, vt_backward_fn backward = nullptr,
           uint64_t save_args = 0, uint64_t save_outs = 0) {
    check(host->define_op(pack, schema));
    char name[256];
    op_name_of(schema, name, sizeof(name));
    if (fn) impl(name, device, fn);
    if (backward) check(host->register_backward(pack, name, backward, save_args, save_outs));
  }
  // provide a kernel for an op defined here or in another pack
  void impl(const char* op_name, int32_t device, vt_kernel_fn fn, void* user = nullptr) {
    check(host->register_kernel(pack, op_name, device, provider, priority, fn, user));
  }

  // ABI 1.1: define an op with its meta step (checks, output shapes/dtypes, allocation), its
  // backward rule, and flags (VT_META_COMPLETE: the meta step is the whole op on every device).
  void define(const char* schema, vt_kernel_fn meta, vt_backward_fn backward = nullptr,
              uint64_t save_args = 0, uint64_t save_outs = 0, uint32_t flags = 0) {
    require_1_1("define");
    check(host->define_op(pack, schema));
    char name[256];
    op_name_of(schema, name, sizeof(name));
    check(host->register_meta(pack, name, meta, flags));
    if (backward) check(host->register_backward(pack, name, backward, save_args, save_outs));
  }
  // ABI 1.1: the compute of an op (this pack's or another's) on `device`, under this provider.
  void compute(const char* op_name, int32_t device, vt_kernel_fn fn, void* user = nullptr) {
    require_1_1("compute");
    check(host->register_compute(pack, op_name, device, provider, priority, fn, user));
  }

 private:
  static void check(vt_status s) { if (s != VT_OK) throw Error(s); }
  void require_1_1(const char* what) const {
    if (!VT_HOST_HAS(host, register_compute))
      fail(VT_ERR_ABI, "Registrar::%s needs a host of ABI 1.1 or newer (this host is %u.%u)", what,
           (unsigned)host->abi_major, (unsigned)host->abi_minor);
  }
};

// Runs an init body that may throw; returns its status. The host rolls back every registration
// made before a failing return.
template <class F>
vt_status init_guard(const vt_host* host, const char* pack_name, F&& f) noexcept {
  try {
    f();
    return VT_OK;
  } catch (...) {
    return status_from_exception(host, pack_name);
  }
}

}  // namespace vt

#endif  // VT_OPPACK_HPP_
