// ops/core/cuda/add_norm.cu — the CUDA compute of add_layer_norm and its backward op: a residual add
// fused into layer_norm, reading and writing mixed dtypes in place of cast kernels. The meta steps
// and the semantics are src/norm.cpp's.
//
// Shape legend: input, residual (..., *normalized_shape) are M rows of N = prod(normalized_shape).
// Types: S = sum's dtype (the promoted one; weight and bias are S), R = the other input's dtype,
// O = out's dtype (the backward: grad_out's), A = acc_t<S> (mean/rstd, all arithmetic).
//   forward   sum = S(input + residual); out = O(layer_norm(sum)); mean, rstd per row
//   backward  g = grad_sum + layer_norm's grad_input(grad_out), written as S and as R in one pass;
//             grad_weight/grad_bias by norm.cu's deterministic two-stage column sum
// add is symmetric, so the host makes `input` the operand of dtype S (swapping input and residual
// and their gradients when the residual is the wider one): kernels are built for (S, R, O) in
// {float32} x {float32, bfloat16, float16}^2 and the all-bfloat16, all-float16, all-float64 cases.
// A row is spread over a group of threads as in rowwise.cuh (a warp plan: several rows per block,
// shuffles only; a block plan: a row per block), but a slot here is 4 elements of any dtype (a
// 16-byte float32 access, 8 bytes of 16-bit), so the operands of different widths share slots.
// Rows of one chunk stay in registers; longer rows are read again per pass (the forward re-reads
// the sum it wrote). Reductions in a fixed order, no atomics: the same bits on every run.
#include <cmath>

#include "rowwise.cuh"

namespace {

using rowwise::acc_t;

constexpr int kQ = 4;  // elements per slot

template <class T>
struct alignas(kQ * sizeof(T)) Quad {
  T v[kQ];
};

// slot s of a row of n elements as A (missing elements 0); one access when vec and whole
template <class A, class T>
__device__ __forceinline__ void load_quad(A (&d)[kQ], const T* row, int s, int n, bool vec) {
  const int e = s * kQ;
  if (vec && e + kQ <= n) {
    const Quad<T> q = *reinterpret_cast<const Quad<T>*>(row + e);
#pragma unroll
    for (int j = 0; j < kQ; ++j) d[j] = A(q.v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kQ; ++j) d[j] = e + j < n ? A(row[e + j]) : A(0);
  }
}
template <class T, class A>
__device__ __forceinline__ void store_quad(T* row, int s, int n, bool vec, const A (&d)[kQ]) {
  const int e = s * kQ;
  if (vec && e + kQ <= n) {
    Quad<T> q;
#pragma unroll
    for (int j = 0; j < kQ; ++j) q.v[j] = T(d[j]);
    *reinterpret_cast<Quad<T>*>(row + e) = q;
  } else {
#pragma unroll
    for (int j = 0; j < kQ; ++j)
      if (e + j < n) row[e + j] = T(d[j]);
  }
}

// slots per thread. The forward holds a row's sum (and, while it adds, the residual); the backward
// a row's xhat and gw and the grad_weight/grad_bias partials: 3 slots, so miniGPT's rows of 384
// (96 slots) are one chunk of a warp's registers (4 spilled 16-32 bytes at 128 registers), and a
// lane's partials fit rowwise::column_buffer. An A of 8 bytes: 2.
template <class S>
constexpr int fwd_slots() { return sizeof(acc_t<S>) == 8 ? 2 : 4; }
template <class S>
constexpr int bwd_slots() { return sizeof(acc_t<S>) == 8 ? 2 : 3; }

// ---- forward -------------------------------------------------------------------------------------
template <class S, class R, class O, int K, bool kWarp>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, 128)  // at 64 it spilled 40-64 bytes (ptxas, CUDA 13.0)
    add_norm_rows(const S* __restrict__ x, const R* __restrict__ res, const S* __restrict__ w,
                  const S* __restrict__ b, S* sum, O* __restrict__ y, acc_t<S>* __restrict__ mean,
                  acc_t<S>* __restrict__ rstd, int64_t M, int N, rowwise::Plan p, bool vec, double eps) {
  using A = acc_t<S>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  A v[K][kQ];  // the row's sum (one chunk of it)
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    S* sr = sum + row * N;
    // sum, rounded to S as it is stored (the statistics are of the stored sum), and its total
    A s = A(0);
    for (int ch = 0; ch < chunks; ++ch) {
      A t[K][kQ];
#pragma unroll
      for (int k = 0; k < K; ++k) {  // every load issued before any use
        load_quad(v[k], x + row * N, g.slot(ch, k, K), n, vec);
        load_quad(t[k], res + row * N, g.slot(ch, k, K), n, vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int j = 0; j < kQ; ++j) v[k][j] = A(S(v[k][j] + t[k][j]));  // missing elements: 0 + 0
        store_quad(sr, g.slot(ch, k, K), n, vec, v[k]);
        A sk = v[k][0];
#pragma unroll
        for (int j = 1; j < kQ; ++j) sk += v[k][j];
        s += sk;
      }
    }
    s = g.sum(s);
    const A mu = N ? s / (A)N : A(0);
    A q = A(0);  // the variance around the mean: a second pass (over registers when the row fits)
    for (int ch = 0; ch < chunks; ++ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        // longer rows: the sum this thread wrote (sum is not __restrict__, so no read-only-cache loads)
        if (chunks > 1) load_quad(v[k], sr, g.slot(ch, k, K), n, vec);
        const int e = g.slot(ch, k, K) * kQ;
        A qk = A(0);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          const A d = v[k][j] - mu;
          qk += e + j < n ? d * d : A(0);
        }
        q += qk;
      }
    }
    q = g.sum(q);
    const A rs = A(1) / sqrt((N ? q / (A)N : A(0)) + (A)eps);
    if (live && g.lane == 0) {
      mean[row] = mu;
      rstd[row] = rs;
    }
    for (int ch = 0; ch < chunks; ++ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K);
        if (chunks > 1) load_quad(v[k], sr, sl, n, vec);
        A wk[kQ], bk[kQ], o[kQ];
        if (w) load_quad(wk, w, sl, n, vec);
        if (b) load_quad(bk, b, sl, n, vec);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          const A xh = (v[k][j] - mu) * rs;
          o[j] = (w ? xh * wk[j] : xh) + (b ? bk[j] : A(0));
        }
        store_quad(y + row * N, sl, n, vec, o);
      }
    }
  }
}

