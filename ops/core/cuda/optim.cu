// ops/core/cuda/optim.cu — the CUDA compute of adamw_, sgd_ and adamw_multi (the fused AdamW over
// all parameters in a few launches).
//
// The meta steps (src/optim.cpp) check the arguments; the math is the cpu's, element by element,
// in the same order (float16/bfloat16 computed in float32 and rounded where the cpu rounds).
//
// Multi-tensor apply (torch's multi_tensor_apply, in spirit): up to kMaxTensors tensors' pointers
// and sizes travel by value in one kernel argument (a TensorList, ~7 KB: CUDA 12.1+ takes up to
// 32 KB of kernel parameters), every tensor cut into chunks of kChunk elements. Block b takes
// chunks b, b + grid, ...; a binary search over the list's chunk prefix sums finds a chunk's
// tensor. Inside a chunk each thread moves 16-byte vectors of every operand (when all of them are
// 16-byte aligned) and stores only the operands the update writes (AdamW reads p, g, m, v and
// writes p, m, v: 28 bytes per float32 element, the minimum). adamw_ and sgd_ of a contiguous
// tensor use the same kernel with a list of one; strided tensors a StridedLoop kernel.
//
// Graph capture: adamw_multi's optional lr_t / step_t are 1-element float32 device tensors read
// inside the kernel (step_t is incremented on the device first), so a captured step replays with
// their current values; without them the hyper-parameters are baked into the launch.
// Deterministic: elementwise, no reductions.
#include <algorithm>
#include <cmath>
#include <vector>

#include "vt/cuda/elementwise.cuh"
#include "vt/cuda/reduce.cuh"

namespace {

constexpr int kMaxTensors = 160;  // tensors per launch
constexpr int kChunk = 16384;     // elements per chunk
constexpr int kBlock = 256;
constexpr int kMaxGrid = 132 * 16;  // persistent-ish: blocks loop over chunks beyond this

template <int N>
struct TensorList {
  void* ptr[N][kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t chunk_start[kMaxTensors + 1];  // prefix sums of the tensors' chunk counts
  int32_t count;
};

template <class T> __device__ __forceinline__ float to_f(T x) { return (float)x; }
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T, class A> __device__ __forceinline__ T to_t(A x) {
  if constexpr (std::is_same<T, __half>::value) return __float2half_rn(x);
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn(x);
  else return (T)x;
}
template <class T, class A> __device__ __forceinline__ A ld(T x) {
  if constexpr (std::is_same<T, double>::value) return x;
  else return to_f(x);
}
// a * b, never fused with a neighbouring add: the same bits from every kernel the step is inlined
// into (the compiler contracts differently per kernel), and the cpu's rounding
__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
// x rounded to T and back, where the cpu stores an intermediate in T
template <class T, class A> __device__ __forceinline__ A round_t(A x) { return ld<T, A>(to_t<T>(x)); }

// ---- the kernels -------------------------------------------------------------------------------------
// The tensor holding `chunk` of a list (the last whose chunks start at or before it: a binary search
// over the prefix sums) and the chunk's element range [*begin, *begin + *len) in it.
template <int N>
__device__ __forceinline__ int chunk_of(const TensorList<N>& L, int32_t chunk, int64_t* begin, int64_t* len) {
  int lo = 0, hi = L.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (L.chunk_start[mid] <= chunk) lo = mid;
    else hi = mid - 1;
  }
  *begin = (int64_t)(chunk - L.chunk_start[lo]) * kChunk;
  const int64_t rest = L.numel[lo] - *begin;
  *len = rest < kChunk ? rest : kChunk;
  return lo;
}

// W: bit k set = operand k is written back
template <int N, int W, class T, class F>
__device__ __forceinline__ void apply_scalar(T* const (&p)[N], int64_t i, const F& f) {
  T e[N];
#pragma unroll
  for (int k = 0; k < N; ++k) e[k] = p[k][i];
  f(e);
#pragma unroll
  for (int k = 0; k < N; ++k)
    if (W >> k & 1) p[k][i] = e[k];
}

template <int N, int W, class T, class F>
__global__ void __launch_bounds__(kBlock) multi_kernel(TensorList<N> L, F f0) {
  constexpr int V = 16 / (int)sizeof(T);
  using Vec = vt::cuda::Vec<T, V>;
  F f = f0;
  f.prepare();
  const int32_t total = L.chunk_start[L.count];
  for (int32_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    int64_t begin, len;
    const int lo = chunk_of(L, chunk, &begin, &len);
    T* p[N];
    uintptr_t bits = 0;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      p[k] = static_cast<T*>(L.ptr[k][lo]) + begin;
      bits |= reinterpret_cast<uintptr_t>(p[k]);
    }
    int64_t done = 0;
    if (bits % 16 == 0) {
      const int64_t nv = len / V;
      for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
        Vec x[N];
#pragma unroll
        for (int k = 0; k < N; ++k) x[k] = reinterpret_cast<const Vec*>(p[k])[i];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          T e[N];
#pragma unroll
          for (int k = 0; k < N; ++k) e[k] = x[k].v[j];
          f(e);
#pragma unroll
          for (int k = 0; k < N; ++k) x[k].v[j] = e[k];
        }
#pragma unroll
        for (int k = 0; k < N; ++k)
          if (W >> k & 1) reinterpret_cast<Vec*>(p[k])[i] = x[k];
      }
      done = nv * V;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) apply_scalar<N, W>(p, i, f);
  }
}

