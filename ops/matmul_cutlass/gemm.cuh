// ops/matmul_cutlass/gemm.cuh — the CUTLASS 3.x Hopper GEMM behind problem.hpp's two kernels,
// made once per B layout (gemm_nmajor.cu, gemm_kmajor.cu: one kernel each, so the two compile in
// parallel).
//
// The kernel: CUTLASS's CollectiveBuilder for sm90 — a warp-specialized, persistent, cooperative
// kernel (two consumer warpgroups share one 128x256 tile) with TMA loads into a multi-stage
// shared-memory pipeline, wgmma with FP32 accumulators, 2x1 thread-block clusters (the B tile is
// multicast to both CTAs) and a TMA-store epilogue of D = acc (no C operand is read).
// Needs sm_90a (wgmma, setmaxnreg): the pack compiles for arch=compute_90a,code=sm_90a.
// TMA needs 16-byte aligned bases and strides: pack.cu refuses other operands before calling here.
#pragma once

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "problem.hpp"
#include "vt/cuda/device.cuh"
#include "vt/cuda/launch.cuh"

namespace vt_cutlass {

// The parts that do not depend on B's layout, at namespace scope (host compilers mis-parse the
// epilogue builder inside a class template).
using E = cutlass::bfloat16_t;
using Row = cutlass::layout::RowMajor;
constexpr int kAlign = 8;  // elements per 16-byte access
using Tile = cute::Shape<cute::_128, cute::_256, cute::_64>;
using Cluster = cute::Shape<cute::_2, cute::_1, cute::_1>;
using Epilogue = cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster, cutlass::epilogue::collective::EpilogueTileAuto,
    float, float, void, Row, kAlign, E, Row, kAlign, cutlass::epilogue::TmaWarpSpecializedCooperative>::CollectiveOp;

// The GEMM for B's layout (cutlass::layout::RowMajor: N-major, ColumnMajor: K-major). A macro,
// not a class template: host compilers mis-parse the epilogue builder's type inside templates.
#define VT_CUTLASS_BF16_GEMM(Name, LayoutB)                                                                      \
  using Name##Mainloop = cutlass::gemm::collective::CollectiveBuilder<                                           \
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, vt_cutlass::E, vt_cutlass::Row, vt_cutlass::kAlign,   \
      vt_cutlass::E, LayoutB, vt_cutlass::kAlign, float, vt_cutlass::Tile, vt_cutlass::Cluster,                  \
      cutlass::gemm::collective::StageCountAutoCarveout<                                                         \
          static_cast<int>(sizeof(typename vt_cutlass::Epilogue::SharedStorage))>,                               \
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;                                         \
  using Name = cutlass::gemm::device::GemmUniversalAdapter<cutlass::gemm::kernel::GemmUniversal<                 \
      cute::Shape<int, int, int, int>, Name##Mainloop, vt_cutlass::Epilogue, cutlass::gemm::PersistentScheduler>>

using vt::cuda::sm_count;  // SMs of the call's device (the persistent schedulers size grids by it)

// Runs one Gemm (VT_CUTLASS_BF16_GEMM) on p; kNMajor: B has a unit stride along n.
template <class Gemm, bool kNMajor>
void gemm_bf16(vt::Call& c, const Problem& p) {
  typename Gemm::GemmKernel::StrideA sa{p.lda, cute::Int<1>{}, p.batch_a};
  typename Gemm::GemmKernel::StrideB sb{};
  if constexpr (kNMajor)
    sb = {cute::Int<1>{}, p.ldb, p.batch_b};  // (n, k, l): unit stride along n
  else
    sb = {p.ldb, cute::Int<1>{}, p.batch_b};  // unit stride along k
  typename Gemm::GemmKernel::StrideD sd{p.ldd, cute::Int<1>{}, p.batch_d};
  cutlass::KernelHardwareInfo hw;
  hw.device_id = c.ctx->device.index;
  hw.sm_count = sm_count(c);
  typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                                {(int)p.m, (int)p.n, (int)p.k, (int)p.l},
                                {static_cast<const E*>(p.a), sa, static_cast<const E*>(p.b), sb},
                                {{1.0f, 0.0f}, nullptr, {}, static_cast<E*>(p.d), sd},
                                hw};
  Gemm gemm;
  cutlass::Status s = gemm.can_implement(args);
  if (s != cutlass::Status::kSuccess)
    c.fail(VT_ERR_NOT_IMPL, "CUTLASS cannot run (%lld, %lld) @ (%lld, %lld) x %lld: %s", (long long)p.m,
           (long long)p.k, (long long)p.k, (long long)p.n, (long long)p.l, cutlass::cutlassGetStatusString(s));
  vt::Tensor ws;
  const int64_t bytes = (int64_t)Gemm::get_workspace_size(args);
  if (bytes > 0) ws = c.empty(&bytes, 1, vt::kUInt8);
  s = gemm.run(args, ws ? ws->data : nullptr, vt::cuda::stream(c));
  vt::cuda::check_launch(c, "the CUTLASS GEMM");
  if (s != cutlass::Status::kSuccess) c.fail(VT_ERR_RUNTIME, "CUTLASS GEMM failed: %s", cutlass::cutlassGetStatusString(s));
}

}  // namespace vt_cutlass
