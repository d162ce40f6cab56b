// ops/core/src/reduce.cpp — reductions on CPU: sum, mean, var, std, max/min (with and without
// dim), argmax/argmin, logsumexp, norm, cumsum; their backward rules and the family's table.
//
// sum(self, dim=[], keepdim=False, dtype=None): dim=[] reduces everything; negative dims wrap;
// a repeated dim is an error. Result dtype: `dtype` if given, else self's dtype for floating
// inputs and int64 for integer/bool inputs. mean needs a floating result dtype.
//
// How: accumulate into a contiguous buffer `acc` of the output's size (double for floating
// results, int64 for integer ones), walking the input with a StridedLoop whose operand 0 is acc
// with stride 0 on the reduced dims. Where a row runs along a reduced dim it is summed with 8
// independent accumulators (vectorised); where it runs along a kept dim, acc[i] += x[i].
// Parallelism never splits one output element across threads except for a full reduction, and
// there the split is into fixed blocks combined in order — results do not depend on thread count.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core.hpp"
#include "shape_util.hpp"

namespace {

// sum of n elements at byte stride s, converted to Acc
template <class Acc, class T>
Acc row_sum(const char* p, int64_t s, int64_t n) {
  if (s == (int64_t)sizeof(T)) {
    const T* x = reinterpret_cast<const T*>(p);
    Acc a[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) a[j] += vt::convert<Acc>(x[i + j]);
    for (; i < n; ++i) a[0] += vt::convert<Acc>(x[i]);
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  }
  Acc a = 0;
  for (int64_t i = 0; i < n; ++i) a += vt::convert<Acc>(*reinterpret_cast<const T*>(p + i * s));
  return a;
}

template <class Acc, class T>
void accumulate(const vt::StridedLoop<2>& L, int64_t begin, int64_t end) {
  L.run(begin, end, [](char* const* p, const int64_t* s, int64_t n) {
    if (s[0] == 0) {  // the row runs along a reduced dim
      *reinterpret_cast<Acc*>(p[0]) += row_sum<Acc, T>(p[1], s[1], n);
    } else if (s[0] == (int64_t)sizeof(Acc) && s[1] == (int64_t)sizeof(T)) {
      Acc* acc = reinterpret_cast<Acc*>(p[0]);
      const T* x = reinterpret_cast<const T*>(p[1]);
      for (int64_t i = 0; i < n; ++i) acc[i] += vt::convert<Acc>(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<Acc*>(p[0] + i * s[0]) += vt::convert<Acc>(*reinterpret_cast<const T*>(p[1] + i * s[1]));
    }
  });
}

// acc[0..M) = sums of x over the loop; M = number of output elements
template <class Acc, class T>
void reduce_into(const vt_host* host, vt::StridedLoop<2> L, int64_t M) {
  if (L.numel <= vt::kGrain) {
    accumulate<Acc, T>(L, 0, L.numel);
  } else if (M == 1) {
    // Full reduction: fixed blocks (not thread-count dependent), partial sums combined in order.
    const int64_t nblocks = (L.numel + vt::kGrain - 1) / vt::kGrain;
    std::vector<Acc> part((size_t)nblocks, Acc(0));
    vt::parallel_for(host, 0, nblocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        vt::StridedLoop<2> Lb = L;  // acc strides are all 0 here, so any acc pointer works
        Lb.data[0] = reinterpret_cast<char*>(&part[(size_t)blk]);
        accumulate<Acc, T>(Lb, blk * vt::kGrain, std::min(L.numel, (blk + 1) * vt::kGrain));
      }
    });
    Acc total = 0;
    for (Acc v : part) total += v;
    *reinterpret_cast<Acc*>(L.data[0]) = total;
  } else {
    // Split the largest kept dim: each chunk owns its output elements outright.
    int32_t d = -1;
    for (int32_t i = 0; i < L.ndim; ++i)
      if (L.strides[i][0] != 0 && (d < 0 || L.sizes[i] > L.sizes[d])) d = i;
    const int64_t per = L.numel / L.sizes[d];  // elements per index of dim d
    vt::parallel_for(host, 0, L.sizes[d], std::max<int64_t>(1, vt::kGrain / per), [&](int64_t b, int64_t e) {
      vt::StridedLoop<2> Ls = L;
      Ls.sizes[d] = e - b;
      Ls.numel = per * (e - b);
      for (int k = 0; k < 2; ++k) Ls.data[k] += b * L.strides[d][k];
      accumulate<Acc, T>(Ls, 0, Ls.numel);
    });
  }
}