// ---- backward ------------------------------------------------------------------------------------
// With grad_out: xhat = (sum - mean) * rstd, gw = grad_out * w, and
//   g = grad_sum + rstd * (gw - mean(gw) - xhat * mean(gw * xhat));
// without it, g = grad_sum (0 when neither is given). With `fuse` (one chunk, grad_out given and a
// weight or bias), each group also adds grad_out * xhat and grad_out over its rows (G, G + groups,
// ...) into registers; a warp plan's block adds its groups' in shared memory, in group order, and
// writes one partial row per block; a block plan's block is one group.
template <class S, class R, class O, int K, bool kWarp>
__global__ void VT_ROW_KERNEL_BOUNDS(kWarp, 128)
    add_norm_bwd_rows(const S* __restrict__ gsum, const O* __restrict__ gy, const S* __restrict__ sum,
                      const S* __restrict__ w, const acc_t<S>* __restrict__ mean, const acc_t<S>* __restrict__ rstd,
                      S* __restrict__ g_wide, R* __restrict__ g_other, acc_t<S>* __restrict__ part_w,
                      acc_t<S>* __restrict__ part_b, int64_t M, int N, rowwise::Plan p, bool vec, bool fuse) {
  using A = acc_t<S>;
  const rowwise::RowGroup<kWarp> g(p.tpr);
  const int rpb = p.rows_per_block(), chunks = (int)p.chunks;
  A cx[K][kQ], cg[K][kQ];  // xhat, grad_out * weight (one chunk of each)
  A pw[K][kQ], pb[K][kQ];
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int j = 0; j < kQ; ++j) pw[k][j] = pb[k][j] = A(0);
  for (int64_t r0 = (int64_t)blockIdx.x * rpb; r0 < M; r0 += (int64_t)gridDim.x * rpb) {
    const bool live = r0 + g.index < M;
    const int64_t row = live ? r0 + g.index : 0;
    const int n = live ? N : 0;
    const A mu = gy ? mean[row] : A(0), rs = gy ? rstd[row] : A(0);
    // chunk ch of xhat and of gw = grad_out * weight; the fused partials on the way (the weight is
    // read per slot where it is used: cache hits, and no registers held for it across rows)
    auto load_row = [&](int ch) {
#pragma unroll
      for (int k = 0; k < K; ++k) {  // every row load issued before any use
        load_quad(cx[k], sum + row * N, g.slot(ch, k, K), n, vec);
        load_quad(cg[k], gy + row * N, g.slot(ch, k, K), n, vec);
      }
#pragma unroll
      for (int k = 0; k < K; ++k) {
        A wk[kQ];
        if (w) load_quad(wk, w, g.slot(ch, k, K), N, vec);
#pragma unroll
        for (int j = 0; j < kQ; ++j) {
          cx[k][j] = (cx[k][j] - mu) * rs;
          if (fuse) {
            pw[k][j] += cg[k][j] * cx[k][j];
            pb[k][j] += cg[k][j];
          }
          if (w) cg[k][j] *= wk[j];
        }
      }
    };
    A mg = A(0), mgx = A(0);
    if (gy) {
      A s1 = A(0), s2 = A(0);  // the sums of gw and of gw * xhat
      for (int ch = 0; ch < chunks; ++ch) {
        load_row(ch);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          A s1k = A(0), s2k = A(0);
#pragma unroll
          for (int j = 0; j < kQ; ++j) {
            s1k += cg[k][j];
            s2k += cg[k][j] * cx[k][j];
          }
          s1 += s1k;
          s2 += s2k;
        }
      }
      const rowwise::Pair<A> t = g.sum2(s1, s2);
      mg = N ? t.a / (A)N : A(0);  // the cpu's order: sum / N
      mgx = N ? t.b / (A)N : A(0);
    }
    for (int ch = 0; ch < chunks; ++ch) {
      if (gy && chunks > 1) load_row(ch);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int sl = g.slot(ch, k, K);
        A o[kQ];
        if (gsum) load_quad(o, gsum + row * N, sl, n, vec);
        else
#pragma unroll
          for (int j = 0; j < kQ; ++j) o[j] = A(0);
        if (gy)
#pragma unroll
          for (int j = 0; j < kQ; ++j) o[j] += rs * (cg[k][j] - mg - cx[k][j] * mgx);
        store_quad(g_wide + row * N, sl, n, vec, o);
        store_quad(g_other + row * N, sl, n, vec, o);
      }
    }
  }
  if (!fuse) return;
  if constexpr (kWarp) {
    static_assert(K * kQ * sizeof(A) <= 64, "a lane's partials fit column_buffer");
    A* bw = reinterpret_cast<A*>(rowwise::column_buffer());
    A* bb = bw + rowwise::kColumnBytes / sizeof(A);
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const int e = g.slot(0, k, K) * kQ + j;
        if (e < N) {
          bw[g.index * N + e] = pw[k][j];
          bb[g.index * N + e] = pb[k][j];
        }
      }
    __syncthreads();
    for (int e = (int)threadIdx.x; e < N; e += (int)blockDim.x) {
      A sw = bw[e], sb = bb[e];
      for (int i = 1; i < rpb; ++i) {
        sw += bw[i * N + e];
        sb += bb[i * N + e];
      }
      if (part_w) part_w[(int64_t)blockIdx.x * N + e] = sw;
      if (part_b) part_b[(int64_t)blockIdx.x * N + e] = sb;
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int j = 0; j < kQ; ++j) {
        const int e = g.slot(0, k, K) * kQ + j;
        if (e < N) {
          if (part_w) part_w[(int64_t)blockIdx.x * N + e] = pw[k][j];
          if (part_b) part_b[(int64_t)blockIdx.x * N + e] = pb[k][j];
        }
      }
  }
}

