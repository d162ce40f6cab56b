// internal.hpp — the runtime's own structures, shared by its .cpp files and nothing else.
// Packs see only vt/oppack.h; Python sees only vt/runtime.h.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <string>
#include <vector>

#include "vt/runtime.h"

namespace vt {

struct Pack;
struct AutogradMeta;

// ---- errors (error.cpp) ---------------------------------------------------------------------------
vt_status set_error(vt_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
vt_status set_error_v(vt_status status, const char* fmt, va_list ap);
const char* last_error();

// ---- storage and tensors (tensor.cpp) -------------------------------------------------------------
struct Storage {
  std::atomic<int64_t> refs{1};
  std::atomic<uint64_t> version{0};
  void* data = nullptr;
  size_t nbytes = 0;
  vt_device device{VT_CPU, 0};
  void (*deleter)(void* ctx) = nullptr;  // null: memory came from the runtime's allocator
  void* deleter_ctx = nullptr;
  Pack* owner = nullptr;  // pack whose code the deleter lives in: kept mapped until we are gone
  // a leaf that requires grad lives here: its views may not be modified in place (autograd.cpp)
  std::atomic<bool> leaf_requires_grad{false};
};

struct TensorImpl {
  vt_tensor pub;  // first member: a TensorImpl* is a vt_tensor*
  std::atomic<int64_t> refs{1};
  Storage* storage = nullptr;
  int64_t offset = 0;  // in elements
  int64_t sizes[VT_MAX_DIMS];
  int64_t strides[VT_MAX_DIMS];
  AutogradMeta* ag = nullptr;  // only for tensors that require grad or have history
  // A view an op made (core::slice, select, view, ...): the tensor whose memory it shows, never
  // itself a view (owned). Autograd needs it: an in-place op on the view rewrites the base's
  // history (autograd.cpp, rebase_view). Tensors from host->as_strided inside kernels have none.
  vt_tensor* view_base = nullptr;
  bool view_nograd = false;  // made with grad mode off: not a differentiable view of its base
};

void free_meta(TensorImpl* t);  // autograd.cpp

inline TensorImpl* impl(vt_tensor* t) { return reinterpret_cast<TensorImpl*>(t); }
inline const TensorImpl* impl(const vt_tensor* t) { return reinterpret_cast<const TensorImpl*>(t); }

size_t dtype_size(vt_dtype d);
bool dtype_valid(vt_dtype d);
std::string dtype_name(vt_dtype d);
std::string device_name(vt_device d);
std::string shape_str(const int64_t* sizes, int32_t ndim);
// shapes: sizes >= 0, ndim <= VT_MAX_DIMS, at most 2^60 elements (else false + error naming `what`)
bool check_shape(const char* what, const int64_t* sizes, int32_t ndim);
int64_t contiguous_strides(const int64_t* sizes, int32_t ndim, int64_t* strides);  // -> numel
// all of contiguous src into contiguous dst (same byte count), across devices (tensor.cpp)
vt_status copy_bytes(vt_tensor* dst, const vt_tensor* src, bool non_blocking);

// ---- type promotion (promote.cpp) -------------------------------------------------------------
vt_dtype promote_types(vt_dtype a, vt_dtype b);  // lanes 0 + error when there is no result
vt_dtype result_type_scalar(vt_dtype tensor, int32_t scalar_tag);

// ---- allocators (allocator.cpp) -------------------------------------------------------------------
void* device_alloc(vt_device device, size_t nbytes);  // null + error on failure
void device_free(vt_device device, void* ptr, size_t nbytes);

// ---- CUDA glue (cuda_*.cpp; stubs when built without CUDA) ------------------------------------
bool cuda_available();
void* cuda_current_stream(vt_device device);  // this thread's current stream on that device
void install_cuda_allocator();
int32_t cuda_exchange_device(int32_t index);  // sets this thread's device, returns the previous; -1 without CUDA
bool cuda_capturing(vt_device device);         // the current stream is being captured into a graph
vt_status cuda_record_stream(vt_tensor* t, void* stream);
void cuda_philox_args(vt_device device, uint64_t count, vt_philox_args* out);
// a copy ordered on the CUDA side's current stream; returns before it is done only when
// non_blocking and the host side is pinned (otherwise the host buffer is safe to reuse at once)
vt_status cuda_copy(void* dst, vt_device dst_dev, const void* src, vt_device src_dev, size_t n,
                    bool non_blocking);

// Makes a CUDA call's device current for the scope of a kernel (nothing for other devices; no
// CUDA call when it already is current).
struct CudaDeviceGuard {
  int32_t prev = -1;
  bool active = false;
  explicit CudaDeviceGuard(vt_device d) {
    if (d.type == VT_CUDA) {
      prev = cuda_exchange_device(d.index);
      active = prev >= 0 && prev != d.index;
    }
  }
  ~CudaDeviceGuard() {
    if (active) cuda_exchange_device(prev);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;
};

// ---- threads (thread_pool.cpp) ----------------------------------------------------------------
void parallel_for(int64_t begin, int64_t end, int64_t grain, vt_range_fn fn, void* closure);
int32_t num_threads();

// ---- RNG state (rng.cpp) ---------------------------------------------------------------------
void philox_reserve(vt_device device, uint64_t count, uint64_t* seed, uint64_t* offset);
void philox_args(vt_device device, uint64_t count, vt_philox_args* out);  // graph-safe on CUDA

// ---- packs (pack_loader.cpp) ------------------------------------------------------------------
void pack_retain(Pack* p);
void pack_release(Pack* p);
const char* pack_name(const Pack* p);
bool pack_replaced(const Pack* p);  // a reload (vtrt_pack_reload_fd) swapped its code out

// Which packs' code something kept to run later (a CUDA graph's captured kernels): each noted pack
// is referenced, so its code stays mapped, and check() says when a reload has replaced one since.
class CodeUses {
 public:
  CodeUses() = default;
  CodeUses(const CodeUses&) = delete;
  CodeUses& operator=(const CodeUses&) = delete;
  ~CodeUses() { clear(); }
  void note(Pack* p);  // once per pack: a graph calls few packs, so a short vector
  void clear();
  // VT_OK, or VT_ERR_RUNTIME naming the first replaced pack; `what` says who is refusing.
  vt_status check(const char* what) const;
  const std::vector<Pack*>& packs() const { return packs_; }

 private:
  std::vector<Pack*> packs_;
};
// A call on a CUDA device ran `pack`'s kernel: the graph its stream is capturing notes the pack
// (cuda_graph.cpp; one relaxed load when the device captures nothing).
void cuda_note_capture(vt_device device, Pack* pack);

// ---- host table (host.cpp) ------------------------------------------------------------------
const vt_host* host();

}  // namespace vt
