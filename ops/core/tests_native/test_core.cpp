// ops/core/tests_native/test_core.cpp — calls the core pack's CPU kernels directly through a fake
// host (fake_host.h) and checks them against naive double-precision references: broadcasting,
// strided / transposed / expanded inputs, 0-size, dtypes, error statuses and messages, RNG
// determinism across thread counts, and the per-call cost of a 4-element add.
//
// Not built by CMake (the pytest suite is the real test tier once the runtime loads packs):
//   ops/core/tests_native/build_and_run.sh
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <stdexcept>

#include "vt/philox.h"
#include "fake_host.h"
#include "vt/half.hpp"
#include "vt/oppack.hpp"

extern "C" vt_status vt_oppack_init(const vt_host* host, vt_pack* pack);
extern "C" uint32_t vt_oppack_abi_version(void);

static vt_host H = fake::make_host();
static int g_fail = 0, g_checks = 0;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    ++g_checks;                                                       \
    if (!(cond)) {                                                    \
      ++g_fail;                                                       \
      std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      std::printf(__VA_ARGS__);                                       \
      std::printf("\n");                                              \
    }                                                                 \
  } while (0)

// ---- values ---------------------------------------------------------------------------------------
static const vt_dtype F32{VT_DL_FLOAT, 32, 1}, F64{VT_DL_FLOAT, 64, 1}, I64{VT_DL_INT, 64, 1}, I32{VT_DL_INT, 32, 1},
    F16{VT_DL_FLOAT, 16, 1}, BF16{VT_DL_BFLOAT, 16, 1}, BOOL{VT_DL_BOOL, 8, 1}, U8{VT_DL_UINT, 8, 1};
static vt_value Tv(vt_tensor* t) { vt_value v{}; v.tag = VT_TENSOR; v.v.t = t; return v; }
static vt_value Iv(int64_t i) { vt_value v{}; v.tag = VT_INT; v.v.i = i; return v; }
static vt_value Fv(double f) { vt_value v{}; v.tag = VT_FLOAT; v.v.f = f; return v; }
static vt_value Bv(bool b) { vt_value v{}; v.tag = VT_BOOL; v.v.b = b; return v; }
static vt_value Nv() { vt_value v{}; v.tag = VT_NONE; return v; }
static vt_value Dv(vt_dtype d) { vt_value v{}; v.tag = VT_DTYPE; v.v.dtype = d; return v; }
static vt_value Lv(const std::vector<int64_t>& l) { vt_value v{}; v.tag = VT_INTS; v.v.ints = {l.data(), (int64_t)l.size()}; return v; }

// ---- tensors --------------------------------------------------------------------------------------
static int64_t offset_of(const vt_tensor* t, int64_t i) {  // logical row-major index -> element offset
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; --d) {
    off += (i % t->sizes[d]) * t->strides[d];
    i /= t->sizes[d];
  }
  return off;
}
static double get(const vt_tensor* t, int64_t i) {
  const int64_t o = offset_of(t, i);
  const char* p = (const char*)t->data;
  switch (t->dtype.code * 100 + t->dtype.bits) {
    case VT_DL_FLOAT * 100 + 32: return ((const float*)p)[o];
    case VT_DL_FLOAT * 100 + 64: return ((const double*)p)[o];
    case VT_DL_FLOAT * 100 + 16: return vt::half_bits_to_float(((const uint16_t*)p)[o]);
    case VT_DL_BFLOAT * 100 + 16: return vt::bfloat16_bits_to_float(((const uint16_t*)p)[o]);
    case VT_DL_INT * 100 + 64: return (double)((const int64_t*)p)[o];
    case VT_DL_INT * 100 + 32: return ((const int32_t*)p)[o];
    case VT_DL_INT * 100 + 8: return ((const int8_t*)p)[o];
    case VT_DL_UINT * 100 + 8: return ((const uint8_t*)p)[o];
    case VT_DL_BOOL * 100 + 8: return ((const uint8_t*)p)[o];
  }
  return NAN;
}
static void set(vt_tensor* t, int64_t i, double v) {
  const int64_t o = offset_of(t, i);
  char* p = (char*)t->data;
  switch (t->dtype.code * 100 + t->dtype.bits) {
    case VT_DL_FLOAT * 100 + 32: ((float*)p)[o] = (float)v; break;
    case VT_DL_FLOAT * 100 + 64: ((double*)p)[o] = v; break;
    case VT_DL_FLOAT * 100 + 16: ((uint16_t*)p)[o] = vt::float_to_half_bits((float)v); break;
    case VT_DL_BFLOAT * 100 + 16: ((uint16_t*)p)[o] = vt::float_to_bfloat16_bits((float)v); break;
    case VT_DL_INT * 100 + 64: ((int64_t*)p)[o] = (int64_t)v; break;
    case VT_DL_INT * 100 + 32: ((int32_t*)p)[o] = (int32_t)v; break;
    case VT_DL_INT * 100 + 8: ((int8_t*)p)[o] = (int8_t)v; break;
    case VT_DL_UINT * 100 + 8: ((uint8_t*)p)[o] = (uint8_t)v; break;
    case VT_DL_BOOL * 100 + 8: ((uint8_t*)p)[o] = v != 0; break;
  }
}
static vt_tensor* tens(const std::vector<int64_t>& shape, vt_dtype dt, const std::vector<double>& vals = {}) {
  vt_tensor* t = H.empty(shape.data(), (int32_t)shape.size(), dt, vt_device{VT_CPU, 0});
  for (int64_t i = 0; i < t->numel; ++i) set(t, i, vals.empty() ? 0.0 : vals[(size_t)(i % (int64_t)vals.size())]);
  return t;
}
static std::mt19937_64 rng(42);
static vt_tensor* randt(const std::vector<int64_t>& shape, vt_dtype dt) {
  vt_tensor* t = tens(shape, dt);
  std::uniform_int_distribution<int> d(-8, 8);
  for (int64_t i = 0; i < t->numel; ++i) set(t, i, d(rng) * (vt::is_floating(dt) ? 0.25 : 1.0));
  return t;
}
static vt_tensor* view(vt_tensor* base, const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides, int64_t off = 0) {
  return H.as_strided(base, sizes.data(), strides.data(), (int32_t)sizes.size(), off);
}
static std::vector<int64_t> shape(const vt_tensor* t) { return std::vector<int64_t>(t->sizes, t->sizes + t->ndim); }
static std::string sh(const vt_tensor* t) { return vt::shape_str(t); }

