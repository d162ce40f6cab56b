// ops/core/src/pack.cpp — the `core` op pack: its one table of ops.
//
// Adding an op: write its meta step (VT_META_FN: checks, output shapes, outputs), its CPU compute
// (VT_COMPUTE) and its backward rule (VT_BACKWARD) in a family file of src/, and add one line to
// that file's table (core::OpDef in core.hpp). CUDA computes register in cuda/register.cu. The
// schema grammar is documented at define_op in vt/oppack.h.
// Provider "core", priority 0: any other pack can provide these ops with a higher priority.
#include "vt/oppack.hpp"
#include "vt/capabilities.h"

#include "core.hpp"


// One table per family file (see core.hpp); adding a family = one line here and one in kTables.
core::OpTable kBaseOps_table();       // base.cpp: copy_, to_device, fill_, zeros/ones/full, arange
core::OpTable kBinaryOps_table();     // binary.cpp: add/sub/mul/div and in-place forms
core::OpTable kPointwiseOps_table();  // pointwise.cpp: sum_to_size, to_dtype, where, zero_
core::OpTable kUnaryOps_table();      // unary.cpp: math, activations, pow, clamp
core::OpTable kCompareOps_table();    // compare.cpp: comparisons, logical ops, maximum/minimum
core::OpTable kScalarOps_table();     // scalar.cpp: add/sub/rsub/mul/div/rdiv with a Python number
core::OpTable kMatmulOps_table();     // matmul.cpp: matmul, bmm, addmm, linear
core::OpTable kRandomOps_table();     // random.cpp: normal, uniform, randint, randperm, normal_, uniform_
core::OpTable kNNOps_table();         // nn.cpp: softmax, log_softmax, dropout (+ backward ops)
core::OpTable kNormOps_table();       // norm.cpp: layer_norm, rms_norm, add_layer_norm (+ backward ops)
core::OpTable kLossOps_table();       // loss.cpp: cross_entropy, mse_loss
core::OpTable kOptimOps_table();      // optim.cpp: adamw_, sgd_
core::OpTable kReduceOps_table();     // reduce.cpp: sum, mean, var, std, max/min, argmax, logsumexp, norm, cumsum
core::OpTable kViewOps_table();       // view.cpp: view, reshape, permute, expand, slice, select, ..., contiguous
core::OpTable kShapeOps_table();      // shape.cpp: cat, tril/triu, linspace, eye
core::OpTable kIndexOps_table();      // index.cpp: index_select, gather, scatter_add, masked_fill, embedding, index

#ifdef VT_WITH_CUDA
void core_register_cuda(vt::Registrar& r);  // cuda/register.cu
#endif

namespace {

core::OpTable (*const kTables[])() = {
    kBaseOps_table,
    kBinaryOps_table,
    kPointwiseOps_table,
    kUnaryOps_table,
    kCompareOps_table,
    kScalarOps_table,
    kMatmulOps_table,
    kRandomOps_table,
    kNNOps_table,
    kNormOps_table,
    kLossOps_table,
    kOptimOps_table,
    kReduceOps_table,
    kViewOps_table,
    kShapeOps_table,
    kIndexOps_table,
};

vt_status core_init(const vt_host* host, vt_pack* pack) {
  char name[256];
  return vt::init_guard(host, "core", [&] {
    vt::Registrar r(host, pack, "core", 0);
    for (auto table : kTables) {
      core::OpTable t = table();
      for (size_t i = 0; i < t.count; ++i) {
        const core::OpDef& op = t.ops[i];
        if (!op.meta) {  // a whole kernel: output shape depends on the data
          r.def(op.schema, VT_CPU, op.cpu, op.backward, op.save_args, op.save_outs);
          continue;
        }
        r.define(op.schema, op.meta, op.backward, op.save_args, op.save_outs, op.flags);
        if (op.cpu) r.compute(vt::op_name_of(op.schema, name, sizeof name), VT_CPU, op.cpu);
      }
    }
#ifdef VT_WITH_CUDA
    core_register_cuda(r);
#endif
  });
}

}  // namespace

VT_OPPACK_DEFINE(core_init)

// What the providers need and promise (vt/capabilities.h; checked at load, shown by vt-ops info).
// cuda: bfloat16 arithmetic needs sm_80; the library's CUDA_ARCHITECTURES narrow it further.
// nonzero and one_hot(num_classes=-1) read a count back from the GPU, so they refuse capture.
VT_OPPACK_CAPABILITIES(R"json({
  "abi_minor": 1,
  "providers": [
    {"provider": "core", "device": "cpu", "deterministic": true,
     "shapes": "any; matmuls through OpenBLAS (float32/float64), bfloat16/float16 through float32"},
    {"provider": "core", "device": "cuda", "compute_capability": {"min": "8.0"},
     "cuda_graphs": true, "deterministic": true,
     "shapes": "any; index_add/scatter_add/index_put accumulate without float atomics"},
    {"provider": "core", "device": "cuda", "ops": ["core::nonzero", "core::one_hot"],
     "cuda_graphs": false, "shapes": "output shape depends on the data (a device-to-host read)"}
  ]
})json")
