// ops/core/src/norm.cpp — layer_norm and rms_norm on CPU: fused forward kernels that also return
// the per-row statistics, and fused backward ops that use them.
//
// Shape legend: input (..., *normalized_shape) is seen as M rows of N = prod(normalized_shape).
//   layer_norm(input, normalized_shape, weight?, bias?, eps) -> (out, mean, rstd)
//   rms_norm(input, normalized_shape, weight?, eps?)         -> (out, rstd)     eps None = dtype eps
// mean/rstd have shape (..., 1, ..., 1) (leading dims, then a 1 per normalized dim) and dtype float32
// for float16/bfloat16 inputs (else the input's). Backward ops:
//   layer_norm_backward(grad_out, input, normalized_shape, mean, rstd, weight?, bias?)
//       -> (grad_input, grad_weight, grad_bias)
//   rms_norm_backward(grad_out, input, normalized_shape, rstd, weight?) -> (grad_input, grad_weight)
// with xhat = (x - mean) * rstd, gw = g * weight:
//   grad_input = rstd * (gw - mean(gw) - xhat * mean(gw * xhat))   (rms: no mean(gw) term)
//   grad_weight = sum over rows of g * xhat, grad_bias = sum over rows of g
// A missing weight/bias gives a (0,)-shaped grad_weight/grad_bias. grad_weight/bias are reduced in
// fixed blocks of rows combined in order, so results do not depend on the thread count.
// add_layer_norm(input, residual, normalized_shape, weight?, bias?, eps, out_dtype?) -> (sum, out, mean, rstd)
//   fuses a residual add into layer_norm: sum = input + residual (the promoted dtype; input and
//   residual may differ, e.g. float32 + bfloat16), out = layer_norm(sum) in out_dtype (default sum's).
//   add_layer_norm_backward(grad_sum?, grad_out?, sum, normalized_shape, mean, rstd, input_dtype,
//       residual_dtype, weight?, bias?) -> (grad_input, grad_residual, grad_weight, grad_bias)
//   with grad_input = grad_residual = grad_sum + layer_norm's grad_input (each in its dtype).
// The backward ops have no backward rule of their own: double backward through layer_norm and
// rms_norm is not supported.
// Each op is a meta step (the checks, outputs and statistics tensors; every device) and a CPU
// compute into them.
#include <vector>

#include "core.hpp"
#include "gradops.hpp"
#include "nnmath.hpp"
#include "vt/loops.hpp"

