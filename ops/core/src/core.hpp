// core.hpp — what the files of the core pack share: the op table entry type.
//
// Each family file (binary.cpp, reduce.cpp, ...) ends with its table, one line per op:
//   const OpDef kBinaryOps[] = {{"core::add(...) -> Tensor", add_cpu, add_backward, save_args,
//                                save_outs}, ...};  VT_OP_TABLE(kBinaryOps);
// and pack.cpp registers every table. Backward rules sit next to their kernels.
#pragma once

#include <cstddef>

#include "vt/oppack.hpp"

namespace core {

struct OpDef {
  const char* schema;
  vt_kernel_fn cpu;
  vt_backward_fn backward = nullptr;
  uint64_t save_args = 0;  // bit i keeps argument i alive for backward
  uint64_t save_outs = 0;  // bit j keeps output j alive for backward
};

struct OpTable {
  const OpDef* ops;
  size_t count;
};

}  // namespace core

// Declares `<name>_table()` returning the table, for pack.cpp to register.
#define VT_OP_TABLE(name)                                                      \
  core::OpTable name##_table() { return {name, sizeof(name) / sizeof(name[0])}; }
