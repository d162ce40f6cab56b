// ops/core/src/reduce.cpp — reductions: sum, mean, var, std, max/min (with and without dim),
// argmax/argmin, logsumexp, norm, cumsum; their meta steps, CPU computes, backward rules and the
// family's table.
//
// Meta steps: one per kind of reduction — over a dim list (dims_meta: sum, mean, var, std,
// logsumexp, norm), over one dim (dim_meta: max_dim/min_dim, argmax/argmin), over everything
// (all_meta: max/min), a scan (cumsum_meta). They check the arguments and make the outputs with
// the shape helpers of reduce_util.hpp, which device computes share. The CPU computes below only
// fill the outputs.
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
//
// Fast path (sum, mean, var, std on contiguous float32/float64): x is seen as (O, R, I) with the
// middle dim reduced (any contiguous run of reduced dims). I == 1: each row is summed in chunks of
// 4096 with 64 float lanes (each lane adds <= 64 elements), chunks added in double. I > 1: tiles
// of 256 columns, rows added in float in groups of 64, groups added in double, so a whole row of
// x is added at a time (vectorised) rather than a column walked at a large stride. Long rows /
// tall columns are split into fixed blocks (chosen from the shape alone) combined in order:
// results are bit-identical for any thread count. var/std use two passes (mean, then the sums of
// d = x - mean and d^2, m2 = S(d^2) - S(d)^2 / R).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")  // see unary.cpp: lets the select-style loops vectorise
#if defined(__x86_64__)
#pragma GCC target("prefer-vector-width=512")  // see unary.cpp
#endif
#endif
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core.hpp"
#include "reduce_util.hpp"
#include "vmath.hpp"