// ---- calling kernels ------------------------------------------------------------------------------
struct Result {
  vt_status st;
  vt_tensor* t;
};
static vt_kernel_fn kernel(const char* op) {
  for (auto& k : fake::g_kernels)
    if (k.op == op && k.device == VT_CPU) return k.fn;
  std::printf("no kernel %s\n", op);
  std::exit(2);
}
static Result run(const char* op, std::vector<vt_value> args) {
  vt_kernel_ctx ctx{&H, {VT_CPU, 0}, nullptr, nullptr};
  vt_value out = Nv();
  fake::g_status = VT_OK;
  fake::g_error.clear();
  const vt_status st = kernel(op)(&ctx, args.data(), (int32_t)args.size(), &out, 1);
  if (st == VT_OK && out.tag != VT_TENSOR) std::printf("FAIL %s returned OK without an output\n", op);
  return {st, st == VT_OK ? out.v.t : nullptr};
}
static void expect_err(const Result& r, vt_status st, const std::string& msg_part, const char* what) {
  CHECK(r.st == st, "%s: status %d, expected %d (message: %s)", what, r.st, st, fake::g_error.c_str());
  CHECK(fake::g_error.find(msg_part) != std::string::npos, "%s: message '%s' lacks '%s'", what, fake::g_error.c_str(),
        msg_part.c_str());
  CHECK(r.t == nullptr, "%s: output set on error", what);
}
// compares t (any dtype) to expected values on the given shape
static void expect(vt_tensor* t, const std::vector<int64_t>& shp, const std::vector<double>& want, double tol, const char* what) {
  CHECK(shape(t) == shp, "%s: shape %s", what, sh(t).c_str());
  if (shape(t) != shp) return;
  CHECK((int64_t)want.size() == t->numel, "%s: %lld values expected", what, (long long)want.size());
  for (int64_t i = 0; i < t->numel && i < (int64_t)want.size(); ++i) {
    const double g = get(t, i), w = want[(size_t)i];
    const bool ok = (std::isnan(w) && std::isnan(g)) || std::fabs(g - w) <= tol * (1 + std::fabs(w));
    CHECK(ok, "%s: [%lld] got %.9g want %.9g", what, (long long)i, g, w);
    if (!ok) break;
  }
}

// reference broadcast binary op in double
static std::vector<double> ref_binary(const vt_tensor* a, const vt_tensor* b, std::vector<int64_t>& out_shape,
                                      const std::function<double(double, double)>& f) {
  const int n = std::max(a->ndim, b->ndim);
  out_shape.assign(n, 1);
  for (int i = 0; i < n; ++i) {
    const int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
    const int64_t sa = ia >= 0 ? a->sizes[ia] : 1, sb = ib >= 0 ? b->sizes[ib] : 1;
    out_shape[i] = sa == 1 ? sb : sa;
  }
  int64_t N = 1;
  for (auto s : out_shape) N *= s;
  std::vector<double> r((size_t)N);
  for (int64_t i = 0; i < N; ++i) {
    int64_t rem = i, ia = 0, ib = 0, ma = 1, mb = 1;
    for (int d = n - 1; d >= 0; --d) {
      const int64_t idx = rem % out_shape[d];
      rem /= out_shape[d];
      const int da = d - (n - a->ndim), db = d - (n - b->ndim);
      if (da >= 0) { ia += (a->sizes[da] == 1 ? 0 : idx) * ma; ma *= a->sizes[da]; }
      if (db >= 0) { ib += (b->sizes[db] == 1 ? 0 : idx) * mb; mb *= b->sizes[db]; }
    }
    r[(size_t)i] = f(get(a, ia), get(b, ib));
  }
  return r;
}

