// ops/core/cuda/register.cu — the core pack's CUDA compute functions, registered from pack.cpp's
// init (under VT_WITH_CUDA). Each op's meta step (src/*.cpp) is shared with every device; one
// line here per op that runs on cuda.
#include "vt/oppack.hpp"

vt::KernelFn add_cuda, sub_cuda, mul_cuda, div_cuda;        // binary.cu
vt::KernelFn contiguous_cuda, copy__cuda, to_dtype_cuda;    // copy.cu
vt::KernelFn fill__cuda, zeros_cuda, ones_cuda, full_cuda;  // fill.cu
vt::KernelFn to_device_compute;  // src/copy.cpp: device-neutral (the host's copy_bytes)

void core_register_cuda(vt::Registrar& r) {
  r.compute("core::add", VT_CUDA, add_cuda);
  r.compute("core::add_", VT_CUDA, add_cuda);
  r.compute("core::sub", VT_CUDA, sub_cuda);
  r.compute("core::sub_", VT_CUDA, sub_cuda);
  r.compute("core::mul", VT_CUDA, mul_cuda);
  r.compute("core::mul_", VT_CUDA, mul_cuda);
  r.compute("core::div", VT_CUDA, div_cuda);
  r.compute("core::div_", VT_CUDA, div_cuda);
  r.compute("core::contiguous", VT_CUDA, contiguous_cuda);
  r.compute("core::copy_", VT_CUDA, copy__cuda);
  r.compute("core::to_dtype", VT_CUDA, to_dtype_cuda);
  r.compute("core::fill_", VT_CUDA, fill__cuda);
  r.compute("core::zeros", VT_CUDA, zeros_cuda);
  r.compute("core::ones", VT_CUDA, ones_cuda);
  r.compute("core::full", VT_CUDA, full_cuda);
  r.compute("core::to_device", VT_CUDA, to_device_compute);
}
