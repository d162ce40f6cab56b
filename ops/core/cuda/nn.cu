// ops/core/cuda/nn.cu — the CUDA compute of softmax, log_softmax, their backward ops, dropout and
// dropout_backward. The meta steps and the semantics are src/nn.cpp's.
//
// Shape legend: the input is (outer, D, inner) around `dim`; a line is the D elements of one
// (outer, inner) position. inner == 1 (dim is the last): lines are rows and go through the row
// kernels of softmax_rows.cuh (a row in registers while it fits, 16-byte accesses, one read and one
// write per element; longer rows are read once per pass): rows that fit one warp's registers (fwd:
// up to 1024 elements, bwd: 1024 float32 / 2048 16-bit) a warp per row, several rows per block,
// shuffles only; longer rows a block per row. inner > 1: one thread per line, adjacent
// threads on adjacent lines (coalesced), two passes. Non-contiguous inputs are made contiguous
// first (as on cpu). float16/bfloat16 compute in float32, float64 in double. Reductions run in a
// fixed order: the same bits on every run.
//
// dropout keeps element i when (Philox word i % 4 of group offset + i / 4) >> 8 >= ceil(p * 2^24),
// the cpu's rule (vt/philox.h), so a seed gives the cpu's mask bit for bit. The numbers come from
// host->philox_args and are unpacked on the device (CUDA-graph safe).
#include <cmath>

#include "softmax_rows.cuh"
#include "vt/philox.h"

