// ops/core/src/base.cpp — the table of the first core ops (issue 2): copies between tensors and
// devices, and the factories. Meta steps and computes live in their files.
#include "core.hpp"
#include "vt/autograd.hpp"

vt::KernelFn copy__meta, copy__cpu, to_device_meta, to_device_compute;  // copy.cpp
vt::KernelFn fill__meta, fill__cpu, zeros_meta, zeros_cpu, ones_meta, ones_cpu, full_meta_fn, full_cpu,
    arange_meta, arange_cpu;  // factory.cpp

vt::BackwardFn copy__backward, overwrite_backward;  // pointwise.cpp
vt::BackwardFn to_device_backward;  // copy.cpp

using core::OpDef;

const OpDef kBaseOps[] = {
    {"core::copy_(Tensor self, Tensor src) -> Tensor", copy__meta, copy__cpu, copy__backward, 0b10},
    {"core::to_device(Tensor self, Device device, bool non_blocking=False) -> Tensor", to_device_meta, to_device_compute,
     to_device_backward},
    {"core::fill_(Tensor self, float value) -> Tensor", fill__meta, fill__cpu, overwrite_backward},
    {"core::zeros(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", zeros_meta, zeros_cpu, nullptr},
    {"core::ones(int[] size, ScalarType? dtype=None, Device? device=None) -> Tensor", ones_meta, ones_cpu, nullptr},
    {"core::full(int[] size, float fill_value, ScalarType? dtype=None, Device? device=None) -> Tensor", full_meta_fn, full_cpu,
     nullptr},
    {"core::arange(float start, float end, float step=1.0, ScalarType? dtype=None, Device? device=None) -> Tensor", arange_meta,
     arange_cpu, nullptr},
};
VT_OP_TABLE(kBaseOps)