namespace {

struct Contig {
  vt::Tensor own;
  const vt_tensor* t = nullptr;
  Contig(vt::Call& c, const vt_tensor* x) : t(x) {
    if (x && !vt::is_contiguous(x)) {
      own = vt::call(c.host, "core::contiguous", {const_cast<vt_tensor*>(x)});
      t = own;
    }
  }
};

// input as M rows of N = prod(normalized_shape) (shapes the meta step accepted); returns N.
int64_t rows_cols(const vt_tensor* x, vt_int_list ns, int64_t* M) {
  int64_t N = 1;
  for (int64_t i = 0; i < ns.len; ++i) N *= ns.data[i];
  *M = 1;
  for (int32_t d = 0; d < x->ndim - ns.len; ++d) *M *= x->sizes[d];
  return N;
}

// The meta step's checks of input/normalized_shape/weight/bias; xname: what weight/bias's dtype must
// match (add_layer_norm's sum).
void check_norm(vt::Call& c, const vt_tensor* x, vt_int_list ns, const vt_tensor* w, const vt_tensor* b,
                const char* xname = "input") {
  if (!vt::is_floating(x->dtype))
    c.fail(VT_ERR_TYPE, "input must have a floating dtype, got %s", vt::dtype_name(x->dtype));
  vt::check_ndim(c.op, x, "input");
  if (ns.len < 1 || ns.len > x->ndim)
    c.fail(VT_ERR_VALUE, "normalized_shape %s must be 1..%d trailing dims of input %s",
           vt::shape_str(ns.data, (int32_t)ns.len).c_str(), x->ndim, vt::shape_str(x).c_str());
  for (int64_t i = 0; i < ns.len; ++i)
    if (x->sizes[x->ndim - ns.len + i] != ns.data[i])
      c.fail(VT_ERR_VALUE, "normalized_shape %s does not match the trailing dims of input %s",
             vt::shape_str(ns.data, (int32_t)ns.len).c_str(), vt::shape_str(x).c_str());
  const vt_tensor* wb[2] = {w, b};
  const char* names[2] = {"weight", "bias"};
  for (int k = 0; k < 2; ++k) {
    const vt_tensor* t = wb[k];
    if (!t) continue;
    c.check_same_dtype(x, xname, t, names[k]);
    c.check_same_device(x, "input", t, names[k]);
    bool ok = t->ndim == ns.len;
    for (int64_t i = 0; ok && i < ns.len; ++i) ok = t->sizes[i] == ns.data[i];
    if (!ok)
      c.fail(VT_ERR_VALUE, "%s must have shape normalized_shape %s, got %s", names[k],
             vt::shape_str(ns.data, (int32_t)ns.len).c_str(), vt::shape_str(t).c_str());
  }
}

vt_dtype stat_dtype(vt_dtype d) {
  const vt::ScalarType s = vt::scalar_type(d);
  return (s == vt::ScalarType::Float16 || s == vt::ScalarType::BFloat16) ? vt::kFloat32 : d;
}

vt::Tensor stat_tensor(vt::Call& c, const vt_tensor* x, int64_t nnorm) {
  int64_t shape[vt::kMaxDims];
  for (int32_t d = 0; d < x->ndim; ++d) shape[d] = d < x->ndim - nnorm ? x->sizes[d] : 1;
  return c.empty(shape, x->ndim, stat_dtype(x->dtype));
}

// float row helpers (float32 rows may be read in place; others are converted into a buffer)
template <class T, class A>
const A* load_row(const T* p, int64_t n, A* buf) {
  if constexpr (std::is_same<T, A>::value) {
    return p;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = (A)p[i];
    return buf;
  }
}

float sum_of(const float* x, int64_t n) { return nnm::row_sum(x, n); }
double sum_of(const double* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}
float sqdev_of(const float* x, float m, int64_t n) { return nnm::row_sqdev(x, m, n); }
double sqdev_of(const double* x, double m, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (x[i] - m) * (x[i] - m);
  return s;
}
float dot_of(const float* x, const float* y, int64_t n) { return nnm::row_dot(x, y, n); }
double dot_of(const double* x, const double* y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

// The arguments, read by name once (meta step and compute alike).
template <bool RMS>
struct NormArgs {  // layer_norm(input, normalized_shape, weight, bias, eps), rms_norm(input, ..., weight, eps)
  const vt_tensor* x;
  vt_int_list ns;
  const vt_tensor *w, *b;
  explicit NormArgs(const vt::Call& c)
      : x(c.arg(0, "input").tensor()), ns(c.arg(1, "normalized_shape").ints()), w(c.arg(2, "weight").tensor_or_null()),
        b(RMS ? nullptr : c.arg(3, "bias").tensor_or_null()) {}
};
template <bool RMS>
struct NormBackwardArgs {  // (grad_out, input, normalized_shape, [mean,] rstd, weight[, bias])
  const vt_tensor *go, *x;
  vt_int_list ns;
  const vt_tensor *mean, *rstd, *w, *b;
  explicit NormBackwardArgs(const vt::Call& c)
      : go(c.arg(0, "grad_out").tensor()), x(c.arg(1, "input").tensor()), ns(c.arg(2, "normalized_shape").ints()),
        mean(RMS ? nullptr : c.arg(3, "mean").tensor()), rstd(c.arg(RMS ? 3 : 4, "rstd").tensor()),
        w(c.arg(RMS ? 4 : 5, "weight").tensor_or_null()), b(RMS ? nullptr : c.arg(6, "bias").tensor_or_null()) {}
};

// ---- forward -----------------------------------------------------------------------------------
// meta: (out, mean, rstd) for layer_norm, (out, rstd) for rms_norm
template <bool RMS>
void norm_forward_meta(vt::Call& c) {
  const NormArgs<RMS> a(c);
  const vt_tensor *x = a.x, *w = a.w, *b = a.b;
  const vt_int_list ns = a.ns;
  check_norm(c, x, ns, w, b);
  c.set_out(0, c.empty_like(x));
  if (!RMS) c.set_out(1, stat_tensor(c, x, ns.len));
  c.set_out(RMS ? 1 : 2, stat_tensor(c, x, ns.len));
}

template <bool RMS>
void norm_forward(vt::Call& c) {
  const NormArgs<RMS> a(c);
  const vt_tensor *x = a.x, *w = a.w, *b = a.b;
  const vt_int_list ns = a.ns;
  int64_t M = 0;
  const int64_t N = rows_cols(x, ns, &M);
  double eps;
  if (RMS) {
    const vt::Arg e = c.arg(3, "eps");
    const vt::ScalarType s = vt::scalar_type(x->dtype);
    const double deps = s == vt::ScalarType::Float64 ? 2.220446049250313e-16
                      : s == vt::ScalarType::Float16 ? 0.0009765625
                      : s == vt::ScalarType::BFloat16 ? 0.0078125 : 1.1920928955078125e-07;
    eps = e.float_or(deps);
  } else {
    eps = c.arg(4, "eps").float_();
  }
  Contig xc(c, x), wc(c, w), bc(c, b);
  const vt_tensor* out = c.out(0);
  const vt_tensor* mean = RMS ? nullptr : c.out(1);
  const vt_tensor* rstd = c.out(RMS ? 1 : 2);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    const T* wp = wc.t ? vt::data<const T>(wc.t) : nullptr;
    const T* bp = bc.t ? vt::data<const T>(bc.t) : nullptr;
    T* op = vt::data<T>(out);
    A* mp = RMS ? nullptr : vt::data<A>(mean);
    A* rp = vt::data<A>(rstd);
    vt::parallel_for(c.host, 0, M, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
      std::vector<A> wbuf, bbuf, xbuf;
      const A* wa = nullptr;
      const A* ba = nullptr;
      if (wp) { wbuf.resize((size_t)N); wa = load_row<T, A>(wp, N, wbuf.data()); }
      if (bp) { bbuf.resize((size_t)N); ba = load_row<T, A>(bp, N, bbuf.data()); }
      if (!std::is_same<T, A>::value) xbuf.resize((size_t)N);
      for (int64_t r = r0; r < r1; ++r) {
        const A* xr = load_row<T, A>(xp + r * N, N, xbuf.data());
        T* o = op + r * N;
        A mu = 0, rs;
        if (RMS) {
          rs = (A)(1.0 / std::sqrt((double)(dot_of(xr, xr, N) / (A)N) + eps));
        } else {
          mu = N ? sum_of(xr, N) / (A)N : (A)0;
          const A var = N ? sqdev_of(xr, mu, N) / (A)N : (A)0;
          rs = (A)(1.0 / std::sqrt((double)var + eps));
          mp[r] = mu;
        }
        rp[r] = rs;
        if (wa && ba)
          for (int64_t i = 0; i < N; ++i) o[i] = vt::convert<T>((xr[i] - mu) * rs * wa[i] + ba[i]);
        else if (wa)
          for (int64_t i = 0; i < N; ++i) o[i] = vt::convert<T>((xr[i] - mu) * rs * wa[i]);
        else if (ba)
          for (int64_t i = 0; i < N; ++i) o[i] = vt::convert<T>((xr[i] - mu) * rs + ba[i]);
        else
          for (int64_t i = 0; i < N; ++i) o[i] = vt::convert<T>((xr[i] - mu) * rs);
      }
    });
  });
}

