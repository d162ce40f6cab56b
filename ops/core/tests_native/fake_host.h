// ops/core/tests_native/fake_host.h — a minimal vt_host for testing op-pack kernels without the
// runtime: malloc'd tensors with a refcount, a recording define_op/register_kernel, set_error
// into a global, and a parallel_for that really runs chunks on std::threads (test-only: packs
// never start threads; this stands in for the runtime's pool) so races and chunking show up.
//
// NOT the runtime; just enough of the ABI to call kernels directly.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "vt/oppack.h"

namespace fake {

// device memory hooks, set by the CUDA test (cudaMalloc / cudaFree); CPU memory otherwise
inline void* (*g_dev_alloc)(size_t) = nullptr;
inline void (*g_dev_free)(void*) = nullptr;

struct Storage {
  void* ptr;
  bool dev;
  Storage(size_t bytes, bool on_device) : dev(on_device) {
    ptr = dev ? g_dev_alloc(bytes + 64) : std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
  }
  ~Storage() { dev ? g_dev_free(ptr) : std::free(ptr); }
};

struct Tensor {
  vt_tensor t;  // first, so a vt_tensor* is a Tensor*
  std::vector<int64_t> sizes, strides;
  std::shared_ptr<Storage> storage;
  int refs = 1;
};

inline int64_t g_live = 0;  // tensors alive (leak check)
inline int g_threads = 1;
inline uint64_t g_seed = 1234, g_offset = 0;
inline vt_status g_status = VT_OK;
inline std::string g_error;
inline std::vector<std::string> g_schemas;
struct KernelReg {
  std::string op;
  int32_t device;
  std::string provider;
  int32_t priority;
  vt_kernel_fn fn;
};
inline std::vector<KernelReg> g_kernels;

inline vt_status set_error(vt_status s, const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_status = s;
  g_error = buf;
  return s;
}
inline vt_status define_op(vt_pack*, const char* schema) {
  for (auto& s : g_schemas)
    if (s == schema) return set_error(VT_ERR_VALUE, "duplicate op %s", schema);
  g_schemas.push_back(schema);
  return VT_OK;
}
inline vt_status register_kernel(vt_pack*, const char* op, int32_t dev, const char* prov, int32_t prio, vt_kernel_fn fn, void*) {
  g_kernels.push_back({op, dev, prov, prio, fn});
  return VT_OK;
}
inline vt_status register_backward(vt_pack*, const char*, vt_backward_fn, uint64_t, uint64_t) { return VT_OK; }
inline vt_op* find_op(const char* name) { set_error(VT_ERR_VALUE, "no op %s in the fake host", name); return nullptr; }
inline vt_status call(vt_op*, const vt_value*, int32_t, vt_value*, int32_t) { return set_error(VT_ERR_RUNTIME, "no call"); }

inline Tensor* make(std::shared_ptr<Storage> st, char* data, const int64_t* sizes, const int64_t* strides, int32_t ndim,
                    vt_dtype dtype, vt_device dev) {
  Tensor* t = new Tensor;
  t->sizes.assign(sizes, sizes + ndim);
  t->strides.assign(strides, strides + ndim);
  t->storage = std::move(st);
  t->t.data = data;
  t->t.sizes = t->sizes.data();
  t->t.strides = t->strides.data();
  t->t.ndim = ndim;
  t->t.numel = 1;
  for (int i = 0; i < ndim; ++i) t->t.numel *= sizes[i];
  t->t.dtype = dtype;
  t->t.device = dev;
  ++g_live;
  return t;
}
inline vt_tensor* empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device dev) {
  std::vector<int64_t> strides(ndim);
  int64_t n = 1;
  for (int i = ndim - 1; i >= 0; --i) { strides[i] = n; n *= sizes[i]; }
  auto st = std::make_shared<Storage>((size_t)n * ((dtype.bits + 7) / 8), dev.type == VT_CUDA);
  return &make(st, (char*)st->ptr, sizes, strides.data(), ndim, dtype, dev)->t;
}
inline vt_tensor* as_strided(vt_tensor* base, const int64_t* sizes, const int64_t* strides, int32_t ndim, int64_t offset) {
  Tensor* b = (Tensor*)base;
  return &make(b->storage, (char*)base->data + offset * ((base->dtype.bits + 7) / 8), sizes, strides, ndim,
               base->dtype, base->device)->t;
}
inline void retain(vt_tensor* t) { ((Tensor*)t)->refs++; }
inline void release(vt_tensor* t) {
  Tensor* x = (Tensor*)t;
  if (--x->refs == 0) { delete x; --g_live; }
}
inline void parallel_for(int64_t b, int64_t e, int64_t grain, vt_range_fn fn, void* cl) {
  const int64_t n = e - b;
  int64_t chunks = std::min<int64_t>(g_threads, (n + grain - 1) / grain);
  if (chunks <= 1) { fn(cl, b, e); return; }
  std::vector<std::thread> ts;
  const int64_t per = (n + chunks - 1) / chunks;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t cb = b + c * per, ce = std::min(e, cb + per);
    if (cb < ce) ts.emplace_back([=] { fn(cl, cb, ce); });
  }
  for (auto& t : ts) t.join();
}
inline int32_t num_threads() { return g_threads; }
inline void philox_reserve(vt_device, uint64_t count, uint64_t* seed, uint64_t* offset) {
  *seed = g_seed;
  *offset = g_offset;
  g_offset += count;
}
inline void* current_stream(vt_device) { return nullptr; }

inline vt_host make_host() {
  vt_host h;
  std::memset(&h, 0, sizeof h);
  h.size = sizeof(vt_host);
  h.abi_major = VT_ABI_MAJOR;
  h.abi_minor = VT_ABI_MINOR;
  h.set_error = set_error;
  h.define_op = define_op;
  h.register_kernel = register_kernel;
  h.register_backward = register_backward;
  h.find_op = find_op;
  h.call = call;
  h.empty = empty;
  h.as_strided = as_strided;
  h.retain = retain;
  h.release = release;
  h.parallel_for = parallel_for;
  h.num_threads = num_threads;
  h.philox_reserve = philox_reserve;
  h.current_stream = current_stream;
  return h;
}

}  // namespace fake
