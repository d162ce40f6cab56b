// ops/core/src/base.cpp — the table of the first core ops (issue 2): binary arithmetic,
// reductions, matmul, copies, factories and random generators. Kernels live in their files.
#include "core.hpp"

vt::KernelFn add_cpu, sub_cpu, mul_cpu, div_cpu;                    // binary.cpp
vt::KernelFn sum_cpu, mean_cpu;                                     // reduce.cpp
vt::KernelFn matmul_cpu;                                            // matmul.cpp
vt::KernelFn contiguous_cpu, copy__cpu;                             // copy.cpp
vt::KernelFn fill__cpu, zeros_cpu, ones_cpu, full_cpu, arange_cpu;  // factory.cpp
vt::KernelFn normal_cpu, uniform_cpu;                               // random.cpp

using core::OpDef;

const OpDef kBaseOps[] = {
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
VT_OP_TABLE(kBaseOps)
