// ops/core/cuda/random.cu — the CUDA compute of normal, uniform, normal_, uniform_, randint and
// randperm.
//
// The meta steps (src/random.cpp) check the arguments and make the output (self for the in-place
// forms). The numbers follow the cpu's convention exactly (vt/philox.h: element i of a 32-bit
// result is word i % 4 of group offset + i / 4; float64 takes 2 per group), and each group's
// values come from the same functions as on cpu (vt/random_dist.h), so for one seed cuda draws
// the cpu's numbers: bit for bit for float32, float16, bfloat16 and every randint dtype; to an ulp
// or two for float64 normal (libm vs CUDA log/sin/cos). Both devices reserve the same number of
// groups per op, so their generators also stay in step.
//
// Graph-safe: the Philox state comes from host->philox_args and is unpacked on the device
// (vt_philox_unpack), so a captured op draws fresh numbers on each replay.
//
// randperm: a uniformly random permutation from 64-bit Philox keys (the cpu's groups, 2 keys per
// group) sorted with cub::DeviceRadixSort, indices carried as values. It is a valid, reproducible
// permutation of n, but NOT the cpu's (the cpu runs Fisher-Yates, which is serial).
#include <cub/device/device_radix_sort.cuh>

#include "vt/autograd.hpp"
#include "vt/cuda/elementwise.cuh"
#include "vt/random_dist.h"

namespace {

namespace ph = vt::philox;

enum class Dist { Normal, Uniform };

template <class T> __device__ __forceinline__ T from_float(float v) { return (T)v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// out (contiguous, n elements) gets group g's E values at g * E: one thread per group, a grid-stride
// loop; `vec`: out is aligned for one E-element store per group.
template <Dist D, class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    random_kernel(T* out, int64_t n, int64_t groups, vt_philox_args args, double a, double b, bool vec) {
  const vt_philox_seed_offset so = vt_philox_unpack(args);
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    const ph::Philox4x32 r = ph::philox_group(so.seed, so.offset + (uint64_t)g);
    if constexpr (std::is_same<T, double>::value) {
      vt::cuda::Vec<double, 2> v;
      if constexpr (D == Dist::Uniform) ph::uniform2(r, a, b, v.v);
      else ph::normal2(r, a, b, v.v);
      const int64_t i0 = g * 2;
      if (vec && i0 + 2 <= n) {
        *reinterpret_cast<vt::cuda::Vec<double, 2>*>(out + i0) = v;
      } else {
        for (int64_t j = 0; j < 2 && i0 + j < n; ++j) out[i0 + j] = v.v[j];
      }
    } else {
      float f[4];
      if constexpr (D == Dist::Uniform) ph::uniform4(r, (float)a, (float)b, f);
      else ph::normal4(r, (float)a, (float)b, f);
      vt::cuda::Vec<T, 4> v;
#pragma unroll
      for (int j = 0; j < 4; ++j) v.v[j] = from_float<T>(f[j]);
      const int64_t i0 = g * 4;
      if (vec && i0 + 4 <= n) {
        *reinterpret_cast<vt::cuda::Vec<T, 4>*>(out + i0) = v;
      } else {
        for (int64_t j = 0; j < 4 && i0 + j < n; ++j) out[i0 + j] = v.v[j];
      }
    }
  }
}

// Fills the contiguous `out`; reserves the groups it draws (as many as the cpu does).
template <Dist D>
void fill_random(vt::Call& c, const vt_tensor* out, double a, double b) {
  const int64_t n = out->numel;
  vt::cuda::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t E = std::is_same<T, double>::value ? 2 : 4;
    const int64_t groups = (n + E - 1) / E;
    if (groups == 0) return;
    vt_philox_args args;
    c.host->philox_args(c.ctx->device, (uint64_t)groups, &args);
    T* o = vt::data<T>(out);
    const bool vec = ((uintptr_t)o % (E * sizeof(T))) == 0;
    vt::cuda::launch(c, "random_kernel", random_kernel<D, T>, vt::cuda::grid_for(groups), vt::cuda::kThreads, 0, o,
                     n, groups, args, a, b, vec);
  });
}

// normal, uniform and their in-place forms: a strided self gets the numbers a contiguous tensor
// of its shape would get (filled into a temporary, then copied), as on cpu.
template <Dist D>
void random_cuda(vt::Call& c) {
  const vt_tensor* out = c.out(0);
  const double a = c.arg(1, D == Dist::Normal ? "mean" : "low").float_();
  const double b = c.arg(2, D == Dist::Normal ? "std" : "high").float_();
  if (vt::is_contiguous(out)) {
    fill_random<D>(c, out, a, b);
  } else {
    vt::Tensor tmp = c.empty_like(out);
    fill_random<D>(c, tmp, a, b);
    vt::Tensor r = vt::call(c.host, "core::copy_", {c.out(0), tmp.get()});
  }
}

// ---- randint ---------------------------------------------------------------------------------------
template <class T> __device__ __forceinline__ T from_int64(int64_t v) {
  if constexpr (std::is_same<T, __half>::value) return __float2half_rn((float)v);
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn((float)v);
  else return (T)v;
}

// element i = low + bounded(draw i): 4 draws of 32 bits per group, or 2 of 64 when `wide`
template <class T>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    randint_kernel(T* out, int64_t n, int64_t groups, vt_philox_args args, int64_t low, uint64_t range, bool wide) {
  const vt_philox_seed_offset so = vt_philox_unpack(args);
  const int E = wide ? 2 : 4;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step) {
    const ph::Philox4x32 r = ph::philox_group(so.seed, so.offset + (uint64_t)g);
    const int64_t i0 = g * E;
    for (int j = 0; j < E && i0 + j < n; ++j) {
      const uint64_t u = wide ? ph::bounded64(r.x[2 * j], r.x[2 * j + 1], range) : ph::bounded32(r.x[j], range);
      out[i0 + j] = from_int64<T>((int64_t)((uint64_t)low + u));
    }
  }
}