// ---- backward ----------------------------------------------------------------------------------
// meta: (grad_input, grad_weight, grad_bias) for layer_norm, (grad_input, grad_weight) for rms_norm
template <bool RMS>
void norm_backward_meta(vt::Call& c) {
  const NormBackwardArgs<RMS> a(c);
  const vt_tensor *go = a.go, *x = a.x, *mean = a.mean, *rstd = a.rstd, *w = a.w, *b = a.b;
  const vt_int_list ns = a.ns;
  check_norm(c, x, ns, w, b);
  int64_t M = 0;
  rows_cols(x, ns, &M);
  c.check_same_dtype(go, "grad_out", x, "input");
  if (!vt::same_shape(go, x))
    c.fail(VT_ERR_VALUE, "grad_out %s and input %s must have the same shape", vt::shape_str(go).c_str(),
           vt::shape_str(x).c_str());
  const vt_tensor* stats[2] = {mean, rstd};
  for (const vt_tensor* s : stats)
    if (s && (s->numel != M || !vt::same_dtype(s->dtype, stat_dtype(x->dtype))))
      c.fail(VT_ERR_VALUE, "mean/rstd must hold %lld %s values (one per row), got %s %s", (long long)M,
             vt::dtype_name(stat_dtype(x->dtype)), vt::shape_str(s).c_str(), vt::dtype_name(s->dtype));
  const int64_t zero[1] = {0};
  c.set_out(0, c.empty_like(x));
  c.set_out(1, w ? c.empty(w->sizes, w->ndim, w->dtype) : c.empty(zero, 1, x->dtype));
  if (!RMS) c.set_out(2, b ? c.empty(b->sizes, b->ndim, b->dtype) : c.empty(zero, 1, x->dtype));
}