template <bool Mean>
void reduce(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(1, "dim").ints();
  const bool keepdim = c.arg(2, "keepdim").bool_();
  const vt::Arg dtype_arg = c.arg(3, "dtype");
  vt::check_ndim(c.op, x, "self");

  bool reduced[vt::kMaxDims] = {};
  if (dims.len == 0) {
    for (int32_t d = 0; d < x->ndim; ++d) reduced[d] = true;
  } else {
    for (int64_t i = 0; i < dims.len; ++i) {
      const int32_t d = vt::wrap_dim(c.op, dims.data[i], x->ndim);
      if (x->ndim == 0) continue;  // dim 0 / -1 of a scalar: nothing to reduce
      if (reduced[d]) c.fail(VT_ERR_VALUE, "dim %d appears multiple times in the list of dims", d);
      reduced[d] = true;
    }
  }

  vt_dtype out_dtype;
  if (!dtype_arg.is_none()) out_dtype = dtype_arg.dtype();
  else out_dtype = vt::is_floating(x->dtype) ? x->dtype : vt::kInt64;
  if (Mean && !vt::is_floating(out_dtype))
    c.fail(VT_ERR_TYPE, "mean needs a floating result dtype, got %s (pass dtype=float32)", vt::dtype_name(out_dtype));
  const bool float_acc = vt::is_floating(out_dtype);

  // output shape, and acc's element strides laid over the input's shape
  int64_t out_shape[vt::kMaxDims];
  int64_t acc_strides[vt::kMaxDims];
  int32_t out_ndim = 0;
  int64_t M = 1;
  for (int32_t d = x->ndim - 1; d >= 0; --d) {  // right to left for contiguous acc strides
    acc_strides[d] = reduced[d] ? 0 : M;
    if (!reduced[d]) M *= x->sizes[d];
  }
  for (int32_t d = 0; d < x->ndim; ++d) {
    if (!reduced[d]) out_shape[out_ndim++] = x->sizes[d];
    else if (keepdim) out_shape[out_ndim++] = 1;
  }
  const int64_t R = M > 0 ? x->numel / M : 0;  // elements summed into each output

  vt::Tensor out = c.empty(out_shape, out_ndim, out_dtype);
  if (M == 0) {
    c.set_out(0, std::move(out));
    return;
  }

  // acc buffer: on the stack for small outputs (no allocation on the tiny-tensor path)
  alignas(64) char small[512];
  std::unique_ptr<char[]> big;
  const size_t acc_bytes = (size_t)M * 8;  // double and int64 are both 8 bytes
  char* acc = small;
  if (acc_bytes > sizeof(small)) {
    big.reset(new char[acc_bytes]);
    acc = big.get();
  }
  std::memset(acc, 0, acc_bytes);  // 0.0 and 0 are all-zero bits

  int64_t strides[2][vt::kMaxDims];
  for (int32_t d = 0; d < x->ndim; ++d) {
    strides[0][d] = acc_strides[d];
    strides[1][d] = x->strides[d];
  }
  char* data[2] = {acc, static_cast<char*>(x->data)};
  const int64_t esize[2] = {8, vt::element_size(x->dtype)};
  const vt::StridedLoop<2> L = vt::make_loop<2>(x->sizes, x->ndim, data, strides, esize);

  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (float_acc) reduce_into<double, T>(c.host, L, M);
    else reduce_into<int64_t, T>(c.host, L, M);
  });

  // acc -> out, dividing by R for mean (R == 0 gives nan like torch)
  vt::dispatch(vt::kAllTypes, out_dtype, c.op, [&](auto tag) {
    using O = typename decltype(tag)::type;
    O* o = vt::data<O>(out);
    if (float_acc) {
      const double* a = reinterpret_cast<const double*>(acc);
      const double scale = Mean ? 1.0 / (double)R : 1.0;
      for (int64_t i = 0; i < M; ++i) o[i] = vt::convert<O>(a[i] * scale);  // R == 0: 0 * inf = nan
    } else {
      const int64_t* a = reinterpret_cast<const int64_t*>(acc);
      for (int64_t i = 0; i < M; ++i) o[i] = vt::convert<O>(a[i]);
    }
  });
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(sum_cpu, "core::sum") { reduce<false>(c); }
VT_KERNEL(mean_cpu, "core::mean") { reduce<true>(c); }

VT_BACKWARD(sum_backward, "core::sum") {
  vt_tensor* self = g.saved(0);
  bool reduced[vt::kMaxDims];
  shp::parse_dims_nocheck(g.arg(1).v.ints, self->ndim, reduced);
  vt::Tensor gk = shp::cast_like(g.host, shp::keepdim_grad(g.host, g.grad_out(0), self, reduced, g.arg(2).v.b != 0), self);
  g.set_grad(0, vt::call(g.host, "core::expand", {gk, vt::V::sizes(self)}));
}

VT_BACKWARD(mean_backward, "core::mean") {
  vt_tensor* self = g.saved(0);
  bool reduced[vt::kMaxDims];
  shp::parse_dims_nocheck(g.arg(1).v.ints, self->ndim, reduced);
  int64_t R = 1;
  for (int32_t d = 0; d < self->ndim; ++d)
    if (reduced[d]) R *= self->sizes[d];
  vt::Tensor gk = shp::cast_like(g.host, shp::keepdim_grad(g.host, g.grad_out(0), self, reduced, g.arg(2).v.b != 0), self);
  gk = shp::scale(g.host, std::move(gk), 1.0 / (double)R);
  g.set_grad(0, vt::call(g.host, "core::expand", {gk, vt::V::sizes(self)}));
}