// ================================================================================================
static void test_registration() {
  vt_pack* pack = (vt_pack*)&H;  // opaque to the pack
  CHECK(vt_oppack_abi_version() == ((1u << 16) | 0u), "abi");
  CHECK(vt_oppack_init(&H, pack) == VT_OK, "init: %s", fake::g_error.c_str());
  CHECK(fake::g_schemas.size() == 16, "%zu ops defined", fake::g_schemas.size());
  CHECK(fake::g_kernels.size() == 16, "%zu kernels", fake::g_kernels.size());
  for (auto& k : fake::g_kernels) CHECK(k.provider == "core" && k.priority == 0 && k.device == VT_CPU, "%s", k.op.c_str());
  CHECK(fake::g_kernels[0].op == "core::add", "first op name parsed: %s", fake::g_kernels[0].op.c_str());
}

static void test_binary() {
  const struct { const char* op; std::function<double(double, double)> f; } ops[] = {
      {"core::add", [](double x, double y) { return x + y; }},
      {"core::sub", [](double x, double y) { return x - y; }},
      {"core::mul", [](double x, double y) { return x * y; }},
      {"core::div", [](double x, double y) { return x / y; }},
  };
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{4}, {4}}, {{2, 3}, {3}}, {{2, 1}, {1, 3}}, {{}, {5}}, {{3, 1, 4}, {2, 1}}, {{0, 3}, {3}}, {{2, 0}, {1}},
      {{1}, {}}, {{5, 6, 7}, {5, 6, 7}}, {{300, 200}, {200}}, {{70000}, {70000}}, {{200, 1, 300}, {1, 7, 300}}};
  const vt_dtype dts[] = {F32, F64, I64, I32, F16, BF16};
  for (auto& op : ops)
    for (auto& s : shapes)
      for (vt_dtype dt : dts) {
        vt_tensor* a = randt(s.first, dt);
        vt_tensor* b = randt(s.second, dt);
        if (std::string(op.op) == "core::div")
          for (int64_t i = 0; i < b->numel; ++i) if (get(b, i) == 0) set(b, i, 1);
        std::vector<int64_t> os;
        auto want = ref_binary(a, b, os, op.f);
        std::vector<vt_value> args = {Tv(a), Tv(b)};
        if (op.op[6] == 'a' || op.op[6] == 's') args.push_back(Fv(1.0));
        Result r = run(op.op, args);
        char what[128];
        std::snprintf(what, sizeof what, "%s %s %s %s", op.op, sh(a).c_str(), sh(b).c_str(), vt::dtype_name(dt));
        CHECK(r.st == VT_OK, "%s: %s", what, fake::g_error.c_str());
        if (r.st != VT_OK) continue;
        const bool int_div = std::string(op.op) == "core::div" && !vt::is_floating(dt);
        CHECK(vt::same_dtype(r.t->dtype, int_div ? F32 : dt), "%s: out dtype %s", what, vt::dtype_name(r.t->dtype));
        const double tol = (dt.bits == 16) ? 1e-2 : (dt.bits == 32 && vt::is_floating(dt)) || int_div ? 1e-6 : 1e-12;
        expect(r.t, os, want, tol, what);
        H.release(r.t);
        H.release(a);
        H.release(b);
      }

  // strided: transposed, expanded (0-stride) and offset views
  vt_tensor* base = randt({4, 6}, F32);
  vt_tensor* tr = view(base, {6, 4}, {1, 6});          // base.T
  vt_tensor* ex = view(base, {6, 4}, {0, 1}, 6);       // row 1 expanded over 6 rows
  vt_tensor* sl = view(base, {3, 4}, {12, 2}, 1);      // base[::2, 1::... ] step views
  std::vector<int64_t> os;
  Result r = run("core::add", {Tv(tr), Tv(ex), Fv(2.0)});
  expect(r.t, {6, 4}, ref_binary(tr, ex, os, [](double x, double y) { return x + 2 * y; }), 1e-6, "add transposed+expanded alpha=2");
  H.release(r.t);
  r = run("core::mul", {Tv(sl), Tv(tr)});
  CHECK(r.st != VT_OK, "(3,4) * (6,4) must fail");
  vt_tensor* col = view(base, {4}, {6}, 0);  // column 0 of base, stride 6
  r = run("core::sub", {Tv(sl), Tv(col), Fv(1.0)});
  expect(r.t, {3, 4}, ref_binary(sl, col, os, [](double x, double y) { return x - y; }), 1e-6, "sub strided");
  H.release(r.t);
  H.release(col);

  // integer alpha, int overflow wraps
  vt_tensor* ia = tens({3}, I64, {1, 2, 3});
  vt_tensor* ib = tens({3}, I64, {10, 20, 30});
  r = run("core::sub", {Tv(ia), Tv(ib), Fv(3.0)});
  expect(r.t, {3}, {-29, -58, -87}, 0, "int sub alpha 3");
  H.release(r.t);
  expect_err(run("core::add", {Tv(ia), Tv(ib), Fv(0.5)}), VT_ERR_TYPE, "[core::add] alpha must be an integer", "int alpha 0.5");
  vt_tensor* imax = tens({1}, I32, {2147483647});
  vt_tensor* ione = tens({1}, I32, {1});
  r = run("core::add", {Tv(imax), Tv(ione), Fv(1.0)});
  expect(r.t, {1}, {-2147483648.0}, 0, "int32 wraps");
  H.release(r.t);
  r = run("core::div", {Tv(ia), Tv(ib)});
  CHECK(vt::same_dtype(r.t->dtype, F32), "int div -> float32");
  expect(r.t, {3}, {0.1, 0.1, 0.1}, 1e-6, "int div");
  H.release(r.t);

  // errors
  vt_tensor* f32 = tens({2}, F32, {1, 2});
  vt_tensor* f64 = tens({2}, F64, {1, 2});
  expect_err(run("core::add", {Tv(f32), Tv(f64), Fv(1.0)}), VT_ERR_TYPE,
             "[core::add] dtype mismatch: self is float32, other is float64", "dtype mismatch");
  vt_tensor* f3 = tens({2, 3}, F32);
  vt_tensor* f4 = tens({4}, F32);
  expect_err(run("core::mul", {Tv(f3), Tv(f4)}), VT_ERR_VALUE, "[core::mul] shapes cannot be broadcast: self (2, 3) and other (4,)",
             "broadcast mismatch");
  vt_tensor* bb = tens({2}, BOOL);
  expect_err(run("core::add", {Tv(bb), Tv(bb), Fv(1.0)}), VT_ERR_NOT_IMPL, "[core::add] not implemented for dtype bool", "bool add");
  expect_err(run("core::add", {Tv(f32), Iv(3), Fv(1.0)}), VT_ERR_TYPE, "argument 'other' (position 1) must be Tensor, got int", "arg kind");
  expect_err(run("core::add", {Tv(f32)}), VT_ERR_TYPE, "missing argument 'other'", "missing arg");
  for (vt_tensor* t : {base, tr, ex, sl, ia, ib, imax, ione, f32, f64, f3, f4, bb}) H.release(t);
}

