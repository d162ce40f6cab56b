// ops/attention_hopper/fmha_run.cuh — the Hopper FMHA kernels of CUTLASS's example 88
// (examples/88_hopper_fmha of the nvidia-cutlass package, included from there at build time, never
// copied) instantiated for what attention::sdpa needs, and run on attention::sdpa's tensors.
//
// Forward: the warp-specialized cooperative kernel (a TMA producer warp group, two consumer warp
// groups of wgmma sharing one 128-query tile, online softmax in registers, TMA-store epilogue), at
// head dim 64 and 128; at D = 64 also on a 192 x 128 tile (FwdTile below) that pack.cu picks for
// long sequences.
// It writes O and the natural-log LSE (max * scale + log(sum)) in our (B, H, Tq) layout.
// Backward, float16 only: the example's backward mainloop assigns a float expression to a
// fragment of its element type (`acc_DS(i) = acc_P(i) * scale * (acc_DP(i) - reg_ODO(i))`), which
// cutlass::half_t takes through __half's implicit conversion and cutlass::bfloat16_t refuses (its
// float constructor is explicit; NOTES.md has the compiler's words), so pack.cu declines bfloat16
// backward calls. Three launches: rowsum(dO * O) (the softmax's dP correction), the main kernel
// (one 128-key block per CTA, walking the query blocks; dK and dV in registers, dQ reduced into an
// fp32 buffer with TMA reduce-add), and the fp32 -> fp16 conversion of dQ. It reads the forward's
// LSE, which it converts to log2 on load: our LSE is what it expects.
// The example fixes the softmax scale to 1/sqrt(D) when it builds the kernel parameters; we take
// the parameters it built and put our scale (and scale * log2(e)) in their place.
//
// Partial tiles (Tq, Tk not multiples of the tiles): TMA zero-fills the rows past Tq and Tk that a
// tile reads and drops the rows past them that it writes; what is left is keeping the zero-filled
// keys out of the softmax, which the example leaves to its fusion hook (the Fusion parameter):
// ResidualFusion and our CausalInBounds below put -inf on keys past Tk.
#pragma once

#include <algorithm>
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

// ---- masks (the example's fusion hook) -----------------------------------------------------------
// Causal (top-left: key j for query i when j <= i) and no key past Tk. The example's CausalFusion
// masks j > i only, which drops the keys past Tk only for the rows i < Tk; the rows i >= Tk (Tq > Tk)
// would see the zero-filled keys of a partial last key tile. Its tile counts are CausalFusion's (a
// partial key tile is always the last of the walk, among the masked tiles that run this mask);
// the mask still compares each score once, against min(query, Tk - 1) (ptxas: no spills, as with
// CausalFusion).
struct CausalInBounds : cutlass::fmha::collective::CausalFusion {
  template <class Scores, class Index, class ProblemSize>
  CUTLASS_DEVICE void before_softmax(Scores& s, Index const& query_key, ProblemSize const& problem) {
    const int last_key = cute::get<3>(problem) - 1;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < cute::size(s); i++) {
      const auto at = query_key(i);
      if (cute::get<1>(at) > cute::min(cute::get<0>(at), last_key)) s(i) = -INFINITY;
    }
  }
};

}  // namespace vt_fmha

// The backward runs a fusion through FusionBwdAdapter (the example specializes it for its
// CausalFusion); this is CausalInBounds's. The backward kernel holds one key block per CTA and walks
// every query tile, skipping those entirely above the diagonal; scores come indexed (key, query).
// Unlike the example's causal adapter, which counts Tq / tile query tiles, it counts a partial last
// one too. Its mask is the plain causal one (key > query): the backward masks every tile, and adding
// "key >= Tk" there costs registers the kernel has not got (ptxas: 80-92 bytes of spill stores at
// D = 64 instead of 56-60). Keys past Tk are then masked only for the rows i < Tk, which is all rows
// unless Tq > Tk; pack.cu leaves the causal backward with Tq > Tk and a partial key block to flash.
template <>
struct cutlass::fmha::collective::FusionBwdAdapter<vt_fmha::CausalInBounds> {
  template <class BlkCoord, class TileShape, class ProblemSize>
  CUTLASS_DEVICE int get_trip_count(BlkCoord const&, TileShape const&, ProblemSize const& problem) {
    return cute::ceil_div(cute::get<2>(problem), int(cute::get<0>(TileShape{})));
  }