// ================================================================================================
// The general reduction driver for everything but sum/mean. Kept and reduced dims are listed in
// logical order (size-1 dims dropped, neighbours that are contiguous among themselves merged), so
// "the i-th reduced element" is its row-major index (what argmax returns). Each output element is
// reduced by one thread over rows of the innermost reduced dim; a full reduction of a long row
// is split into fixed blocks merged in order. Either way results do not depend on thread count.
// ================================================================================================
namespace {

struct Geom {
  int32_t nk = 0, nr = 0;
  int64_t ks[vt::kMaxDims], kst[vt::kMaxDims];  // kept dims: sizes, element strides
  int64_t rs[vt::kMaxDims], rst[vt::kMaxDims];  // reduced dims
  int64_t M = 1, R = 1;                         // outputs, elements per output
  int64_t out_shape[vt::kMaxDims];
  int32_t out_ndim = 0;
};

void merge_dims(int64_t* s, int64_t* st, int32_t& n) {
  int32_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (s[i] != 1) {
      s[w] = s[i];
      st[w++] = st[i];
    }
  n = w;
  if (n == 0) return;
  int32_t o = 0;
  for (int32_t i = 1; i < n; ++i) {
    if (st[o] == s[i] * st[i]) {
      s[o] *= s[i];
      st[o] = st[i];
    } else {
      ++o;
      s[o] = s[i];
      st[o] = st[i];
    }
  }
  n = o + 1;
}

Geom make_geom(const vt_tensor* x, const bool* reduced, bool keepdim) {
  Geom g;
  for (int32_t d = 0; d < x->ndim; ++d) {
    if (reduced[d]) {
      g.rs[g.nr] = x->sizes[d];
      g.rst[g.nr++] = x->strides[d];
      g.R *= x->sizes[d];
      if (keepdim) g.out_shape[g.out_ndim++] = 1;
    } else {
      g.ks[g.nk] = x->sizes[d];
      g.kst[g.nk++] = x->strides[d];
      g.M *= x->sizes[d];
      g.out_shape[g.out_ndim++] = x->sizes[d];
    }
  }
  merge_dims(g.rs, g.rst, g.nr);
  merge_dims(g.ks, g.kst, g.nk);
  return g;
}

// f(row pointer, element stride, n, row-major index of the row's first element) over the
// reduced elements that start at `base`
template <class T, class F>
void walk(const Geom& g, const T* base, F&& f) {
  if (g.R == 0) return;
  if (g.nr == 0) {
    f(base, (int64_t)0, (int64_t)1, (int64_t)0);
    return;
  }
  const int32_t last = g.nr - 1;
  const int64_t n = g.rs[last], st = g.rst[last], rows = g.R / n;
  int64_t idx[vt::kMaxDims] = {};
  const T* p = base;
  for (int64_t r = 0; r < rows; ++r) {
    f(p, st, n, r * n);
    for (int32_t d = last - 1; d >= 0; --d) {
      p += g.rst[d];
      if (++idx[d] < g.rs[d]) break;
      p -= g.rs[d] * g.rst[d];
      idx[d] = 0;
    }
  }
}

// Runs Acc over every output: write(o, acc) stores output o (0..M, row-major over kept dims).
// Acc: add_row(const T* p, int64_t stride, int64_t n, int64_t first_index); merge(const Acc&)
// with the later part; copyable from `proto`.
template <class T, class Acc, class Write>
void run_reduce(const vt_host* host, const Geom& g, const T* data, const Acc& proto, Write&& write) {
  if (g.M == 0) return;
  if (g.M == 1 && g.nr == 1 && g.R > vt::kGrain) {
    const int64_t st = g.rst[0], B = vt::kGrain, nb = (g.R + B - 1) / B;
    std::vector<Acc> parts((size_t)nb, proto);
    vt::parallel_for(host, 0, nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k)
        parts[(size_t)k].add_row(data + k * B * st, st, std::min(B, g.R - k * B), k * B);
    });
    Acc a = parts[0];
    for (int64_t k = 1; k < nb; ++k) a.merge(parts[(size_t)k]);
    write(0, a);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, vt::kGrain / std::max<int64_t>(g.R, 1));
  vt::parallel_for(host, 0, g.M, grain, [&](int64_t b, int64_t e) {
    int64_t idx[vt::kMaxDims] = {};
    int64_t rem = b, off = 0;
    for (int32_t d = g.nk - 1; d >= 0; --d) {
      idx[d] = rem % g.ks[d];
      rem /= g.ks[d];
      off += idx[d] * g.kst[d];
    }
    const T* p = data + off;
    for (int64_t o = b; o < e; ++o) {
      Acc a = proto;
      walk(g, p, [&](const T* row, int64_t st, int64_t n, int64_t first) { a.add_row(row, st, n, first); });
      write(o, a);
      for (int32_t d = g.nk - 1; d >= 0; --d) {
        p += g.kst[d];
        if (++idx[d] < g.ks[d]) break;
        p -= g.ks[d] * g.kst[d];
        idx[d] = 0;
      }
    }
  });
}

// sum of f(x) over a row in double, 4 independent accumulators on the contiguous path
template <class T, class F>
double row_acc(const T* p, int64_t st, int64_t n, F f) {
  if (st == 1) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      a0 += f((double)vt::convert<double>(p[i]));
      a1 += f((double)vt::convert<double>(p[i + 1]));
      a2 += f((double)vt::convert<double>(p[i + 2]));
      a3 += f((double)vt::convert<double>(p[i + 3]));
    }
    for (; i < n; ++i) a0 += f(vt::convert<double>(p[i]));
    return (a0 + a1) + (a2 + a3);
  }
  double a = 0;
  for (int64_t i = 0; i < n; ++i) a += f(vt::convert<double>(p[i * st]));
  return a;
}