namespace {

// ---- the contiguous (O, R, I) fast path ---------------------------------------------------------
struct ORI {
  int64_t O = 1, R = 1, I = 1;
};

// true when x fills its memory exactly in some order of its dims (contiguous, or a transpose or
// permutation of a contiguous tensor) and, taken in that memory order, its reduced dims (size-1
// dims aside) are adjacent and its kept dims keep their logical order (so the (O, I) results are
// laid out as the output is). x.t().sum(1) is then the column sum it is in memory.
bool as_ori(const vt_tensor* x, const bool* reduced, ORI& g) {
  if (x->numel == 0) return false;
  int32_t order[vt::kMaxDims];
  int32_t k = 0;
  for (int32_t d = 0; d < x->ndim; ++d)
    if (x->sizes[d] != 1) order[k++] = d;
  std::stable_sort(order, order + k, [&](int32_t a, int32_t b) { return x->strides[a] > x->strides[b]; });
  int64_t expected = 1;
  for (int32_t i = k - 1; i >= 0; --i) {
    if (x->strides[order[i]] != expected) return false;
    expected *= x->sizes[order[i]];
  }
  int state = 0;  // 0: before the reduced run, 1: inside it, 2: after it
  int32_t last_kept = -1;
  for (int32_t i = 0; i < k; ++i) {
    const int32_t d = order[i];
    const int64_t s = x->sizes[d];
    if (reduced[d]) {
      if (state == 2) return false;
      state = 1;
      g.R *= s;
      continue;
    }
    if (d < last_kept) return false;
    last_kept = d;
    if (state == 0) {
      g.O *= s;
    } else {
      state = 2;
      g.I *= s;
    }
  }
  return true;
}

constexpr int64_t kRowChunk = 4096;    // row elements per float partial
constexpr int64_t kRowBlock = 65536;   // rows longer than this are split into blocks of it
constexpr int64_t kColTile = 256;      // columns per task
constexpr int64_t kColGroup = 64;      // rows added in float before going into double
constexpr int64_t kColBlock = 512;     // row block when a column reduction has few tasks

// The row loops below are written with GCC's vector extension (64-byte vectors: one AVX-512
// register, or two/four narrower ones where the target lacks it): GCC did not vectorise the
// equivalent "array of 64 lanes" loops in this file, and these must not depend on its mood.
typedef float vf16 __attribute__((vector_size(64)));
typedef double vd8 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
template <class L> struct VecOf;
template <> struct VecOf<float> { using type = vf16; };
template <> struct VecOf<double> { using type = vd8; };
template <class V, class L>
inline V vload(const L* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
inline double vsum(V v) {  // pairwise over the lanes
  constexpr int W = sizeof(V) / sizeof(v[0]);
  auto a = v[0];
  decltype(a) t[W];
  for (int j = 0; j < W; ++j) t[j] = v[j];
  for (int w = W / 2; w > 0; w /= 2)
    for (int j = 0; j < w; ++j) t[j] += t[j + w];
  a = t[0];
  return (double)a;
}

// s1 += sum of x (Dev: of d = x - mu), s2 += sum of d^2, over n contiguous elements, in chunks of
// kRowChunk summed in lanes of L (4 vectors: 64 floats / 32 doubles), chunks added in double
template <class T, class L, bool Dev>
void row_sums(const T* x, int64_t n, L mu, double& s1, double& s2) {
  if constexpr (!std::is_same<T, L>::value) {  // float summed in double (a float64 result): scalar
    for (int64_t i = 0; i < n; ++i) {
      const L d = (L)x[i] - mu;
      s1 += d;
      if constexpr (Dev) s2 += d * d;
    }
  } else {
    using V = typename VecOf<L>::type;
    constexpr int64_t W = sizeof(V) / sizeof(L);
    const V vm = V{} + mu;
    for (int64_t c = 0; c < n; c += kRowChunk) {
      const int64_t m = std::min(kRowChunk, n - c);
      const L* p = x + c;
      V a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
      int64_t i = 0;
      for (; i + 4 * W <= m; i += 4 * W) {
        V v0 = vload<V>(p + i), v1 = vload<V>(p + i + W), v2 = vload<V>(p + i + 2 * W), v3 = vload<V>(p + i + 3 * W);
        if constexpr (Dev) {
          v0 -= vm, v1 -= vm, v2 -= vm, v3 -= vm;
          b0 += v0 * v0, b1 += v1 * v1, b2 += v2 * v2, b3 += v3 * v3;
        }
        a0 += v0, a1 += v1, a2 += v2, a3 += v3;
      }
      L ta = 0, tb = 0;  // the tail
      for (; i < m; ++i) {
        const L d = Dev ? p[i] - mu : p[i];
        ta += d;
        tb += d * d;
      }
      s1 += vsum((a0 + a1) + (a2 + a3)) + (double)ta;
      if constexpr (Dev) s2 += vsum((b0 + b1) + (b2 + b3)) + (double)tb;
    }
  }
}

// The first index of the largest (Max) / smallest element of a contiguous float row (ties: the
// first), or -1 when the row holds a NaN or an infinity (v - v is NaN for both): callers then take
// their scalar loop, which has the NaN rules. n >= 16 and n < 2^31.
template <bool Max>
int64_t row_arg_extreme(const float* p, int64_t n) {
  vf16 m = vload<vf16>(p), z = {};
  const vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  vi16 ix = lane;
  int32_t i = 16;
  for (; i + 16 <= n; i += 16) {
    const vf16 v = vload<vf16>(p + i);
    const vi16 better = Max ? (v > m) : (v < m);
    m = better ? v : m;
    ix = better ? lane + i : ix;
    z += v - v;
  }
  float bv = m[0], bad = z[0];
  int32_t bi = ix[0];
  for (int j = 1; j < 16; ++j) {
    const bool better = (Max ? m[j] > bv : m[j] < bv) || (m[j] == bv && ix[j] < bi);
    bv = better ? m[j] : bv;
    bi = better ? ix[j] : bi;
    bad += z[j];
  }
  for (; i < n; ++i) {
    const float v = p[i];
    if (Max ? v > bv : v < bv) {
      bv = v;
      bi = i;
    }
    bad += v - v;
  }
  return bad != bad ? -1 : bi;
}

// log-sum-exp pieces of a contiguous float row: rm = max, returns the sum of exp(x - rm) (exp
// values in chunks of kRowChunk, each summed in float lanes, chunks in double); false when the
// row holds a NaN or an infinity (callers take their scalar loop). n >= 16.
inline bool row_lse(const float* p, int64_t n, float& rm, double& sum) {
  vf16 m = vload<vf16>(p), z = {};
  int64_t i = 16;
  for (; i + 16 <= n; i += 16) {
    const vf16 v = vload<vf16>(p + i);
    m = v > m ? v : m;
    z += v - v;
  }
  float r = m[0], bad = z[0];
  for (int j = 1; j < 16; ++j) {
    r = m[j] > r ? m[j] : r;
    bad += z[j];
  }
  for (; i < n; ++i) {
    r = p[i] > r ? p[i] : r;
    bad += p[i] - p[i];
  }
  if (bad != bad) return false;
  rm = r;
  sum = 0;
  alignas(64) float e[kRowChunk];
  for (int64_t c = 0; c < n; c += kRowChunk) {
    const int64_t len = std::min(kRowChunk, n - c);
    const float* q = p + c;
    for (int64_t k = 0; k < len; ++k) e[k] = vmath::exp(q[k] - r);
    vf16 a0 = {}, a1 = {};
    int64_t k = 0;
    for (; k + 32 <= len; k += 32) {
      a0 += vload<vf16>(e + k);
      a1 += vload<vf16>(e + k + 16);
    }
    float t = 0;
    for (; k < len; ++k) t += e[k];
    sum += vsum(a0 + a1) + (double)t;
  }
  return true;
}

// s1[j] += sum over `rows` rows (stride ld) of x[r, j] (Dev: of d = x - mu[j]), s2[j] += d^2; j < w
template <class T, class L, bool Dev>
VT_FLATTEN void col_sums(const T* x, int64_t rows, int64_t ld, int64_t w, const L* mu, double* s1, double* s2) {
  L a[kColTile], b[kColTile];
  for (int64_t r0 = 0; r0 < rows; r0 += kColGroup) {
    const int64_t r1 = std::min(rows, r0 + kColGroup);
    for (int64_t j = 0; j < w; ++j) a[j] = b[j] = L(0);
    for (int64_t r = r0; r < r1; ++r) {
      const T* p = x + r * ld;
      for (int64_t j = 0; j < w; ++j) {
        if constexpr (Dev) {
          const L d = (L)p[j] - mu[j];
          a[j] += d;
          b[j] += d * d;
        } else {
          a[j] += (L)p[j];
        }
      }
    }
    for (int64_t j = 0; j < w; ++j) s1[j] += (double)a[j];
    if constexpr (Dev)
      for (int64_t j = 0; j < w; ++j) s2[j] += (double)b[j];
  }
}

// s1[o*I + i] = sum over r of x[o, r, i] (Dev: of d = x - mu[o*I + i]; s2 = sum of d^2).
// T is float or double; L, the lanes' type, is float or double (double for a float64 result).
template <class T, class L, bool Dev>
void ori_sums(const vt_host* host, const T* x, const ORI& g, const double* mu, double* s1, double* s2) {
  const int64_t O = g.O, R = g.R, I = g.I, M = O * I;
  std::fill(s1, s1 + M, 0.0);
  if (Dev) std::fill(s2, s2 + M, 0.0);
  if (R == 0 || M == 0) return;
  if (I == 1) {
    const int64_t nb = (R + kRowBlock - 1) / kRowBlock;
    if (nb == 1) {
      vt::parallel_for(host, 0, O, std::max<int64_t>(1, vt::kGrain / R), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          double u = 0, v = 0;
          row_sums<T, L, Dev>(x + o * R, R, Dev ? (L)mu[o] : L(0), u, v);
          s1[o] = u;
          if (Dev) s2[o] = v;
        }
      });
      return;
    }
    std::vector<double> part((size_t)(O * nb * 2), 0.0);  // [task][2]
    vt::parallel_for(host, 0, O * nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nb, k = t % nb, r0 = k * kRowBlock;
        row_sums<T, L, Dev>(x + o * R + r0, std::min(kRowBlock, R - r0), Dev ? (L)mu[o] : L(0), part[(size_t)t * 2],
                         part[(size_t)t * 2 + 1]);
      }
    });
    for (int64_t o = 0; o < O; ++o)
      for (int64_t k = 0; k < nb; ++k) {
        s1[o] += part[(size_t)(o * nb + k) * 2];
        if (Dev) s2[o] += part[(size_t)(o * nb + k) * 2 + 1];
      }
    return;
  }
  const int64_t ntiles = (I + kColTile - 1) / kColTile;
  const int64_t RB = O * ntiles >= 8 ? R : kColBlock;  // few tasks: split the rows too
  const int64_t nb = (R + RB - 1) / RB;
  std::vector<double> part;
  if (nb > 1) part.assign((size_t)(nb * M * (Dev ? 2 : 1)), 0.0);  // [block][2 if Dev][M]
  const int64_t tasks = O * ntiles * nb;
  const int64_t work = std::min(RB, R) * std::min(I, kColTile);
  vt::parallel_for(host, 0, tasks, std::max<int64_t>(1, vt::kGrain / work), [&](int64_t b, int64_t e) {
    L m[kColTile];
    for (int64_t t = b; t < e; ++t) {
      const int64_t k = t % nb, tile = (t / nb) % ntiles, o = t / (nb * ntiles);
      const int64_t c0 = tile * kColTile, w = std::min(kColTile, I - c0), r0 = k * RB;
      const int64_t off = o * I + c0;
      if (Dev)
        for (int64_t j = 0; j < w; ++j) m[j] = (L)mu[off + j];
      double* d1 = nb > 1 ? &part[(size_t)(k * M * (Dev ? 2 : 1) + off)] : s1 + off;
      double* d2 = Dev ? (nb > 1 ? d1 + M : s2 + off) : nullptr;
      col_sums<T, L, Dev>(x + (o * R + r0) * I + c0, std::min(RB, R - r0), I, w, m, d1, d2);
    }
  });
  if (nb > 1)
    for (int64_t k = 0; k < nb; ++k) {
      const double* p = &part[(size_t)(k * M * (Dev ? 2 : 1))];
      for (int64_t i = 0; i < M; ++i) s1[i] += p[i];
      if (Dev)
        for (int64_t i = 0; i < M; ++i) s2[i] += p[M + i];
    }
}

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