template <int N, int W, class T, class F>
__global__ void __launch_bounds__(kBlock) strided_kernel(vt::StridedLoop<N> L, F f0) {
  F f = f0;
  f.prepare();
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* q[N];
    vt::cuda::element_ptrs(L, i, q);
    T* p[N];
#pragma unroll
    for (int k = 0; k < N; ++k) p[k] = reinterpret_cast<T*>(q[k]);
    apply_scalar<N, W>(p, 0, f);
  }
}

__global__ void increment(float* x) { *x += 1.0f; }

// ---- launchers -----------------------------------------------------------------------------------------
// The contiguous tensors of `entries` (N operands each) as TensorLists of at most kMaxTensors non-empty
// entries: batch(L, grid) for each, grid = its blocks (one per chunk, at most kMaxGrid).
template <int N, class F>
void for_each_list(const std::vector<const vt_tensor*>& entries, F&& batch) {
  TensorList<N> L;
  size_t i = 0;
  const size_t count = entries.size() / N;
  while (i < count) {
    L.count = 0;
    L.chunk_start[0] = 0;
    for (; i < count && L.count < kMaxTensors; ++i) {
      const int64_t n = entries[i * N]->numel;
      if (n == 0) continue;
      for (int k = 0; k < N; ++k) L.ptr[k][L.count] = entries[i * N + k]->data;
      L.numel[L.count] = n;
      L.chunk_start[L.count + 1] = L.chunk_start[L.count] + (int32_t)((n + kChunk - 1) / kChunk);
      ++L.count;
    }
    const int32_t total = L.chunk_start[L.count];
    if (total != 0) batch(L, total < kMaxGrid ? total : kMaxGrid);
  }
}

// f over the contiguous tensors of `entries` (N operands each, one dtype T), kMaxTensors per launch
template <int N, int W, class T, class F>
void launch_multi(const vt::Call& c, const std::vector<const vt_tensor*>& entries, const F& f) {
  for_each_list<N>(entries, [&](const TensorList<N>& L, int32_t grid) {
    vt::cuda::launch(c, "multi_kernel", multi_kernel<N, W, T, F>, dim3(grid), kBlock, 0, L, f);
  });
}

// The dtypes the multi-tensor kernels are built for, and the group of a dtype among them (-1: none).
constexpr vt::ScalarType kListTypes[4] = {vt::ScalarType::Float32, vt::ScalarType::BFloat16,
                                          vt::ScalarType::Float16, vt::ScalarType::Float64};
inline int list_group(vt_dtype d) {
  for (int k = 0; k < 4; ++k)
    if (kListTypes[k] == vt::scalar_type(d)) return k;
  return -1;
}

template <int N, int W, class T, class F>
void launch_strided(const vt::Call& c, const vt_tensor* const (&ts)[N], const F& f) {
  if (ts[0]->numel == 0) return;
  const vt::StridedLoop<N> L = vt::loop_over<N>(c.op, ts);
  vt::cuda::launch(c, "strided_kernel", strided_kernel<N, W, T, F>, vt::cuda::grid_for(L.numel, kBlock), kBlock, 0, L,
                   f);
}

