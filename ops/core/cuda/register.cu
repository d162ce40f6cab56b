// ops/core/cuda/register.cu — the core pack's CUDA compute functions, registered from pack.cpp's
// init (under VT_WITH_CUDA). Each op's meta step (src/*.cpp) is shared with every device; each
// family file below ends with its own table, one line per op that runs on cuda
// (tests/test_cuda_coverage.py checks that every op with a CPU kernel is in one).
#include "vt/oppack.hpp"

vt::KernelFn add_cuda, sub_cuda, mul_cuda, div_cuda;        // binary.cu
vt::KernelFn contiguous_cuda, copy__cuda, to_dtype_cuda;    // copy.cu
vt::KernelFn fill__cuda, zeros_cuda, ones_cuda, full_cuda;  // fill.cu
vt::KernelFn to_device_compute;  // src/copy.cpp: device-neutral (the host's copy_bytes)

void register_unary_cuda(vt::Registrar& r);          // unary.cu
void register_compare_cuda(vt::Registrar& r);        // compare.cu
void register_scalar_cuda(vt::Registrar& r);         // scalar.cu
void register_pointwise_cuda(vt::Registrar& r);      // pointwise.cu
void register_reduce_cuda(vt::Registrar& r);         // reduce.cu
void register_nn_cuda(vt::Registrar& r);             // nn.cu
void register_norm_cuda(vt::Registrar& r);           // norm.cu
void register_add_norm_cuda(vt::Registrar& r);       // add_norm.cu
void register_loss_cuda(vt::Registrar& r);           // loss.cu
void register_matmul_cuda(vt::Registrar& r);         // matmul.cu
void register_index_cuda(vt::Registrar& r);          // index.cu
void register_index_scatter_cuda(vt::Registrar& r);  // index_scatter.cu
void register_shape_cuda(vt::Registrar& r);          // shape.cu
void register_factory_cuda(vt::Registrar& r);        // factory.cu
void register_random_cuda(vt::Registrar& r);         // random.cu
void register_optim_cuda(vt::Registrar& r);          // optim.cu
void register_view_cuda(vt::Registrar& r);           // view.cu

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
  for (auto family : {register_unary_cuda, register_compare_cuda, register_scalar_cuda,
                      register_pointwise_cuda, register_reduce_cuda, register_nn_cuda,
                      register_norm_cuda, register_add_norm_cuda, register_loss_cuda, register_matmul_cuda,
                      register_index_cuda, register_index_scatter_cuda, register_shape_cuda,
                      register_factory_cuda, register_random_cuda, register_optim_cuda,
                      register_view_cuda})
    family(r);
}
