// ops/core/cuda/copy.cu — the CUDA compute of contiguous, copy_ and to_dtype (on one CUDA device).
//
// The meta steps (src/copy.cpp, src/pointwise.cpp) check the arguments and make the output (self
// for copy_).
// Same dtype: one cudaMemcpyAsync when both sides are contiguous with one shape, else a strided
// move of raw 1/2/4/8-byte elements (every dtype shares four kernel pairs; src broadcasts). When the
// fastest dim is contiguous on both sides (transposes of (B, T, H, D) and the like), the move is of
// words of up to 16 bytes: one index computation per word instead of per element.
// Different dtypes: float32 <-> bfloat16/float16 (autocast's casts, every step) have typed kernels of
// their own, vectorised between contiguous tensors of one shape; any other pair goes through one kernel
// that converts between any two of the nine dtypes, chosen per call by runtime codes (no per-pair
// instantiation). Both round as the cpu does: through float for the 16-bit floats, "!= 0" for
// bool, integers exact.
#include "vt/cuda/elementwise.cuh"

namespace {

struct Identity {
  template <class U> __device__ __forceinline__ U operator()(U v) const { return v; }
};

// a value on its way between dtypes: integers and bools stay integers
struct Val {
  double f;
  int64_t i;
  bool is_int;
};

using ST = vt::ScalarType;

__device__ __forceinline__ Val load(const char* p, ST t) {
  switch (t) {
    case ST::Bool: return {0, *reinterpret_cast<const bool*>(p) ? 1 : 0, true};
    case ST::UInt8: return {0, *reinterpret_cast<const uint8_t*>(p), true};
    case ST::Int8: return {0, *reinterpret_cast<const int8_t*>(p), true};
    case ST::Int32: return {0, *reinterpret_cast<const int32_t*>(p), true};
    case ST::Int64: return {0, *reinterpret_cast<const int64_t*>(p), true};
    case ST::Float16: return {(double)__half2float(*reinterpret_cast<const __half*>(p)), 0, false};
    case ST::BFloat16: return {(double)__bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p)), 0, false};
    case ST::Float32: return {(double)*reinterpret_cast<const float*>(p), 0, false};
    default: return {*reinterpret_cast<const double*>(p), 0, false};
  }
}

// floats go to integers through int64, so narrow integer types wrap like the cpu's conversions
template <class I>
__device__ __forceinline__ I to_int(const Val& v) { return (I)(v.is_int ? v.i : (int64_t)v.f); }
__device__ __forceinline__ float to_float(const Val& v) { return v.is_int ? (float)v.i : (float)v.f; }

__device__ __forceinline__ void store(char* p, ST t, const Val& v) {
  switch (t) {
    case ST::Bool: *reinterpret_cast<bool*>(p) = v.is_int ? v.i != 0 : v.f != 0.0; break;
    case ST::UInt8: *reinterpret_cast<uint8_t*>(p) = to_int<uint8_t>(v); break;
    case ST::Int8: *reinterpret_cast<int8_t*>(p) = to_int<int8_t>(v); break;
    case ST::Int32: *reinterpret_cast<int32_t*>(p) = to_int<int32_t>(v); break;
    case ST::Int64: *reinterpret_cast<int64_t*>(p) = to_int<int64_t>(v); break;
    case ST::Float16: *reinterpret_cast<__half*>(p) = __float2half_rn(to_float(v)); break;
    case ST::BFloat16: *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(to_float(v)); break;
    case ST::Float32: *reinterpret_cast<float*>(p) = to_float(v); break;
    default: *reinterpret_cast<double*>(p) = v.is_int ? (double)v.i : v.f; break;
  }
}

__global__ void __launch_bounds__(vt::cuda::kThreads) convert_kernel(vt::StridedLoop<2> L, ST dst, ST src) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < L.numel; i += step) {
    char* p[2];
    vt::cuda::element_ptrs(L, i, p);
    store(p[0], dst, load(p[1], src));
  }
}

// float <-> the 16-bit floats, rounding to nearest even as store() does
struct Cast {
  __device__ __forceinline__ float operator()(__nv_bfloat16 v) const { return __bfloat162float(v); }
  __device__ __forceinline__ float operator()(__half v) const { return __half2float(v); }
};
struct CastToBf16 {
  __device__ __forceinline__ __nv_bfloat16 operator()(float v) const { return __float2bfloat16_rn(v); }
};
struct CastToHalf {
  __device__ __forceinline__ __half operator()(float v) const { return __float2half_rn(v); }
};

