// core.hpp — what the files of the core pack share: the op table entry type.
//
// Each family file (binary.cpp, reduce.cpp, ...) ends with its table, one line per op:
//   const OpDef kBinaryOps[] = {{"core::add(...) -> Tensor", add_meta, add_cpu, add_backward,
//                                save_args, save_outs}, ...};  VT_OP_TABLE(kBinaryOps);
// and pack.cpp registers every table. An op is its meta step (checks, output shapes/dtypes and
// allocation: the same on every device) plus a compute function per device; the CPU compute sits
// in the table, CUDA computes in cuda/register.cu. Backward rules sit next to their kernels.
// An entry without a meta step has a whole kernel in `cpu` instead: only for ops whose output
// shape depends on the data (they cannot run on the meta device).
#pragma once

#include <cstddef>

#include "vt/oppack.hpp"

namespace core {

struct OpDef {
  const char* schema;
  vt_kernel_fn meta;  // checks + outputs, every device; nullptr: `cpu` is a whole kernel
  vt_kernel_fn cpu;   // the CPU compute (nullptr when the meta step is the whole op)
  vt_backward_fn backward = nullptr;
  uint64_t save_args = 0;  // bit i keeps argument i alive for backward
  uint64_t save_outs = 0;  // bit j keeps output j alive for backward
  uint32_t flags = 0;      // VT_META_COMPLETE: views and ops composed of other ops
};

struct OpTable {
  const OpDef* ops;
  size_t count;
};

}  // namespace core

// Declares `<name>_table()` returning the table, for pack.cpp to register.
#define VT_OP_TABLE(name)                                                      \
  core::OpTable name##_table() { return {name, sizeof(name) / sizeof(name[0])}; }
