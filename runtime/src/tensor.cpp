// tensor.cpp — storage (refcounted, with a deleter) and tensors (sizes/strides/offset views of it).
// The runtime moves data itself only for contiguous host<->device copies; all else is an op.
#include <cstring>
#include <new>

#include "checked_math.hpp"
#include "device.hpp"
#include "internal.hpp"

namespace vt {

size_t dtype_size(vt_dtype d) { return d.bits == 1 ? 1 : d.bits / 8; }

bool dtype_valid(vt_dtype d) {
  if (d.lanes != 1) return false;
  switch (d.code) {
    case VT_DL_INT: return d.bits == 8 || d.bits == 32 || d.bits == 64;  // no int16: no kernels have it
    case VT_DL_UINT: return d.bits == 8;
    case VT_DL_FLOAT: return d.bits == 16 || d.bits == 32 || d.bits == 64;
    case VT_DL_BFLOAT: return d.bits == 16;
    case VT_DL_BOOL: return d.bits == 8;
    default: return false;
  }
}

std::string dtype_name(vt_dtype d) {
  switch (d.code) {
    case VT_DL_INT: return "int" + std::to_string(d.bits);
    case VT_DL_UINT: return "uint" + std::to_string(d.bits);
    case VT_DL_FLOAT: return d.bits == 16 ? "float16" : "float" + std::to_string(d.bits);
    case VT_DL_BFLOAT: return "bfloat16";
    case VT_DL_BOOL: return "bool";
  }
  return "dtype(" + std::to_string(d.code) + "," + std::to_string(d.bits) + ")";
}

std::string device_name(vt_device d) {
  const int slot = device_slot(d.type);
  if (slot < 0) return "device(" + std::to_string(d.type) + ")";
  if (!kDevices[slot].indexed) return kDevices[slot].name;
  return std::string(kDevices[slot].name) + ":" + std::to_string(d.index);
}

std::string shape_str(const int64_t* sizes, int32_t ndim) {
  std::string s = "(";
  for (int32_t i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}

namespace {

void storage_release(Storage* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (s->deleter) {
    s->deleter(s->deleter_ctx);
  } else if (s->data) {
    device_free(s->device, s->data, s->nbytes);
  }
  if (s->owner) pack_release(s->owner);
  delete s;
}

// Builds a tensor header over `storage` (taking one reference to it).
TensorImpl* make_tensor(Storage* storage, const int64_t* sizes, const int64_t* strides,
                        int32_t ndim, int64_t offset, vt_dtype dtype) {
  auto* t = new (std::nothrow) TensorImpl;  // default-init: sizes/strides are filled below
  if (t) t->ag = nullptr;
  if (!t) {
    set_error(VT_ERR_MEMORY, "out of memory allocating a tensor header");
    return nullptr;
  }
  t->storage = storage;
  t->offset = offset;
  int64_t numel = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    t->sizes[i] = sizes[i];
    t->strides[i] = strides[i];
    numel *= sizes[i];
  }
  t->pub.data = static_cast<char*>(storage->data) + offset * static_cast<int64_t>(dtype_size(dtype));
  t->pub.sizes = t->sizes;
  t->pub.strides = t->strides;
  t->pub.numel = numel;
  t->pub.ndim = ndim;
  t->pub.dtype = dtype;
  t->pub.device = storage->device;
  return t;
}

}  // namespace

constexpr int64_t kMaxElems = int64_t{1} << 60;

bool check_shape(const char* what, const int64_t* sizes, int32_t ndim) {
  if (ndim < 0 || ndim > VT_MAX_DIMS) {
    set_error(VT_ERR_VALUE, "%s: ndim must be in [0, %d], got %d", what, VT_MAX_DIMS, ndim);
    return false;
  }
  // 2^60 elements is far beyond any memory. Bounding the product of the non-zero sizes (not just
  // numel, which a zero size makes 0) keeps numel * itemsize and every contiguous stride in range.
  int64_t product = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    if (sizes[i] < 0) {
      set_error(VT_ERR_VALUE, "%s: negative size %lld in dim %d of %s", what,
                static_cast<long long>(sizes[i]), i, shape_str(sizes, ndim).c_str());
      return false;
    }
    if (sizes[i] != 0 && (!checked_mul(product, sizes[i], product) || product > kMaxElems)) {
      set_error(VT_ERR_VALUE, "%s: shape %s has too many elements (at most 2^60)", what,
                shape_str(sizes, ndim).c_str());
      return false;
    }
  }
  return true;
}