static void test_reduce() {
  vt_tensor* x = tens({2, 3}, F32, {1, 2, 3, 4, 5, 6});
  Result r = run("core::sum", {Tv(x), Lv({}), Bv(false), Nv()});
  expect(r.t, {}, {21}, 0, "sum all");
  H.release(r.t);
  r = run("core::sum", {Tv(x), Lv({0}), Bv(false), Nv()});
  expect(r.t, {3}, {5, 7, 9}, 0, "sum dim 0");
  H.release(r.t);
  r = run("core::sum", {Tv(x), Lv({-1}), Bv(true), Nv()});
  expect(r.t, {2, 1}, {6, 15}, 0, "sum dim -1 keepdim");
  H.release(r.t);
  r = run("core::mean", {Tv(x), Lv({1}), Bv(false), Nv()});
  expect(r.t, {2}, {2, 5}, 0, "mean dim 1");
  H.release(r.t);
  r = run("core::mean", {Tv(x), Lv({0, 1}), Bv(true), Dv(F64)});
  CHECK(vt::same_dtype(r.t->dtype, F64), "mean dtype=float64");
  expect(r.t, {1, 1}, {3.5}, 0, "mean all keepdim");
  H.release(r.t);
  vt_tensor* xi = tens({2, 3}, I32, {1, 2, 3, 4, 5, 6});
  r = run("core::sum", {Tv(xi), Lv({1}), Bv(false), Nv()});
  CHECK(vt::same_dtype(r.t->dtype, I64), "int sum -> int64");
  expect(r.t, {2}, {6, 15}, 0, "int sum");
  H.release(r.t);
  vt_tensor* xb = tens({5}, BOOL, {1, 0, 1, 1, 0});
  r = run("core::sum", {Tv(xb), Lv({}), Bv(false), Nv()});
  expect(r.t, {}, {3}, 0, "bool sum");
  H.release(r.t);
  expect_err(run("core::mean", {Tv(xi), Lv({}), Bv(false), Nv()}), VT_ERR_TYPE, "[core::mean] mean needs a floating result dtype, got int64",
             "int mean");
  expect_err(run("core::sum", {Tv(x), Lv({2}), Bv(false), Nv()}), VT_ERR_INDEX,
             "[core::sum] dim 2 is out of range for a tensor of ndim 2 (expected -2..1)", "dim range");
  expect_err(run("core::sum", {Tv(x), Lv({1, -1}), Bv(false), Nv()}), VT_ERR_VALUE, "dim 1 appears multiple times", "dup dim");

  // 0-size: sum of nothing is 0, mean is nan; empty output
  vt_tensor* z = tens({0, 3}, F32);
  r = run("core::sum", {Tv(z), Lv({0}), Bv(false), Nv()});
  expect(r.t, {3}, {0, 0, 0}, 0, "sum over empty dim");
  H.release(r.t);
  r = run("core::mean", {Tv(z), Lv({}), Bv(false), Nv()});
  expect(r.t, {}, {NAN}, 0, "mean of empty");
  H.release(r.t);
  r = run("core::sum", {Tv(z), Lv({1}), Bv(false), Nv()});
  expect(r.t, {0}, {}, 0, "sum to empty");
  H.release(r.t);
  vt_tensor* s0 = tens({}, F64, {7.5});
  r = run("core::sum", {Tv(s0), Lv({0}), Bv(false), Nv()});
  expect(r.t, {}, {7.5}, 0, "sum of scalar over dim 0");
  H.release(r.t);

  // random shapes / dims / strides against a double reference; threads 1 and 3 bit-identical
  struct Case { std::vector<int64_t> shape; std::vector<int64_t> dims; bool transpose; };
  const Case cases[] = {{{1000, 300}, {}, false}, {{1000, 300}, {0}, false}, {{1000, 300}, {1}, false},
                        {{1000, 300}, {1}, true}, {{40, 50, 60}, {0, 2}, false}, {{40, 50, 60}, {1}, true},
                        {{200000}, {0}, false}, {{7, 3, 5, 2}, {-1, 1}, false}, {{3, 100000}, {0}, false}};
  for (const Case& cs : cases)
    for (vt_dtype dt : {F32, F64, BF16, I64}) {
      vt_tensor* base = randt(cs.shape, dt);
      vt_tensor* t = base;
      if (cs.transpose) {  // swap the last two dims
        auto s = shape(base);
        std::vector<int64_t> st(base->strides, base->strides + base->ndim);
        std::swap(s[s.size() - 1], s[s.size() - 2]);
        std::swap(st[st.size() - 1], st[st.size() - 2]);
        t = view(base, s, st);
      }
      // reference
      std::vector<bool> red(t->ndim, cs.dims.empty());
      for (auto d : cs.dims) red[(size_t)(d < 0 ? d + t->ndim : d)] = true;
      std::vector<int64_t> oshape;
      for (int d = 0; d < t->ndim; ++d) if (!red[d]) oshape.push_back(t->sizes[d]);
      int64_t M = 1;
      for (auto s : oshape) M *= s;
      std::vector<double> want((size_t)M, 0.0);
      for (int64_t i = 0; i < t->numel; ++i) {
        int64_t rem = i, o = 0, mul = 1;
        for (int d = t->ndim - 1; d >= 0; --d) {
          const int64_t idx = rem % t->sizes[d];
          rem /= t->sizes[d];
          if (!red[d]) { o += idx * mul; mul *= t->sizes[d]; }
        }
        want[(size_t)o] += get(t, i);
      }
      char what[160];
      std::snprintf(what, sizeof what, "sum %s dims(%zu) T=%d %s", sh(t).c_str(), cs.dims.size(), cs.transpose, vt::dtype_name(dt));
      fake::g_threads = 1;
      Result r1 = run("core::sum", {Tv(t), Lv(cs.dims), Bv(false), Nv()});
      fake::g_threads = 3;
      Result r3 = run("core::sum", {Tv(t), Lv(cs.dims), Bv(false), Nv()});
      fake::g_threads = 1;
      CHECK(r1.st == VT_OK && r3.st == VT_OK, "%s: %s", what, fake::g_error.c_str());
      if (r1.st != VT_OK || r3.st != VT_OK) continue;
      expect(r1.t, oshape, want, dt.bits == 16 ? 1e-2 : 1e-6, what);
      CHECK(std::memcmp(r1.t->data, r3.t->data, (size_t)(r1.t->numel * (r1.t->dtype.bits / 8))) == 0, "%s: threads 1 vs 3 differ", what);
      H.release(r1.t);
      H.release(r3.t);
      if (t != base) H.release(t);
      H.release(base);
    }
  for (vt_tensor* t : {x, xi, xb, z, s0}) H.release(t);
}