// The CPU compute of sum and mean: the output (its shape and dtype) is the meta step's.
template <bool Mean>
void sum_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const vt_dtype out_dtype = out->dtype;
  const bool float_acc = vt::is_floating(out_dtype);

  // acc's element strides laid over the input's shape
  int64_t acc_strides[vt::kMaxDims];
  int64_t M = 1;
  for (int32_t d = x->ndim - 1; d >= 0; --d) {  // right to left for contiguous acc strides
    acc_strides[d] = reduced[d] ? 0 : M;
    if (!reduced[d]) M *= x->sizes[d];
  }
  if (M == 0) return;
  const int64_t R = x->numel / M;  // elements summed into each output

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

  ORI g;
  if (float_acc && (vt::same_dtype(x->dtype, vt::kFloat32) || vt::same_dtype(x->dtype, vt::kFloat64)) &&
      as_ori(x, reduced, g)) {
    double* a = reinterpret_cast<double*>(acc);
    // float lanes only where the result is float32 (or narrower): a float64 result is summed in double
    const bool wide = vt::same_dtype(out_dtype, vt::kFloat64);
    if (vt::same_dtype(x->dtype, vt::kFloat64)) ori_sums<double, double, false>(c.host, vt::data<const double>(x), g, nullptr, a, nullptr);
    else if (wide) ori_sums<float, double, false>(c.host, vt::data<const float>(x), g, nullptr, a, nullptr);
    else ori_sums<float, float, false>(c.host, vt::data<const float>(x), g, nullptr, a, nullptr);
  } else {
    vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      if (float_acc) reduce_into<double, T>(c.host, L, M);
      else reduce_into<int64_t, T>(c.host, L, M);
    });
  }

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
}

}  // namespace