// Partials for rows too long for registers: block (blockIdx.x, G) adds column j's grad_out * xhat
// and grad_out over rows G, G + gridDim.y, ... Adjacent threads read adjacent columns.
template <class S, class O>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    add_norm_bwd_cols(const O* __restrict__ gy, const S* __restrict__ sum, const acc_t<S>* __restrict__ mean,
                      const acc_t<S>* __restrict__ rstd, acc_t<S>* __restrict__ part_w, acc_t<S>* __restrict__ part_b,
                      int64_t M, int64_t N) {
  using A = acc_t<S>;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < N; j += (int64_t)gridDim.x * blockDim.x) {
    A aw = A(0), ab = A(0);
    for (int64_t r = blockIdx.y; r < M; r += gridDim.y) {
      const A gv = A(gy[r * N + j]);
      aw += gv * ((A(sum[r * N + j]) - mean[r]) * rstd[r]);
      ab += gv;
    }
    if (part_w) part_w[blockIdx.y * N + j] = aw;
    if (part_b) part_b[blockIdx.y * N + j] = ab;
  }
}

// ---- host ------------------------------------------------------------------------------------------
int64_t rows_cols(const vt_tensor* x, vt_int_list ns, int64_t* M) {
  int64_t N = 1;
  for (int64_t i = 0; i < ns.len; ++i) N *= ns.data[i];
  *M = 1;
  for (int32_t d = 0; d < x->ndim - ns.len; ++d) *M *= x->sizes[d];
  return N;
}

bool aligned_quad(const void* p, size_t elem) { return p == nullptr || ((uintptr_t)p % (kQ * elem)) == 0; }

