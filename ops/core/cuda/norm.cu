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

// 16-byte slots per thread of the backward: two rows and grad_weight/grad_bias partials of A for 16
// elements (8 of float64). (The forward's are norm_rows.cuh's.)
template <class T>
constexpr int bwd_slots() { return sizeof(T) == 2 ? 2 : 4; }

// backward: rows each group adds into its grad_weight/grad_bias partial row (a warp's rows are
// short, so more partial rows cost little and keep more warps busy)
constexpr int64_t kRowsPerBlockGroup = 16, kRowsPerWarpGroup = 4;
constexpr int64_t kMaxGroups = 4096;


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
    const rowwise::Plan p = norm_rows_impl::plan<T>(c, M, N, al);
    A* mp = RMS ? nullptr : vt::data<A>(mean);
    A* rp = vt::data<A>(rstd);
    vt::cuda::launch(c, p.warp ? "norm_rows (warp)" : "norm_rows", norm_rows_impl::kernel_for<T, RMS>(p), p.blocks,
                     p.threads, 0, xp, wp, bp, yp, mp, rp, M, (int)N, p, eps);
  });
}

// ---- backward ------------------------------------------------------------------------------------
// gi = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w, xhat = (x - mean) * rstd (rms:
// no mean(gw) term). With `fuse` (the row in registers), group G = blockIdx.x * rpb + index also
// adds g * xhat and g over its rows (G, G + groups, ...) and writes them as partial row G.
template <class T, int K>
__global__ void __launch_bounds__(rowwise::kMaxTpr)
    norm_bwd_rows(const T* __restrict__ go, const T* __restrict__ x, const T* __restrict__ w,
                  const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd, T* __restrict__ gi,
                  acc_t<T>* __restrict__ part_w, acc_t<T>* __restrict__ part_b, int64_t M, int N, rowwise::Plan p,
                  bool rms, bool fuse) {
  constexpr int V = rowwise::width<T>();
  using A = acc_t<T>;
  const rowwise::Group g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  rowwise::Slot cg[K], cx[K], cw[K];
  A pw[K][V], pb[K][V];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < V; ++j) pw[k][j] = pb[k][j] = A(0);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    const T *gr = go + row * N, *xr = x + row * N;
    const A mu = rms ? A(0) : mean[row], rs = rstd[row];
    A s1 = A(0), s2 = A(0);  // sums of gw and of gw * xhat (missing elements have g = 0)
    for (int ch = 0; ch < chunks; ++ch) {
      rowwise::load_chunk<T, K>(cg, gr, g, ch, n, p.vec);  // every load in flight before any use
      rowwise::load_chunk<T, K>(cx, xr, g, ch, n, p.vec);
      if (w) rowwise::load_chunk<T, K>(cw, w, g, ch, N, p.vec);
#pragma unroll
      for (int k = 0; k < K; ++k)
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A gw = w ? rowwise::get<T>(cg[k], j) * rowwise::get<T>(cw[k], j) : rowwise::get<T>(cg[k], j);
          s1 += gw;
          s2 += gw * ((rowwise::get<T>(cx[k], j) - mu) * rs);
        }
    }
    s1 = rms ? A(0) : g.sum(s1);
    s2 = g.sum(s2);
    const A mg = rms ? A(0) : s1 / (A)N, mgx = s2 / (A)N;  // the cpu's order: sum / N
    T* ir = gi + row * N;
    for (int ch = 0; ch < chunks; ++ch) {
      if (chunks > 1) {
        rowwise::load_chunk<T, K>(cg, gr, g, ch, n, p.vec);
        rowwise::load_chunk<T, K>(cx, xr, g, ch, n, p.vec);
        if (w) rowwise::load_chunk<T, K>(cw, w, g, ch, N, p.vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K), lim = rowwise::valid<V>(sl, n);
        const rowwise::Slot o = rowwise::make_slot<T>([&](int j) {
          const A gv = rowwise::get<T>(cg[k], j), xh = (rowwise::get<T>(cx[k], j) - mu) * rs;
          const A gw = w ? gv * rowwise::get<T>(cw[k], j) : gv;
          return rs * (gw - mg - xh * mgx);
        });
        if (fuse) {
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const A gv = rowwise::get<T>(cg[k], j);
            pw[k][j] += gv * ((rowwise::get<T>(cx[k], j) - mu) * rs);
            pb[k][j] += gv;
          }
        }
        rowwise::store_slot<T>(ir, sl, lim, p.vec, o);
      }
    }
  }
  if (!fuse) return;
  const int64_t grp = (int64_t)blockIdx.x * rpb + g.index;  // every group writes its row (zeros if it had none)
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int e = g.slot(0, k, K) * V + j;
      if (e < N) {
        if (part_w) part_w[grp * N + e] = pw[k][j];
        if (part_b) part_b[grp * N + e] = pb[k][j];
      }
    }
}

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
    constexpr int K = bwd_slots<T>();
    const T* gp = vt::data<const T>(gc.t);
    const T* xp = vt::data<const T>(xc.t);
    const T* wp = wc.t ? vt::data<const T>(wc.t) : nullptr;
    const A* mp = RMS ? nullptr : vt::data<const A>(mc.t);
    const A* rp = vt::data<const A>(rc.t);
    T* ip = vt::data<T>(gin);
    int64_t G = 0;  // partial rows of grad_weight/grad_bias
    vt::Tensor part_w, part_b;
    auto parts = [&](int64_t groups) {
      G = groups;
      const int64_t sz[1] = {G * N};
      if (want_w) part_w = c.empty(sz, 1, vt::dtype_of<A>());
      if (want_b) part_b = c.empty(sz, 1, vt::dtype_of<A>());
    };
    auto pw = [&] { return part_w ? vt::data<A>(part_w) : nullptr; };
    auto pb = [&] { return part_b ? vt::data<A>(part_b) : nullptr; };
    if (M > 0) {
      const bool al =
          rowwise::aligned16(gp) && rowwise::aligned16(xp) && rowwise::aligned16(wp) && rowwise::aligned16(ip);
      rowwise::Plan p = rowwise::plan_rows(c, M, N, rowwise::width<T>(), K, al);
      const bool fuse = (want_w || want_b) && p.chunks == 1;
      if (fuse) {  // a fixed number of groups (from M alone), each adding its rows into a partial row
        const int64_t rpb = p.rows_per_block();
        const int64_t per = p.tpr > 32 ? kRowsPerBlockGroup : kRowsPerWarpGroup;
        const int64_t groups = std::min<int64_t>(kMaxGroups, (M + per - 1) / per);
        p.blocks = (unsigned)((groups + rpb - 1) / rpb);
        parts((int64_t)p.blocks * rpb);
      }
      vt::cuda::launch(c, "norm_bwd_rows", norm_bwd_rows<T, K>, p.blocks, p.threads, 0, gp, xp, wp, mp, rp, ip, pw(),
                       pb(), M, (int)N, p, RMS, fuse);
      if ((want_w || want_b) && !fuse && N > 0) {
        parts(std::min<int64_t>(M, 128));
        vt::cuda::launch(c, "norm_bwd_cols", norm_bwd_cols<T>, dim3(vt::cuda::grid_for(N), (unsigned)G),
                         vt::cuda::kThreads, 0, gp, xp, mp, rp, pw(), pb(), M, N, RMS);
      }
    }
    // M == 0: G == 0 and the sums are 0
    if (want_w) rowwise::launch_column_sum<A, T>(c, pw(), G, N, vt::data<T>(gw));
    if (want_b) rowwise::launch_column_sum<A, T>(c, pb(), G, N, vt::data<T>(gb));
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
