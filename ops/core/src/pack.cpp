// ops/core/src/pack.cpp — the `core` op pack: its one table of ops.
//
// Adding an op: write its kernel with VT_KERNEL in a file of src/ (or add it to a family file),
// declare it in the list below and add one line to kOps. The schema grammar is documented at
// define_op in vt/oppack.h. Backward rules (issue 3) go in the third column, next to the op.
// Provider "core", priority 0: any other pack can provide these ops with a higher priority.
#include "vt/oppack.hpp"

// kernels, defined in src/*.cpp
vt::KernelFn add_cpu, sub_cpu, mul_cpu, div_cpu;      // binary.cpp
vt::KernelFn sum_cpu, mean_cpu;                       // reduce.cpp
vt::KernelFn matmul_cpu;                              // matmul.cpp
vt::KernelFn contiguous_cpu, copy__cpu;               // copy.cpp
vt::KernelFn fill__cpu, zeros_cpu, ones_cpu, full_cpu, arange_cpu;  // factory.cpp
vt::KernelFn normal_cpu, uniform_cpu;                 // random.cpp

#ifdef VT_WITH_CUDA
void core_register_cuda(vt::Registrar& r);  // cuda/register.cu
#endif

namespace {

struct OpDef {
  const char* schema;
  vt_kernel_fn cpu;
  vt_backward_fn backward;
};

const OpDef kOps[] = {
    {"core::add(Tensor self, Tensor other, float alpha=1.0) -> Tensor", add_cpu, nullptr},
    {"core::sub(Tensor self, Tensor other, float alpha=1.0) -> Tensor", sub_cpu, nullptr},
    {"core::mul(Tensor self, Tensor other) -> Tensor", mul_cpu, nullptr},
    {"core::div(Tensor self, Tensor other) -> Tensor", div_cpu, nullptr},
    {"core::sum(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", sum_cpu, nullptr},
    {"core::mean(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", mean_cpu, nullptr},
    {"core::matmul(Tensor self, Tensor other) -> Tensor", matmul_cpu, nullptr},
    {"core::contiguous(Tensor self) -> Tensor", contiguous_cpu, nullptr},
    {"core::copy_(Tensor self, Tensor src) -> Tensor", copy__cpu, nullptr},
    {"core::fill_(Tensor self, float value) -> Tensor", fill__cpu, nullptr},
    {"core::zeros(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", zeros_cpu, nullptr},
    {"core::ones(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", ones_cpu, nullptr},
    {"core::full(int[] size, float fill_value, ScalarType? dtype=None, Device? device=None) -> Tensor", full_cpu, nullptr},
    {"core::arange(float start, float end, float step=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", arange_cpu, nullptr},
    {"core::normal(int[] size, float mean=0.0, float std=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", normal_cpu, nullptr},
    {"core::uniform(int[] size, float low=0.0, float high=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", uniform_cpu, nullptr},
};

vt_status core_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "core", [&] {
    vt::Registrar r(host, pack, "core", 0);
    for (const OpDef& op : kOps) r.def(op.schema, VT_CPU, op.cpu, op.backward);
#ifdef VT_WITH_CUDA
    core_register_cuda(r);
#endif
  });
}

}  // namespace

VT_OPPACK_DEFINE(core_init)
