// trace.cpp — the trace buffer and the keys of tuned providers (vt/runtime_trace.h).
//
// Records go to one buffer under a mutex: tracing is a diagnostic mode, and a short critical
// section (~20 ns uncontended) keeps records of all threads in one place for Python to drain.
#include "trace.hpp"

#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

namespace vt {

std::atomic<bool> g_trace_on{false};

namespace {

std::mutex& trace_mutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::vector<vtrt_trace_record>& buffer() {  // guarded by trace_mutex()
  static auto* v = new std::vector<vtrt_trace_record>();
  return *v;
}
int64_t g_capacity = 1000000;  // guarded by trace_mutex()
size_t g_head = 0;             // records before it were taken already; guarded by trace_mutex()
std::atomic<int64_t> g_dropped{0};
std::atomic<uint64_t> g_next_thread{1};

// FNV-1a's recurrence over whole 64-bit words, with a shift to fold the high bits back down (a
// call's key takes a few words per tensor: this runs on every call of a tuned op).
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(uint64_t w) {
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
};

int64_t bucket(int64_t size) {  // 0, 1, 2, 4, 8, ...: the power of two at or above the size
  if (size <= 1) return size < 0 ? 0 : size;
  return int64_t{1} << (64 - __builtin_clzll(static_cast<uint64_t>(size - 1)));
}

void add_tensor(Fnv* f, vt_dtype dt, int32_t ndim, const int64_t* sizes) {
  f->add((uint64_t{dt.code} << 16) | dt.bits);
  f->add(static_cast<uint64_t>(ndim));
  for (int32_t d = 0; d < ndim; ++d) f->add(static_cast<uint64_t>(bucket(sizes[d])));
}

// The options part of a key: every argument that is not a tensor, with its position (so for two
// optional tensors, (x, None) and (None, x) have different keys).
void add_options(Fnv* f, const vt_value* args, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    const vt_value& a = args[i];
    if (a.tag == VT_TENSOR || a.tag == VT_TENSORS) continue;
    f->add((static_cast<uint64_t>(i) << 8) | static_cast<uint8_t>(a.tag));
    switch (a.tag) {
      case VT_BOOL:
        f->add(a.v.b != 0);
        break;
      case VT_INT:
        f->add(static_cast<uint64_t>(a.v.i));
        break;
      case VT_FLOAT:  // zero or not: see vtrt_tune_key
        f->add(a.v.f != 0.0);
        break;
      case VT_STR: {
        uint64_t h = 1469598103934665603ull, len = 0;  // byte-wise FNV-1a
        for (const char* c = a.v.s ? a.v.s : ""; *c; ++c, ++len)
          h = (h ^ static_cast<uint8_t>(*c)) * 1099511628211ull;
        f->add(len);
        f->add(h);
        break;
      }
      case VT_INTS:
        f->add(static_cast<uint64_t>(a.v.ints.len));
        for (int64_t k = 0; k < a.v.ints.len; ++k) f->add(static_cast<uint64_t>(a.v.ints.data[k]));
        break;
      case VT_DTYPE:
        f->add((uint64_t{a.v.dtype.code} << 16) | a.v.dtype.bits);
        break;
      case VT_DEVICE:
        f->add(static_cast<uint64_t>(a.v.device.type));
        break;
      default:  // VT_NONE: the tag says it all
        break;
    }
  }
}

void describe(vtrt_trace_record* r, const vt_tensor* t) {
  const int32_t i = r->ntensors++;
  if (i >= VTRT_TRACE_TENSORS) return;
  r->dtypes[i] = t->dtype;
  r->ndims[i] = t->ndim;
  for (int32_t d = 0; d < t->ndim && d < VTRT_TRACE_DIMS; ++d) r->sizes[i][d] = t->sizes[d];
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int& trace_depth() {
  static thread_local int depth = 0;
  return depth;
}

uint64_t trace_thread_id() {
  static thread_local uint64_t id = g_next_thread.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void trace_copy_name(char (&dst)[VTRT_TRACE_NAME], const char* src) {
  if (!src) src = "";
  std::strncpy(dst, src, VTRT_TRACE_NAME - 1);
  dst[VTRT_TRACE_NAME - 1] = 0;
}

void trace_tensors(vtrt_trace_record* r, const vt_value* args, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    if (args[i].tag == VT_TENSOR && args[i].v.t) {
      describe(r, args[i].v.t);
    } else if (args[i].tag == VT_TENSORS) {
      for (int64_t k = 0; k < args[i].v.ts.len; ++k)
        if (args[i].v.ts.data[k]) describe(r, args[i].v.ts.data[k]);
    }
  }
  if (r->ntensors > VTRT_TRACE_TENSORS) r->ntensors = VTRT_TRACE_TENSORS;
}

void trace_options(vtrt_trace_record* r, const vt_value* args, int32_t n) {
  r->noptions = 0;
  for (int32_t i = 0; i < n && r->noptions < VTRT_TRACE_OPTIONS; ++i) {
    const vt_value& a = args[i];
    if (a.tag == VT_TENSOR || a.tag == VT_TENSORS) continue;
    vtrt_trace_option& o = r->options[r->noptions++];
    o.arg = i;
    o.tag = a.tag;
    o.len = 0;
    std::memset(&o.v, 0, sizeof(o.v));
    switch (a.tag) {
      case VT_BOOL:
        o.v.i = a.v.b != 0;
        break;
      case VT_INT:
        o.v.i = a.v.i;
        break;
      case VT_FLOAT:
        o.v.f = a.v.f;
        break;
      case VT_STR: {
        const char* str = a.v.s ? a.v.s : "";
        o.len = static_cast<int64_t>(std::strlen(str));
        std::strncpy(o.v.s, str, VTRT_TRACE_STR - 1);
        break;
      }
      case VT_INTS:
        o.len = a.v.ints.len;
        for (int64_t k = 0; k < a.v.ints.len && k < VTRT_TRACE_INTS; ++k)
          o.v.ints[k] = a.v.ints.data[k];
        break;
      case VT_DTYPE:
        o.v.dtype = a.v.dtype;
        break;
      case VT_DEVICE:
        o.v.device = a.v.device;
        break;
      default:
        break;
    }
  }
}

void trace_push(const vtrt_trace_record& r) {
  std::lock_guard<std::mutex> g(trace_mutex());
  auto& b = buffer();
  if (static_cast<int64_t>(b.size() - g_head) >= g_capacity) {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  b.push_back(r);
}

uint64_t tune_key(const vt_value* args, int32_t n) {
  Fnv f;
  for (int32_t i = 0; i < n; ++i) {
    if (args[i].tag == VT_TENSOR && args[i].v.t) {
      const vt_tensor* t = args[i].v.t;
      add_tensor(&f, t->dtype, t->ndim, t->sizes);
    } else if (args[i].tag == VT_TENSORS) {
      for (int64_t k = 0; k < args[i].v.ts.len; ++k) {
        const vt_tensor* t = args[i].v.ts.data[k];
        if (t) add_tensor(&f, t->dtype, t->ndim, t->sizes);
      }
    }
  }
  add_options(&f, args, n);
  return f.h;
}

}  // namespace vt

using namespace vt;

extern "C" {

void vtrt_trace_set_enabled(int32_t on, int64_t capacity) {
  {
    std::lock_guard<std::mutex> g(trace_mutex());
    if (capacity > 0) g_capacity = capacity;
  }
  g_trace_on.store(on != 0, std::memory_order_seq_cst);
}

int32_t vtrt_trace_enabled(void) { return g_trace_on.load(std::memory_order_relaxed) ? 1 : 0; }

int64_t vtrt_trace_take(vtrt_trace_record* out, int64_t max) {
  std::lock_guard<std::mutex> g(trace_mutex());
  auto& b = buffer();
  int64_t n = static_cast<int64_t>(b.size() - g_head);
  if (max < n) n = max < 0 ? 0 : max;
  if (n > 0) std::memcpy(out, b.data() + g_head, static_cast<size_t>(n) * sizeof(vtrt_trace_record));
  g_head += static_cast<size_t>(n);
  if (g_head == b.size()) {  // all taken: start over (keeps the capacity, not the records)
    b.clear();
    g_head = 0;
  }
  return n;
}

int64_t vtrt_trace_pending(void) {
  std::lock_guard<std::mutex> g(trace_mutex());
  return static_cast<int64_t>(buffer().size() - g_head);
}

int64_t vtrt_trace_dropped(void) { return g_dropped.load(std::memory_order_relaxed); }

int64_t vtrt_trace_now_ns(void) { return now_ns(); }

uint64_t vtrt_tune_key(const vt_dtype* dtypes, const int32_t* ndims, const int64_t* sizes,
                       int32_t ntensors, const vt_value* args, int32_t nargs) {
  Fnv f;
  for (int32_t i = 0; i < ntensors; ++i) {
    add_tensor(&f, dtypes[i], ndims[i], sizes);
    sizes += ndims[i];
  }
  if (args) add_options(&f, args, nargs);
  return f.h;
}

}  // extern "C"
