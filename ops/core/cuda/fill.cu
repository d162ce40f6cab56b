// ops/core/cuda/fill.cu — fill_, zeros, ones, full for CUDA tensors, any dtype.
//
// The fill value is converted to the tensor's dtype on the host (vt::convert, the same rounding
// as the CPU kernels) and the device only stores that bit pattern, as a 1/2/4/8-byte integer.
// zeros is a cudaMemsetAsync. Everything runs on ctx->stream.
#include <cstring>

#include "strided.cuh"

namespace {

template <class U>
__global__ void fill_kernel(vt::StridedLoop<1> L, U bits) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += (int64_t)gridDim.x * blockDim.x) {
    char* p[1];
    vt_cuda::element_ptrs(L, i, p);
    *reinterpret_cast<U*>(p[0]) = bits;
  }
}

template <class U>
__global__ void fill_contiguous_kernel(U* out, int64_t n, U bits) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) out[i] = bits;
}

template <class U>
void launch_fill(vt::Call& c, const vt_tensor* t, uint64_t pattern) {
  U bits;
  std::memcpy(&bits, &pattern, sizeof(U));  // little-endian: the low bytes hold the value
  const cudaStream_t s = vt_cuda::stream_of(c);
  const int64_t n = t->numel;
  if (vt::is_contiguous(t)) {
    fill_contiguous_kernel<U><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(vt::data<U>(t), n, bits);
  } else {
    const vt_tensor* ops[1] = {t};
    fill_kernel<U><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(vt::loop_over<1>(c.op, ops), bits);
  }
  vt_cuda::check_launch(c, "fill_kernel");
}

void fill(vt::Call& c, const vt_tensor* t, double value) {
  vt_cuda::check_on_cuda(c, t, "self");
  vt::check_ndim(c.op, t, "self");
  if (t->numel == 0) return;
  uint64_t pattern = 0;
  vt::dispatch(vt::kAllTypes, t->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = vt::convert<T>(value);
    std::memcpy(&pattern, &v, sizeof(T));
  });
  switch (vt::element_size(t->dtype)) {
    case 1: launch_fill<uint8_t>(c, t, pattern); break;
    case 2: launch_fill<uint16_t>(c, t, pattern); break;
    case 4: launch_fill<uint32_t>(c, t, pattern); break;
    default: launch_fill<uint64_t>(c, t, pattern); break;
  }
}

void make_full(vt::Call& c, int32_t dtype_index, double value) {
  const vt_int_list size = c.arg(0, "size").ints();
  const vt_dtype dtype = c.arg(dtype_index, "dtype").dtype_or(vt::kFloat32);
  c.check_sizes("size", size);
  if (size.len > vt::kMaxDims) c.fail(VT_ERR_VALUE, "size has %lld dims; at most %d are supported", (long long)size.len, vt::kMaxDims);
  vt::Tensor out = c.empty(size.data, (int32_t)size.len, dtype);
  if (value == 0.0 && out->numel > 0)
    vt_cuda::check_cuda(c, cudaMemsetAsync(out->data, 0, (size_t)(out->numel * vt::element_size(dtype)), vt_cuda::stream_of(c)),
                        "cudaMemsetAsync");
  else
    fill(c, out, value);
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(fill__cuda, "core::fill_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  fill(c, self, c.arg(1, "value").float_());
  c.set_out_retained(0, self);
}
VT_KERNEL(zeros_cuda, "core::zeros") { make_full(c, 1, 0.0); }
VT_KERNEL(ones_cuda, "core::ones") { make_full(c, 1, 1.0); }
VT_KERNEL(full_cuda, "core::full") { make_full(c, 2, c.arg(1, "fill_value").float_()); }