// float32 <-> bfloat16/float16 through typed kernels: vectorised when both are contiguous with one
// shape, else the typed strided kernel over the broadcast loop (still no per-element type switch).
// false: not one of these pairs.
template <class Out, class In, class F>
void cast(vt::Call& c, const vt_tensor* dst, const vt_tensor* src, F f) {
  if (vt::same_shape(dst, src) && vt::is_contiguous(dst) && vt::is_contiguous(src)) {
    vt::cuda::elementwise_contiguous<Out, In>(c, dst->numel, f, vt::data<Out>(dst), vt::data<const In>(src));
    return;
  }
  const vt_tensor* ops[2] = {dst, src};
  vt::cuda::elementwise_strided<Out, In>(c, vt::loop_over<2>(c.op, ops), f);
}

bool fast_convert(vt::Call& c, const vt_tensor* dst, const vt_tensor* src) {
  const ST d = vt::scalar_type(dst->dtype), s = vt::scalar_type(src->dtype);
  if (d == ST::Float32 && s == ST::BFloat16)
    cast<float, __nv_bfloat16>(c, dst, src, Cast{});
  else if (d == ST::Float32 && s == ST::Float16)
    cast<float, __half>(c, dst, src, Cast{});
  else if (d == ST::BFloat16 && s == ST::Float32)
    cast<__nv_bfloat16, float>(c, dst, src, CastToBf16{});
  else if (d == ST::Float16 && s == ST::Float32)
    cast<__half, float>(c, dst, src, CastToHalf{});
  else
    return false;
  return true;
}

// The widest word (<= 16 bytes, >= es) a same-dtype strided copy can move: dim 0 contiguous on both
// sides, its length and every other stride and both pointers multiples of the word. 0: none wider
// than an element.
int64_t copy_word(const vt::StridedLoop<2>& L, int64_t es) {
  if (L.ndim == 0 || L.strides[0][0] != es || L.strides[0][1] != es) return 0;
  for (int64_t w = 16; w > es; w /= 2) {
    bool ok = (L.sizes[0] * es) % w == 0 && ((uintptr_t)L.data[0] | (uintptr_t)L.data[1]) % w == 0;
    for (int d = 1; ok && d < L.ndim; ++d) ok = L.strides[d][0] % w == 0 && L.strides[d][1] % w == 0;
    if (ok) return w;
  }
  return 0;
}

// dst = src (broadcast to dst's shape), converting the dtype when it differs
void copy_into(vt::Call& c, const vt_tensor* dst, const vt_tensor* src) {
  if (dst->numel == 0 || dst == src) return;  // contiguous may hand back self
  int64_t es = vt::element_size(dst->dtype);
  const vt_tensor* ops[2] = {dst, src};
  if (!vt::same_dtype(dst->dtype, src->dtype)) {
    if (fast_convert(c, dst, src)) return;
    vt::dispatch(vt::kAllTypes, dst->dtype, c.op, [](auto) {});  // refuse unknown dtypes by name
    vt::dispatch(vt::kAllTypes, src->dtype, c.op, [](auto) {});
    vt::cuda::launch(c, "convert_kernel", convert_kernel, vt::cuda::grid_for(dst->numel), vt::cuda::kThreads, 0,
                     vt::loop_over<2>(c.op, ops), vt::scalar_type(dst->dtype), vt::scalar_type(src->dtype));
    return;
  }
  if (vt::same_shape(dst, src) && vt::is_contiguous(dst) && vt::is_contiguous(src)) {
    vt::cuda::check(c, cudaMemcpyAsync(dst->data, src->data, (size_t)(dst->numel * es), cudaMemcpyDeviceToDevice,
                                       vt::cuda::stream(c)),
                    "cudaMemcpyAsync");
    return;
  }
  vt::StridedLoop<2> L = vt::loop_over<2>(c.op, ops);
  if (const int64_t w = copy_word(L, es)) {  // dim 0 in words of w bytes
    L.sizes[0] = L.sizes[0] * es / w;
    L.numel = L.numel * es / w;
    L.strides[0][0] = L.strides[0][1] = w;
    es = w;
  }
  switch (es) {
    case 1: vt::cuda::elementwise_strided<uint8_t, uint8_t>(c, L, Identity{}); break;
    case 2: vt::cuda::elementwise_strided<uint16_t, uint16_t>(c, L, Identity{}); break;
    case 4: vt::cuda::elementwise_strided<uint32_t, uint32_t>(c, L, Identity{}); break;
    case 8: vt::cuda::elementwise_strided<uint64_t, uint64_t>(c, L, Identity{}); break;
    case 16: vt::cuda::elementwise_strided<uint4, uint4>(c, L, Identity{}); break;
    default: c.fail(VT_ERR_NOT_IMPL, "no copy for elements of %lld bytes", (long long)es);
  }
}

}  // namespace

VT_COMPUTE(contiguous_cuda, "core::contiguous") { copy_into(c, c.out(0), c.arg(0, "self").tensor()); }
VT_COMPUTE(copy__cuda, "core::copy_") { copy_into(c, c.out(0), c.arg(1, "src").tensor()); }
VT_COMPUTE(to_dtype_cuda, "core::to_dtype") { copy_into(c, c.out(0), c.arg(0, "self").tensor()); }