template <bool RMS>
void norm_backward(vt::Call& c) {
  const NormBackwardArgs<RMS> a(c);
  const vt_tensor *go = a.go, *x = a.x, *mean = a.mean, *rstd = a.rstd, *w = a.w, *b = a.b;
  const vt_int_list ns = a.ns;
  int64_t M = 0;
  const int64_t N = rows_cols(x, ns, &M);
  Contig gc(c, go), xc(c, x), wc(c, w), mc(c, mean), rc(c, rstd);
  const vt_tensor* gin = c.out(0);
  const vt_tensor* gw = c.out(1);
  const vt_tensor* gb = RMS ? nullptr : c.out(2);
  const bool want_w = w != nullptr, want_b = !RMS && b != nullptr;

  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::acc_t<T>;
    const T* gp = vt::data<const T>(gc.t);
    const T* xp = vt::data<const T>(xc.t);
    const T* wp = wc.t ? vt::data<const T>(wc.t) : nullptr;
    const A* mp = RMS ? nullptr : vt::data<const A>(mc.t);
    const A* rp = vt::data<const A>(rc.t);
    T* ip = vt::data<T>(gin);
    // fixed row blocks (at most ~256): partial grad_weight/grad_bias per block, combined in order
    const int64_t rows_per_block = std::max<int64_t>(32, (M + 255) / 256);
    const int64_t nblocks = M ? (M + rows_per_block - 1) / rows_per_block : 0;
    const int64_t nparts = (want_w ? 1 : 0) + (want_b ? 1 : 0);
    std::vector<A> part((size_t)(nparts ? nblocks * N * nparts : 0));
    vt::parallel_for(c.host, 0, nblocks, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(N * rows_per_block, 1)),
                     [&](int64_t b0, int64_t b1) {
      std::vector<A> wbuf((size_t)N), xbuf, gbuf, gwb((size_t)N), xh((size_t)N);
      const A* wa = wp ? load_row<T, A>(wp, N, wbuf.data()) : nullptr;
      if (!std::is_same<T, A>::value) { xbuf.resize((size_t)N); gbuf.resize((size_t)N); }
      for (int64_t blk = b0; blk < b1; ++blk) {
        A* pw = want_w ? part.data() + (size_t)(blk * N * nparts) : nullptr;
        A* pb = want_b ? part.data() + (size_t)(blk * N * nparts + (want_w ? N : 0)) : nullptr;
        if (pw) std::fill(pw, pw + N, A(0));
        if (pb) std::fill(pb, pb + N, A(0));
        const int64_t r1 = std::min(M, (blk + 1) * rows_per_block);
        for (int64_t r = blk * rows_per_block; r < r1; ++r) {
          const A* xr = load_row<T, A>(xp + r * N, N, xbuf.data());
          const A* gr = load_row<T, A>(gp + r * N, N, gbuf.data());
          const A mu = RMS ? A(0) : mp[r], rs = rp[r];
          for (int64_t i = 0; i < N; ++i) xh[(size_t)i] = (xr[i] - mu) * rs;
          const A* g2 = gr;
          if (wa) {
            for (int64_t i = 0; i < N; ++i) gwb[(size_t)i] = gr[i] * wa[i];
            g2 = gwb.data();
          }
          const A mg = RMS ? A(0) : sum_of(g2, N) / (A)N;
          const A mgx = dot_of(g2, xh.data(), N) / (A)N;
          T* o = ip + r * N;
          for (int64_t i = 0; i < N; ++i) o[i] = vt::convert<T>(rs * (g2[i] - mg - xh[(size_t)i] * mgx));
          if (pw)
            for (int64_t i = 0; i < N; ++i) pw[i] += gr[i] * xh[(size_t)i];
          if (pb)
            for (int64_t i = 0; i < N; ++i) pb[i] += gr[i];
        }
      }
    });
    // combine the blocks, in block order, split over columns
    auto combine = [&](T* dst, int64_t which) {
      vt::parallel_for(c.host, 0, N, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(nblocks, 1)),
                       [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          A s = 0;
          for (int64_t blk = 0; blk < nblocks; ++blk) s += part[(size_t)(blk * N * nparts + which * N + i)];
          dst[i] = vt::convert<T>(s);
        }
      });
    };
    if (want_w) combine(vt::data<T>(gw), 0);
    if (want_b) combine(vt::data<T>(gb), want_w ? 1 : 0);
  });
}


// ---- add_layer_norm: sum = input + residual, out = layer_norm(sum) --------------------------------
// input and residual may differ in dtype (float32 + bfloat16: a model's float32 residual stream and
// a low-precision branch output); sum takes the promoted dtype, out `out_dtype` (default: sum's),
// weight and bias sum's dtype, mean/rstd stat_dtype(sum's). The backward op writes
// g = grad_sum + layer_norm_backward(grad_out) once per element into grad_input (input's dtype) and
// grad_residual (residual's dtype).