// ---- var / std: per block (count, mean, M2), merged with Chan's formula --------------------------
template <class T>
struct VarAcc {
  double n = 0, mean = 0, m2 = 0;
  void add_row(const T* p, int64_t st, int64_t k, int64_t) {
    if (k == 0) return;
    const double mu = row_acc(p, st, k, [](double v) { return v; }) / (double)k;
    const double m2r = row_acc(p, st, k, [mu](double v) { return (v - mu) * (v - mu); });
    VarAcc o;
    o.n = (double)k;
    o.mean = mu;
    o.m2 = m2r;
    merge(o);
  }
  void merge(const VarAcc& o) {
    if (o.n == 0) return;
    if (n == 0) {
      *this = o;
      return;
    }
    const double t = n + o.n, d = o.mean - mean;
    mean += d * o.n / t;
    m2 += o.m2 + d * d * n * o.n / t;
    n = t;
  }
};

template <bool Std>
void var_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(1, "dim").ints();
  const int64_t correction = c.arg(2, "correction").int_();
  const bool keepdim = c.arg(3, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  if (!vt::is_floating(x->dtype))
    c.fail(VT_ERR_TYPE, "self must be a floating tensor, got %s", vt::dtype_name(x->dtype));
  bool reduced[vt::kMaxDims];
  shp::parse_dims(c, dims, x->ndim, reduced);
  const Geom g = make_geom(x, reduced, keepdim);
  vt::Tensor out = c.empty(g.out_shape, g.out_ndim, x->dtype);
  const double denom = std::max<double>(0.0, (double)g.R - (double)correction);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), VarAcc<T>{}, [&](int64_t i, const VarAcc<T>& a) {
      double v = g.R == 0 ? std::numeric_limits<double>::quiet_NaN() : a.m2 / denom;
      if (Std) v = std::sqrt(v);
      o[i] = T(v);
    });
  });
  c.set_out(0, std::move(out));
}

// ---- max / min / argmax / argmin: NaN wins (and then stays), ties keep the first index -----------
template <class T, bool Max>
struct ExtAcc {
  using A = vt::acc_t<T>;
  A best{};
  int64_t index = -1;
  bool nan = false;
  static bool isnan_(A v) {
    if constexpr (std::is_floating_point<A>::value) return std::isnan(v);
    else return false;
  }
  void take(A v, int64_t i) {
    if (nan) return;
    if (isnan_(v)) {
      best = v;
      index = i;
      nan = true;
    } else if (index < 0 || (Max ? v > best : v < best)) {
      best = v;
      index = i;
    }
  }
  void add_row(const T* p, int64_t st, int64_t n, int64_t first) {
    for (int64_t i = 0; i < n && !nan; ++i) take((A)p[i * st], first + i);
  }
  void merge(const ExtAcc& o) {
    if (o.index >= 0) take(o.best, o.index);
  }
};

// max/min over one dim: (values, indices)
template <bool Max>
void ext_dim_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int32_t d = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), x->ndim);
  const bool keepdim = c.arg(2, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  bool reduced[vt::kMaxDims] = {};
  if (x->ndim > 0) {
    reduced[d] = true;
    if (x->sizes[d] == 0) c.fail(VT_ERR_INDEX, "cannot reduce over dim %d of size 0 (self %s)", d, vt::shape_str(x).c_str());
  }
  const Geom g = make_geom(x, reduced, keepdim);
  vt::Tensor values = c.empty(g.out_shape, g.out_ndim, x->dtype);
  vt::Tensor indices = c.empty(g.out_shape, g.out_ndim, vt::kInt64);
  int64_t* oi = vt::data<int64_t>(indices);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* ov = vt::data<T>(values);
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t i, const ExtAcc<T, Max>& a) {
      ov[i] = T(a.best);
      oi[i] = a.index;
    });
  });
  c.set_out(0, std::move(values));
  c.set_out(1, std::move(indices));
}

// max/min of every element: a 0-d tensor
template <bool Max>
void ext_all_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, x, "self");
  if (x->numel == 0) c.fail(VT_ERR_VALUE, "cannot reduce a tensor with no elements (self %s); pass dim", vt::shape_str(x).c_str());
  bool reduced[vt::kMaxDims];
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = d < x->ndim;
  const Geom g = make_geom(x, reduced, false);
  vt::Tensor out = c.empty(nullptr, 0, x->dtype);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t, const ExtAcc<T, Max>& a) { o[0] = T(a.best); });
  });
  c.set_out(0, std::move(out));
}