// naive matmul reference on logical values (torch rules)
static std::vector<double> ref_matmul(const vt_tensor* a, const vt_tensor* b, std::vector<int64_t>& os) {
  const bool a1 = a->ndim == 1, b1 = b->ndim == 1;
  std::vector<int64_t> as = shape(a), bs = shape(b);
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  std::vector<int64_t> ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const size_t nb = std::max(ab.size(), bb.size());
  while (ab.size() < nb) ab.insert(ab.begin(), 1);
  while (bb.size() < nb) bb.insert(bb.begin(), 1);
  std::vector<int64_t> batch(nb);
  int64_t NB = 1;
  for (size_t i = 0; i < nb; ++i) { batch[i] = std::max(ab[i], bb[i]); NB *= batch[i]; }
  os = batch;
  if (!a1) os.push_back(m);
  if (!b1) os.push_back(n);
  std::vector<double> r((size_t)(NB * m * n), 0.0);
  int64_t An = 1, Bn = 1;
  for (auto s : ab) An *= s;
  for (auto s : bb) Bn *= s;
  for (int64_t bi = 0; bi < NB; ++bi) {
    int64_t rem = bi, ai = 0, bj = 0, ma = 1, mb = 1;
    for (int d = (int)nb - 1; d >= 0; --d) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      ai += (ab[d] == 1 ? 0 : idx) * ma; ma *= ab[d];
      bj += (bb[d] == 1 ? 0 : idx) * mb; mb *= bb[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += get(a, ai * m * k + i * k + p) * get(b, bj * k * n + p * n + j);
        r[(size_t)(bi * m * n + i * n + j)] = s;
      }
  }
  return r;
}