namespace {

using rowwise::acc_t;
using vt::cuda::Vec;

struct Lines {  // the (outer, D, inner) view around dim
  int64_t outer = 1, D = 1, inner = 1;
};
Lines lines_of(const vt_tensor* x, int64_t dim) {
  Lines L;
  if (x->ndim == 0) return L;
  const int32_t d = (int32_t)(dim < 0 ? dim + x->ndim : dim);
  L.D = x->sizes[d];
  for (int32_t k = 0; k < d; ++k) L.outer *= x->sizes[k];
  for (int32_t k = d + 1; k < x->ndim; ++k) L.inner *= x->sizes[k];
  return L;
}

// ---- softmax / log_softmax ----------------------------------------------------------------------
// one thread per line of D elements at stride `inner`
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    softmax_cols(const T* __restrict__ x, T* __restrict__ y, Lines L, bool log) {
  using A = acc_t<T>;
  const int64_t nl = L.outer * L.inner;
  for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < nl; l += (int64_t)gridDim.x * blockDim.x) {
    const int64_t base = l / L.inner * L.D * L.inner + l % L.inner;
    rowwise::LSE<A> st;
    for (int64_t k = 0; k < L.D; ++k) {
      const A v = A(x[base + k * L.inner]);
      st.add(v, [&](A nm) { return rowwise::fexp(v - nm); });
    }
    const A inv = A(1) / st.s, shift = st.m + rowwise::flog(st.s);
    for (int64_t k = 0; k < L.D; ++k) {
      const A v = A(x[base + k * L.inner]);
      y[base + k * L.inner] = T(log ? v - shift : rowwise::fexp(v - st.m) * inv);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    softmax_bwd_cols(const T* __restrict__ go, const T* __restrict__ y, T* __restrict__ gi, Lines L, bool log) {
  using A = acc_t<T>;
  const int64_t nl = L.outer * L.inner;
  for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < nl; l += (int64_t)gridDim.x * blockDim.x) {
    const int64_t base = l / L.inner * L.D * L.inner + l % L.inner;
    A s = A(0);
    for (int64_t k = 0; k < L.D; ++k) {
      const int64_t i = base + k * L.inner;
      s += log ? A(go[i]) : A(go[i]) * A(y[i]);
    }
    for (int64_t k = 0; k < L.D; ++k) {
      const int64_t i = base + k * L.inner;
      const A a = A(go[i]), b = A(y[i]);
      gi[i] = T(log ? a - rowwise::fexp(b) * s : b * (a - s));
    }
  }
}

void softmax_fwd(vt::Call& c, bool log) {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const Lines L = lines_of(self, c.arg(1, "dim").int_());
  const vt_tensor* out = c.out(0);
  if (self->numel == 0) return;
  rowwise::Contig x(c, self);
  vt::cuda::dispatch(vt::kFloatingTypes, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = vt::data<const T>(x.t);
    T* yp = vt::data<T>(out);
    if (L.inner == 1) {
      rowwise::Plan p =
          softmax_rows_impl::plan<T>(c, L.outer, L.D, rowwise::aligned16(xp) && rowwise::aligned16(yp));
      auto kernel = log ? softmax_rows_impl::kernel_for<T, true>(p) : softmax_rows_impl::kernel_for<T, false>(p);
      const int smem = rowwise::plan_pipe<T, softmax_rows_impl::fwd_slots<T>()>(p);
      vt::cuda::launch(c, p.wide ? "softmax_rows (wide)" : p.warp ? "softmax_rows (warp)" : smem ? "softmax_rows (pipelined)" : "softmax_rows", kernel,
                       rowwise::launch_grid(c, (const void*)kernel, p, smem), p.threads, (size_t)smem, xp, yp, L.outer,
                       (int)L.D, p);
    } else {
      vt::cuda::launch(c, "softmax_cols", softmax_cols<T>, vt::cuda::grid_for(L.outer * L.inner), vt::cuda::kThreads,
                       0, xp, yp, L, log);
    }
  });
}

void softmax_bwd(vt::Call& c, bool log) {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* y = c.arg(1, "output").tensor();
  const Lines L = lines_of(y, c.arg(2, "dim").int_());
  const vt_tensor* out = c.out(0);
  if (y->numel == 0) return;
  rowwise::Contig gc(c, go), yc(c, y);
  vt::cuda::dispatch(vt::kFloatingTypes, y->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gp = vt::data<const T>(gc.t);
    const T* yp = vt::data<const T>(yc.t);
    T* ip = vt::data<T>(out);
    if (L.inner == 1) {
      const bool al = rowwise::aligned16(gp) && rowwise::aligned16(yp) && rowwise::aligned16(ip);
      const rowwise::Plan p = softmax_rows_impl::bwd_plan<T>(c, L.outer, L.D, al);
      auto kernel =
          log ? softmax_rows_impl::bwd_kernel_for<T, true>(p) : softmax_rows_impl::bwd_kernel_for<T, false>(p);
      vt::cuda::launch(c, p.warp ? "softmax_bwd_rows (warp)" : "softmax_bwd_rows", kernel, p.blocks, p.threads, 0, gp,
                       yp, ip, L.outer, (int)L.D, p);
    } else {
      vt::cuda::launch(c, "softmax_bwd_cols", softmax_bwd_cols<T>, vt::cuda::grid_for(L.outer * L.inner),
                       vt::cuda::kThreads, 0, gp, yp, ip, L, log);
    }
  });
}

// ---- dropout -------------------------------------------------------------------------------------
// One thread per Philox group of 4 elements: out = keep ? x * scale : 0, mask = keep.
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    dropout_kernel(const T* __restrict__ x, T* __restrict__ out, bool* __restrict__ mask, int64_t n,
                   vt_philox_args args, uint32_t thr, acc_t<T> scale, bool vec) {
  using A = acc_t<T>;
  const vt_philox_seed_offset so = vt_philox_unpack(args);
  const int64_t groups = (n + 3) / 4;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t gi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; gi < groups; gi += step) {
    const vt::philox::Philox4x32 r = vt::philox::philox_group(so.seed, so.offset + (uint64_t)gi);
    const int64_t i0 = gi * 4;
    if (vec && i0 + 4 <= n) {  // one access per operand (16 bytes for float32)
      const Vec<T, 4> v = *reinterpret_cast<const Vec<T, 4>*>(x + i0);
      Vec<T, 4> o;
      Vec<bool, 4> m;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        m.v[j] = (r.x[j] >> 8) >= thr;
        o.v[j] = m.v[j] ? T(A(v.v[j]) * scale) : T(0.0f);
      }
      *reinterpret_cast<Vec<T, 4>*>(out + i0) = o;
      *reinterpret_cast<Vec<bool, 4>*>(mask + i0) = m;
    } else {
      for (int j = 0; j < 4 && i0 + j < n; ++j) {
        const bool keep = (r.x[j] >> 8) >= thr;
        mask[i0 + j] = keep;
        out[i0 + j] = keep ? T(A(x[i0 + j]) * scale) : T(0.0f);
      }
    }
  }
}