// argmax/argmin(self, dim=None, keepdim=False): dim=None -> the index into the flattened tensor
template <bool Max>
void arg_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt::Arg dim_a = c.arg(1, "dim");
  const bool keepdim = c.arg(2, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  bool reduced[vt::kMaxDims] = {};
  if (dim_a.is_none()) {
    if (x->numel == 0) c.fail(VT_ERR_VALUE, "cannot take the arg%s of an empty tensor (self %s)", Max ? "max" : "min", vt::shape_str(x).c_str());
    for (int32_t d = 0; d < x->ndim; ++d) reduced[d] = true;
  } else {
    const int32_t d = vt::wrap_dim(c.op, dim_a.int_(), x->ndim);
    if (x->ndim > 0) {
      reduced[d] = true;
      if (x->sizes[d] == 0) c.fail(VT_ERR_INDEX, "cannot reduce over dim %d of size 0 (self %s)", d, vt::shape_str(x).c_str());
    }
  }
  const Geom g = make_geom(x, reduced, keepdim);
  vt::Tensor out = c.empty(g.out_shape, g.out_ndim, vt::kInt64);
  int64_t* o = vt::data<int64_t>(out);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t i, const ExtAcc<T, Max>& a) { o[i] = a.index; });
  });
  c.set_out(0, std::move(out));
}

// ---- logsumexp: running (max, sum of exp(x - max)) ---------------------------------------------------
template <class T>
struct LseAcc {
  double m = -std::numeric_limits<double>::infinity(), s = 0;
  void combine(double om, double os) {
    if (std::isnan(m)) return;
    if (std::isnan(om)) {
      m = om;
      return;
    }
    const double nm = std::max(m, om);
    if (std::isinf(nm)) {  // all -inf so far (sum stays 0), or +inf (the result is +inf)
      m = nm;
      return;
    }
    s = s * std::exp(m - nm) + os * std::exp(om - nm);
    m = nm;
  }
  void add_row(const T* p, int64_t st, int64_t n, int64_t) {
    double rm = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const double v = vt::convert<double>(p[i * st]);
      if (std::isnan(v)) {
        rm = v;
        break;
      }
      rm = std::max(rm, v);
    }
    if (std::isnan(rm) || std::isinf(rm)) {
      combine(rm, 0.0);
      return;
    }
    combine(rm, row_acc(p, st, n, [rm](double v) { return std::exp(v - rm); }));
  }
  void merge(const LseAcc& o) { combine(o.m, o.s); }
  double result() const { return (std::isnan(m) || std::isinf(m)) ? m : m + std::log(s); }
};

void logsumexp_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(1, "dim").ints();
  const bool keepdim = c.arg(2, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  bool reduced[vt::kMaxDims];
  shp::parse_dims(c, dims, x->ndim, reduced);
  const Geom g = make_geom(x, reduced, keepdim);
  const vt_dtype od = vt::is_floating(x->dtype) ? x->dtype : vt::kFloat32;
  vt::Tensor out = c.empty(g.out_shape, g.out_ndim, od);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_reduce(c.host, g, vt::data<const T>(x), LseAcc<T>{}, [&](int64_t i, const LseAcc<T>& a) {
      vt::dispatch(vt::kFloatingTypes, od, c.op, [&](auto otag) {
        using O = typename decltype(otag)::type;
        vt::data<O>(out)[i] = O(a.result());
      });
    });
  });
  c.set_out(0, std::move(out));
}

// ---- norm: p = 2 (default), 1, inf, -inf, 0 (count of nonzeros), any other p -------------------------
enum class NormKind { Two, One, Inf, NegInf, Zero, P };

template <class T>
struct NormAcc {
  NormKind kind;
  double p;
  double a;  // running sum (or max/min of |x|)
  bool any = false;
  NormAcc(NormKind k, double p) : kind(k), p(p), a(k == NormKind::NegInf ? std::numeric_limits<double>::infinity() : 0.0) {}
  void add_row(const T* ptr, int64_t st, int64_t n, int64_t) {
    switch (kind) {
      case NormKind::Two: a += row_acc(ptr, st, n, [](double v) { return v * v; }); break;
      case NormKind::One: a += row_acc(ptr, st, n, [](double v) { return std::fabs(v); }); break;
      case NormKind::Zero: a += row_acc(ptr, st, n, [](double v) { return v != 0.0 ? 1.0 : 0.0; }); break;
      case NormKind::P: {
        const double pp = p;
        a += row_acc(ptr, st, n, [pp](double v) { return std::pow(std::fabs(v), pp); });
        break;
      }
      case NormKind::Inf:
      case NormKind::NegInf:
        for (int64_t i = 0; i < n; ++i) {
          const double v = std::fabs(vt::convert<double>(ptr[i * st]));
          if (std::isnan(v) || std::isnan(a)) a = std::numeric_limits<double>::quiet_NaN();
          else a = kind == NormKind::Inf ? std::max(a, v) : std::min(a, v);
        }
        break;
    }
    any = any || n > 0;
  }
  void merge(const NormAcc& o) {
    if (kind == NormKind::Inf || kind == NormKind::NegInf) {
      if (std::isnan(o.a) || std::isnan(a)) a = std::numeric_limits<double>::quiet_NaN();
      else if (o.any) a = kind == NormKind::Inf ? std::max(a, o.a) : std::min(a, o.a);
    } else {
      a += o.a;
    }
    any = any || o.any;
  }
  double result() const {
    switch (kind) {
      case NormKind::Two: return std::sqrt(a);
      case NormKind::P: return std::pow(a, 1.0 / p);
      case NormKind::NegInf: return any ? a : std::numeric_limits<double>::infinity();
      default: return a;
    }
  }
};