// ================================================================================================
// The meta steps, one per kind of reduction (the same on every device; CUDA computes reuse them).
// ================================================================================================
namespace {

// How the result dtype follows from self (and a `dtype` argument).
enum class OutDtype {
  Sum,       // sum: `dtype` (argument 3) if given, else self's for floating self, else int64
  Mean,      // mean: as Sum, and it must be floating
  Floating,  // var, std, norm: self must be floating; the result has its dtype
  ToFloat,   // logsumexp: self's for floating self, else float32
};

// A reduction over a dim list (argument `dim_i`; [] = every dim), keepdim at `keep_i`:
// sum, mean, var, std, logsumexp, norm.
template <OutDtype Rule>
void dims_meta(vt::Call& c, int32_t dim_i, int32_t keep_i) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_int_list dims = c.arg(dim_i, "dim").ints();
  const bool keepdim = c.arg(keep_i, "keepdim").bool_();
  vt::check_ndim(c.op, x, "self");
  vt_dtype od = x->dtype;
  if (Rule == OutDtype::Floating) od = red::check_floating(c, x);
  bool reduced[vt::kMaxDims];
  red::check_dims(c, x, dims, reduced);
  if (Rule == OutDtype::Sum || Rule == OutDtype::Mean) od = red::sum_dtype(x->dtype, c.arg(3, "dtype"));
  if (Rule == OutDtype::ToFloat) od = red::float_dtype(x->dtype);
  if (Rule == OutDtype::Mean && !vt::is_floating(od))
    c.fail(VT_ERR_TYPE, "mean needs a floating result dtype, got %s (pass dtype=float32)", vt::dtype_name(od));
  red::make_out(c, 0, x, reduced, keepdim, od);
}