// One tensor's operands: the multi-tensor kernel when all are contiguous, else the strided one.
template <int N, int W, class T, class F>
void launch_one(const vt::Call& c, const vt_tensor* const (&ts)[N], const F& f) {
  bool contig = true;
  for (const vt_tensor* t : ts) contig = contig && vt::is_contiguous(t);
  if (contig) launch_multi<N, W, T>(c, std::vector<const vt_tensor*>(ts, ts + N), f);
  else launch_strided<N, W, T>(c, ts, f);
}

// ---- AdamW ----------------------------------------------------------------------------------------------
// the per-step scalars in the compute type A, as the cpu rounds them
template <class A>
struct AdamWCoef {
  A decay, w1, b2, w2, step_size, bc2s, eps;
  bool wd;
};
template <class A>
__host__ __device__ AdamWCoef<A> adamw_coef(double lr, double beta1, double beta2, double eps, double wd, double step) {
  const double bc1 = 1.0 - pow(beta1, step);
  const double bc2_sqrt = sqrt(1.0 - pow(beta2, step));
  return {(A)(1.0 - lr * wd), (A)(1.0 - beta1), (A)beta2, (A)(1.0 - beta2), (A)(lr / bc1), (A)bc2_sqrt, (A)eps,
          wd != 0.0};
}

// the hyper-parameters as given; lr_t / step_t (device) override lr / step when set
struct AdamWHyper {
  double lr, beta1, beta2, eps, wd, step;
  const float* lr_t;
  const float* step_t;
};

// operands (param, grad, exp_avg, exp_avg_sq); writes 0, 2, 3
template <class T>
struct AdamWFn {
  using A = vt::cuda::acc_t<T>;
  AdamWCoef<A> k;
  AdamWHyper h;
  __device__ void prepare() {
    if (h.lr_t || h.step_t)
      k = adamw_coef<A>(h.lr_t ? (double)*h.lr_t : h.lr, h.beta1, h.beta2, h.eps, h.wd,
                        h.step_t ? (double)*h.step_t : h.step);
  }
  __device__ __forceinline__ void operator()(T (&e)[4]) const {
    A pa = ld<T, A>(e[0]);
    const A ga = ld<T, A>(e[1]);
    A ma = ld<T, A>(e[2]), va = ld<T, A>(e[3]);
    if (k.wd) pa = round_t<T>(mul(pa, k.decay));
    ma = round_t<T>(k.w1 < (A)0.5 ? ma + mul(k.w1, ga - ma) : ga - mul(ga - ma, (A)1 - k.w1));
    va = round_t<T>(mul(va, k.b2) + mul(mul(ga, ga), k.w2));
    const A root = std::is_same<A, float>::value ? (A)sqrtf((float)va) : (A)sqrt((double)va);  // float's own sqrt
    const A denom = root / k.bc2s + k.eps;
    e[0] = to_t<T>(pa - mul(k.step_size, ma / denom));
    e[2] = to_t<T>(ma);
    e[3] = to_t<T>(va);
  }
};
constexpr int kAdamWWrites = 0b1101;

template <class T>
AdamWFn<T> adamw_fn(const AdamWHyper& h) {
  AdamWFn<T> f;
  f.h = h;
  f.k = adamw_coef<vt::cuda::acc_t<T>>(h.lr, h.beta1, h.beta2, h.eps, h.wd, h.step);
  return f;
}