// the dtype of input + residual: the wider, float32 for float16 with bfloat16 (torch's rule)
vt_dtype promoted_float(vt_dtype a, vt_dtype b) {
  if (vt::same_dtype(a, b)) return a;
  if (a.bits != b.bits) return a.bits > b.bits ? a : b;
  return vt::kFloat32;
}

// row r of t (contiguous, any floating dtype) as A
template <class A>
void load_row_as(const char* op, const vt_tensor* t, int64_t r, int64_t n, A* dst) {
  vt::dispatch(vt::kFloatingTypes, t->dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = vt::data<const T>(t) + r * n;
    for (int64_t i = 0; i < n; ++i) dst[i] = vt::convert<A>(p[i]);
  });
}
// src rounded to t's dtype into row r of t (contiguous)
template <class A>
void store_row_as(const char* op, const vt_tensor* t, int64_t r, int64_t n, const A* src) {
  vt::dispatch(vt::kFloatingTypes, t->dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = vt::data<T>(t) + r * n;
    for (int64_t i = 0; i < n; ++i) p[i] = vt::convert<T>(src[i]);
  });
}

struct AddNormArgs {  // (input, residual, normalized_shape, weight, bias, eps, out_dtype)
  const vt_tensor *x, *res;
  vt_int_list ns;
  const vt_tensor *w, *b;
  explicit AddNormArgs(const vt::Call& c)
      : x(c.arg(0, "input").tensor()), res(c.arg(1, "residual").tensor()), ns(c.arg(2, "normalized_shape").ints()),
        w(c.arg(3, "weight").tensor_or_null()), b(c.arg(4, "bias").tensor_or_null()) {}
};

void add_norm_meta(vt::Call& c) {
  const AddNormArgs a(c);
  if (!vt::is_floating(a.res->dtype))
    c.fail(VT_ERR_TYPE, "residual must have a floating dtype, got %s", vt::dtype_name(a.res->dtype));
  c.check_same_device(a.x, "input", a.res, "residual");
  if (!vt::same_shape(a.x, a.res))
    c.fail(VT_ERR_VALUE, "input %s and residual %s must have the same shape", vt::shape_str(a.x).c_str(),
           vt::shape_str(a.res).c_str());
  check_norm(c, a.x, a.ns, nullptr, nullptr);
  vt::Tensor sum = c.empty(a.x->sizes, a.x->ndim, promoted_float(a.x->dtype, a.res->dtype));
  check_norm(c, sum, a.ns, a.w, a.b, "the sum (input + residual)");
  const vt_dtype od = c.arg(6, "out_dtype").dtype_or(sum->dtype);
  if (!vt::is_floating(od)) c.fail(VT_ERR_TYPE, "out_dtype must be a floating dtype, got %s", vt::dtype_name(od));
  c.set_out(1, c.empty(a.x->sizes, a.x->ndim, od));
  c.set_out(2, stat_tensor(c, sum, a.ns.len));
  c.set_out(3, stat_tensor(c, sum, a.ns.len));
  c.set_out(0, std::move(sum));
}

void add_norm_cpu(vt::Call& c) {
  const AddNormArgs a(c);
  int64_t M = 0;
  const int64_t N = rows_cols(a.x, a.ns, &M);
  const double eps = c.arg(5, "eps").float_();
  Contig xc(c, a.x), rc(c, a.res), wc(c, a.w), bc(c, a.b);
  const vt_tensor *sum = c.out(0), *out = c.out(1);
  vt::dispatch(vt::kFloatingTypes, sum->dtype, c.op, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = vt::acc_t<S>;
    A* mp = vt::data<A>(c.out(2));
    A* rp = vt::data<A>(c.out(3));
    vt::parallel_for(c.host, 0, M, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
      std::vector<A> wa((size_t)N, A(1)), ba((size_t)N, A(0)), s((size_t)N), t((size_t)N);
      if (wc.t) load_row_as<A>(c.op, wc.t, 0, N, wa.data());
      if (bc.t) load_row_as<A>(c.op, bc.t, 0, N, ba.data());
      for (int64_t r = r0; r < r1; ++r) {
        load_row_as<A>(c.op, xc.t, r, N, s.data());
        load_row_as<A>(c.op, rc.t, r, N, t.data());
        for (int64_t i = 0; i < N; ++i) s[(size_t)i] = (A)vt::convert<S>(s[(size_t)i] + t[(size_t)i]);  // as stored
        store_row_as<A>(c.op, sum, r, N, s.data());
        const A mu = N ? sum_of(s.data(), N) / (A)N : (A)0;
        const A var = N ? sqdev_of(s.data(), mu, N) / (A)N : (A)0;
        const A rs = (A)(1.0 / std::sqrt((double)var + eps));
        mp[r] = mu;
        rp[r] = rs;
        for (int64_t i = 0; i < N; ++i) t[(size_t)i] = (s[(size_t)i] - mu) * rs * wa[(size_t)i] + ba[(size_t)i];
        store_row_as<A>(c.op, out, r, N, t.data());
      }
    });
  });
}