// A reduction over one dim (argument 1; None, for argmax/argmin only: every element), keepdim
// at 2: max_dim/min_dim make (values, indices), argmax/argmin the indices alone.
template <bool Max, bool Values>
void dim_meta(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt::Arg dim_a = c.arg(1, "dim");
  const bool keepdim = c.arg(2, "keepdim").bool_();
  bool reduced[vt::kMaxDims];
  if (!Values && dim_a.is_none()) {
    vt::check_ndim(c.op, x, "self");
    if (x->numel == 0)
      c.fail(VT_ERR_VALUE, "cannot take the arg%s of an empty tensor (self %s)", Max ? "max" : "min", vt::shape_str(x).c_str());
    red::all_dims(x, reduced);
  } else {
    const int64_t dim = dim_a.int_();
    vt::check_ndim(c.op, x, "self");
    red::check_dim(c, x, dim, true, reduced);
  }
  if (Values) red::make_out(c, 0, x, reduced, keepdim, x->dtype);
  red::make_out(c, Values ? 1 : 0, x, reduced, keepdim, vt::kInt64);
}

// max()/min() of every element: a 0-d tensor of self's dtype.
void all_meta(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, x, "self");
  if (x->numel == 0) c.fail(VT_ERR_VALUE, "cannot reduce a tensor with no elements (self %s); pass dim", vt::shape_str(x).c_str());
  c.set_out(0, c.empty(nullptr, 0, x->dtype));
}

}  // namespace

VT_META_FN(sum_meta, "core::sum") { dims_meta<OutDtype::Sum>(c, 1, 2); }
VT_META_FN(mean_meta, "core::mean") { dims_meta<OutDtype::Mean>(c, 1, 2); }
VT_META_FN(var_meta, "core::var") { dims_meta<OutDtype::Floating>(c, 1, 3); }
VT_META_FN(std_meta, "core::std") { dims_meta<OutDtype::Floating>(c, 1, 3); }
VT_META_FN(logsumexp_meta, "core::logsumexp") { dims_meta<OutDtype::ToFloat>(c, 1, 2); }
VT_META_FN(norm_meta, "core::norm") {
  if (std::isnan(c.arg(1, "p").float_())) c.fail(VT_ERR_VALUE, "p must not be nan");
  dims_meta<OutDtype::Floating>(c, 2, 3);
}
VT_META_FN(max_dim_meta, "core::max_dim") { dim_meta<true, true>(c); }
VT_META_FN(min_dim_meta, "core::min_dim") { dim_meta<false, true>(c); }
VT_META_FN(argmax_meta, "core::argmax") { dim_meta<true, false>(c); }
VT_META_FN(argmin_meta, "core::argmin") { dim_meta<false, false>(c); }
VT_META_FN(max_meta, "core::max") { all_meta(c); }
VT_META_FN(min_meta, "core::min") { all_meta(c); }

VT_COMPUTE(sum_cpu, "core::sum") { sum_compute<false>(c); }
VT_COMPUTE(mean_cpu, "core::mean") { sum_compute<true>(c); }

VT_BACKWARD(sum_backward, "core::sum") {
  vt_tensor* self = g.saved(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(self, g.arg(1).v.ints, reduced);
  vt::Tensor gk = shp::cast_like(g.host, shp::keepdim_grad(g.host, g.grad_out(0), self, reduced, g.arg(2).v.b != 0), self);
  g.set_grad(0, vt::call(g.host, "core::expand", {gk, vt::V::sizes(self)}));
}

VT_BACKWARD(mean_backward, "core::mean") {
  vt_tensor* self = g.saved(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(self, g.arg(1).v.ints, reduced);
  const int64_t R = red::reduced_count(self, reduced);
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

Geom make_geom(const vt_tensor* x, const bool* reduced) {
  Geom g;
  for (int32_t d = 0; d < x->ndim; ++d) {
    if (reduced[d]) {
      g.rs[g.nr] = x->sizes[d];
      g.rst[g.nr++] = x->strides[d];
      g.R *= x->sizes[d];
    } else {
      g.ks[g.nk] = x->sizes[d];
      g.kst[g.nk++] = x->strides[d];
      g.M *= x->sizes[d];
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
void var_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int64_t correction = c.arg(2, "correction").int_();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const Geom g = make_geom(x, reduced);
  const double denom = std::max<double>(0.0, (double)g.R - (double)correction);
  ORI q;
  if ((vt::same_dtype(x->dtype, vt::kFloat32) || vt::same_dtype(x->dtype, vt::kFloat64)) && g.R > 0 &&
      as_ori(x, reduced, q)) {
    // two passes over x: the mean, then sums of d = x - mean and d^2
    std::vector<double> mu((size_t)g.M), s1((size_t)g.M), s2((size_t)g.M);
    auto run = [&](auto* xd) {
      using T = typename std::remove_const<typename std::remove_pointer<decltype(xd)>::type>::type;
      ori_sums<T, T, false>(c.host, xd, q, nullptr, mu.data(), nullptr);
      for (double& m : mu) m /= (double)g.R;
      ori_sums<T, T, true>(c.host, xd, q, mu.data(), s1.data(), s2.data());
      // NaN/inf in x, or d^2 overflowing float (|x - mean| > 1.8e19): the general path decides
      for (int64_t i = 0; i < g.M; ++i)
        if (!(s2[(size_t)i] < std::numeric_limits<double>::infinity())) return false;
      T* o = vt::data<T>(out);
      for (int64_t i = 0; i < g.M; ++i) {
        double m2 = s2[(size_t)i] - s1[(size_t)i] * s1[(size_t)i] / (double)g.R;
        m2 = m2 < 0 ? 0.0 : m2;  // rounding; NaN (from inf or nan in x) stays
        const double v = m2 / denom;
        o[i] = T(Std ? std::sqrt(v) : v);
      }
      return true;
    };
    if (vt::same_dtype(x->dtype, vt::kFloat32) ? run(vt::data<const float>(x)) : run(vt::data<const double>(x))) return;
  }
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), VarAcc<T>{}, [&](int64_t i, const VarAcc<T>& a) {
      double v = g.R == 0 ? std::numeric_limits<double>::quiet_NaN() : a.m2 / denom;
      if (Std) v = std::sqrt(v);
      o[i] = T(v);
    });
  });
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
    if constexpr (std::is_same<T, float>::value) {  // contiguous float rows: vectorised
      if (st == 1 && n >= 64 && n < ((int64_t)1 << 31) && !nan) {
        const int64_t k = row_arg_extreme<Max>(p, n);
        if (k >= 0) {
          take(p[k], first + k);  // p[k], the first extreme element (-0.0 and 0.0 compare equal)
          return;
        }
      }
    }
    for (int64_t i = 0; i < n && !nan; ++i) take((A)p[i * st], first + i);
  }
  void merge(const ExtAcc& o) {
    if (o.index >= 0) take(o.best, o.index);
  }
};