// ---- SGD -------------------------------------------------------------------------------------------------
template <class T>
struct SGDFn {  // operands (param, grad[, momentum_buffer]); writes 0 (and 2)
  using A = vt::cuda::acc_t<T>;
  A lr, momentum, damp1, wd;  // damp1 = 1 - dampening
  bool has_wd, nesterov;
  __device__ void prepare() {}
  __device__ __forceinline__ A direction(T p, T g) const {
    A d = ld<T, A>(g);
    if (has_wd) d = round_t<T>(d + mul(wd, ld<T, A>(p)));
    return d;
  }
  __device__ __forceinline__ void operator()(T (&e)[2]) const {
    e[0] = to_t<T>(ld<T, A>(e[0]) - mul(lr, direction(e[0], e[1])));
  }
  __device__ __forceinline__ void operator()(T (&e)[3]) const {
    const A d = direction(e[0], e[1]);
    const A nb = round_t<T>(mul(ld<T, A>(e[2]), momentum) + mul(damp1, d));
    e[2] = to_t<T>(nb);
    const A step = nesterov ? round_t<T>(d + mul(momentum, nb)) : nb;
    e[0] = to_t<T>(ld<T, A>(e[0]) - mul(lr, step));
  }
};

// ---- clip_grad_norm_ ------------------------------------------------------------------------------
// Two passes, four launches at most per dtype group: per-block partial sums of squares (or maxima)
// over the gradients' chunks into a float workspace, one block that adds the partials in a fixed
// order (deterministic) and writes the total and the factor, then the multi-tensor scale reading
// the factor on the device.
template <class T, bool Inf>
__device__ __forceinline__ float norm_acc(float acc, T x) {
  const float v = to_f(x);
  if constexpr (Inf) return fabsf(v) > acc || v != v ? fabsf(v) : acc;
  else return fmaf(v, v, acc);
}

template <class T, bool Inf>
__device__ __forceinline__ void norm_partial_store(float acc, float* partial) {
  acc = Inf ? vt::cuda::block_reduce(acc, vt::cuda::Max{}, 0.0f) : vt::cuda::block_sum(acc);
  if (threadIdx.x == 0) *partial = acc;
}

template <class T, bool Inf>
__global__ void __launch_bounds__(kBlock) norm_partials_multi(TensorList<1> L, float* partials) {
  constexpr int V = 16 / (int)sizeof(T);
  using Vec = vt::cuda::Vec<T, V>;
  float acc = 0.0f;
  const int32_t total = L.chunk_start[L.count];
  for (int32_t chunk = blockIdx.x; chunk < total; chunk += gridDim.x) {
    int64_t begin, len;
    const int lo = chunk_of(L, chunk, &begin, &len);
    const T* p = static_cast<const T*>(L.ptr[0][lo]) + begin;
    int64_t done = 0;
    if (reinterpret_cast<uintptr_t>(p) % 16 == 0) {
      const int64_t nv = len / V;
      for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
        const Vec x = reinterpret_cast<const Vec*>(p)[i];
#pragma unroll
        for (int j = 0; j < V; ++j) acc = norm_acc<T, Inf>(acc, x.v[j]);
      }
      done = nv * V;
    }
    for (int64_t i = done + threadIdx.x; i < len; i += blockDim.x) acc = norm_acc<T, Inf>(acc, p[i]);
  }
  norm_partial_store<T, Inf>(acc, partials + blockIdx.x);
}

template <class T, bool Inf>
__global__ void __launch_bounds__(kBlock) norm_partials_strided(vt::StridedLoop<1> L, float* partials) {
  float acc = 0.0f;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* q[1];
    vt::cuda::element_ptrs(L, i, q);
    acc = norm_acc<T, Inf>(acc, *reinterpret_cast<const T*>(q[0]));
  }
  norm_partial_store<T, Inf>(acc, partials + blockIdx.x);
}

// partials[0, n) -> *total, and the factor min(1, max_norm / (total + 1e-6)) -> *coef
template <bool Inf>
__global__ void __launch_bounds__(kBlock) norm_finish(const float* partials, int32_t n, float max_norm, float* total,
                                                      float* coef) {
  double acc = 0.0;
  for (int32_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double v = partials[i];
    acc = Inf ? (v > acc || v != v ? v : acc) : acc + v;
  }
  acc = Inf ? vt::cuda::block_reduce(acc, vt::cuda::Max{}, 0.0) : vt::cuda::block_sum(acc);
  if (threadIdx.x == 0) {
    const float t = (float)(Inf ? acc : sqrt(acc));
    *total = t;
    const float k = max_norm / (t + 1e-6f);
    *coef = k > 1.0f ? 1.0f : k;  // NaN stays NaN
  }
}

