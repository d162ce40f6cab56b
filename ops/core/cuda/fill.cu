// ops/core/cuda/fill.cu — the CUDA compute of fill_, zeros, ones and full, any dtype.
//
// The meta steps (src/factory.cpp) check the arguments and make the output (self for fill_).
// The value is converted to the tensor's dtype on the host (vt::convert, the same rounding as on
// cpu) and the device only stores that bit pattern as a 1/2/4/8-byte integer, so every dtype
// shares four kernel pairs; all-zero bits into contiguous memory are one cudaMemsetAsync.
#include <cstring>

#include "vt/cuda/elementwise.cuh"

namespace {

template <class U>
struct Bits {
  U bits;
  __device__ __forceinline__ U operator()() const { return bits; }
};

// The bit pattern of `value` (a float, int or bool argument) in dtype d, in the low bytes.
uint64_t pattern_of(const vt::Call& c, vt_dtype d, const vt_value& value) {
  uint64_t pattern = 0;
  vt::dispatch(vt::kAllTypes, d, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // an int value into an integer tensor stays exact beyond 2^53
    const T v = (value.tag == VT_INT && std::is_integral<T>::value) ? vt::convert<T>(value.v.i)
                : value.tag == VT_BOOL ? vt::convert<T>((double)(value.v.b != 0))
                : value.tag == VT_INT  ? vt::convert<T>((double)value.v.i)
                                       : vt::convert<T>(value.v.f);
    std::memcpy(&pattern, &v, sizeof(T));  // little-endian: the low bytes hold the value
  });
  return pattern;
}

void fill(vt::Call& c, const vt_tensor* t, const vt_value& value) {
  if (t->numel == 0) return;
  const uint64_t pattern = pattern_of(c, t->dtype, value);
  const int64_t es = vt::element_size(t->dtype);
  if (pattern == 0 && vt::is_contiguous(t)) {
    vt::cuda::check(c, cudaMemsetAsync(t->data, 0, (size_t)(t->numel * es), vt::cuda::stream(c)), "cudaMemsetAsync");
    return;
  }
  auto run = [&](auto bits) {
    using U = decltype(bits);
    std::memcpy(&bits, &pattern, sizeof(U));
    vt::cuda::elementwise<U>(c, Bits<U>{bits}, t);
  };
  switch (es) {
    case 1: run(uint8_t()); break;
    case 2: run(uint16_t()); break;
    case 4: run(uint32_t()); break;
    default: run(uint64_t()); break;
  }
}

vt_value float_value(double v) {
  vt_value x{};
  x.tag = VT_FLOAT;
  x.v.f = v;
  return x;
}

}  // namespace

VT_COMPUTE(fill__cuda, "core::fill_") { fill(c, c.out(0), c.arg(1, "value").scalar()); }
VT_COMPUTE(zeros_cuda, "core::zeros") { fill(c, c.out(0), float_value(0.0)); }
VT_COMPUTE(ones_cuda, "core::ones") { fill(c, c.out(0), float_value(1.0)); }
VT_COMPUTE(full_cuda, "core::full") { fill(c, c.out(0), c.arg(1, "fill_value").scalar()); }