struct AddNormBackwardArgs {  // (grad_sum?, grad_out?, sum, normalized_shape, mean, rstd, input_dtype, residual_dtype, weight?, bias?)
  const vt_tensor *gs, *go, *sum;
  vt_int_list ns;
  const vt_tensor *mean, *rstd, *w, *b;
  explicit AddNormBackwardArgs(const vt::Call& c)
      : gs(c.arg(0, "grad_sum").tensor_or_null()), go(c.arg(1, "grad_out").tensor_or_null()),
        sum(c.arg(2, "sum").tensor()), ns(c.arg(3, "normalized_shape").ints()), mean(c.arg(4, "mean").tensor()),
        rstd(c.arg(5, "rstd").tensor()), w(c.arg(8, "weight").tensor_or_null()), b(c.arg(9, "bias").tensor_or_null()) {}
};

void add_norm_backward_meta(vt::Call& c) {
  const AddNormBackwardArgs a(c);
  check_norm(c, a.sum, a.ns, a.w, a.b, "sum");
  int64_t M = 0;
  rows_cols(a.sum, a.ns, &M);
  if (a.gs) c.check_same_dtype(a.gs, "grad_sum", a.sum, "sum");
  const vt_tensor* grads[2] = {a.gs, a.go};
  const char* names[2] = {"grad_sum", "grad_out"};
  for (int k = 0; k < 2; ++k) {
    if (!grads[k]) continue;
    if (!vt::is_floating(grads[k]->dtype))
      c.fail(VT_ERR_TYPE, "%s must have a floating dtype, got %s", names[k], vt::dtype_name(grads[k]->dtype));
    c.check_same_device(grads[k], names[k], a.sum, "sum");
    if (!vt::same_shape(grads[k], a.sum))
      c.fail(VT_ERR_VALUE, "%s %s and sum %s must have the same shape", names[k], vt::shape_str(grads[k]).c_str(),
             vt::shape_str(a.sum).c_str());
  }
  const vt_tensor* stats[2] = {a.mean, a.rstd};
  for (const vt_tensor* s : stats)
    if (s->numel != M || !vt::same_dtype(s->dtype, stat_dtype(a.sum->dtype)))
      c.fail(VT_ERR_VALUE, "mean/rstd must hold %lld %s values (one per row), got %s %s", (long long)M,
             vt::dtype_name(stat_dtype(a.sum->dtype)), vt::shape_str(s).c_str(), vt::dtype_name(s->dtype));
  const char* dnames[2] = {"input_dtype", "residual_dtype"};
  for (int k = 0; k < 2; ++k) {
    const vt_dtype d = c.arg(6 + k, dnames[k]).dtype();
    if (!vt::is_floating(d)) c.fail(VT_ERR_TYPE, "%s must be a floating dtype, got %s", dnames[k], vt::dtype_name(d));
    c.set_out(k, c.empty(a.sum->sizes, a.sum->ndim, d));
  }
  const int64_t zero[1] = {0};
  c.set_out(2, a.w ? c.empty(a.w->sizes, a.w->ndim, a.w->dtype) : c.empty(zero, 1, a.sum->dtype));
  c.set_out(3, a.b ? c.empty(a.b->sizes, a.b->ndim, a.b->dtype) : c.empty(zero, 1, a.sum->dtype));
}

