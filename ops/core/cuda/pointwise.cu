// ops/core/cuda/pointwise.cu — the CUDA compute of where and zero_ (src/pointwise.cpp).
//
// The meta steps check the arguments and make the outputs (where: the broadcast of all three,
// self's dtype; zero_: self). where picks bits, not values, so every dtype shares the kernels of
// its element size (1, 2, 4 or 8 bytes), as copy.cu does; condition, self and other broadcast.
// zero_ is one cudaMemsetAsync on contiguous memory and core::fill_ on a strided self.
#include "vt/autograd.hpp"
#include "vt/cuda/elementwise.cuh"

namespace {

template <class U>
struct WhereFn {
  __device__ __forceinline__ U operator()(bool k, U x, U y) const { return k ? x : y; }
};

VT_COMPUTE(where_cuda, "core::where") {
  const vt_tensor* out = c.out(0);
  const vt_tensor* cond = c.arg(0, "condition").tensor();
  const vt_tensor* a = c.arg(1, "self").tensor();
  const vt_tensor* b = c.arg(2, "other").tensor();
  vt::dispatch(vt::kAllTypes, out->dtype, c.op, [](auto) {});  // refuse unknown dtypes by name
  auto run = [&](auto bits) {
    using U = decltype(bits);
    vt::cuda::elementwise<U, bool, U, U>(c, WhereFn<U>{}, out, cond, a, b);
  };
  switch (vt::element_size(out->dtype)) {
    case 1: run(uint8_t()); break;
    case 2: run(uint16_t()); break;
    case 4: run(uint32_t()); break;
    default: run(uint64_t()); break;
  }
}

VT_COMPUTE(zero__cuda, "core::zero_") {
  vt_tensor* self = c.out(0);
  if (self->numel == 0) return;
  if (vt::is_contiguous(self)) {
    vt::cuda::check(c, cudaMemsetAsync(self->data, 0, (size_t)(self->numel * vt::element_size(self->dtype)),
                                       vt::cuda::stream(c)),
                    "cudaMemsetAsync");
  } else {
    vt::call(c.host, "core::fill_", {vt::V(self), vt::V(0.0)});
  }
}

}  // namespace

void register_pointwise_cuda(vt::Registrar& r) {
  r.compute("core::where", VT_CUDA, where_cuda);
  r.compute("core::zero_", VT_CUDA, zero__cuda);
}