// Row-major strides of `sizes` into `strides`; returns numel. check_shape bounds every product
// of sizes by 2^60, so nothing here wraps.
int64_t contiguous_strides(const int64_t* sizes, int32_t ndim, int64_t* strides) {
  int64_t numel = 1;
  for (int32_t i = ndim - 1; i >= 0; --i) {
    strides[i] = numel;
    numel *= sizes[i];
  }
  return numel;
}

}  // namespace vt

using namespace vt;

extern "C" {

vt_tensor* vtrt_empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device) {
  if (!check_shape("empty", sizes, ndim)) return nullptr;
  if (!dtype_valid(dtype)) {
    set_error(VT_ERR_TYPE, "empty: unsupported dtype %s", dtype_name(dtype).c_str());
    return nullptr;
  }
  int64_t strides[VT_MAX_DIMS];
  const int64_t numel = contiguous_strides(sizes, ndim, strides);
  auto* s = new (std::nothrow) Storage();
  if (!s) {
    set_error(VT_ERR_MEMORY, "out of memory allocating a storage header");
    return nullptr;
  }
  const int slot = device_slot(device.type);
  if (slot < 0) {
    delete s;
    set_error(VT_ERR_VALUE, "empty: unknown device type %d", device.type);
    return nullptr;
  }
  int64_t nbytes;
  if (!checked_nbytes(numel, dtype_size(dtype), nbytes)) {
    delete s;
    set_error(VT_ERR_VALUE, "empty: shape %s of %s needs more than 2^63 bytes",
              shape_str(sizes, ndim).c_str(), dtype_name(dtype).c_str());
    return nullptr;
  }
  s->device = device;
  s->nbytes = static_cast<size_t>(nbytes);
  if (kDevices[slot].has_memory) {  // a meta tensor has a size in bytes but no memory
    s->data = device_alloc(device, s->nbytes);
    if (!s->data) {
      delete s;
      return nullptr;
    }
  }
  TensorImpl* t = make_tensor(s, sizes, strides, ndim, 0, dtype);
  if (!t) {
    if (s->data) device_free(device, s->data, s->nbytes);
    delete s;
    return nullptr;
  }
  return &t->pub;
}

vt_tensor* vtrt_from_blob(void* data, const int64_t* sizes, const int64_t* strides, int32_t ndim,
                          vt_dtype dtype, vt_device device, void (*deleter)(void*), void* ctx) {
  if (!check_shape("from_blob", sizes, ndim)) return nullptr;
  if (!dtype_valid(dtype)) {
    set_error(VT_ERR_TYPE, "from_blob: unsupported dtype %s", dtype_name(dtype).c_str());
    return nullptr;
  }
  bool empty = false;
  for (int32_t i = 0; i < ndim; ++i) {
    if (sizes[i] == 0) empty = true;
    if (strides[i] < 0) {
      set_error(VT_ERR_VALUE, "from_blob: negative strides are not supported (dim %d)", i);
      return nullptr;
    }
  }
  // The bytes reachable from `data`: elements [0, hi] given non-negative strides.
  int64_t lo, hi, nbytes = 0;
  if (!empty && (!checked_extent(sizes, strides, ndim, 0, lo, hi) ||
                 !checked_nbytes(hi + 1, dtype_size(dtype), nbytes))) {
    set_error(VT_ERR_VALUE, "from_blob: shape %s with strides %s spans more than 2^63 bytes",
              shape_str(sizes, ndim).c_str(), shape_str(strides, ndim).c_str());
    return nullptr;
  }
  auto* s = new Storage();
  s->data = data;
  s->nbytes = static_cast<size_t>(nbytes);
  s->device = device;
  s->deleter = deleter;
  s->deleter_ctx = ctx;
  return &make_tensor(s, sizes, strides, ndim, 0, dtype)->pub;
}