void norm_kernel(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const double p = c.arg(1, "p").float_();
  const vt_int_list dims = c.arg(2, "dim").ints();
  const bool keepdim = c.arg(3, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  if (!vt::is_floating(x->dtype)) c.fail(VT_ERR_TYPE, "self must be a floating tensor, got %s", vt::dtype_name(x->dtype));
  if (std::isnan(p)) c.fail(VT_ERR_VALUE, "p must not be nan");
  const NormKind kind = p == 2.0 ? NormKind::Two : p == 1.0 ? NormKind::One : p == 0.0 ? NormKind::Zero
                      : std::isinf(p) ? (p > 0 ? NormKind::Inf : NormKind::NegInf) : NormKind::P;
  bool reduced[vt::kMaxDims];
  shp::parse_dims(c, dims, x->ndim, reduced);
  const Geom g = make_geom(x, reduced, keepdim);
  vt::Tensor out = c.empty(g.out_shape, g.out_ndim, x->dtype);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), NormAcc<T>(kind, p), [&](int64_t i, const NormAcc<T>& a) { o[i] = T(a.result()); });
  });
  c.set_out(0, std::move(out));
}

}  // namespace

VT_KERNEL(var_cpu, "core::var") { var_kernel<false>(c); }
VT_KERNEL(std_cpu, "core::std") { var_kernel<true>(c); }
VT_KERNEL(max_dim_cpu, "core::max_dim") { ext_dim_kernel<true>(c); }
VT_KERNEL(min_dim_cpu, "core::min_dim") { ext_dim_kernel<false>(c); }
VT_KERNEL(max_cpu, "core::max") { ext_all_kernel<true>(c); }
VT_KERNEL(min_cpu, "core::min") { ext_all_kernel<false>(c); }
VT_KERNEL(argmax_cpu, "core::argmax") { arg_kernel<true>(c); }
VT_KERNEL(argmin_cpu, "core::argmin") { arg_kernel<false>(c); }
VT_KERNEL(logsumexp_cpu, "core::logsumexp") { logsumexp_kernel(c); }
VT_KERNEL(norm_cpu, "core::norm") { norm_kernel(c); }

// ---- cumsum -------------------------------------------------------------------------------------------
// Each line along `dim` is summed in order by one thread (acc: double for floating, int64 for
// integers); lines are split across threads.
VT_KERNEL(cumsum_cpu, "core::cumsum") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt::Arg dtype_a = c.arg(2, "dtype");
  vt::check_ndim(c.op, x, "self");
  const int32_t d = vt::wrap_dim(c.op, c.arg(1, "dim").int_(), x->ndim);
  const vt_dtype od = !dtype_a.is_none() ? dtype_a.dtype() : vt::is_floating(x->dtype) ? x->dtype : vt::kInt64;
  vt::Tensor out = c.empty(x->sizes, x->ndim, od);
  if (x->numel == 0) {
    c.set_out(0, std::move(out));
    return;
  }
  const int64_t n = x->ndim ? x->sizes[d] : 1, xs = x->ndim ? x->strides[d] : 0;
  int64_t inner = 1;
  for (int32_t i = d + 1; i < x->ndim; ++i) inner *= x->sizes[i];
  const int64_t lines = x->numel / n;
  // line l -> (outer index, inner index) of out (contiguous) and of x (strided)
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::dispatch(vt::kArithTypes, od, c.op, [&](auto otag) {
      using O = typename decltype(otag)::type;
      using A = typename std::conditional<vt::is_reduced_float_v<O> || std::is_floating_point<O>::value, double, int64_t>::type;
      const T* xd = vt::data<const T>(x);
      O* o = vt::data<O>(out);
      vt::parallel_for(c.host, 0, lines, std::max<int64_t>(1, vt::kGrain / n), [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
          const int64_t oi = l / inner, ii = l % inner;
          // x offset of (outer oi, inner ii): decode over the dims other than d
          int64_t off = 0, rem = ii;
          for (int32_t k = x->ndim - 1; k > d; --k) {
            off += (rem % x->sizes[k]) * x->strides[k];
            rem /= x->sizes[k];
          }
          rem = oi;
          for (int32_t k = d - 1; k >= 0; --k) {
            off += (rem % x->sizes[k]) * x->strides[k];
            rem /= x->sizes[k];
          }
          O* op = o + oi * n * inner + ii;
          A acc = 0;
          for (int64_t j = 0; j < n; ++j) {
            acc += vt::convert<A>(xd[off + j * xs]);
            op[j * inner] = vt::convert<O>(acc);
          }
        }
      });
    });
  });
  c.set_out(0, std::move(out));
}

