// ops/core/cuda/cumsum.cu — the CUDA compute of cumsum (registered by reduce.cu).
//
// Shapes: x (any strides) is L lines of n elements along `dim`; out (contiguous, the meta step's)
// has line l at (l / inner) * n * inner + l % inner with step inner (inner: the size of the dims
// after `dim`). Sums run in double for a floating result and in int64 for an integer one, as on
// cpu; pairs the kernels do not take directly (an integer input into a floating result, a
// floating input into an integer one) are scanned from a copy converted by core::to_dtype into
// the accumulator's dtype, which gives the cpu's values.
//
// inner == 1 (the lines are contiguous in out): a warp scans a line in tiles of 128 (4 elements a
// lane, summed in the lane, then a shuffle scan over the lanes). inner > 1: one thread walks a line,
// neighbouring threads neighbouring lines (coalesced). Either way long lines with too few of them
// to fill the GPU are cut into chunks fixed by the shape: pass 1 sums each chunk, pass 2 scans the
// chunk sums of each line (the warp kernel again), pass 3 scans each chunk from its carry. No
// atomics: the same bits every run.
#include "reduce_impl.cuh"

namespace {

using vtred::ST;
using vtred::add;
using vtred::to_acc;

struct Lines {
  int32_t nk = 0;  // the dims other than `dim`, merged: line l -> x offset
  bool k32 = true;
  int64_t ks[vt::kMaxDims], kst[vt::kMaxDims];
  int64_t L = 1, n = 1, xs = 0, inner = 1;
  int64_t C = 1, nch = 1;  // chunk length, chunks per line
};

template <class A>
__device__ __forceinline__ A shfl_up(A v, int d) {
  static_assert(sizeof(A) == 8, "double or int64");
  unsigned long long u;
  memcpy(&u, &v, 8);
  u = __shfl_up_sync(0xffffffffu, u, d);
  memcpy(&v, &u, 8);
  return v;
}
template <class A>
__device__ __forceinline__ A shfl_idx(A v, int lane) {
  unsigned long long u;
  memcpy(&u, &v, 8);
  u = __shfl_sync(0xffffffffu, u, lane);
  memcpy(&v, &u, 8);
  return v;
}

template <class A>
__device__ __forceinline__ void put(void* out, ST t, int64_t i, A v) {
  if constexpr (std::is_integral<A>::value) vtred::put(out, t, i, (int64_t)v);
  else vtred::put(out, t, i, (double)v);
}

// One warp per (line, chunk) w = l * nch + c. totals: write the chunk's sum to totals[w] and
// nothing else; else scan it into out, starting from carry[w - 1] when carry is given and c > 0.
template <class In, class A>
__global__ void __launch_bounds__(vtred::kBlock) warp_scan_kernel(const In* __restrict__ x, Lines ln, const A* carry,
                                                                  A* totals, void* out, ST ot) {
  constexpr int K = 4;
  const int lane = threadIdx.x & 31;
  const int64_t warps = ln.L * ln.nch;
  for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < warps;
       w += ((int64_t)gridDim.x * blockDim.x) >> 5) {
    const int64_t l = w / ln.nch, c = w - l * ln.nch;
    const int64_t j0 = c * ln.C, j1 = min(ln.n, j0 + ln.C);
    const In* xb = x + vtred::offset_of(l, ln.nk, ln.ks, ln.kst, ln.k32);
    const int64_t ob = l * ln.n;  // inner == 1
    A run = (carry && c > 0) ? carry[w - 1] : A(0);
    for (int64_t t = j0; t < j1; t += 32 * K) {
      A v[K];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t j = t + lane * K + k;
        v[k] = j < j1 ? to_acc<A>(xb[j * ln.xs]) : A(0);
        if (k > 0) v[k] = add(v[k - 1], v[k]);
      }
      A inc = v[K - 1];  // inclusive scan of the lanes' sums
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const A y = shfl_up(inc, d);
        if (lane >= d) inc = add(y, inc);
      }
      A ex = shfl_up(inc, 1);
      if (lane == 0) ex = A(0);
      if (!totals) {
        const A base = add(run, ex);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const int64_t j = t + lane * K + k;
          if (j < j1) put(out, ot, ob + j, add(base, v[k]));
        }
      }
      run = add(run, shfl_idx(inc, 31));
    }
    if (totals && lane == 0) totals[w] = run;
  }
}

// One thread per (line, chunk), neighbouring threads on neighbouring lines: t = c * L + l.
template <class In, class A>
__global__ void __launch_bounds__(vtred::kBlock) thread_scan_kernel(const In* __restrict__ x, Lines ln, const A* carry,
                                                                    A* totals, void* out, ST ot) {
  const int64_t tasks = ln.L * ln.nch;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < tasks; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = t / ln.L, l = t - c * ln.L, w = l * ln.nch + c;
    const int64_t j0 = c * ln.C, j1 = min(ln.n, j0 + ln.C);
    const In* xb = x + vtred::offset_of(l, ln.nk, ln.ks, ln.kst, ln.k32);
    const int64_t ob = (l / ln.inner) * ln.n * ln.inner + l % ln.inner;
    A run = (carry && c > 0) ? carry[w - 1] : A(0);
    for (int64_t j = j0; j < j1; ++j) {
      run = add(run, to_acc<A>(xb[j * ln.xs]));
      if (!totals) put(out, ot, ob + j * ln.inner, run);
    }
    if (totals) totals[w] = run;
  }
}

