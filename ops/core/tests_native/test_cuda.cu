// ops/core/tests_native/test_cuda.cu — runs the core pack's CUDA kernels (cuda/*.cu) through the
// fake host with cudaMalloc'd tensors and checks them against host-computed values: contiguous,
// broadcast, transposed and expanded inputs, 0-size, dtypes, fill/zeros/ones/full, contiguous,
// and an error path. Needs a GPU. Built and run by build_and_run_cuda.sh (no OpenBLAS needed: the
// CPU sources are not linked; the kernels are registered by core_register_cuda directly).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "fake_host.h"
#include "vt/oppack.hpp"

void core_register_cuda(vt::Registrar& r);

static vt_host H = fake::make_host();
static cudaStream_t g_stream;
static int g_fail = 0, g_checks = 0;
#define CHECK(cond, ...)                                                                          \
  do {                                                                                            \
    ++g_checks;                                                                                   \
    if (!(cond)) { ++g_fail; std::printf("FAIL line %d: %s: ", __LINE__, #cond); std::printf(__VA_ARGS__); std::printf("\n"); } \
  } while (0)

static const vt_device CUDA0{VT_CUDA, 0};
static vt_value Tv(vt_tensor* t) { vt_value v{}; v.tag = VT_TENSOR; v.v.t = t; return v; }
static vt_value Fv(double f) { vt_value v{}; v.tag = VT_FLOAT; v.v.f = f; return v; }
static vt_value Nv() { vt_value v{}; v.tag = VT_NONE; return v; }
static vt_value Dv(vt_dtype d) { vt_value v{}; v.tag = VT_DTYPE; v.v.dtype = d; return v; }
static vt_value Lv(const std::vector<int64_t>& l) { vt_value v{}; v.tag = VT_INTS; v.v.ints = {l.data(), (int64_t)l.size()}; return v; }

// a contiguous device tensor holding vals (converted to dtype T on the host)
template <class T>
static vt_tensor* dev(const std::vector<int64_t>& shape, const std::vector<double>& vals) {
  vt_tensor* t = H.empty(shape.data(), (int32_t)shape.size(), vt::dtype_of<T>(), CUDA0);
  std::vector<T> h((size_t)t->numel);
  for (size_t i = 0; i < h.size(); ++i) h[i] = vt::convert<T>(vals[i % vals.size()]);
  cudaMemcpy(t->data, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return t;
}
// logical values of any device tensor (strided), as doubles
template <class T>
static std::vector<double> host_vals(const vt_tensor* t) {
  int64_t span = 1;
  for (int d = 0; d < t->ndim; ++d) span += (t->sizes[d] - 1) * t->strides[d];
  std::vector<T> h((size_t)std::max<int64_t>(span, 1));
  cudaStreamSynchronize(g_stream);
  cudaMemcpy(h.data(), t->data, h.size() * sizeof(T), cudaMemcpyDeviceToHost);
  std::vector<double> out;
  for (int64_t i = 0; i < t->numel; ++i) {
    int64_t rem = i, off = 0;
    for (int d = t->ndim - 1; d >= 0; --d) { off += (rem % t->sizes[d]) * t->strides[d]; rem /= t->sizes[d]; }
    out.push_back(vt::convert<double>(h[(size_t)off]));
  }
  return out;
}
static vt_kernel_fn kernel(const char* op) {
  for (auto& k : fake::g_kernels) if (k.op == op && k.device == VT_CUDA) return k.fn;
  std::printf("no CUDA kernel %s\n", op);
  std::exit(2);
}
static vt_tensor* run(const char* op, std::vector<vt_value> args, vt_status want = VT_OK) {
  vt_kernel_ctx ctx{&H, CUDA0, g_stream, nullptr};
  vt_value out = Nv();
  fake::g_error.clear();
  const vt_status st = kernel(op)(&ctx, args.data(), (int32_t)args.size(), &out, 1);
  CHECK(st == want, "%s: status %d want %d: %s", op, st, want, fake::g_error.c_str());
  return st == VT_OK ? out.v.t : nullptr;
}
template <class T>
static void expect(vt_tensor* t, const std::vector<int64_t>& shape, const std::vector<double>& want, const char* what) {
  CHECK(std::vector<int64_t>(t->sizes, t->sizes + t->ndim) == shape, "%s: shape %s", what, vt::shape_str(t).c_str());
  auto got = host_vals<T>(t);
  CHECK(got.size() == want.size(), "%s: %zu values", what, got.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (std::fabs(got[i] - want[i]) > 1e-6 * (1 + std::fabs(want[i]))) {
      CHECK(false, "%s: [%zu] got %.9g want %.9g", what, i, got[i], want[i]);
      break;
    }
}

int main() {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) { std::printf("no CUDA device\n"); return 2; }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  fake::g_dev_alloc = [](size_t n) { void* p = nullptr; cudaMalloc(&p, n); return p; };
  fake::g_dev_free = [](void* p) { cudaFree(p); };
  cudaStreamCreate(&g_stream);
  {
    vt::Registrar r(&H, nullptr, "core", 0);
    core_register_cuda(r);
  }
  CHECK(fake::g_kernels.size() == 9, "%zu CUDA kernels", fake::g_kernels.size());

  // add: contiguous same shape, float32, alpha
  vt_tensor* a = dev<float>({4}, {1, 2, 3, 4});
  vt_tensor* b = dev<float>({4}, {10, 20, 30, 40});
  vt_tensor* o = run("core::add", {Tv(a), Tv(b), Fv(1.0)});
  expect<float>(o, {4}, {11, 22, 33, 44}, "add f32");
  H.release(o);
  o = run("core::add", {Tv(a), Tv(b), Fv(0.5)});
  expect<float>(o, {4}, {6, 12, 18, 24}, "add f32 alpha .5");
  H.release(o);
  // broadcast (2,3) + (3,), float64
  vt_tensor* m = dev<double>({2, 3}, {1, 2, 3, 4, 5, 6});
  vt_tensor* r3 = dev<double>({3}, {100, 200, 300});
  o = run("core::add", {Tv(m), Tv(r3), Fv(1.0)});
  expect<double>(o, {2, 3}, {101, 202, 303, 104, 205, 306}, "add f64 broadcast");
  H.release(o);
  // transposed (3,2) view + expanded column (3,1)->(3,2) via 0 stride
  const int64_t ts[2] = {3, 2}, tst[2] = {1, 3};
  vt_tensor* mt = H.as_strided(m, ts, tst, 2, 0);
  const int64_t es[2] = {3, 2}, est[2] = {1, 0};
  vt_tensor* ex = H.as_strided(r3, es, est, 2, 0);
  o = run("core::sub", {Tv(mt), Tv(ex), Fv(1.0)});
  expect<double>(o, {3, 2}, {1 - 100, 4 - 100, 2 - 200, 5 - 200, 3 - 300, 6 - 300}, "sub transposed - expanded");
  H.release(o);
  // a large strided case: (1000, 1) + (1, 777)
  std::vector<double> va(1000), vb(777), want;
  for (int i = 0; i < 1000; ++i) va[(size_t)i] = i;
  for (int j = 0; j < 777; ++j) vb[(size_t)j] = 0.5 * j;
  for (int i = 0; i < 1000; ++i) for (int j = 0; j < 777; ++j) want.push_back(i * 0.5 * j);
  vt_tensor* ca = dev<float>({1000, 1}, va);
  vt_tensor* cb = dev<float>({1, 777}, vb);
  o = run("core::mul", {Tv(ca), Tv(cb)});
  expect<float>(o, {1000, 777}, want, "mul outer product");
  H.release(o);
  // int64: alpha, wrap, true division -> float32
  vt_tensor* i1 = dev<int64_t>({3}, {7, 8, 9});
  vt_tensor* i2 = dev<int64_t>({3}, {2, 4, 5});
  o = run("core::add", {Tv(i1), Tv(i2), Fv(3.0)});
  expect<int64_t>(o, {3}, {13, 20, 24}, "add i64 alpha 3");
  H.release(o);
  o = run("core::div", {Tv(i1), Tv(i2)});
  CHECK(vt::same_dtype(o->dtype, vt::kFloat32), "int div dtype");
  expect<float>(o, {3}, {3.5, 2, 1.8}, "div i64 -> f32");
  H.release(o);
  run("core::add", {Tv(i1), Tv(i2), Fv(0.5)}, VT_ERR_TYPE);
  // 0-size
  vt_tensor* z = dev<float>({0, 3}, {0});
  vt_tensor* z3 = dev<float>({3}, {1});
  o = run("core::add", {Tv(z), Tv(z3), Fv(1.0)});
  expect<float>(o, {0, 3}, {}, "add 0-size");
  H.release(o);
  // errors
  run("core::add", {Tv(a), Tv(m), Fv(1.0)}, VT_ERR_TYPE);
  CHECK(fake::g_error == "[core::add] dtype mismatch: self is float32, other is float64", "message: %s", fake::g_error.c_str());
  vt_tensor* c5 = dev<float>({5}, {1});
  run("core::add", {Tv(a), Tv(c5), Fv(1.0)}, VT_ERR_VALUE);
  CHECK(fake::g_error.find("shapes cannot be broadcast: self (4,) and other (5,)") != std::string::npos, "%s", fake::g_error.c_str());

  // fill_, zeros, ones, full, contiguous
  o = run("core::fill_", {Tv(mt), Fv(-1.5)});
  CHECK(o == mt, "fill_ returns self");
  expect<double>(m, {2, 3}, {-1.5, -1.5, -1.5, -1.5, -1.5, -1.5}, "fill_ through a transposed view");
  H.release(o);
  const int64_t hs[1] = {3}, hst[1] = {2};
  vt_tensor* m2 = dev<float>({6}, {0, 0, 0, 0, 0, 0});
  vt_tensor* every2 = H.as_strided(m2, hs, hst, 1, 1);
  o = run("core::fill_", {Tv(every2), Fv(9)});
  expect<float>(m2, {6}, {0, 9, 0, 9, 0, 9}, "fill_ strided");
  H.release(o);
  o = run("core::zeros", {Lv({2, 2}), Nv(), Nv()});
  expect<float>(o, {2, 2}, {0, 0, 0, 0}, "zeros");
  H.release(o);
  o = run("core::ones", {Lv({3}), Dv(vt::kInt64), Nv()});
  expect<int64_t>(o, {3}, {1, 1, 1}, "ones int64");
  H.release(o);
  o = run("core::full", {Lv({2}), Fv(0.1), Dv(vt::kFloat16), Nv()});
  auto hv = host_vals<vt::half>(o);
  CHECK(hv.size() == 2 && hv[0] == (double)(float)vt::half(0.1f), "full f16 %g", hv.empty() ? 0 : hv[0]);
  H.release(o);
  vt_tensor* src = dev<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  vt_tensor* srct = H.as_strided(src, ts, tst, 2, 0);
  o = run("core::contiguous", {Tv(srct)});
  CHECK(o->strides[0] == 2 && o->strides[1] == 1, "contiguous strides");
  expect<float>(o, {3, 2}, {1, 4, 2, 5, 3, 6}, "contiguous of transpose");
  H.release(o);
  o = run("core::contiguous", {Tv(src)});
  expect<float>(o, {2, 3}, {1, 2, 3, 4, 5, 6}, "contiguous of contiguous (memcpy)");
  H.release(o);

  for (vt_tensor* t : {a, b, m, r3, mt, ex, ca, cb, i1, i2, z, z3, c5, m2, every2, src, srct}) H.release(t);
  CHECK(cudaStreamSynchronize(g_stream) == cudaSuccess, "stream sync");
  CHECK(cudaGetLastError() == cudaSuccess, "no CUDA error");
  CHECK(fake::g_live == 0, "%lld tensors leaked", (long long)fake::g_live);
  std::printf("%d checks, %d failures\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