// ================================================================================================
// Backward rules (composed of ops, so double backward works). Reductions save self for its shape.
// ================================================================================================
namespace {

using vt::V;

// dims of a reduction call as a bool mask over self's dims
void reduced_of(const vt_value& dims, const vt_tensor* self, bool* reduced) {
  shp::parse_dims_nocheck(dims.v.ints, self->ndim, reduced);
}
int64_t reduced_count(const vt_tensor* self, const bool* reduced) {
  int64_t R = 1;
  for (int32_t d = 0; d < self->ndim; ++d)
    if (reduced[d]) R *= self->sizes[d];
  return R;
}
std::vector<int64_t> reduced_list(const vt_tensor* self, const bool* reduced) {
  std::vector<int64_t> l;
  for (int32_t d = 0; d < self->ndim; ++d)
    if (reduced[d]) l.push_back(d);
  return l;
}
// x - mean(x, dims, keepdim=True)
vt::Tensor centered(const vt_host* h, vt_tensor* x, const bool* reduced) {
  const std::vector<int64_t> l = reduced_list(x, reduced);
  vt::Tensor m = vt::call(h, "core::mean", {x, V(l), true, V::none()});
  return vt::call(h, "core::sub", {x, m, 1.0});
}
// a gradient for the values of a max/min over one dim: grad at the chosen index, 0 elsewhere
vt::Tensor scatter_grad(const vt_host* h, vt_tensor* self, int64_t dim, vt_tensor* go, vt_tensor* idx, bool keepdim) {
  if (self->ndim == 0) return shp::retained(h, go);
  vt::Tensor gk, ik;
  if (keepdim) {
    gk = shp::retained(h, go);
    ik = shp::retained(h, idx);
  } else {
    gk = vt::call(h, "core::unsqueeze", {go, dim});
    ik = vt::call(h, "core::unsqueeze", {idx, dim});
  }
  vt::Tensor z = shp::zeros_like(h, self);
  return vt::call(h, "core::scatter_add", {z, dim, ik, gk});
}

}  // namespace

VT_BACKWARD(var_backward, "core::var") {
  vt_tensor* x = g.saved(0);
  bool reduced[vt::kMaxDims];
  reduced_of(g.arg(1), x, reduced);
  const double denom = std::max<double>(0.0, (double)reduced_count(x, reduced) - (double)g.arg(2).v.i);
  vt::Tensor gk = shp::keepdim_grad(g.host, g.grad_out(0), x, reduced, g.arg(3).v.b != 0);
  vt::Tensor d = centered(g.host, x, reduced);
  vt::Tensor r = vt::call(g.host, "core::mul", {d, gk});
  g.set_grad(0, shp::scale(g.host, std::move(r), 2.0 / denom));
}

VT_BACKWARD(std_backward, "core::std") {
  vt_tensor* x = g.saved(0);
  bool reduced[vt::kMaxDims];
  reduced_of(g.arg(1), x, reduced);
  const double denom = std::max<double>(0.0, (double)reduced_count(x, reduced) - (double)g.arg(2).v.i);
  const bool keepdim = g.arg(3).v.b != 0;
  vt::Tensor gk = shp::keepdim_grad(g.host, g.grad_out(0), x, reduced, keepdim);
  // the result is recomputed rather than saved: the engine keeps saved outputs without their
  // history, which would drop the second-order terms of double backward
  const std::vector<int64_t> l = reduced_list(x, reduced);
  vt::Tensor sk = vt::call(g.host, "core::std", {x, V(l), g.arg(2).v.i, true});
  vt::Tensor q = vt::call(g.host, "core::div", {gk, sk});
  vt::Tensor d = centered(g.host, x, reduced);
  vt::Tensor r = vt::call(g.host, "core::mul", {d, q});
  g.set_grad(0, shp::scale(g.host, std::move(r), 1.0 / denom));
}

VT_BACKWARD(ext_dim_backward, "core::max_dim") {
  vt_tensor* x = g.saved(0);
  vt_tensor* go = g.grad_out(0);
  if (!go) return;
  const int64_t dim = x->ndim ? (g.arg(1).v.i + x->ndim) % x->ndim : 0;
  g.set_grad(0, scatter_grad(g.host, x, dim, go, g.out(1), g.arg(2).v.b != 0));
}

// max()/min() of everything: the gradient goes to the first extreme element (torch spreads it
// evenly over ties; for distinct values they agree)
template <bool Max>
void ext_all_backward(vt::Grad& g) {
  vt_tensor* x = g.saved(0);
  const std::vector<int64_t> flat{-1}, one{1};
  vt::Tensor xf = vt::call(g.host, "core::reshape", {x, V(flat)});
  vt::Tensor idx = vt::call(g.host, Max ? "core::argmax" : "core::argmin", {xf, (int64_t)0, true});
  vt::Tensor g1 = vt::call(g.host, "core::reshape", {g.grad_out(0), V(one)});
  vt::Tensor z = shp::zeros_like(g.host, xf);
  vt::Tensor r = vt::call(g.host, "core::scatter_add", {z, (int64_t)0, idx, g1});
  g.set_grad(0, vt::call(g.host, "core::reshape", {r, V::sizes(x)}));
}
VT_BACKWARD(max_backward, "core::max") { ext_all_backward<true>(g); }
VT_BACKWARD(min_backward, "core::min") { ext_all_backward<false>(g); }

VT_BACKWARD(logsumexp_backward, "core::logsumexp") {
  vt_tensor* x = g.saved(0);
  bool reduced[vt::kMaxDims];
  reduced_of(g.arg(1), x, reduced);
  const bool keepdim = g.arg(2).v.b != 0;
  vt::Tensor gk = shp::keepdim_grad(g.host, g.grad_out(0), x, reduced, keepdim);
  const std::vector<int64_t> l = reduced_list(x, reduced);  // recomputed: see std_backward
  vt::Tensor ok = vt::call(g.host, "core::logsumexp", {x, V(l), true});
  vt::Tensor e = vt::call(g.host, "core::exp", {vt::call(g.host, "core::sub", {x, ok, 1.0})});
  g.set_grad(0, vt::call(g.host, "core::mul", {e, gk}));
}

