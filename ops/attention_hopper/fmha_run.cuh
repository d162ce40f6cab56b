// ops/attention_hopper/fmha_run.cuh — the Hopper FMHA kernels of CUTLASS's example 88
// (examples/88_hopper_fmha of the nvidia-cutlass package, included from there at build time, never
// copied) instantiated for what attention::sdpa needs, and run on attention::sdpa's tensors.
//
// Forward: the warp-specialized cooperative kernel (a TMA producer warp group, two consumer warp
// groups of wgmma sharing one 128-query tile, online softmax in registers, TMA-store epilogue).
// It writes O and the natural-log LSE (max * scale + log(sum)) in our (B, H, Tq) layout.
// Backward, float16 only: the example's backward assigns float to its element type, which
// cutlass::half_t takes through __half's implicit conversion and cutlass::bfloat16_t refuses (its
// float constructor is explicit), so pack.cu declines bfloat16 backward calls. Three launches:
// rowsum(dO * O) (the softmax's dP correction), the main kernel (one 128-key block per CTA, walking
// the query blocks; dK and dV in registers, dQ reduced into an fp32 buffer with TMA reduce-add),
// and the fp32 -> fp16 conversion of dQ. It reads the forward's LSE,
// which it converts to log2 on load: our LSE is what it expects.
// The example fixes the softmax scale to 1/sqrt(D) when it builds the kernel parameters; we take
// the parameters it built and put our scale (and scale * log2(e)) in their place.
#pragma once

#include <climits>
#include <mutex>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/kernel_hardware_info.h"

#include "88_hopper_fmha/collective/fmha_fusion.hpp"
#include "88_hopper_fmha/device/device_universal.hpp"
#include "88_hopper_fmha/device/fmha_device_bwd.hpp"
#include "88_hopper_fmha/kernel/fmha_kernel_builder.hpp"

#include "fmha.hpp"
#include "vt/cuda/device.cuh"
#include "vt/cuda/launch.cuh"