static void test_matmul() {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{2, 3}, {3, 2}}, {{3}, {3}}, {{3}, {3, 4}}, {{2, 3}, {3}}, {{2, 1, 2, 3}, {5, 3, 4}}, {{4, 5, 3}, {3, 2}},
      {{4, 5, 3}, {3}}, {{2, 0}, {0, 3}}, {{0, 3}, {3, 2}}, {{65, 33}, {33, 17}}, {{3}, {2, 3, 4}}, {{1, 1}, {1, 1}}};
  for (auto& s : shapes)
    for (vt_dtype dt : {F32, F64}) {
      vt_tensor* a = randt(s.first, dt);
      vt_tensor* b = randt(s.second, dt);
      std::vector<int64_t> os;
      auto want = ref_matmul(a, b, os);
      Result r = run("core::matmul", {Tv(a), Tv(b)});
      char what[128];
      std::snprintf(what, sizeof what, "matmul %s @ %s %s", sh(a).c_str(), sh(b).c_str(), vt::dtype_name(dt));
      CHECK(r.st == VT_OK, "%s: %s", what, fake::g_error.c_str());
      if (r.st == VT_OK) { expect(r.t, os, want, 1e-5, what); H.release(r.t); }
      H.release(a);
      H.release(b);
    }
  // transposed operands (no copy: CblasTrans), an expanded one (copy) and a strided row vector
  vt_tensor* a = randt({5, 4}, F32);  // a.T is (4, 5)
  vt_tensor* b = randt({3, 5}, F32);  // b.T is (5, 3)
  vt_tensor* at = view(a, {4, 5}, {1, 4});
  vt_tensor* bt = view(b, {5, 3}, {1, 5});
  vt_tensor* bx = view(b, {2, 5, 3}, {0, 1, 5});  // expanded batch of b.T
  vt_tensor* ae = view(a, {4, 5}, {0, 1});        // row 0 repeated: 0 row stride -> copy
  vt_tensor* v = view(a, {5}, {4}, 1);            // column 1 of a, stride 4
  for (auto pr : {std::make_pair(at, bt), std::make_pair(at, bx), std::make_pair(ae, bt), std::make_pair(v, bt),
                  std::make_pair(v, v)}) {
    std::vector<int64_t> os;
    auto want = ref_matmul(pr.first, pr.second, os);
    Result r = run("core::matmul", {Tv(pr.first), Tv(pr.second)});
    char what[128];
    std::snprintf(what, sizeof what, "matmul strided %s @ %s", sh(pr.first).c_str(), sh(pr.second).c_str());
    CHECK(r.st == VT_OK, "%s: %s", what, fake::g_error.c_str());
    if (r.st == VT_OK) { expect(r.t, os, want, 1e-5, what); H.release(r.t); }
  }
  vt_tensor* e1 = tens({2, 3}, F32);
  vt_tensor* e2 = tens({4, 5}, F32);
  expect_err(run("core::matmul", {Tv(e1), Tv(e2)}), VT_ERR_VALUE, "[core::matmul] shape mismatch: self (2, 3) @ other (4, 5)", "mm shapes");
  vt_tensor* e3 = tens({3, 2}, F64);
  expect_err(run("core::matmul", {Tv(e1), Tv(e3)}), VT_ERR_TYPE, "dtype mismatch: self is float32, other is float64", "mm dtype");
  vt_tensor* e4 = tens({3, 2}, I64);
  vt_tensor* e5 = tens({2, 3}, I64);
  expect_err(run("core::matmul", {Tv(e5), Tv(e4)}), VT_ERR_NOT_IMPL, "not implemented for dtype int64", "mm int");
  vt_tensor* e6 = tens({}, F32);
  expect_err(run("core::matmul", {Tv(e6), Tv(e1)}), VT_ERR_VALUE, "need at least 1 dim", "mm 0-d");
  for (vt_tensor* t : {a, b, at, bt, bx, ae, v, e1, e2, e3, e4, e5, e6}) H.release(t);
}