// max/min over one dim: (values, indices)
template <bool Max>
void ext_dim_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  bool reduced[vt::kMaxDims];
  red::dim_mask(x, c.arg(1, "dim").int_(), reduced);
  const Geom g = make_geom(x, reduced);
  const vt_tensor* values = c.out(0);
  int64_t* oi = vt::data<int64_t>(c.out(1));
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* ov = vt::data<T>(values);
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t i, const ExtAcc<T, Max>& a) {
      ov[i] = T(a.best);
      oi[i] = a.index;
    });
  });
}

// max/min of every element: a 0-d tensor
template <bool Max>
void ext_all_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  bool reduced[vt::kMaxDims];
  red::all_dims(x, reduced);
  const Geom g = make_geom(x, reduced);
  const vt_tensor* out = c.out(0);
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t, const ExtAcc<T, Max>& a) { o[0] = T(a.best); });
  });
}

// argmax/argmin(self, dim=None, keepdim=False): dim=None -> the index into the flattened tensor
template <bool Max>
void arg_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt::Arg dim_a = c.arg(1, "dim");
  bool reduced[vt::kMaxDims];
  if (dim_a.is_none()) red::all_dims(x, reduced);
  else red::dim_mask(x, dim_a.int_(), reduced);
  const Geom g = make_geom(x, reduced);
  int64_t* o = vt::data<int64_t>(c.out(0));
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_reduce(c.host, g, vt::data<const T>(x), ExtAcc<T, Max>{}, [&](int64_t i, const ExtAcc<T, Max>& a) { o[i] = a.index; });
  });
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
    if constexpr (std::is_same<T, float>::value) {  // contiguous float rows: vectorised
      float rm;
      double sum;
      if (st == 1 && n >= 64 && row_lse(p, n, rm, sum)) {
        combine((double)rm, sum);
        return;
      }
    }
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