template <class T>
struct ClipScaleFn {  // the gradient times the factor rounded to T (torch: g.mul_(coef.to(g.dtype)))
  using A = vt::cuda::acc_t<T>;
  const float* coef;
  A k;
  __device__ void prepare() { k = ld<T, A>(to_t<T>(*coef)); }
  __device__ __forceinline__ void operator()(T (&e)[1]) const { e[0] = to_t<T>(mul(ld<T, A>(e[0]), k)); }
};

}  // namespace

VT_COMPUTE(adamw__cuda, "core::adamw_") {
  const vt_tensor* ts[4] = {c.arg(0, "param").tensor(), c.arg(1, "grad").tensor(), c.arg(2, "exp_avg").tensor(),
                            c.arg(3, "exp_avg_sq").tensor()};
  const AdamWHyper h{c.arg(4, "lr").float_(),           c.arg(5, "beta1").float_(), c.arg(6, "beta2").float_(),
                     c.arg(7, "eps").float_(),          c.arg(8, "weight_decay").float_(),
                     (double)c.arg(9, "step").int_(), nullptr, nullptr};
  vt::cuda::dispatch(vt::kFloatingTypes, ts[0]->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_one<4, kAdamWWrites, T>(c, ts, adamw_fn<T>(h));
  });
}

VT_COMPUTE(adamw_multi_cuda, "core::adamw_multi") {
  vt_tensor_list lists[4];
  for (int k = 0; k < 4; ++k) lists[k] = c.args[k].v.ts;  // Tensor[] (the meta step checked them)
  vt_tensor* lr_t = c.arg(10, "lr_t").tensor_or_null();
  vt_tensor* step_t = c.arg(11, "step_t").tensor_or_null();
  const AdamWHyper h{c.arg(4, "lr").float_(),           c.arg(5, "beta1").float_(),
                     c.arg(6, "beta2").float_(),        c.arg(7, "eps").float_(),
                     c.arg(8, "weight_decay").float_(), (double)c.arg(9, "step").int_(),
                     lr_t ? vt::data<const float>(lr_t) : nullptr,
                     step_t ? vt::data<const float>(step_t) : nullptr};
  if (step_t) vt::cuda::launch(c, "increment", increment, 1, 1, 0, vt::data<float>(step_t));
  const int64_t n = lists[0].len;
  // contiguous entries by dtype, for the multi-tensor kernel; the rest one by one
  std::vector<const vt_tensor*> by_type[4];
  for (int64_t i = 0; i < n; ++i) {
    const vt_tensor* ts[4] = {lists[0].data[i], lists[1].data[i], lists[2].data[i], lists[3].data[i]};
    bool contig = true;
    for (const vt_tensor* t : ts) contig = contig && vt::is_contiguous(t);
    const int slot = list_group(ts[0]->dtype);
    if (contig && slot >= 0) {
      by_type[slot].insert(by_type[slot].end(), ts, ts + 4);
      continue;
    }
    vt::cuda::dispatch(vt::kFloatingTypes, ts[0]->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch_strided<4, kAdamWWrites, T>(c, ts, adamw_fn<T>(h));
    });
  }
  for (int k = 0; k < 4; ++k) {
    if (by_type[k].empty()) continue;
    vt::cuda::dispatch(vt::kFloatingTypes, vt::to_dtype(kListTypes[k]), c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch_multi<4, kAdamWWrites, T>(c, by_type[k], adamw_fn<T>(h));
    });
  }
}

VT_COMPUTE(sgd__cuda, "core::sgd_") {
  const vt_tensor* param = c.arg(0, "param").tensor();
  const vt_tensor* grad = c.arg(1, "grad").tensor();
  const vt_tensor* buf = c.arg(2, "momentum_buffer").tensor_or_null();
  const double lr = c.arg(3, "lr").float_(), momentum = c.arg(4, "momentum").float_();
  const double damp = c.arg(5, "dampening").float_(), wd = c.arg(6, "weight_decay").float_();
  const bool nesterov = c.arg(7, "nesterov").bool_();
  vt::cuda::dispatch(vt::kFloatingTypes, param->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::cuda::acc_t<T>;
    const SGDFn<T> f{(A)lr, (A)momentum, (A)(1.0 - damp), (A)wd, wd != 0.0, nesterov};
    if (momentum != 0.0) {
      const vt_tensor* ts[3] = {param, grad, buf};
      launch_one<3, 0b101, T>(c, ts, f);
    } else {
      const vt_tensor* ts[2] = {param, grad};
      launch_one<2, 0b01, T>(c, ts, f);
    }
  });
}