// f(S, R, O) with the device types of the built (sum, other, out) dtypes; the rest is NOT_IMPL
template <class F>
void dispatch_add_norm(const vt::Call& c, vt_dtype s, vt_dtype r, vt_dtype o, F&& f) {
  using vt::ScalarType;
  const ScalarType ss = vt::scalar_type(s), sr = vt::scalar_type(r), so = vt::scalar_type(o);
  constexpr vt::types<float, vt::bfloat16, vt::half> k32{};
  if (ss == ScalarType::Float32) {
    vt::cuda::dispatch(k32, r, c.op, [&](auto rt) {
      vt::cuda::dispatch(k32, o, c.op, [&](auto ot) { f(vt::type_tag<float>{}, rt, ot); });
    });
    return;
  }
  if (sr == ss && so == ss) {
    vt::cuda::dispatch(vt::types<double, vt::bfloat16, vt::half>{}, s, c.op,
                       [&](auto st) { f(st, st, st); });
    return;
  }
  c.fail(VT_ERR_NOT_IMPL, "CUDA kernel for sum %s, other operand %s, out %s not built (built: float32 sums with "
         "float32/bfloat16/float16 operands and outputs; all-bfloat16, all-float16, all-float64)",
         vt::dtype_name(s), vt::dtype_name(r), vt::dtype_name(o));
}

// input and residual ordered as (the operand of sum's dtype, the other one)
struct Operands {
  const vt_tensor *wide, *other;
};
Operands order(const vt::Call& c, const vt_tensor* input, const vt_tensor* residual, vt_dtype s) {
  if (vt::same_dtype(input->dtype, s)) return {input, residual};
  if (!vt::same_dtype(residual->dtype, s))
    c.fail(VT_ERR_NOT_IMPL, "CUDA kernel for input %s with residual %s (neither is the sum's dtype %s) not built",
           vt::dtype_name(input->dtype), vt::dtype_name(residual->dtype), vt::dtype_name(s));
  return {residual, input};
}

void add_norm_forward(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* res = c.arg(1, "residual").tensor();
  const vt_int_list ns = c.arg(2, "normalized_shape").ints();
  const vt_tensor* w = c.arg(3, "weight").tensor_or_null();
  const vt_tensor* b = c.arg(4, "bias").tensor_or_null();
  const double eps = c.arg(5, "eps").float_();
  const vt_tensor *sum = c.out(0), *out = c.out(1);
  const Operands ops = order(c, x, res, sum->dtype);
  int64_t M = 0;
  const int64_t N = rows_cols(x, ns, &M);
  if (M == 0) return;
  rowwise::Contig xc(c, ops.wide), rc(c, ops.other), wc(c, w), bc(c, b);
  dispatch_add_norm(c, sum->dtype, ops.other->dtype, out->dtype, [&](auto st, auto rt, auto ot) {
    using S = typename decltype(st)::type;
    using R = typename decltype(rt)::type;
    using O = typename decltype(ot)::type;
    using A = acc_t<S>;
    constexpr int K = fwd_slots<S>();
    const S* xp = vt::data<const S>(xc.t);
    const R* rp = vt::data<const R>(rc.t);
    const S* wp = wc.t ? vt::data<const S>(wc.t) : nullptr;
    const S* bp = bc.t ? vt::data<const S>(bc.t) : nullptr;
    S* sp = vt::data<S>(sum);
    O* yp = vt::data<O>(out);
    const bool vec = N % kQ == 0 && aligned_quad(xp, sizeof(S)) && aligned_quad(rp, sizeof(R)) &&
                     aligned_quad(wp, sizeof(S)) && aligned_quad(bp, sizeof(S)) && aligned_quad(sp, sizeof(S)) &&
                     aligned_quad(yp, sizeof(O));
    const rowwise::Plan p = rowwise::plan_rows(c, M, N, kQ, K, vec);
    const auto kernel = p.warp ? add_norm_rows<S, R, O, K, true> : add_norm_rows<S, R, O, K, false>;
    vt::cuda::launch(c, p.warp ? "add_norm_rows (warp)" : "add_norm_rows", kernel, p.blocks, p.threads, 0, xp, rp,
                     wp, bp, sp, yp, vt::data<A>(c.out(2)), vt::data<A>(c.out(3)), M, (int)N, p, vec, eps);
  });
}

// rows each group adds into its grad_weight/grad_bias partial row (norm_rows.cuh's choice)
constexpr int64_t kRowsPerBlockGroup = 16, kRowsPerWarpGroup = 4, kMaxGroups = 4096;