// d|x|_p = sign(x) |x|^(p-1) / |x|_p^(p-1); p=2 is x / |x|_2; 0 where the norm is 0
VT_BACKWARD(norm_backward, "core::norm") {
  vt_tensor* x = g.saved(0);
  const double p = g.arg(1).tag == VT_INT ? (double)g.arg(1).v.i : g.arg(1).v.f;
  bool reduced[vt::kMaxDims];
  reduced_of(g.arg(2), x, reduced);
  const bool keepdim = g.arg(3).v.b != 0;
  const vt_host* h = g.host;
  if (p == 0.0) {
    g.set_grad(0, shp::zeros_like(h, x));
    return;
  }
  vt::Tensor gk = shp::keepdim_grad(h, g.grad_out(0), x, reduced, keepdim);
  const std::vector<int64_t> l = reduced_list(x, reduced);  // recomputed: see std_backward
  vt::Tensor nk = vt::call(h, "core::norm", {x, p, V(l), true});
  vt::Tensor zero = shp::scalar_like(h, x, 0.0);
  vt::Tensor r;
  if (p == 2.0) {
    r = vt::call(h, "core::mul", {x, vt::call(h, "core::div", {gk, nk})});
  } else if (p == 1.0) {
    r = vt::call(h, "core::mul", {vt::call(h, "core::sign", {x}), gk});
  } else if (std::isinf(p)) {  // the gradient is shared by the elements where |x| hits the norm
    vt::Tensor ax = vt::call(h, "core::abs", {x});
    vt::Tensor m = vt::call(h, "core::to_dtype", {vt::call(h, "core::eq", {ax, nk}), V(x->dtype)});
    vt::Tensor cnt = vt::call(h, "core::sum", {m, V(l), true, V::none()});
    vt::Tensor s = vt::call(h, "core::mul", {vt::call(h, "core::sign", {x}), m});
    r = vt::call(h, "core::mul", {s, vt::call(h, "core::div", {gk, cnt})});
  } else {
    vt::Tensor pm1 = shp::scalar_like(h, x, p - 1.0);
    vt::Tensor ax = vt::call(h, "core::pow", {vt::call(h, "core::abs", {x}), pm1});
    vt::Tensor num = vt::call(h, "core::mul", {vt::call(h, "core::sign", {x}), ax});
    vt::Tensor den = vt::call(h, "core::pow", {nk, pm1});
    r = vt::call(h, "core::mul", {num, vt::call(h, "core::div", {gk, den})});
  }
  vt::Tensor mask = vt::call(h, "core::eq", {nk, zero});
  g.set_grad(0, vt::call(h, "core::where", {mask, zero, r}));
}

// reverse cumulative sum: sum(g) - cumsum(g) + g
VT_BACKWARD(cumsum_backward, "core::cumsum") {
  vt_tensor* x = g.saved(0);
  vt_tensor* go = g.grad_out(0);
  const int64_t dim = g.arg(1).v.i;
  if (x->ndim == 0) {
    g.set_grad(0, shp::cast_like(g.host, shp::retained(g.host, go), x));
    return;
  }
  const std::vector<int64_t> dims{dim};
  vt::Tensor tot = vt::call(g.host, "core::sum", {go, V(dims), true, V::none()});
  vt::Tensor cs = vt::call(g.host, "core::cumsum", {go, dim, V::none()});
  vt::Tensor r = vt::call(g.host, "core::add", {vt::call(g.host, "core::sub", {tot, cs, 1.0}), go, 1.0});
  g.set_grad(0, shp::cast_like(g.host, std::move(r), x));
}

using core::OpDef;

const OpDef kReduceOps[] = {
    {"core::sum(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", sum_cpu, sum_backward, 1},
    {"core::mean(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", mean_cpu, mean_backward, 1},
    {"core::var(Tensor self, int[] dim=[], int correction=1, bool keepdim=False) -> Tensor", var_cpu, var_backward, 1},
    {"core::std(Tensor self, int[] dim=[], int correction=1, bool keepdim=False) -> Tensor", std_cpu, std_backward, 1},
    {"core::max_dim(Tensor self, int dim, bool keepdim=False) -> (Tensor, Tensor)", max_dim_cpu, ext_dim_backward, 1, 2},
    {"core::min_dim(Tensor self, int dim, bool keepdim=False) -> (Tensor, Tensor)", min_dim_cpu, ext_dim_backward, 1, 2},
    {"core::max(Tensor self) -> Tensor", max_cpu, max_backward, 1},
    {"core::min(Tensor self) -> Tensor", min_cpu, min_backward, 1},
    {"core::argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", argmax_cpu},
    {"core::argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", argmin_cpu},
    {"core::logsumexp(Tensor self, int[] dim=[], bool keepdim=False) -> Tensor", logsumexp_cpu, logsumexp_backward, 1},
    {"core::norm(Tensor self, float p=2.0, int[] dim=[], bool keepdim=False) -> Tensor", norm_cpu, norm_backward, 1},
    {"core::cumsum(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", cumsum_cpu, cumsum_backward, 1},
};
VT_OP_TABLE(kReduceOps)