// logsumexp of contiguous float32 x seen as (O, R, I), I > 1: per tile of columns, a pass for the
// column maxima, then one adding exp(x - max) in float over groups of kColGroup rows (groups in
// double) — whole rows at a time, vectorised. Returns false, having written nothing final, when
// some reduced column holds a NaN or an infinity (the caller then takes the general path).
bool lse_columns(const vt_host* host, const float* x, const ORI& g, float* out) {
  const int64_t O = g.O, R = g.R, I = g.I;
  const int64_t ntiles = (I + kColTile - 1) / kColTile;
  std::atomic<bool> bad{false};
  vt::parallel_for(host, 0, O * ntiles, std::max<int64_t>(1, vt::kGrain / (R * std::min(I, kColTile))), [&](int64_t b, int64_t e) {
    alignas(64) float m[kColTile], z[kColTile], a[kColTile];
    double s[kColTile];
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / ntiles, c0 = (t % ntiles) * kColTile, w = std::min(kColTile, I - c0);
      const float* base = x + o * R * I + c0;
      for (int64_t j = 0; j < w; ++j) {
        m[j] = -INFINITY;
        z[j] = 0;
        s[j] = 0;
      }
      for (int64_t r = 0; r < R; ++r) {
        const float* p = base + r * I;
        for (int64_t j = 0; j < w; ++j) {
          m[j] = p[j] > m[j] ? p[j] : m[j];
          z[j] += p[j] - p[j];
        }
      }
      float zz = 0;
      for (int64_t j = 0; j < w; ++j) zz += z[j];
      if (zz != zz) {
        bad.store(true, std::memory_order_relaxed);
        return;
      }
      for (int64_t r0 = 0; r0 < R; r0 += kColGroup) {
        const int64_t r1 = std::min(R, r0 + kColGroup);
        for (int64_t j = 0; j < w; ++j) a[j] = 0;
        for (int64_t r = r0; r < r1; ++r) {
          const float* p = base + r * I;
          for (int64_t j = 0; j < w; ++j) a[j] += vmath::exp(p[j] - m[j]);
        }
        for (int64_t j = 0; j < w; ++j) s[j] += (double)a[j];
      }
      float* op = out + o * I + c0;
      for (int64_t j = 0; j < w; ++j) op[j] = (float)((double)m[j] + std::log(s[j]));
    }
  });
  return !bad.load();
}

void logsumexp_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(1, "dim").ints(), reduced);
  const Geom g = make_geom(x, reduced);
  ORI q;
  if (vt::same_dtype(x->dtype, vt::kFloat32) && g.M > 0 && g.R > 0 && as_ori(x, reduced, q) && q.I > 1 &&
      lse_columns(c.host, vt::data<const float>(x), q, vt::data<float>(out)))
    return;
  vt::dispatch(vt::kAllTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_reduce(c.host, g, vt::data<const T>(x), LseAcc<T>{}, [&](int64_t i, const LseAcc<T>& a) {
      vt::dispatch(vt::kFloatingTypes, out->dtype, c.op, [&](auto otag) {
        using O = typename decltype(otag)::type;
        vt::data<O>(out)[i] = O(a.result());
      });
    });
  });
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
      case NormKind::Two:
        if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value) {
          if (st == 1) {  // contiguous: vectorised, d = x - 0 so s2 is the sum of squares
            double s1 = 0, s2 = 0;
            row_sums<T, T, true>(ptr, n, T(0), s1, s2);
            // squares summed in float can overflow (|x| > 1.8e19) or underflow (|x| < 1e-19): such
            // rows are redone in double, so results match the double path there
            if (s2 < std::numeric_limits<double>::infinity() && s2 > 1e-20) {
              a += s2;
              break;
            }
          }
        }
        a += row_acc(ptr, st, n, [](double v) { return v * v; });
        break;
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

void norm_compute(vt::Call& c) {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const double p = c.arg(1, "p").float_();
  const vt_tensor* out = c.out(0);
  const NormKind kind = p == 2.0 ? NormKind::Two : p == 1.0 ? NormKind::One : p == 0.0 ? NormKind::Zero
                      : std::isinf(p) ? (p > 0 ? NormKind::Inf : NormKind::NegInf) : NormKind::P;
  bool reduced[vt::kMaxDims];
  red::dims_of(x, c.arg(2, "dim").ints(), reduced);
  const Geom g = make_geom(x, reduced);
  vt::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = vt::data<T>(out);
    run_reduce(c.host, g, vt::data<const T>(x), NormAcc<T>(kind, p), [&](int64_t i, const NormAcc<T>& a) { o[i] = T(a.result()); });
  });
}

}  // namespace

VT_COMPUTE(var_cpu, "core::var") { var_compute<false>(c); }
VT_COMPUTE(std_cpu, "core::std") { var_compute<true>(c); }
VT_COMPUTE(max_dim_cpu, "core::max_dim") { ext_dim_compute<true>(c); }
VT_COMPUTE(min_dim_cpu, "core::min_dim") { ext_dim_compute<false>(c); }
VT_COMPUTE(max_cpu, "core::max") { ext_all_compute<true>(c); }
VT_COMPUTE(min_cpu, "core::min") { ext_all_compute<false>(c); }
VT_COMPUTE(argmax_cpu, "core::argmax") { arg_compute<true>(c); }
VT_COMPUTE(argmin_cpu, "core::argmin") { arg_compute<false>(c); }
VT_COMPUTE(logsumexp_cpu, "core::logsumexp") { logsumexp_compute(c); }
VT_COMPUTE(norm_cpu, "core::norm") { norm_compute(c); }

