// ops/core/cuda/copy.cu — contiguous for CUDA tensors: a new contiguous copy, any dtype.
//
// A contiguous source is one cudaMemcpyAsync; otherwise a strided gather that moves raw
// elements of 1, 2, 4 or 8 bytes (so every dtype shares four kernel instantiations).
#include <cstring>

#include "strided.cuh"

namespace {

template <class U>
__global__ void gather_kernel(vt::StridedLoop<2> L) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += (int64_t)gridDim.x * blockDim.x) {
    char* p[2];
    vt_cuda::element_ptrs(L, i, p);
    *reinterpret_cast<U*>(p[0]) = *reinterpret_cast<const U*>(p[1]);
  }
}

}  // namespace

VT_KERNEL(contiguous_cuda, "core::contiguous") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  vt_cuda::check_on_cuda(c, self, "self");
  vt::check_ndim(c.op, self, "self");
  vt::Tensor out = c.empty_like(self);
  const int64_t n = self->numel, es = vt::element_size(self->dtype);
  const cudaStream_t s = vt_cuda::stream_of(c);
  if (n > 0 && vt::is_contiguous(self)) {
    vt_cuda::check_cuda(c, cudaMemcpyAsync(out->data, self->data, (size_t)(n * es), cudaMemcpyDeviceToDevice, s),
                        "cudaMemcpyAsync");
  } else if (n > 0) {
    const vt_tensor* ops[2] = {out, self};
    const vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
    switch (es) {
      case 1: gather_kernel<uint8_t><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(L); break;
      case 2: gather_kernel<uint16_t><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(L); break;
      case 4: gather_kernel<uint32_t><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(L); break;
      case 8: gather_kernel<uint64_t><<<vt_cuda::blocks_for(n), vt_cuda::kThreads, 0, s>>>(L); break;
      default: c.fail(VT_ERR_NOT_IMPL, "no copy for elements of %lld bytes", (long long)es);
    }
    vt_cuda::check_launch(c, "gather_kernel");
  }
  c.set_out(0, std::move(out));
}
