// ops/core/cuda/norm.cu — the CUDA compute of layer_norm, rms_norm and their backward ops. The meta
// steps (checks, outputs, the float32/float64 statistics tensors) and the semantics are
// src/norm.cpp's.
//
// Shape legend: input (..., *normalized_shape) is M rows of N = prod(normalized_shape); mean/rstd
// hold M values of A (float32 for float16/bfloat16 and float32 inputs, else float64).
// Forward: one row kernel (norm_rows.cuh), built as a warp kernel (rows of up to 1024 elements: a
// warp per row, several rows per block, shuffles only) and a block kernel (a block per row, 32
// elements per thread: 128 threads for 4096), each for 16-byte accesses only and for scalar ones.
// The row stays in registers while it fits (rows of up to 16384 elements; longer rows are read
// once per pass), mean then the variance around it (two passes over registers, one read of global
// memory), out written in the input dtype.
// Backward: grad_input in one row kernel; grad_weight/grad_bias by a deterministic two-stage
// column sum: each row group (a warp or a block) adds g * xhat and g of its rows, a fixed set, into
// registers and writes one partial row; column_sum adds the partial rows in a fixed order. Rows
// too long for registers get a separate column-partial kernel instead. No atomics: the same bits on
// every run.
#include <cmath>

#include "norm_rows.cuh"

namespace {

using rowwise::acc_t;



// input as M rows of N
int64_t rows_cols(const vt_tensor* x, vt_int_list ns, int64_t* M) {
  int64_t N = 1;
  for (int64_t i = 0; i < ns.len; ++i) N *= ns.data[i];
  *M = 1;
  for (int32_t d = 0; d < x->ndim - ns.len; ++d) *M *= x->sizes[d];
  return N;
}

// ---- forward -------------------------------------------------------------------------------------
template <bool RMS>
void norm_forward(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_int_list ns = c.arg(1, "normalized_shape").ints();
  const vt_tensor* w = c.arg(2, "weight").tensor_or_null();
  const vt_tensor* b = RMS ? nullptr : c.arg(3, "bias").tensor_or_null();
  double eps;
  if (RMS) {  // None: the dtype's machine epsilon, as on cpu
    const vt::ScalarType s = vt::scalar_type(x->dtype);
    const double deps = s == vt::ScalarType::Float64 ? 2.220446049250313e-16
                      : s == vt::ScalarType::Float16 ? 0.0009765625
                      : s == vt::ScalarType::BFloat16 ? 0.0078125 : 1.1920928955078125e-07;
    eps = c.arg(3, "eps").float_or(deps);
  } else {
    eps = c.arg(4, "eps").float_();
  }
  int64_t M = 0;
  const int64_t N = rows_cols(x, ns, &M);
  if (M == 0) return;
  rowwise::Contig xc(c, x), wc(c, w), bc(c, b);
  const vt_tensor* out = c.out(0);
  const vt_tensor* mean = RMS ? nullptr : c.out(1);
  const vt_tensor* rstd = c.out(RMS ? 1 : 2);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    const T* wp = wc.t ? vt::data<const T>(wc.t) : nullptr;
    const T* bp = bc.t ? vt::data<const T>(bc.t) : nullptr;
    T* yp = vt::data<T>(out);
    const bool al =
        rowwise::aligned16(xp) && rowwise::aligned16(yp) && rowwise::aligned16(wp) && rowwise::aligned16(bp);
    rowwise::Plan p = norm_rows_impl::plan<T>(c, M, N, al);
    A* mp = RMS ? nullptr : vt::data<A>(mean);
    A* rp = vt::data<A>(rstd);
    const auto kernel = norm_rows_impl::kernel_for<T, RMS>(p);
    const int smem = rowwise::plan_pipe<T, norm_rows_impl::fwd_slots<T>()>(p);
    vt::cuda::launch(c, p.wide ? "norm_rows (wide)" : p.warp ? "norm_rows (warp)" : smem ? "norm_rows (pipelined)" : "norm_rows", kernel,
                     rowwise::launch_grid(c, (const void*)kernel, p, smem), p.threads, (size_t)smem, xp, wp, bp, yp,
                     mp, rp, M, (int)N, p, eps);
  });
}