static void test_copy_fill_factories() {
  vt_tensor* a = randt({3, 4}, F32);
  vt_tensor* at = view(a, {4, 3}, {1, 4});
  Result r = run("core::contiguous", {Tv(at)});
  std::vector<double> want;
  for (int64_t i = 0; i < 12; ++i) want.push_back(get(at, i));
  expect(r.t, {4, 3}, want, 0, "contiguous of transpose");
  CHECK(r.t->strides[0] == 3 && r.t->strides[1] == 1, "contiguous strides");
  H.release(r.t);

  // copy_: broadcast + conversion into a strided destination
  vt_tensor* dst = tens({4, 6}, I32);
  vt_tensor* dv = view(dst, {4, 3}, {6, 2}, 1);  // every other column
  vt_tensor* src = tens({3}, F64, {1.7, -2.2, 3.9});
  r = run("core::copy_", {Tv(dv), Tv(src)});
  CHECK(r.st == VT_OK && r.t == dv, "copy_ returns self: %s", fake::g_error.c_str());
  expect(dst, {4, 6}, {0, 1, 0, -2, 0, 3, 0, 1, 0, -2, 0, 3, 0, 1, 0, -2, 0, 3, 0, 1, 0, -2, 0, 3}, 0, "copy_ f64->i32 broadcast strided");
  if (r.t) H.release(r.t);
  vt_tensor* h = tens({4, 3}, F16);
  r = run("core::copy_", {Tv(h), Tv(at)});
  expect(h, {4, 3}, want, 1e-3, "copy_ f32 transposed -> f16");
  H.release(r.t);
  vt_tensor* big = tens({5, 3}, F32);
  expect_err(run("core::copy_", {Tv(src), Tv(big)}), VT_ERR_VALUE, "[core::copy_] src of shape (5, 3) cannot be broadcast to self of shape (3,)", "copy_ shape");

  // fill_, zeros, ones, full, arange
  r = run("core::fill_", {Tv(dv), Fv(7)});
  expect(dst, {4, 6}, {0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7}, 0, "fill_ strided");
  H.release(r.t);
  r = run("core::zeros", {Lv({2, 3}), Nv(), Nv()});
  CHECK(vt::same_dtype(r.t->dtype, F32), "zeros default float32");
  expect(r.t, {2, 3}, {0, 0, 0, 0, 0, 0}, 0, "zeros");
  H.release(r.t);
  r = run("core::ones", {Lv({3}), Dv(I64), Nv()});
  expect(r.t, {3}, {1, 1, 1}, 0, "ones int64");
  H.release(r.t);
  r = run("core::full", {Lv({2}), Fv(2.5), Dv(BF16), Nv()});
  expect(r.t, {2}, {2.5, 2.5}, 0, "full bf16");
  H.release(r.t);
  r = run("core::full", {Lv({0, 4}), Fv(1), Nv(), Nv()});
  expect(r.t, {0, 4}, {}, 0, "full empty");
  H.release(r.t);
  expect_err(run("core::zeros", {Lv({2, -1}), Nv(), Nv()}), VT_ERR_VALUE, "[core::zeros] argument 'size' has a negative size -1", "neg size");
  r = run("core::arange", {Fv(0), Fv(5), Fv(1), Nv(), Nv()});
  expect(r.t, {5}, {0, 1, 2, 3, 4}, 0, "arange 5");
  H.release(r.t);
  r = run("core::arange", {Fv(1), Fv(0), Fv(-0.25), Dv(F64), Nv()});
  expect(r.t, {4}, {1, 0.75, 0.5, 0.25}, 0, "arange negative step");
  H.release(r.t);
  r = run("core::arange", {Fv(0), Fv(1), Fv(0.3), Dv(I64), Nv()});
  expect(r.t, {4}, {0, 0, 0, 0}, 0, "arange int dtype truncates");
  H.release(r.t);
  expect_err(run("core::arange", {Fv(0), Fv(5), Fv(0), Nv(), Nv()}), VT_ERR_VALUE, "step must be nonzero", "arange step 0");
  expect_err(run("core::arange", {Fv(0), Fv(5), Fv(-1), Nv(), Nv()}), VT_ERR_VALUE, "inconsistent with step sign", "arange sign");
  for (vt_tensor* t : {a, at, dst, dv, src, h, big}) H.release(t);
}

static void test_random() {
  // Random123 known-answer vectors for philox4x32-10
  auto k0 = vt::philox::philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(k0.x[0] == 0x6627e8d5u && k0.x[1] == 0xe169c58du && k0.x[2] == 0xbc57ac4cu && k0.x[3] == 0x9b00dbd8u, "philox KAT zero");
  auto k1 = vt::philox::philox4x32_10(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
  CHECK(k1.x[0] == 0x408f276du && k1.x[1] == 0x41c83b0eu && k1.x[2] == 0xa20bc7c6u && k1.x[3] == 0x6d5451fdu, "philox KAT ones");
  auto k2 = vt::philox::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(k2.x[0] == 0xd16cfe09u && k2.x[1] == 0x94fdccebu && k2.x[2] == 0x5001e420u && k2.x[3] == 0x24126ea1u, "philox KAT pi");

  for (vt_dtype dt : {F32, F64, F16, BF16}) {
    for (const char* op : {"core::normal", "core::uniform"}) {
      const bool normal = op[6] == 'n';
      const int64_t N = 1000003;  // odd: the last Philox group is partial
      fake::g_offset = 100;
      fake::g_threads = 1;
      Result r1 = run(op, {Lv({N}), Fv(normal ? 2.0 : -1.0), Fv(normal ? 3.0 : 3.0), Dv(dt), Nv()});
      fake::g_offset = 100;
      fake::g_threads = 4;
      Result r4 = run(op, {Lv({N}), Fv(normal ? 2.0 : -1.0), Fv(normal ? 3.0 : 3.0), Dv(dt), Nv()});
      fake::g_threads = 1;
      char what[64];
      std::snprintf(what, sizeof what, "%s %s", op, vt::dtype_name(dt));
      CHECK(r1.st == VT_OK && r4.st == VT_OK, "%s: %s", what, fake::g_error.c_str());
      if (r1.st != VT_OK) continue;
      const int64_t E = dt.bits == 64 ? 2 : 4;
      CHECK(fake::g_offset == 100 + (uint64_t)((N + E - 1) / E), "%s: reserved %llu", what, (unsigned long long)fake::g_offset);
      CHECK(std::memcmp(r1.t->data, r4.t->data, (size_t)(N * dt.bits / 8)) == 0, "%s: threads 1 vs 4 differ", what);
      double s = 0, s2 = 0, lo = 1e300, hi = -1e300;
      for (int64_t i = 0; i < N; ++i) {
        const double v = get(r1.t, i);
        s += v; s2 += v * v; lo = std::min(lo, v); hi = std::max(hi, v);
      }
      const double mean = s / N, sd = std::sqrt(s2 / N - mean * mean);
      if (normal) {
        CHECK(std::fabs(mean - 2.0) < 0.02 && std::fabs(sd - 3.0) < 0.02, "%s: mean %g std %g", what, mean, sd);
      } else {
        CHECK(std::fabs(mean - 1.0) < 0.01 && std::fabs(sd - 4.0 / std::sqrt(12.0)) < 0.01, "%s: mean %g std %g", what, mean, sd);
        CHECK(lo >= -1.0 && hi <= 3.0, "%s: range [%g, %g]", what, lo, hi);
      }
      H.release(r1.t);
      H.release(r4.t);
    }
  }
  expect_err(run("core::normal", {Lv({3}), Fv(0), Fv(1), Dv(I64), Nv()}), VT_ERR_NOT_IMPL, "[core::normal] not implemented for dtype int64", "normal int");
  expect_err(run("core::uniform", {Lv({3}), Fv(2), Fv(1), Nv(), Nv()}), VT_ERR_VALUE, "low must be <= high", "uniform range");
}

static void test_half() {
  // every half: bits -> float -> bits is the identity (nan stays nan)
  int bad = 0;
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = vt::half_bits_to_float((uint16_t)b);
    const uint16_t back = vt::float_to_half_bits(f);
    const bool is_nan = (b & 0x7c00) == 0x7c00 && (b & 0x3ff);
    if (is_nan ? !std::isnan(f) : back != b) ++bad;
    if (!is_nan && (_Float16)f != (_Float16)vt::half::from_bits((uint16_t)b)) ++bad;
  }
  CHECK(bad == 0, "%d half round-trip mismatches", bad);
  // float -> half rounding against the compiler's _Float16 on many floats incl. ties and subnormals
  bad = 0;
  std::mt19937 g(7);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = g();
    if (i % 4 == 0) u = (u & 0x807fffffu) | ((uint32_t)(96 + (u % 48)) << 23);  // around the half range
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    _Float16 ref = (_Float16)f;
    uint16_t rb;
    std::memcpy(&rb, &ref, 2);
    if (vt::float_to_half_bits(f) != rb) ++bad;
  }
  CHECK(bad == 0, "%d float->half mismatches vs _Float16", bad);
  CHECK(vt::float_to_bfloat16_bits(1.00390625f) == 0x3f80, "bf16 tie to even down");
  CHECK(vt::float_to_bfloat16_bits(1.01171875f) == 0x3f82, "bf16 tie to even up");
  CHECK(vt::bfloat16_bits_to_float(0x4049) == 3.140625f, "bf16 -> float");
}

