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
// the sum it wrote). Reductions in a fixed order, no atomics: the same bits on every run. Warp
// plans of one chunk with whole slots (miniGPT's rows) run the lean kernels, v1's arithmetic in its
// order in fewer registers (add_norm_rows.cuh): on the H200 (2026-12-02) miniGPT's 12 forward calls
// took 0.232 ms a step against v1's 0.453, the backward's 0.318 against 0.508.
#include <cmath>
#include <cstdlib>
#include <string>

#include "add_norm_rows.cuh"

namespace {

using namespace add_norm_impl;

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
// Which kernels run, from VT_ADD_NORM_PLAN when first asked (A/B runs on a GPU): unset or "v2", the
// lean kernels where they take the plan; "v1", add_norm_rows / add_norm_bwd_rows for every plan.
// The two agree within a rounding step or so (nvcc contracts their multiply-adds differently).
bool lean_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("VT_ADD_NORM_PLAN");
    return !(v && std::string(v) == "v1");
  }();
  return on;
}

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
    const rowwise::Plan p = fwd_plan<S>(c, M, N, vec);
    if constexpr (lean_built<S>()) {
      if (lean_enabled() && lean_takes(p)) {
        const auto kernel = lean_fwd_slots(p, N) == 3 ? add_norm_rows_lean<S, R, O, 3> : add_norm_rows_lean<S, R, O, 4>;
        vt::cuda::launch(c, "add_norm_rows_lean", kernel, p.blocks, p.threads, 0, xp, rp, wp, bp, sp, yp,
                         vt::data<A>(c.out(2)), vt::data<A>(c.out(3)), M, (int)N, p.tpr, eps);
        return;
      }
    }
    const auto kernel = p.warp ? add_norm_rows<S, R, O, K, true> : add_norm_rows<S, R, O, K, false>;
    vt::cuda::launch(c, p.warp ? "add_norm_rows (warp)" : "add_norm_rows", kernel, p.blocks, p.threads, 0, xp, rp,
                     wp, bp, sp, yp, vt::data<A>(c.out(2)), vt::data<A>(c.out(3)), M, (int)N, p, vec, eps);
  });
}

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
    rowwise::ColumnPartials<A> parts;
    if (M > 0) {
      const bool vec = N % kQ == 0 && aligned_quad(gsp, sizeof(S)) && aligned_quad(gop, sizeof(O)) &&
                       aligned_quad(sp, sizeof(S)) && aligned_quad(wp, sizeof(S)) && aligned_quad(gwide, sizeof(S)) &&
                       aligned_quad(gother, sizeof(R));
      rowwise::Plan p = bwd_plan<S>(c, M, N, vec);
      const bool fuse = (want_w || want_b) && p.chunks == 1;
      if (fuse) parts.make(c, fuse_groups(p, M), N, want_w, want_b);
      bool lean = false;
      if constexpr (lean_built<S>()) {
        lean = lean_enabled() && lean_takes(p);
        if (lean)
          vt::cuda::launch(c, "add_norm_bwd_rows_lean", add_norm_bwd_rows_lean<S, R, O, K>, p.blocks, p.threads, 0,
                           gsp, gop, sp, wp, vt::data<const A>(mc.t), vt::data<const A>(rc.t), gwide, gother, parts.w(),
                           parts.b(), M, (int)N, p.tpr, fuse);
      }
      const auto kernel = p.warp ? add_norm_bwd_rows<S, R, O, K, true> : add_norm_bwd_rows<S, R, O, K, false>;
      if (!lean)
        vt::cuda::launch(c, p.warp ? "add_norm_bwd_rows (warp)" : "add_norm_bwd_rows", kernel, p.blocks, p.threads,
                         0, gsp, gop, sp, wp, vt::data<const A>(mc.t), vt::data<const A>(rc.t), gwide, gother, parts.w(),
                         parts.b(), M, (int)N, p, vec, fuse);
      if ((want_w || want_b) && !fuse && N > 0) {
        parts.make(c, std::min<int64_t>(M, 128), N, want_w, want_b);
        vt::cuda::launch(c, "add_norm_bwd_cols", add_norm_bwd_cols<S, O>,
                         dim3(vt::cuda::grid_for(N), (unsigned)parts.G), vt::cuda::kThreads, 0, gop, sp,
                         vt::data<const A>(mc.t), vt::data<const A>(rc.t), parts.w(), parts.b(), M, N);
      }
    }
    // no grad_out (or M == 0): no partial rows, and the sums are 0
    parts.sum_into(c, N, w ? vt::data<S>(c.out(2)) : nullptr, b ? vt::data<S>(c.out(3)) : nullptr);
  });
}

VT_COMPUTE(add_layer_norm_cuda, "core::add_layer_norm") { add_norm_forward(c); }
VT_COMPUTE(add_layer_norm_backward_cuda, "core::add_layer_norm_backward") { add_norm_backward(c); }

}  // namespace

void register_add_norm_cuda(vt::Registrar& r) {
  r.compute("core::add_layer_norm", VT_CUDA, add_layer_norm_cuda);
  r.compute("core::add_layer_norm_backward", VT_CUDA, add_layer_norm_backward_cuda);
}