vt_tensor* vtrt_as_strided(vt_tensor* base, const int64_t* sizes, const int64_t* strides,
                           int32_t ndim, int64_t offset) {
  if (!check_shape("as_strided", sizes, ndim)) return nullptr;
  TensorImpl* b = impl(base);
  int64_t esize = static_cast<int64_t>(dtype_size(b->pub.dtype));
  int64_t capacity = static_cast<int64_t>(b->storage->nbytes) / esize;
  bool empty = false;
  for (int32_t i = 0; i < ndim; ++i) empty |= sizes[i] == 0;
  // The view reaches elements [lo, hi], all of which must lie in the storage. An empty view reaches
  // none, so (as in torch) any start >= 0 will do, as long as its byte offset is representable.
  int64_t new_offset = 0, lo = 0, hi = 0, unused;
  const bool overflow =
      !checked_add(b->offset, offset, new_offset) ||
      (empty ? !checked_nbytes(new_offset, static_cast<size_t>(esize), unused)
             : !checked_extent(sizes, strides, ndim, new_offset, lo, hi));
  if (empty) lo = new_offset, hi = -1;
  if (overflow || lo < 0 || hi >= capacity) {
    const std::string reach = overflow ? "overflows int64 computing its extent"
                                       : "reaches elements [" + std::to_string(lo) + ", " +
                                             std::to_string(hi) + "]";
    set_error(VT_ERR_VALUE,
              "as_strided: view %s with strides %s at offset %lld %s but the storage holds %lld "
              "elements",
              shape_str(sizes, ndim).c_str(), shape_str(strides, ndim).c_str(),
              static_cast<long long>(overflow ? offset : new_offset), reach.c_str(),
              static_cast<long long>(capacity));
    return nullptr;
  }
  b->storage->refs.fetch_add(1, std::memory_order_relaxed);
  TensorImpl* t = make_tensor(b->storage, sizes, strides, ndim, new_offset, b->pub.dtype);
  if (!t) storage_release(b->storage);
  return t ? &t->pub : nullptr;
}

void vtrt_retain(vt_tensor* t) {
  if (t) impl(t)->refs.fetch_add(1, std::memory_order_relaxed);
}

void vtrt_release(vt_tensor* t) {
  if (!t) return;
  TensorImpl* ti = impl(t);
  if (ti->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (ti->ag) free_meta(ti);
  storage_release(ti->storage);
  vt_tensor* base = ti->view_base;  // never a view itself: no recursion
  delete ti;
  vtrt_release(base);
}

int64_t vtrt_storage_offset(const vt_tensor* t) { return impl(t)->offset; }
void* vtrt_storage_data(const vt_tensor* t) { return impl(t)->storage->data; }
int64_t vtrt_storage_nbytes(const vt_tensor* t) {
  return static_cast<int64_t>(impl(t)->storage->nbytes);
}

int32_t vtrt_is_contiguous(const vt_tensor* t) {
  int64_t expected = 1;
  for (int32_t i = t->ndim - 1; i >= 0; --i) {
    if (t->sizes[i] == 1) continue;
    if (t->strides[i] != expected) return t->numel == 0;
    expected *= t->sizes[i];
  }
  return 1;
}

uint64_t vtrt_version(const vt_tensor* t) {
  return impl(t)->storage->version.load(std::memory_order_relaxed);
}
void vtrt_bump_version(vt_tensor* t) {
  impl(t)->storage->version.fetch_add(1, std::memory_order_relaxed);
}
int32_t vtrt_same_storage(const vt_tensor* a, const vt_tensor* b) {
  return impl(a)->storage == impl(b)->storage;
}

vt_status vtrt_copy_bytes(vt_tensor* dst, const vt_tensor* src) {
  return vt::copy_bytes(dst, src, false);
}

}  // extern "C"