  template <class Scores, class Index, class ProblemSize>
  CUTLASS_DEVICE void before_softmax(Scores& s, Index const& key_query, ProblemSize const&) {
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < cute::size(s); i++) {
      const auto at = key_query(i);
      if (cute::get<0>(at) > cute::get<1>(at)) s(i) = -INFINITY;
    }
  }

  // Query tile q_tile is walked for key block k_block unless the block starts past the tile's end
  // (the bound the example's causal adapter uses: a block starting right at the end is walked, all
  // masked, so the walk is the example's for multiples of the tiles).
  template <class BlkCoord, class TileShape, class ProblemSize>
  CUTLASS_DEVICE bool is_contributing(BlkCoord const& q_tile_k_block, TileShape const& tile, ProblemSize const&) {
    const int tile_end = (cute::get<0>(q_tile_k_block) + 1) * int(cute::get<0>(tile));
    const int first_key = cute::get<1>(q_tile_k_block) * int(cute::get<1>(tile));
    return first_key <= tile_end;
  }
};

namespace vt_fmha {

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


// The arguments as the kernels' can_implement sees them: Tq rounded up to 8. Both mainloops ask
// Tq % 8 == 0, a rule for the per-row statistics (LSE, rowsum(dO * O)) laid out with Tq as their
// row stride, where TMA needs 16-byte strides; the example's own backward rounds Tq up to 8 for
// those buffers. Here the forward writes its LSE with plain predicated stores, the backward reads
// statistics laid out for Tq rounded up to 8, and q, k, v, out and the gradients are read and written
// through TMA with their own strides (checked by pack.cu) and Tq as an extent, which TMA clips: any Tq
// works. The other rules (D) are checked as they are.
template <class Args>
Args checked_args(Args args) {
  auto& Tq = cute::get<2>(args.problem_size);
  Tq = cutlass::round_up(Tq, 8);
  return args;
}

// ---- forward -------------------------------------------------------------------------------------
// q, k, v and O as (T, D, (B, H)) with a unit stride along D.
using FwdStride = cute::tuple<int, _1, cute::tuple<int, int>>;
inline FwdStride fwd_stride(const Strides& s) {
  return FwdStride{(int)s.t, _1{}, cute::make_tuple((int)s.b, (int)s.h)};
}

// A forward tile: Q queries per CTA split over WG consumer warp groups (Q / WG rows each, wgmma's
// M of 64), K keys per step. The default, the example's cooperative tiles: 128 queries over two warp
// groups; 64 keys per step at D <= 64 (its runner's tile for D = 32 and D = 64), 128 at D = 128.
// The example's kernel takes up to four consumer warp groups (kNumMmaWarpGroups); it splits the SM's
// 64 K registers among them (setmaxnreg: 240 a thread for two, 160 for three).
// Persistent: one CTA per SM walking tiles (the example's persistent scheduler; its "ping-pong"),
// so a tile's loads start while the previous tile's epilogue runs: for short sequences, whose
// tiles are too short to hide their prologue and epilogue, and for long ones not causal (H200,
// 2026-12-02 16:55, D = 128 bf16 TF/s: 8x16x2048x128 626 -> 658, GQA 4x32/8x2048x128 602 -> 644).
// Causal keeps HeaviestFirstScheduler (below): under the persistent scheduler's order the same tiles
// ran 6-7% slower (8x16x2048x128 519 -> 490, 2x16x8192x128 667 -> 619). The consumer groups taking
// turns at the softmax (the example's kIsMainloopLocked, FlashAttention-3's ping-pong order) made no
// difference at either head dim (629 against 626; D = 64 192 x 128: 408 against 411), and 176 keys a
// step at D = 128 (FlashAttention-3's non-causal tile) failed its launch (invalid argument).
template <int Q, int K, int WG, bool Persistent = false>
struct FwdTile {
  static constexpr int queries = Q, keys = K, warp_groups = WG;
  static constexpr bool persistent = Persistent;
};
template <int D>
using DefaultFwdTile = FwdTile<128, (D <= 64 ? 64 : 128), 2>;

// The causal forward's CTAs in longest-first order, in sections that fit L2. A causal query tile's
// work grows with its index (it walks the keys up to its diagonal). The example's scheduler numbers
// CTAs query tile fastest, so the heaviest tiles of the last (b, h) pairs start in the last wave
// and the SMs that finished their light tiles wait for them. Here the pairs go in sections of as
// many as keep their K and V within kL2Budget, and within a section CTA r takes query tile
// (tiles - 1 - r / width) of pair r % width: each pair's heaviest tile first, the lightest fill the
// section's last wave, and the CTAs running together read the K and V of few heads (plain
// longest-first over all pairs made 8x16x2048x128 causal 20% slower on the H200: 128 heads' K and V,
// 128 MiB, stream from memory instead of L2). FlashAttention-3 orders its causal tiles the same way.
struct HeaviestFirstScheduler {
  static constexpr int64_t kL2Budget = 32ll << 20;  // bytes of K and V a section keeps (H200 L2: 50 MiB)
  struct Params {
    int tiles;    // query tiles per (b, h)
    int pairs;    // B * H
    int section;  // pairs per section
    int heads;    // H
  };
  Params params;
  bool valid = true;