// ---- backward ------------------------------------------------------------------------------------
// Partials for rows too long for registers: block (blockIdx.x, G) adds column j's g * xhat and g
// over rows G, G + gridDim.y, ... Adjacent threads read adjacent columns.
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    norm_bwd_cols(const T* __restrict__ go, const T* __restrict__ x, const acc_t<T>* __restrict__ mean,
                  const acc_t<T>* __restrict__ rstd, acc_t<T>* __restrict__ part_w, acc_t<T>* __restrict__ part_b,
                  int64_t M, int64_t N, bool rms) {
  using A = acc_t<T>;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < N; j += (int64_t)gridDim.x * blockDim.x) {
    A aw = A(0), ab = A(0);
    for (int64_t r = blockIdx.y; r < M; r += gridDim.y) {
      const A gv = A(go[r * N + j]);
      aw += gv * ((A(x[r * N + j]) - (rms ? A(0) : mean[r])) * rstd[r]);
      ab += gv;
    }
    if (part_w) part_w[blockIdx.y * N + j] = aw;
    if (part_b) part_b[blockIdx.y * N + j] = ab;
  }
}

template <bool RMS>
void norm_backward(vt::Call& c) {
  const vt_tensor* go = c.arg(0, "grad_out").tensor();
  const vt_tensor* x = c.arg(1, "input").tensor();
  const vt_int_list ns = c.arg(2, "normalized_shape").ints();
  const vt_tensor* mean = RMS ? nullptr : c.arg(3, "mean").tensor();
  const vt_tensor* rstd = c.arg(RMS ? 3 : 4, "rstd").tensor();
  const vt_tensor* w = c.arg(RMS ? 4 : 5, "weight").tensor_or_null();
  const vt_tensor* b = RMS ? nullptr : c.arg(6, "bias").tensor_or_null();
  int64_t M = 0;
  const int64_t N = rows_cols(x, ns, &M);
  const vt_tensor* gin = c.out(0);
  const vt_tensor* gw = c.out(1);
  const vt_tensor* gb = RMS ? nullptr : c.out(2);
  const bool want_w = w != nullptr, want_b = !RMS && b != nullptr;
  rowwise::Contig gc(c, go), xc(c, x), wc(c, w), mc(c, mean), rc(c, rstd);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* gp = vt::data<const T>(gc.t);
    const T* xp = vt::data<const T>(xc.t);
    const T* wp = wc.t ? vt::data<const T>(wc.t) : nullptr;
    const A* mp = RMS ? nullptr : vt::data<const A>(mc.t);
    const A* rp = vt::data<const A>(rc.t);
    T* ip = vt::data<T>(gin);
    rowwise::ColumnPartials<A> parts;
    if (M > 0) {
      const bool al =
          rowwise::aligned16(gp) && rowwise::aligned16(xp) && rowwise::aligned16(wp) && rowwise::aligned16(ip);
      rowwise::Plan p = norm_rows_impl::bwd_plan<T>(c, M, N, al);
      const bool fuse = (want_w || want_b) && p.chunks == 1;
      if (fuse) parts.make(c, norm_rows_impl::fuse_groups(p, M), N, want_w, want_b);
      vt::cuda::launch(c, p.warp ? "norm_bwd_rows (warp)" : "norm_bwd_rows", norm_rows_impl::bwd_kernel_for<T, RMS>(p),
                       p.blocks, p.threads, 0, gp, xp, wp, mp, rp, ip, parts.w(), parts.b(), M, (int)N, p, fuse);
      if ((want_w || want_b) && !fuse && N > 0) {
        parts.make(c, std::min<int64_t>(M, 128), N, want_w, want_b);
        vt::cuda::launch(c, "norm_bwd_cols", norm_bwd_cols<T>, dim3(vt::cuda::grid_for(N), (unsigned)parts.G),
                         vt::cuda::kThreads, 0, gp, xp, mp, rp, parts.w(), parts.b(), M, N, RMS);
      }
    }
    parts.sum_into(c, N, want_w ? vt::data<T>(gw) : nullptr, want_b ? vt::data<T>(gb) : nullptr);
  });
}

}  // namespace

namespace {
VT_COMPUTE(layer_norm_cuda, "core::layer_norm") { norm_forward<false>(c); }
VT_COMPUTE(rms_norm_cuda, "core::rms_norm") { norm_forward<true>(c); }
VT_COMPUTE(layer_norm_backward_cuda, "core::layer_norm_backward") { norm_backward<false>(c); }
VT_COMPUTE(rms_norm_backward_cuda, "core::rms_norm_backward") { norm_backward<true>(c); }
}  // namespace

void register_norm_cuda(vt::Registrar& r) {
  r.compute("core::layer_norm", VT_CUDA, layer_norm_cuda);
  r.compute("core::rms_norm", VT_CUDA, rms_norm_cuda);
  r.compute("core::layer_norm_backward", VT_CUDA, layer_norm_backward_cuda);
  r.compute("core::rms_norm_backward", VT_CUDA, rms_norm_backward_cuda);
}