// the exception boundary: std::exception, vt::Error and exceptions thrown inside pool chunks all
// come back as a status + message, and an output stored before the throw is released
VT_KERNEL(throws_std, "test::throws") {
  c.set_out(0, c.empty(nullptr, 0, vt::kFloat32));
  throw std::runtime_error("boom");
}
VT_KERNEL(throws_in_pool, "test::pool") {
  vt::parallel_for(c.host, 0, 1000000, 1000, [&](int64_t b, int64_t e) {
    if (b <= 500000 && 500000 < e) c.fail(VT_ERR_VALUE, "chunk [%lld, %lld) failed", (long long)b, (long long)e);
  });
}
static void test_exceptions() {
  vt_kernel_ctx ctx{&H, {VT_CPU, 0}, nullptr, nullptr};
  vt_value out = Nv();
  const int64_t live = fake::g_live;
  CHECK(throws_std(&ctx, nullptr, 0, &out, 1) == VT_ERR_RUNTIME && fake::g_error == "[test::throws] boom", "std: %s", fake::g_error.c_str());
  CHECK(fake::g_live == live && out.tag == VT_NONE, "output released after a throw");
  fake::g_threads = 4;
  CHECK(throws_in_pool(&ctx, nullptr, 0, &out, 1) == VT_ERR_VALUE && fake::g_error.find("[test::pool] chunk [") == 0,
        "pool: %s", fake::g_error.c_str());
  fake::g_threads = 1;
}

// per-call cost of a 4-element float32 add through the kernel (fake host's malloc-based empty)
static void bench_tiny_add() {
  vt_tensor* a = tens({4}, F32, {1, 2, 3, 4});
  vt_tensor* b = tens({4}, F32, {1, 2, 3, 4});
  vt_value args[3] = {Tv(a), Tv(b), Fv(1.0)};
  vt_kernel_ctx ctx{&H, {VT_CPU, 0}, nullptr, nullptr};
  vt_kernel_fn add = kernel("core::add");
  const int iters = 2000000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    vt_value out;
    add(&ctx, args, 3, &out, 1);
    H.release(out.v.t);
  }
  auto t1 = std::chrono::steady_clock::now();
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / iters;
  // the same loop with only the fake host's empty/release, to separate the kernel's own cost
  const int64_t four = 4;
  auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) H.release(H.empty(&four, 1, F32, vt_device{VT_CPU, 0}));
  auto t3 = std::chrono::steady_clock::now();
  const double ns_alloc = std::chrono::duration<double, std::nano>(t3 - t2).count() / iters;
  std::printf("tiny add: %.1f ns per call, of which fake-host empty+release %.1f ns\n", ns, ns_alloc);
  CHECK(ns - ns_alloc < 200, "tiny add kernel overhead %.1f ns", ns - ns_alloc);
  H.release(a);
  H.release(b);
}

int main() {
  test_registration();
  test_half();
  test_binary();
  test_reduce();
  test_matmul();
  test_copy_fill_factories();
  test_random();
  test_exceptions();
  bench_tiny_add();
  CHECK(fake::g_live == 0, "%lld tensors leaked", (long long)fake::g_live);
  std::printf("%d checks, %d failures\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
