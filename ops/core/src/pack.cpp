// ops/core/src/pack.cpp — the `core` op pack: its one table of ops.
//
// Adding an op: write its kernel (and backward rule) with VT_KERNEL in a family file of src/ and
// add one line to that file's table (core.hpp). The schema grammar is documented at define_op in
// vt/oppack.h.
// Provider "core", priority 0: any other pack can provide these ops with a higher priority.
#include "vt/oppack.hpp"

#include "core.hpp"

// One table per family file (see core.hpp); adding a family = one line here and one in kTables.
core::OpTable kBaseOps_table();  // base.cpp: the issue-2 set (binary, reductions, matmul, ...)

#ifdef VT_WITH_CUDA
void core_register_cuda(vt::Registrar& r);  // cuda/register.cu
#endif

namespace {

core::OpTable (*const kTables[])() = {
    kBaseOps_table,
};

vt_status core_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "core", [&] {
    vt::Registrar r(host, pack, "core", 0);
    for (auto table : kTables) {
      core::OpTable t = table();
      for (size_t i = 0; i < t.count; ++i) {
        const core::OpDef& op = t.ops[i];
        r.def(op.schema, VT_CPU, op.cpu, op.backward, op.save_args, op.save_outs);
      }
    }
#ifdef VT_WITH_CUDA
    core_register_cuda(r);
#endif
  });
}

}  // namespace

VT_OPPACK_DEFINE(core_init)