namespace vt {

vt_status copy_bytes(vt_tensor* dst, const vt_tensor* src, bool non_blocking) {
  size_t n = static_cast<size_t>(dst->numel) * dtype_size(dst->dtype);
  size_t m = static_cast<size_t>(src->numel) * dtype_size(src->dtype);
  if (n != m)
    return set_error(VT_ERR_VALUE, "copy_bytes: size mismatch, dst has %zu bytes, src %zu", n, m);
  if (!vtrt_is_contiguous(dst) || !vtrt_is_contiguous(src))
    return set_error(VT_ERR_VALUE, "copy_bytes: both tensors must be contiguous");
  if (dst->device.type == VT_META || src->device.type == VT_META)
    return set_error(VT_ERR_NOT_IMPL, "copy_bytes: a meta tensor has no data to copy");
  if (n == 0) return VT_OK;
  if (dst->device.type == VT_CPU && src->device.type == VT_CPU) {
    std::memcpy(dst->data, src->data, n);
    return VT_OK;
  }
  return cuda_copy(dst->data, dst->device, src->data, src->device, n, non_blocking);
}

}  // namespace vt

extern "C" {

// ---- DLPack ---------------------------------------------------------------------------------------

namespace {
struct DlHolder {
  vt_dl_managed managed;
  vt_tensor* tensor;
};
void dl_deleter(vt_dl_managed* m) {
  auto* h = reinterpret_cast<DlHolder*>(m);
  vtrt_release(h->tensor);
  delete h;
}
void dl_import_deleter(void* ctx) {
  auto* m = static_cast<vt_dl_managed*>(ctx);
  if (m->deleter) m->deleter(m);
}
}  // namespace

vt_dl_managed* vtrt_to_dlpack(vt_tensor* t) {
  auto* h = new DlHolder();
  vtrt_retain(t);
  h->tensor = t;
  auto& dl = h->managed.dl_tensor;
  dl.data = t->data;  // byte_offset 0: data already points at the first element
  dl.device = {t->device.type, t->device.index};
  dl.ndim = t->ndim;
  dl.dtype = t->dtype;
  dl.shape = const_cast<int64_t*>(t->sizes);
  dl.strides = const_cast<int64_t*>(t->strides);
  dl.byte_offset = 0;
  h->managed.manager_ctx = h;
  h->managed.deleter = dl_deleter;
  return &h->managed;
}

vt_tensor* vtrt_from_dlpack(vt_dl_managed* m) {
  auto& dl = m->dl_tensor;
  int64_t strides[VT_MAX_DIMS];
  if (dl.ndim > VT_MAX_DIMS) {
    set_error(VT_ERR_VALUE, "from_dlpack: ndim %d exceeds %d", dl.ndim, VT_MAX_DIMS);
    return nullptr;
  }
  if (dl.strides) {
    for (int32_t i = 0; i < dl.ndim; ++i) strides[i] = dl.strides[i];
  } else {  // contiguous; from_blob then checks the shape itself
    int64_t acc = 1;
    for (int32_t i = dl.ndim - 1; i >= 0; --i) {
      strides[i] = acc;
      if (!checked_mul(acc, dl.shape[i] > 0 ? dl.shape[i] : 1, acc)) {
        set_error(VT_ERR_VALUE, "from_dlpack: shape %s has too many elements",
                  shape_str(dl.shape, dl.ndim).c_str());
        return nullptr;
      }
    }
  }
  vt_dtype dtype = dl.dtype;
  if (dtype.code == VT_DL_BOOL) dtype.bits = 8;
  void* data = static_cast<char*>(dl.data) + dl.byte_offset;
  vt_device dev{dl.device.device_type, dl.device.device_id};
  if (dev.type == 3) dev.type = VT_CPU;  // kDLCUDAHost: pinned host memory is host memory
  if (dev.type != VT_CPU && dev.type != VT_CUDA) {
    set_error(VT_ERR_NOT_IMPL, "from_dlpack: device type %d is not supported", dev.type);
    return nullptr;
  }
  return vtrt_from_blob(data, dl.shape, strides, dl.ndim, dtype, dev, dl_import_deleter, m);
}

}  // extern "C"