// ---- randperm --------------------------------------------------------------------------------------
// key i: the 64 bits of words (2 (i % 2), 2 (i % 2) + 1) of group i / 2; value i: i
__global__ void __launch_bounds__(vt::cuda::kThreads)
    randperm_keys(uint64_t* keys, int64_t* vals, int64_t n, vt_philox_args args) {
  const vt_philox_seed_offset so = vt_philox_unpack(args);
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    const ph::Philox4x32 r = ph::philox_group(so.seed, so.offset + (uint64_t)(i / 2));
    const int w = (int)(i & 1) * 2;
    keys[i] = ((uint64_t)r.x[w + 1] << 32) | r.x[w];
    vals[i] = i;
  }
}

template <class T>
struct FromIndex {
  __device__ __forceinline__ T operator()(int64_t i) const { return (T)i; }
};

}  // namespace

VT_COMPUTE(normal_cuda, "core::normal") { random_cuda<Dist::Normal>(c); }
VT_COMPUTE(uniform_cuda, "core::uniform") { random_cuda<Dist::Uniform>(c); }

VT_COMPUTE(randint_cuda, "core::randint") {
  const int64_t low = c.arg(0, "low").int_();
  const int64_t high = c.arg(1, "high").int_();
  const vt_tensor* out = c.out(0);
  const uint64_t range = (uint64_t)high - (uint64_t)low;
  const bool wide = range > (1ull << 32);
  const int64_t E = wide ? 2 : 4, n = out->numel;
  const int64_t groups = (n + E - 1) / E;
  if (groups == 0) return;
  // the dtype check comes before the reservation, so a refused dtype leaves the generator alone
  vt::cuda::dispatch(vt::kNumberTypes, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt_philox_args args;
    c.host->philox_args(c.ctx->device, (uint64_t)groups, &args);
    vt::cuda::launch(c, "randint_kernel", randint_kernel<T>, vt::cuda::grid_for(groups), vt::cuda::kThreads, 0,
                     vt::data<T>(out), n, groups, args, low, range, wide);
  });
}

VT_COMPUTE(randperm_cuda, "core::randperm") {
  const vt_tensor* out = c.out(0);
  const int64_t n = out->numel;
  if (n == 0) return;
  vt::cuda::dispatch(vt::types<int64_t, int32_t, float, double>{}, out->dtype, c.op, [](auto) {});
  if (n > (int64_t)INT32_MAX)  // cub's sorts take an int count
    c.fail(VT_ERR_NOT_IMPL, "n = %lld is too large for the CUDA randperm (at most 2^31 - 1)", (long long)n);
  vt_philox_args args;
  c.host->philox_args(c.ctx->device, (uint64_t)((n + 1) / 2), &args);
  const bool direct = vt::scalar_type(out->dtype) == vt::ScalarType::Int64;
  vt::Tensor keys_in = c.empty(&n, 1, vt::kInt64), keys_out = c.empty(&n, 1, vt::kInt64);
  vt::Tensor vals_in = c.empty(&n, 1, vt::kInt64);
  vt::Tensor vals_tmp;
  if (!direct) vals_tmp = c.empty(&n, 1, vt::kInt64);
  int64_t* vals_out = direct ? vt::data<int64_t>(out) : vt::data<int64_t>(vals_tmp);
  vt::cuda::launch(c, "randperm_keys", randperm_keys, vt::cuda::grid_for(n), vt::cuda::kThreads, 0,
                   vt::data<uint64_t>(keys_in), vt::data<int64_t>(vals_in), n, args);
  size_t temp_bytes = 0;
  vt::cuda::check(c,
                  cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, vt::data<uint64_t>(keys_in),
                                                  vt::data<uint64_t>(keys_out), vt::data<int64_t>(vals_in), vals_out,
                                                  (int)n, 0, 64, vt::cuda::stream(c)),
                  "cub::DeviceRadixSort (size query)");
  const int64_t tb = temp_bytes > 16 ? (int64_t)temp_bytes : 16;  // never null: null asks for the size
  vt::Tensor temp = c.empty(&tb, 1, vt::kUInt8);
  vt::cuda::check(c,
                  cub::DeviceRadixSort::SortPairs(temp->data, temp_bytes, vt::data<uint64_t>(keys_in),
                                                  vt::data<uint64_t>(keys_out), vt::data<int64_t>(vals_in), vals_out,
                                                  (int)n, 0, 64, vt::cuda::stream(c)),
                  "cub::DeviceRadixSort");
  if (direct) return;
  vt::cuda::dispatch(vt::types<int32_t, float, double>{}, out->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise_contiguous<T, int64_t>(c, n, FromIndex<T>{}, vt::data<T>(out),
                                                 (const int64_t*)vals_out);
  });
}

void register_random_cuda(vt::Registrar& r) {
  r.compute("core::normal", VT_CUDA, normal_cuda);
  r.compute("core::uniform", VT_CUDA, uniform_cuda);
  r.compute("core::normal_", VT_CUDA, normal_cuda);
  r.compute("core::uniform_", VT_CUDA, uniform_cuda);
  r.compute("core::randint", VT_CUDA, randint_cuda);
  r.compute("core::randperm", VT_CUDA, randperm_cuda);
}