// norm_backward's arithmetic (and its fixed row blocks for grad_weight/grad_bias), plus grad_sum
void add_norm_backward_cpu(vt::Call& c) {
  const AddNormBackwardArgs a(c);
  int64_t M = 0;
  const int64_t N = rows_cols(a.sum, a.ns, &M);
  Contig gsc(c, a.gs), goc(c, a.go), sc(c, a.sum), wc(c, a.w), mc(c, a.mean), rc(c, a.rstd);
  const vt_tensor *gin = c.out(0), *gres = c.out(1);
  vt::dispatch(vt::kFloatingTypes, a.sum->dtype, c.op, [&](auto tag) {
    using S = typename decltype(tag)::type;
    using A = vt::acc_t<S>;
    const A* mp = vt::data<const A>(mc.t);
    const A* rp = vt::data<const A>(rc.t);
    const int64_t rows_per_block = std::max<int64_t>(32, (M + 255) / 256);
    const int64_t nblocks = M ? (M + rows_per_block - 1) / rows_per_block : 0;
    std::vector<A> part((size_t)(nblocks * N * 2), A(0));  // per block: g * xhat, then g
    vt::parallel_for(c.host, 0, nblocks, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(N * rows_per_block, 1)),
                     [&](int64_t b0, int64_t b1) {
      std::vector<A> wa((size_t)N, A(1)), xh((size_t)N), gy((size_t)N), gw((size_t)N), gi((size_t)N);
      if (wc.t) load_row_as<A>(c.op, wc.t, 0, N, wa.data());
      for (int64_t blk = b0; blk < b1; ++blk) {
        A* pw = part.data() + (size_t)(blk * N * 2);
        A* pb = pw + N;
        const int64_t r1 = std::min(M, (blk + 1) * rows_per_block);
        for (int64_t r = blk * rows_per_block; r < r1; ++r) {
          std::fill(gi.begin(), gi.end(), A(0));
          if (gsc.t) load_row_as<A>(c.op, gsc.t, r, N, gi.data());
          if (goc.t) {
            load_row_as<A>(c.op, sc.t, r, N, xh.data());
            load_row_as<A>(c.op, goc.t, r, N, gy.data());
            const A mu = mp[r], rs = rp[r];
            for (int64_t i = 0; i < N; ++i) {
              xh[(size_t)i] = (xh[(size_t)i] - mu) * rs;
              gw[(size_t)i] = gy[(size_t)i] * wa[(size_t)i];
            }
            const A mg = sum_of(gw.data(), N) / (A)N;
            const A mgx = dot_of(gw.data(), xh.data(), N) / (A)N;
            for (int64_t i = 0; i < N; ++i) {
              gi[(size_t)i] += rs * (gw[(size_t)i] - mg - xh[(size_t)i] * mgx);
              pw[i] += gy[(size_t)i] * xh[(size_t)i];
              pb[i] += gy[(size_t)i];
            }
          }
          store_row_as<A>(c.op, gin, r, N, gi.data());
          store_row_as<A>(c.op, gres, r, N, gi.data());
        }
      }
    });
    auto combine = [&](const vt_tensor* dst, int64_t which) {  // blocks in order, split over columns
      std::vector<A> total((size_t)N);
      vt::parallel_for(c.host, 0, N, std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(nblocks, 1)),
                       [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          A s = 0;
          for (int64_t blk = 0; blk < nblocks; ++blk) s += part[(size_t)(blk * N * 2 + which * N + i)];
          total[(size_t)i] = s;
        }
      });
      store_row_as<A>(c.op, dst, 0, N, total.data());
    };
    if (a.w) combine(c.out(2), 0);  // grad_out absent: zeros
    if (a.b) combine(c.out(3), 1);
  });
}
}  // namespace

VT_META_FN(layer_norm_meta, "core::layer_norm") { norm_forward_meta<false>(c); }
VT_META_FN(rms_norm_meta, "core::rms_norm") { norm_forward_meta<true>(c); }
VT_META_FN(layer_norm_backward_meta, "core::layer_norm_backward") { norm_backward_meta<false>(c); }
VT_META_FN(rms_norm_backward_meta, "core::rms_norm_backward") { norm_backward_meta<true>(c); }
VT_COMPUTE(layer_norm_cpu, "core::layer_norm") { norm_forward<false>(c); }
VT_COMPUTE(rms_norm_cpu, "core::rms_norm") { norm_forward<true>(c); }
VT_COMPUTE(layer_norm_backward_cpu, "core::layer_norm_backward") { norm_backward<false>(c); }
VT_COMPUTE(rms_norm_backward_cpu, "core::rms_norm_backward") { norm_backward<true>(c); }