namespace vt_fmha {

using cute::_1;
constexpr float kLog2e = 1.4426950408889634f;

using vt::cuda::sm_count;  // SMs of the call's device (the persistent schedulers size grids by it)

inline cutlass::KernelHardwareInfo hardware(const vt::Call& c) {
  cutlass::KernelHardwareInfo hw;
  hw.device_id = c.ctx->device.index;
  hw.sm_count = sm_count(c);
  return hw;
}

// Launches one CUTLASS kernel with its parameters on the call's stream. Kernels with more than
// 48 KiB of shared memory need the opt-in once per device (the dispatcher made the call's device
// current).
template <class Kernel>
void launch(vt::Call& c, typename Kernel::Params& params, const char* what) {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static cudaError_t opt_in[kMaxDevices];
  const int d = c.ctx->device.index;
  if (d < 0 || d >= kMaxDevices) c.fail(VT_ERR_RUNTIME, "cuda device index %d out of range", d);
  std::call_once(once[d], [&] {
    opt_in[d] = Kernel::SharedStorageSize >= (48 << 10)
                    ? cudaFuncSetAttribute(cutlass::device_kernel<Kernel>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SharedStorageSize)
                    : cudaSuccess;
  });
  vt::cuda::check(c, opt_in[d], what);
  const cutlass::Status s = cutlass::device::Universal<Kernel>::run(params, vt::cuda::stream(c));
  if (s != cutlass::Status::kSuccess)
    c.fail(VT_ERR_RUNTIME, "%s did not launch: %s (%s)", what, cutlass::cutlassGetStatusString(s),
           cudaGetErrorString(cudaGetLastError()));
}


// ---- forward -------------------------------------------------------------------------------------
// q, k, v and O as (T, D, (B, H)) with a unit stride along D.
using FwdStride = cute::tuple<int, _1, cute::tuple<int, int>>;
inline FwdStride fwd_stride(const Strides& s) {
  return FwdStride{(int)s.t, _1{}, cute::make_tuple((int)s.b, (int)s.h)};
}

// 128 queries per CTA (two consumer warp groups of 64); 64 keys per step at D = 64, 128 at D = 128
// (the example's cooperative tiles).
template <class E, int D, class Fusion>
using ForwardKernel = typename cutlass::fmha::kernel::FmhaBuilder<
    E, float, float, cute::Shape<cute::_128, cute::Int<(D <= 64 ? 64 : 128)>, cute::Int<D>>, FwdStride, FwdStride,
    FwdStride, Fusion, cutlass::gemm::KernelTmaWarpSpecializedCooperative>::Kernel;

template <class E, int D, class Fusion>
void forward(vt::Call& c, const Forward& f) {
  using Kernel = ForwardKernel<E, D, Fusion>;
  const Problem& p = f.p;
  typename Kernel::Arguments args{
      {p.B, p.H, p.Tq, p.Tk, D},
      {static_cast<const E*>(f.q), fwd_stride(f.sq), static_cast<const E*>(f.k), fwd_stride(f.sk),
       static_cast<const E*>(f.v), fwd_stride(f.sv)},
      {static_cast<E*>(f.out), FwdStride{D, _1{}, cute::make_tuple(p.H * p.Tq * D, p.Tq * D)}, f.lse,
       cute::tuple<_1, cute::tuple<int, int>>{_1{}, cute::make_tuple(p.H * p.Tq, p.Tq)}},
      hardware(c)};
  if (!Kernel::can_implement(args))
    c.fail(VT_ERR_NOT_IMPL, "the Hopper FMHA forward cannot run B=%d H=%d Tq=%d Tk=%d D=%d", p.B, p.H, p.Tq, p.Tk, D);
  if (Kernel::get_workspace_size(args) != 0)
    c.fail(VT_ERR_RUNTIME, "the Hopper FMHA forward asks for a workspace this pack does not provide");
  typename Kernel::Params params = Kernel::to_underlying_arguments(args, nullptr);
  params.mainloop.scale_softmax = p.scale;
  params.mainloop.scale_softmax_log2 = p.scale * kLog2e;
  launch<Kernel>(c, params, "the Hopper FMHA forward");
}

// ---- backward ------------------------------------------------------------------------------------
// Operands as (B, H, T, D) strides with a unit stride along D; per-row statistics as (B, H, T).
using BwdStride = cute::tuple<int, int, int, _1>;
using RowStride = cute::tuple<int, int, _1>;
inline BwdStride bwd_stride(const Strides& s) { return BwdStride{(int)s.b, (int)s.h, (int)s.t, _1{}}; }

// 128 keys per CTA (two consumer warp groups of 64) walking query blocks of 128 (D = 64) or 64
// (D = 128: the example's only D = 128 tile; registers bound it).
template <class E, int D, class Fusion>
using BackwardDevice = cutlass::fmha::device::FmhaBwd<
    E, float, cute::Shape<cute::Int<(D <= 64 ? 128 : 64)>, cute::_128, cute::Int<D>>, Fusion>;

template <class E, int D, class Fusion>
void backward(vt::Call& c, const Backward& b) {
  using Device = BackwardDevice<E, D, Fusion>;
  using Main = typename Device::Operation::Kernel;
  using SumOdO = cutlass::fmha::kernel::FmhaKernelBwdSumOdO<E, float>;
  using Convert = cutlass::fmha::kernel::FmhaKernelBwdConvert<E, float>;
  const Problem& p = b.p;
  const cute::tuple<int, int, int, int, int> problem{p.B, p.H, p.Tq, p.Tk, D};

  // rowsum(dO * O) (B, H, Tq) and the fp32 dQ accumulator (B, H, Tq, D), both contiguous; the
  // accumulator's batch stride is 0 for B == 1, as the example has it (TMA reduce-add descriptor)
  const int64_t nsum = (int64_t)p.B * p.H * p.Tq, nacc = nsum * D;
  vt::Tensor sum_odo = c.empty(&nsum, 1, vt::kFloat32), dq_acc = c.empty(&nacc, 1, vt::kFloat32);
  float* sum_ptr = static_cast<float*>(sum_odo->data);
  float* acc_ptr = static_cast<float*>(dq_acc->data);
  const RowStride sum_stride{p.H * p.Tq, p.Tq, _1{}};
  const BwdStride acc_stride{p.B == 1 ? 0 : p.H * p.Tq * D, p.Tq * D, D, _1{}};
  const BwdStride dq_stride{p.H * p.Tq * D, p.Tq * D, D, _1{}}, dkv_stride{p.H * p.Tk * D, p.Tk * D, D, _1{}};

  typename SumOdO::Params sum_args{problem,         static_cast<const E*>(b.out), bwd_stride(b.so),
                                   static_cast<const E*>(b.grad_out), bwd_stride(b.sgo), sum_ptr,
                                   sum_stride};
  typename Main::Arguments main_args{
      problem,
      {static_cast<const E*>(b.q), bwd_stride(b.sq), static_cast<const E*>(b.k), bwd_stride(b.sk),
       static_cast<const E*>(b.v), bwd_stride(b.sv), static_cast<const E*>(b.grad_out), bwd_stride(b.sgo), b.lse,
       RowStride{(int)b.slse.b, (int)b.slse.h, _1{}}, sum_ptr, sum_stride, acc_ptr, acc_stride},
      {static_cast<E*>(b.dk), dkv_stride, static_cast<E*>(b.dv), dkv_stride},
      hardware(c)};
  typename Convert::Params convert_args{problem,  acc_ptr, acc_stride, nullptr, acc_stride,
                                        nullptr,  acc_stride, static_cast<E*>(b.dq), dq_stride,
                                        nullptr,  dkv_stride, nullptr, dkv_stride};
  if (!SumOdO::can_implement(sum_args) || !Convert::can_implement(convert_args) || !Main::can_implement(main_args))
    c.fail(VT_ERR_NOT_IMPL, "the Hopper FMHA backward cannot run B=%d H=%d Tq=%d Tk=%d D=%d", p.B, p.H, p.Tq, p.Tk,
           D);
  if (Main::get_workspace_size(main_args) != 0)
    c.fail(VT_ERR_RUNTIME, "the Hopper FMHA backward asks for a workspace this pack does not provide");
  typename Main::Params main_params = Main::to_underlying_arguments(main_args, nullptr);
  main_params.mainloop.scale_softmax = p.scale;
  main_params.mainloop.scale_softmax_log2 = p.scale * kLog2e;

  launch<SumOdO>(c, sum_args, "the Hopper FMHA backward's rowsum(dO * O)");
  vt::cuda::check(c, cudaMemsetAsync(acc_ptr, 0, (size_t)nacc * sizeof(float), vt::cuda::stream(c)),
                  "clearing the dQ accumulator");
  launch<Main>(c, main_params, "the Hopper FMHA backward");
  launch<Convert>(c, convert_args, "the Hopper FMHA backward's dQ conversion");
}

}  // namespace vt_fmha