// ---- cumsum -------------------------------------------------------------------------------------------
// Each line along `dim` is summed in order by one thread (acc: double for floating, int64 for
// integers); lines are split across threads.
// The meta step of a scan: self's shape; the dtype rule of sum.
VT_META_FN(cumsum_meta, "core::cumsum") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  vt::check_ndim(c.op, x, "self");
  vt::wrap_dim(c.op, c.arg(1, "dim").int_(), x->ndim);
  const vt_dtype od = red::sum_dtype(x->dtype, c.arg(2, "dtype"));
  vt::dispatch(vt::kArithTypes, od, c.op, [](auto) {});  // refuse other result dtypes on every device
  c.set_out(0, c.empty(x->sizes, x->ndim, od));
}

VT_COMPUTE(cumsum_cpu, "core::cumsum") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  const int32_t d = red::dim_of(x, c.arg(1, "dim").int_());
  const vt_tensor* out = c.out(0);
  const vt_dtype od = out->dtype;
  if (x->numel == 0) return;
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
}

// ================================================================================================
// Backward rules (composed of ops, so double backward works). Reductions save self for its shape.
// ================================================================================================
namespace {

using vt::V;

// dims of a reduction call as a bool mask over self's dims
void reduced_of(const vt_value& dims, const vt_tensor* self, bool* reduced) { red::dims_of(self, dims.v.ints, reduced); }
using red::reduced_count;
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

// max()/min() of everything: like torch, the gradient is spread evenly over the elements equal to
// the result (all of them NaN when the result is NaN): grad * mask / count(mask)
void ext_all_backward(vt::Grad& g) {
  vt_tensor* x = g.saved(0);
  vt_tensor* r = g.out(0);
  const vt_host* h = g.host;
  vt::Tensor hit = vt::call(h, "core::eq", {x, r});
  vt::Tensor nan_x = vt::call(h, "core::ne", {x, x}), nan_r = vt::call(h, "core::ne", {r, r});
  vt::Tensor mask = vt::call(h, "core::logical_or", {hit, vt::call(h, "core::logical_and", {nan_x, nan_r})});
  vt::Tensor maskf = vt::call(h, "core::to_dtype", {mask, V(x->dtype)});
  vt::Tensor count = vt::call(h, "core::sum", {maskf, V(std::vector<int64_t>{}), false, V::none()});
  vt::Tensor share = vt::call(h, "core::div", {g.grad_out(0), count});
  g.set_grad(0, vt::call(h, "core::mul", {maskf, share}));
}
VT_BACKWARD(max_backward, "core::max") { ext_all_backward(g); }
VT_BACKWARD(min_backward, "core::min") { ext_all_backward(g); }

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
    {"core::sum(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", sum_meta, sum_cpu, sum_backward, 1},
    {"core::mean(Tensor self, int[] dim=[], bool keepdim=False, ScalarType? dtype=None) -> Tensor", mean_meta, mean_cpu, mean_backward, 1},
    {"core::var(Tensor self, int[] dim=[], int correction=1, bool keepdim=False) -> Tensor", var_meta, var_cpu, var_backward, 1},
    {"core::std(Tensor self, int[] dim=[], int correction=1, bool keepdim=False) -> Tensor", std_meta, std_cpu, std_backward, 1},
    {"core::max_dim(Tensor self, int dim, bool keepdim=False) -> (Tensor, Tensor)", max_dim_meta, max_dim_cpu, ext_dim_backward, 1, 2},
    {"core::min_dim(Tensor self, int dim, bool keepdim=False) -> (Tensor, Tensor)", min_dim_meta, min_dim_cpu, ext_dim_backward, 1, 2},
    {"core::max(Tensor self) -> Tensor", max_meta, max_cpu, max_backward, 1, 1},
    {"core::min(Tensor self) -> Tensor", min_meta, min_cpu, min_backward, 1, 1},
    {"core::argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", argmax_meta, argmax_cpu},
    {"core::argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", argmin_meta, argmin_cpu},
    {"core::logsumexp(Tensor self, int[] dim=[], bool keepdim=False) -> Tensor", logsumexp_meta, logsumexp_cpu, logsumexp_backward, 1},
    {"core::norm(Tensor self, float p=2.0, int[] dim=[], bool keepdim=False) -> Tensor", norm_meta, norm_cpu, norm_backward, 1},
    {"core::cumsum(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", cumsum_meta, cumsum_cpu, cumsum_backward, 1},
};
VT_OP_TABLE(kReduceOps)