// Gradients flow from `out` only (mean/rstd are statistics for backward, not differentiated).
VT_BACKWARD(layer_norm_bw_rule, "core::layer_norm") {
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  vt::V w = g.arg(2).tag == VT_TENSOR ? vt::V(g.arg(2).v.t) : vt::V::none();
  vt::V b = g.arg(3).tag == VT_TENSOR ? vt::V(g.arg(3).v.t) : vt::V::none();
  std::vector<vt::Tensor> r = vt::call_n(g.host, "core::layer_norm_backward",
                                         {go, g.saved(0), g.arg(1).v.ints, g.out(1), g.out(2), w, b}, 3);
  g.set_grad(0, std::move(r[0]));
  if (g.needs(2)) g.set_grad(2, std::move(r[1]));
  if (g.needs(3)) g.set_grad(3, std::move(r[2]));
}
VT_BACKWARD(rms_norm_bw_rule, "core::rms_norm") {
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  vt::V w = g.arg(2).tag == VT_TENSOR ? vt::V(g.arg(2).v.t) : vt::V::none();
  std::vector<vt::Tensor> r =
      vt::call_n(g.host, "core::rms_norm_backward", {go, g.saved(0), g.arg(1).v.ints, g.out(1), w}, 2);
  g.set_grad(0, std::move(r[0]));
  if (g.needs(2)) g.set_grad(2, std::move(r[1]));
}

// Gradients flow from sum and out; the one backward op adds them. input and residual are saved only
// for their dtypes (the gradients' dtypes): both are usually alive anyway (the previous sum, the
// branch output a float32 cast kept before).
VT_BACKWARD(add_layer_norm_bw_rule, "core::add_layer_norm") {
  vt_tensor* gs = g.grad_out(0);
  vt_tensor* go = g.grad_out(1);
  if (!gs && !go) return;
  vt::V w = g.arg(3).tag == VT_TENSOR ? vt::V(g.arg(3).v.t) : vt::V::none();
  vt::V b = g.arg(4).tag == VT_TENSOR ? vt::V(g.arg(4).v.t) : vt::V::none();
  std::vector<vt::Tensor> r = vt::call_n(
      g.host, "core::add_layer_norm_backward",
      {gs, go, g.out(0), g.arg(2).v.ints, g.out(2), g.out(3), vt::V(g.saved(0)->dtype), vt::V(g.saved(1)->dtype), w, b},
      4);
  g.set_grad(0, std::move(r[0]));
  g.set_grad(1, std::move(r[1]));
  if (go && g.needs(3)) g.set_grad(3, std::move(r[2]));
  if (go && g.needs(4)) g.set_grad(4, std::move(r[3]));
}

VT_META_FN(add_layer_norm_meta, "core::add_layer_norm") { add_norm_meta(c); }
VT_META_FN(add_layer_norm_backward_meta, "core::add_layer_norm_backward") { add_norm_backward_meta(c); }
VT_COMPUTE(add_layer_norm_cpu, "core::add_layer_norm") { add_norm_cpu(c); }
VT_COMPUTE(add_layer_norm_backward_cpu, "core::add_layer_norm_backward") { add_norm_backward_cpu(c); }

using core::OpDef;

const OpDef kNormOps[] = {
    {"core::layer_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05)"
     " -> (Tensor, Tensor, Tensor)", layer_norm_meta, layer_norm_cpu, layer_norm_bw_rule, 0b1101, 0b110},
    {"core::rms_norm(Tensor input, int[] normalized_shape, Tensor? weight=None, float? eps=None) -> (Tensor, Tensor)",
     rms_norm_meta, rms_norm_cpu, rms_norm_bw_rule, 0b101, 0b10},
    {"core::layer_norm_backward(Tensor grad_out, Tensor input, int[] normalized_shape, Tensor mean, Tensor rstd, "
     "Tensor? weight=None, Tensor? bias=None) -> (Tensor, Tensor, Tensor)", layer_norm_backward_meta,
     layer_norm_backward_cpu},
    {"core::rms_norm_backward(Tensor grad_out, Tensor input, int[] normalized_shape, Tensor rstd, "
     "Tensor? weight=None) -> (Tensor, Tensor)", rms_norm_backward_meta, rms_norm_backward_cpu},
    {"core::add_layer_norm(Tensor input, Tensor residual, int[] normalized_shape, Tensor? weight=None, "
     "Tensor? bias=None, float eps=1e-05, ScalarType? out_dtype=None) -> (Tensor, Tensor, Tensor, Tensor)",
     add_layer_norm_meta, add_layer_norm_cpu, add_layer_norm_bw_rule, 0b11011, 0b1101},
    {"core::add_layer_norm_backward(Tensor? grad_sum, Tensor? grad_out, Tensor sum, int[] normalized_shape, "
     "Tensor mean, Tensor rstd, ScalarType input_dtype, ScalarType residual_dtype, Tensor? weight=None, "
     "Tensor? bias=None) -> (Tensor, Tensor, Tensor, Tensor)", add_layer_norm_backward_meta,
     add_layer_norm_backward_cpu},
};
VT_OP_TABLE(kNormOps)