// One head dim's kernels, causal and not (each instantiation file is one of these lines):
// the forward in bfloat16 and float16, the backward in float16.
#define VT_FMHA_FORWARD(D)                                                                              \
  void vt_fmha::forward_d##D(vt::Call& c, const Forward& f) {                                           \
    using cutlass::fmha::collective::CausalFusion;                                                      \
    using cutlass::fmha::collective::DefaultFusion;                                                     \
    if (f.p.fp16) {                                                                                     \
      if (f.p.causal) forward<cutlass::half_t, D, CausalFusion>(c, f);                                  \
      else forward<cutlass::half_t, D, DefaultFusion>(c, f);                                            \
    } else {                                                                                            \
      if (f.p.causal) forward<cutlass::bfloat16_t, D, CausalFusion>(c, f);                              \
      else forward<cutlass::bfloat16_t, D, DefaultFusion>(c, f);                                        \
    }                                                                                                   \
  }
#define VT_FMHA_BACKWARD(D)                                                                             \
  void vt_fmha::backward_fp16_d##D(vt::Call& c, const Backward& b) {                                    \
    if (b.p.causal) backward<cutlass::half_t, D, cutlass::fmha::collective::CausalFusion>(c, b);        \
    else backward<cutlass::half_t, D, cutlass::fmha::collective::DefaultFusion>(c, b);                  \
  }