void add_norm_backward(vt::Call& c) {
  const vt_tensor* gs = c.arg(0, "grad_sum").tensor_or_null();
  const vt_tensor* go = c.arg(1, "grad_out").tensor_or_null();
  const vt_tensor* sum = c.arg(2, "sum").tensor();
  const vt_int_list ns = c.arg(3, "normalized_shape").ints();
  const vt_tensor* mean = c.arg(4, "mean").tensor();
  const vt_tensor* rstd = c.arg(5, "rstd").tensor();
  const vt_tensor* w = c.arg(8, "weight").tensor_or_null();
  const vt_tensor* b = c.arg(9, "bias").tensor_or_null();
  const Operands grads = order(c, c.out(0), c.out(1), sum->dtype);
  int64_t M = 0;
  const int64_t N = rows_cols(sum, ns, &M);
  const bool want_w = w && go, want_b = b && go;
  rowwise::Contig gsc(c, gs), goc(c, go), sc(c, sum), wc(c, w), mc(c, mean), rc(c, rstd);
  // without grad_out its dtype is irrelevant: sum's stands in
  dispatch_add_norm(c, sum->dtype, grads.other->dtype, go ? go->dtype : sum->dtype, [&](auto st, auto rt, auto ot) {
    using S = typename decltype(st)::type;
    using R = typename decltype(rt)::type;
    using O = typename decltype(ot)::type;
    using A = acc_t<S>;
    constexpr int K = bwd_slots<S>();
    const S* gsp = gsc.t ? vt::data<const S>(gsc.t) : nullptr;
    const O* gop = goc.t ? vt::data<const O>(goc.t) : nullptr;
    const S* sp = vt::data<const S>(sc.t);
    const S* wp = wc.t ? vt::data<const S>(wc.t) : nullptr;
    S* gwide = vt::data<S>(grads.wide);
    R* gother = vt::data<R>(grads.other);
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
      const bool vec = N % kQ == 0 && aligned_quad(gsp, sizeof(S)) && aligned_quad(gop, sizeof(O)) &&
                       aligned_quad(sp, sizeof(S)) && aligned_quad(wp, sizeof(S)) && aligned_quad(gwide, sizeof(S)) &&
                       aligned_quad(gother, sizeof(R));
      rowwise::Plan p = rowwise::plan_rows(c, M, N, kQ, K, vec);
      const bool fuse = (want_w || want_b) && p.chunks == 1;
      if (fuse) {  // a fixed number of groups (from M alone), one partial row per block
        const int64_t per = p.tpr > 32 ? kRowsPerBlockGroup : kRowsPerWarpGroup;
        const int64_t groups = std::min<int64_t>(kMaxGroups, (M + per - 1) / per);
        p.blocks = (unsigned)((groups + p.rows_per_block() - 1) / p.rows_per_block());
        parts(p.blocks);
      }
      const auto kernel = p.warp ? add_norm_bwd_rows<S, R, O, K, true> : add_norm_bwd_rows<S, R, O, K, false>;
      vt::cuda::launch(c, p.warp ? "add_norm_bwd_rows (warp)" : "add_norm_bwd_rows", kernel, p.blocks, p.threads, 0,
                       gsp, gop, sp, wp, vt::data<const A>(mc.t), vt::data<const A>(rc.t), gwide, gother, pw(), pb(),
                       M, (int)N, p, vec, fuse);
      if ((want_w || want_b) && !fuse && N > 0) {
        parts(std::min<int64_t>(M, 128));
        vt::cuda::launch(c, "add_norm_bwd_cols", add_norm_bwd_cols<S, O>, dim3(vt::cuda::grid_for(N), (unsigned)G),
                         vt::cuda::kThreads, 0, gop, sp, vt::data<const A>(mc.t), vt::data<const A>(rc.t), pw(), pb(),
                         M, N);
      }
    }
    // no grad_out (or M == 0): G == 0 and the sums are 0
    if (w) rowwise::launch_column_sum<A, S>(c, pw(), G, N, vt::data<S>(c.out(2)));
    if (b) rowwise::launch_column_sum<A, S>(c, pb(), G, N, vt::data<S>(c.out(3)));
  });
}

VT_COMPUTE(add_layer_norm_cuda, "core::add_layer_norm") { add_norm_forward(c); }
VT_COMPUTE(add_layer_norm_backward_cuda, "core::add_layer_norm_backward") { add_norm_backward(c); }

}  // namespace

void register_add_norm_cuda(vt::Registrar& r) {
  r.compute("core::add_layer_norm", VT_CUDA, add_layer_norm_cuda);
  r.compute("core::add_layer_norm_backward", VT_CUDA, add_layer_norm_backward_cuda);
}
