// ops/core/src/base.cpp — the table of the first core ops (issue 2): reductions, matmul, copies,
// factories and random generators. Kernels live in their files.
#include "core.hpp"
#include "vt/autograd.hpp"

vt::KernelFn copy__cpu;                                             // copy.cpp
vt::KernelFn fill__cpu, zeros_cpu, ones_cpu, full_cpu, arange_cpu;  // factory.cpp

vt::BackwardFn copy__backward;                                      // pointwise.cpp (elementwise family)

using core::OpDef;

const OpDef kBaseOps[] = {
    {"core::copy_(Tensor self, Tensor src) -> Tensor", nullptr, copy__cpu, copy__backward, 0b10},
    {"core::fill_(Tensor self, float value) -> Tensor", nullptr, fill__cpu, nullptr},
    {"core::zeros(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, zeros_cpu, nullptr},
    {"core::ones(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, ones_cpu, nullptr},
    {"core::full(int[] size, float fill_value, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, full_cpu, nullptr},
    {"core::arange(float start, float end, float step=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", nullptr, arange_cpu, nullptr},
};
VT_OP_TABLE(kBaseOps)