unsigned int blocks_for(int64_t threads) {
  return (unsigned int)std::max<int64_t>(1, std::min<int64_t>(vtred::cdiv(threads, vtred::kBlock), 1 << 20));
}

template <class In, class A>
void scan(const vt::Call& c, const vt_tensor* x, int32_t d, const vt_tensor* out) {
  using vtred::cdiv;
  Lines ln;
  ln.n = x->ndim ? x->sizes[d] : 1;
  ln.xs = x->ndim ? x->strides[d] : 0;
  for (int32_t i = 0; i < x->ndim; ++i) {
    if (i == d) continue;
    ln.ks[ln.nk] = x->sizes[i];
    ln.kst[ln.nk++] = x->strides[i];
    if (i > d) ln.inner *= x->sizes[i];
  }
  vtred::merge_dims(ln.ks, ln.kst, ln.nk);
  ln.L = x->numel / ln.n;
  ln.k32 = ln.L <= 0xffffffffll;
  const bool warp = ln.inner == 1;
  // chunks: enough (line, chunk) tasks to fill the GPU, each chunk still long
  const int64_t units = warp ? vtred::kTargetThreads / 32 : vtred::kTargetThreads;
  const int64_t min_chunk = warp ? 2048 : 64;
  ln.nch = ln.L >= units ? 1 : std::max<int64_t>(1, std::min(cdiv(units, ln.L), ln.n / min_chunk));
  ln.C = warp ? cdiv(cdiv(ln.n, ln.nch), 128) * 128 : cdiv(ln.n, ln.nch);
  ln.nch = cdiv(ln.n, ln.C);
  const In* xd = vt::data<const In>(x);
  const ST ot = vt::scalar_type(out->dtype);
  auto pass = [&](const A* carry, A* totals) {
    if (warp)
      vt::cuda::launch(c, "cumsum (warp scan)", warp_scan_kernel<In, A>, blocks_for(ln.L * ln.nch * 32), vtred::kBlock, 0,
                       xd, ln, carry, totals, out->data, ot);
    else
      vt::cuda::launch(c, "cumsum (thread scan)", thread_scan_kernel<In, A>, blocks_for(ln.L * ln.nch), vtred::kBlock,
                       0, xd, ln, carry, totals, out->data, ot);
  };
  if (ln.nch == 1) {
    pass(nullptr, nullptr);
    return;
  }
  const int64_t bytes = ln.L * ln.nch * (int64_t)sizeof(A);
  vt::Tensor buf = c.empty(&bytes, 1, vt::kUInt8);
  A* tot = static_cast<A*>(buf->data);
  pass(nullptr, tot);
  Lines lt;  // the chunk sums: L contiguous lines of nch, scanned in place
  lt.nk = 1;
  lt.ks[0] = ln.L;
  lt.kst[0] = ln.nch;
  lt.k32 = ln.k32;
  lt.L = ln.L;
  lt.n = ln.nch;
  lt.xs = 1;
  lt.C = ln.nch;
  const ST at = std::is_integral<A>::value ? ST::Int64 : ST::Float64;
  vt::cuda::launch(c, "cumsum (chunk carries)", warp_scan_kernel<A, A>, blocks_for(ln.L * 32), vtred::kBlock, 0,
                   static_cast<const A*>(tot), lt, static_cast<const A*>(nullptr), static_cast<A*>(nullptr),
                   static_cast<void*>(tot), at);
  pass(tot, nullptr);
}

}  // namespace

VT_COMPUTE(cumsum_cuda, "core::cumsum") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int32_t d = red::dim_of(x, c.arg(1, "dim").int_());
  const vt_tensor* out = c.out(0);
  if (x->numel == 0) return;
  vt::Tensor own;
  if (vt::is_floating(out->dtype)) {
    if (!vt::is_floating(x->dtype)) {
      own = vt::call(c.host, "core::to_dtype", {vt::V(const_cast<vt_tensor*>(x)), vt::V(vt::kFloat64)});
      x = own.get();
    }
    vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
      scan<typename decltype(tag)::type, double>(c, x, d, out);
    });
    return;
  }
  if (vt::is_floating(x->dtype)) {  // the cpu truncates each element to int64 before adding
    own = vt::call(c.host, "core::to_dtype", {vt::V(const_cast<vt_tensor*>(x)), vt::V(vt::kInt64)});
    x = own.get();
  }
  vt::cuda::dispatch(vt::types<bool, uint8_t, int8_t, int32_t, int64_t>{}, x->dtype, c.op, [&](auto tag) {
    scan<typename decltype(tag)::type, int64_t>(c, x, d, out);
  });
}