  CUTLASS_DEVICE explicit HeaviestFirstScheduler(Params const& p) : params(p) {}

  template <class ProblemSize, class ClusterShape, class TileShape>
  static Params to_underlying_arguments(ProblemSize const& problem, cutlass::KernelHardwareInfo, ClusterShape const& cluster,
                                        TileShape const& tile) {
    const int tiles = cutlass::round_up(cute::ceil_div(cute::size<2>(problem), cute::size<0>(tile)), cute::size<0>(cluster));
    const int pairs = cute::size<0>(problem) * cute::size<1>(problem);
    const int64_t kv_bytes = std::max<int64_t>(1, (int64_t)cute::size<3>(problem) * cute::size<4>(problem) * 2 * 2);
    const int section = (int)std::clamp<int64_t>(kL2Budget / kv_bytes, 1, pairs);  // 16-bit K and V of a head
    return Params{tiles, pairs, section, cute::size<1>(problem)};
  }
  static dim3 get_grid_shape(Params const& p) { return dim3(p.tiles * p.pairs, 1, 1); }

  CUTLASS_DEVICE bool is_valid() const { return valid; }
  CUTLASS_DEVICE auto get_block_coord() const {
    const int r = blockIdx.x, per_section = params.section * params.tiles;
    const int first = r / per_section * params.section, at = r % per_section;
    const int width = min(params.section, params.pairs - first);  // the last section may be narrower
    const int pair = first + at % width;
    return cute::make_coord(params.tiles - 1 - at / width, cute::_0{},
                            cute::make_coord(pair / params.heads, pair % params.heads));
  }
  CUTLASS_DEVICE HeaviestFirstScheduler& operator++() {
    valid = false;
    return *this;
  }
};

// The example's builder for the cooperative kernel (and its persistent form), with our scheduler
// for causal masks.
template <class E, int D, class Fusion, class Tile>
struct ForwardKernelOf {
  template <cutlass::fmha::kernel::Tag tag, class Value>
  using Option = cutlass::fmha::kernel::Option<tag, Value>;
  using Tag = cutlass::fmha::kernel::Tag;
  using Persistent = std::bool_constant<Tile::persistent>;
  using WarpGroups = Option<Tag::kNumMmaWarpGroups, cute::Int<Tile::warp_groups>>;
  using TileShape = cute::Shape<cute::Int<Tile::queries>, cute::Int<Tile::keys>, cute::Int<D>>;
  using Mainloop = cutlass::fmha::collective::FmhaMainloopTmaWarpSpecialized<
      E, float, float, TileShape, FwdStride, FwdStride, FwdStride, Fusion, WarpGroups, Option<Tag::kIsPersistent, Persistent>>;
  using Epilogue = cutlass::fmha::collective::FmhaFwdEpilogue<E, float, typename Mainloop::TileShapePV>;
  using Scheduler = std::conditional_t<
      Tile::persistent, cutlass::fmha::kernel::PersistentTileScheduler,
      std::conditional_t<std::is_base_of_v<cutlass::fmha::collective::CausalFusion, Fusion>, HeaviestFirstScheduler,
                         cutlass::fmha::kernel::IndividualTileScheduler>>;
  using Kernel = cutlass::fmha::kernel::FmhaKernelTmaWarpSpecialized<
      Mainloop, Epilogue, Scheduler, WarpGroups, Option<Tag::kIsPersistent, Persistent>,
      Option<Tag::kLoadsQSeparately, Persistent>>;
};
template <class E, int D, class Fusion, class Tile>
using ForwardKernel = typename ForwardKernelOf<E, D, Fusion, Tile>::Kernel;

// GQA/MQA (Hkv < H): the example's kernel indexes q, k, v, out and lse with one (b, h), and its
// problem shape is five ints, so a key/value head cannot be h / G inside it (a stride-0 mode for the
// group would need a nested problem shape; TMA descriptors want non-zero strides). Instead one launch
// per member g of a group: query heads g, G + g, 2G + g, ... over Hkv heads, i.e. q, out and lse
// offset by g heads with G times their head stride, k and v as they are. G launches of B * Hkv *
// tiles CTAs each; plain attention is the one launch with G = 1.
template <class E, int D, class Fusion, class Tile>
void forward(vt::Call& c, const Forward& f) {
  using Kernel = ForwardKernel<E, D, Fusion, Tile>;
  const Problem& p = f.p;
  const int G = p.group();
  auto args_for = [&](int g) {
    const Strides sq{f.sq.b, f.sq.h * G, f.sq.t}, so{f.so.b, f.so.h * G, f.so.t};
    return typename Kernel::Arguments{
        {p.B, p.Hkv, p.Tq, p.Tk, D},
        {static_cast<const E*>(f.q) + g * f.sq.h, fwd_stride(sq), static_cast<const E*>(f.k), fwd_stride(f.sk),
         static_cast<const E*>(f.v), fwd_stride(f.sv)},
        {static_cast<E*>(f.out) + g * f.so.h, fwd_stride(so), f.lse + (int64_t)g * p.Tq,
         cute::tuple<_1, cute::tuple<int, int>>{_1{}, cute::make_tuple(p.H * p.Tq, G * p.Tq)}},
        hardware(c)};
  };
  typename Kernel::Arguments first = args_for(0);
  if (!Kernel::can_implement(checked_args(first)))
    c.fail(VT_ERR_NOT_IMPL, "the Hopper FMHA forward cannot run B=%d H=%d Hkv=%d Tq=%d Tk=%d D=%d", p.B, p.H, p.Hkv,
           p.Tq, p.Tk, D);
  if (Kernel::get_workspace_size(first) != 0)
    c.fail(VT_ERR_RUNTIME, "the Hopper FMHA forward asks for a workspace this pack does not provide");
  for (int g = 0; g < G; ++g) {
    typename Kernel::Params params = Kernel::to_underlying_arguments(args_for(g), nullptr);
    params.mainloop.scale_softmax = p.scale;
    params.mainloop.scale_softmax_log2 = p.scale * kLog2e;
    launch<Kernel>(c, params, "the Hopper FMHA forward");
  }
}

// The forward's four kernels of a head dim: bfloat16 or float16, causal (CausalInBounds on CausalTile) or
// not (ResidualFusion on PlainTile)
template <int D, class CausalTile, class PlainTile>
void forward_by_mask(vt::Call& c, const Forward& f) {
  using cutlass::fmha::collective::ResidualFusion;
  if (f.p.fp16) {
    if (f.p.causal) forward<cutlass::half_t, D, CausalInBounds, CausalTile>(c, f);
    else forward<cutlass::half_t, D, ResidualFusion, PlainTile>(c, f);
  } else {
    if (f.p.causal) forward<cutlass::bfloat16_t, D, CausalInBounds, CausalTile>(c, f);
    else forward<cutlass::bfloat16_t, D, ResidualFusion, PlainTile>(c, f);
  }
}

// ---- backward ------------------------------------------------------------------------------------
// Operands as (B, H, T, D) strides with a unit stride along D; per-row statistics as (B, H, T).
using BwdStride = cute::tuple<int, int, int, _1>;
using RowStride = cute::tuple<int, int, _1>;
inline BwdStride bwd_stride(const Strides& s) { return BwdStride{(int)s.b, (int)s.h, (int)s.t, _1{}}; }

// kBackwardKeyBlock (128) keys per CTA (two consumer warp groups of 64) walking query blocks of
// 128 or 64 at D = 64 (the example's two D = 64 tiles; CMakeLists.txt's VT_FMHA_BWD_D64_QUERIES
// picks, 128 unless told) and of 64 at D = 128 (the example's only D = 128 tile; registers bound it).
#ifndef VT_FMHA_BWD_D64_QUERIES
#define VT_FMHA_BWD_D64_QUERIES 128
#endif
static_assert(VT_FMHA_BWD_D64_QUERIES == 64 || VT_FMHA_BWD_D64_QUERIES == 128, "D = 64 backward query tile");
template <class E, int D, class Fusion>
using BackwardDevice = cutlass::fmha::device::FmhaBwd<
    E, float, cute::Shape<cute::Int<(D <= 64 ? VT_FMHA_BWD_D64_QUERIES : 64)>, cute::Int<kBackwardKeyBlock>, cute::Int<D>>,
    Fusion>;

template <class E, int D, class Fusion>
void backward(vt::Call& c, const Backward& b) {
  using Device = BackwardDevice<E, D, Fusion>;
  using Main = typename Device::Operation::Kernel;
  using SumOdO = cutlass::fmha::kernel::FmhaKernelBwdSumOdO<E, float>;
  using Convert = cutlass::fmha::kernel::FmhaKernelBwdConvert<E, float>;
  const Problem& p = b.p;
  const cute::tuple<int, int, int, int, int> problem{p.B, p.H, p.Tq, p.Tk, D};

  // rowsum(dO * O) (B, H, Tq) with rows of Tq rounded up to 8 (TMA reads it: 16-byte strides), and
  // the fp32 dQ accumulator (B, H, Tq, D) contiguous; the accumulator's batch stride is 0 for B == 1,
  // as the example has it (TMA reduce-add descriptor)
  const int row = stat_row(p.Tq);
  const int64_t nsum = (int64_t)p.B * p.H * row, nacc = (int64_t)p.B * p.H * p.Tq * D;
  vt::Tensor sum_odo = c.empty(&nsum, 1, vt::kFloat32), dq_acc = c.empty(&nacc, 1, vt::kFloat32);
  float* sum_ptr = static_cast<float*>(sum_odo->data);
  float* acc_ptr = static_cast<float*>(dq_acc->data);
  const RowStride sum_stride{p.H * row, row, _1{}};
  const BwdStride acc_stride{p.B == 1 ? 0 : p.H * p.Tq * D, p.Tq * D, D, _1{}};
  const BwdStride dq_stride = bwd_stride(b.sdq), dk_stride = bwd_stride(b.sdk), dv_stride = bwd_stride(b.sdv);

  typename SumOdO::Params sum_args{problem,         static_cast<const E*>(b.out), bwd_stride(b.so),
                                   static_cast<const E*>(b.grad_out), bwd_stride(b.sgo), sum_ptr,
                                   sum_stride};
  typename Main::Arguments main_args{
      problem,
      {static_cast<const E*>(b.q), bwd_stride(b.sq), static_cast<const E*>(b.k), bwd_stride(b.sk),
       static_cast<const E*>(b.v), bwd_stride(b.sv), static_cast<const E*>(b.grad_out), bwd_stride(b.sgo), b.lse,
       RowStride{(int)b.slse.b, (int)b.slse.h, _1{}}, sum_ptr, sum_stride, acc_ptr, acc_stride},
      {static_cast<E*>(b.dk), dk_stride, static_cast<E*>(b.dv), dv_stride},
      hardware(c)};
  typename Convert::Params convert_args{problem,  acc_ptr, acc_stride, nullptr, acc_stride,
                                        nullptr,  acc_stride, static_cast<E*>(b.dq), dq_stride,
                                        nullptr,  dk_stride, nullptr, dv_stride};
  if (!SumOdO::can_implement(sum_args) || !Convert::can_implement(convert_args) ||
      !Main::can_implement(checked_args(main_args)))
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
// Masks: the forward's non-causal kernel always takes ResidualFusion (keys past Tk get -inf): it
// compares only in its first and last key tile (the middle ones run unmasked), so one kernel serves
// every Tk. The backward compares in every tile, so its non-causal kernel without a partial key tile
// keeps DefaultFusion (no mask) and the partial one gets ResidualFusion. Causal: CausalInBounds.
// VT_FMHA_FORWARD_TILE(name, D, tile): vt_fmha::forward_<name>, head dim D on an FwdTile;
// VT_FMHA_FORWARD(D): vt_fmha::forward_d<D> on the default tile.
#define VT_FMHA_FORWARD_TILE(name, D, ...)                                \
  void vt_fmha::forward_##name(vt::Call& c, const Forward& f) {           \
    forward_by_mask<D, __VA_ARGS__, __VA_ARGS__>(c, f);                   \
  }
#define VT_FMHA_FORWARD(D) VT_FMHA_FORWARD_TILE(d##D, D, DefaultFwdTile<D>)
// VT_FMHA_FORWARD_SPLIT(name, D, CausalTile, PlainTile): causal calls on one tile, the rest on another
// (tile types without commas: aliases)
#define VT_FMHA_FORWARD_SPLIT(name, D, CausalTile, PlainTile)             \
  void vt_fmha::forward_##name(vt::Call& c, const Forward& f) {           \
    forward_by_mask<D, CausalTile, PlainTile>(c, f);                      \
  }
#define VT_FMHA_BACKWARD(D)                                                                             \
  void vt_fmha::backward_fp16_d##D(vt::Call& c, const Backward& b) {                                    \
    using cutlass::fmha::collective::DefaultFusion;                                                     \
    using cutlass::fmha::collective::ResidualFusion;                                                    \
    if (b.p.causal) backward<cutlass::half_t, D, CausalInBounds>(c, b);                                 \
    else if (b.p.Tk % kBackwardKeyBlock == 0) backward<cutlass::half_t, D, DefaultFusion>(c, b);        \
    else backward<cutlass::half_t, D, ResidualFusion>(c, b);                                            \
  }