template <class T>
struct DropoutBackward {
  acc_t<T> scale;
  __device__ __forceinline__ T operator()(T g, bool keep) const { return keep ? T(acc_t<T>(g) * scale) : T(0.0f); }
};

}  // namespace

namespace {

VT_COMPUTE(softmax_cuda, "core::softmax") { softmax_fwd(c, false); }
VT_COMPUTE(log_softmax_cuda, "core::log_softmax") { softmax_fwd(c, true); }
VT_COMPUTE(softmax_backward_cuda, "core::softmax_backward") { softmax_bwd(c, false); }
VT_COMPUTE(log_softmax_backward_cuda, "core::log_softmax_backward") { softmax_bwd(c, true); }

VT_COMPUTE(dropout_cuda, "core::dropout") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const double p = c.arg(1, "p").float_();
  const bool train = c.arg(2, "train").bool_();
  const vt_tensor* out = c.out(0);
  const vt_tensor* mask = c.out(1);
  const int64_t n = x->numel;
  if (n == 0) return;
  rowwise::Contig xc(c, x);
  const cudaStream_t s = vt::cuda::stream(c);
  if (!train || p == 0.0) {  // a copy and an all-true mask; no numbers drawn (as on cpu)
    vt::cuda::check(c, cudaMemsetAsync(mask->data, 1, (size_t)n, s), "cudaMemsetAsync");
    vt::cuda::check(c, cudaMemcpyAsync(out->data, xc.t->data, (size_t)(n * vt::element_size(x->dtype)),
                                       cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
    return;
  }
  const int64_t groups = (n + 3) / 4;
  vt_philox_args args;
  c.host->philox_args(c.ctx->device, (uint64_t)groups, &args);
  const uint32_t thr = (uint32_t)std::ceil(p * 16777216.0);  // keep when (word >> 8) >= thr
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const A scale = p < 1.0 ? (A)(1.0 / (1.0 - p)) : (A)0;
    const T* xp = vt::data<const T>(xc.t);
    T* op = vt::data<T>(out);
    bool* mp = vt::data<bool>(mask);
    const bool vec = ((uintptr_t)xp % (4 * sizeof(T))) == 0 && ((uintptr_t)op % (4 * sizeof(T))) == 0 &&
                     ((uintptr_t)mp % 4) == 0;
    vt::cuda::launch(c, "dropout_kernel", dropout_kernel<T>, vt::cuda::grid_for(groups), vt::cuda::kThreads, 0, xp, op,
                     mp, n, args, thr, scale, vec);
  });
}

VT_COMPUTE(dropout_backward_cuda, "core::dropout_backward") {
  const vt_tensor* g = c.arg(0, "grad_output").tensor();
  const vt_tensor* mask = c.arg(1, "mask").tensor();
  const double scale = c.arg(2, "scale").float_();
  vt::cuda::dispatch(vt::kFloatingTypes, g->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise<T, T, bool>(c, DropoutBackward<T>{(acc_t<T>)scale}, c.out(0), g, mask);
  });
}

}  // namespace

void register_nn_cuda(vt::Registrar& r) {
  r.compute("core::softmax", VT_CUDA, softmax_cuda);
  r.compute("core::log_softmax", VT_CUDA, log_softmax_cuda);
  r.compute("core::softmax_backward", VT_CUDA, softmax_backward_cuda);
  r.compute("core::log_softmax_backward", VT_CUDA, log_softmax_backward_cuda);
  r.compute("core::dropout", VT_CUDA, dropout_cuda);
  r.compute("core::dropout_backward", VT_CUDA, dropout_backward_cuda);
}