VT_COMPUTE(clip_grad_norm_cuda, "core::clip_grad_norm") {
  const vt_tensor_list grads = c.args[0].v.ts;  // the meta step checked it
  const float max_norm = (float)c.arg(1, "max_norm").float_();
  const bool inf = std::isinf(c.arg(2, "norm_type").float_());
  // contiguous gradients by dtype (the multi-tensor kernels), the rest one by one (strided)
  std::vector<const vt_tensor*> by_type[4], strided;
  for (int64_t i = 0; i < grads.len; ++i) {
    const vt_tensor* g = grads.data[i];
    if (g->numel == 0) continue;
    const int slot = list_group(g->dtype);
    if (slot >= 0 && vt::is_contiguous(g)) by_type[slot].push_back(g);
    else strided.push_back(g);
  }
  // the factor, then one partial per block: at most kMaxGrid blocks a launch (and a zero partial
  // when every gradient is empty)
  int64_t launches = (int64_t)strided.size();
  for (const auto& l : by_type) launches += (int64_t)((l.size() + kMaxTensors - 1) / kMaxTensors);
  const int64_t ws_sizes[1] = {2 + launches * kMaxGrid};
  vt::Tensor ws = c.empty(ws_sizes, 1, vt::kFloat32);
  float* coef = vt::data<float>(ws.get());
  float* partials = coef + 1;
  int32_t at = 0;
  for (int k = 0; k < 4; ++k) {
    vt::cuda::dispatch(vt::kFloatingTypes, vt::to_dtype(kListTypes[k]), c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      for_each_list<1>(by_type[k], [&](const TensorList<1>& L, int32_t grid) {
        vt::cuda::launch(c, "norm_partials_multi", inf ? norm_partials_multi<T, true> : norm_partials_multi<T, false>,
                         dim3(grid), kBlock, 0, L, partials + at);
        at += grid;
      });
    });
  }
  for (const vt_tensor* t : strided) {
    const int32_t grid = (int32_t)std::min<int64_t>(vt::cuda::grid_for(t->numel, kBlock), kMaxGrid);
    vt::cuda::dispatch(vt::kFloatingTypes, t->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const vt_tensor* ts[1] = {t};
      vt::cuda::launch(c, "norm_partials_strided", inf ? norm_partials_strided<T, true> : norm_partials_strided<T, false>,
                       dim3(grid), kBlock, 0, vt::loop_over<1>(c.op, ts), partials + at);
    });
    at += grid;
  }
  if (at == 0) {
    vt::cuda::check(c, cudaMemsetAsync(partials, 0, sizeof(float), vt::cuda::stream(c)), "cudaMemsetAsync");
    at = 1;
  }
  vt::cuda::launch(c, "norm_finish", inf ? norm_finish<true> : norm_finish<false>, 1, kBlock, 0,
                   (const float*)partials, at, max_norm, vt::data<float>(c.out(0)), coef);
  for (int k = 0; k < 4; ++k) {
    if (by_type[k].empty()) continue;
    vt::cuda::dispatch(vt::kFloatingTypes, vt::to_dtype(kListTypes[k]), c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch_multi<1, 0b1, T>(c, by_type[k], ClipScaleFn<T>{coef, {}});
    });
  }
  for (const vt_tensor* t : strided) {
    vt::cuda::dispatch(vt::kFloatingTypes, t->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const vt_tensor* ts[1] = {t};
      launch_strided<1, 0b1, T>(c, ts, ClipScaleFn<T>{coef, {}});
    });
  }
}

void register_optim_cuda(vt::Registrar& r) {
  r.compute("core::adamw_", VT_CUDA, adamw__cuda);
  r.compute("core::adamw_multi", VT_CUDA, adamw_multi_cuda);
  r.compute("core::sgd_", VT_CUDA, sgd__cuda);
  r.compute("core::clip_grad_norm", VT_CUDA, clip_grad_norm_cuda);
}
