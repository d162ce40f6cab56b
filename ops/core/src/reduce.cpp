// ops/core/src/reduce.cpp — sum and mean over any set of dims, on CPU.
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
#include <memory>
#include <vector>

#include "vt/loops.hpp"

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
