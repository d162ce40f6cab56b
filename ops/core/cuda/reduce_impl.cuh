// ops/core/cuda/reduce_impl.cuh — the reduction engine behind the CUDA computes of reduce.cu
// (sum, mean, var, std, max/min, argmax/argmin, logsumexp, norm) and the scan of cumsum.cu.
//
// Shapes: x (any strides) is reduced into M outputs (contiguous: the meta step made them), each
// from R elements. Geom lists x's kept and reduced dims with size-1 dims dropped and neighbours
// merged where memory allows, in logical order, so output o is the row-major index over the kept
// dims and element r the row-major index over the reduced dims (what argmax returns).
//
// What is reduced is an Op:
//   A                                  the accumulator (trivially copyable, 4-byte multiple)
//   A identity()                       the value of no elements (combine(a, identity) == a)
//   A reduce(A a, In v, int64_t r)     a with element r (value v) added
//   A combine(A a, A b)                two partial results; b covers later elements
//   void store(int64_t o, A a)         writes output o
//   bool kBatch                        true: A batch<V>(A a, const Vec<In, V> (&v)[4], r, step)
//                                      reduces four 16-byte vectors of a row as a group
//                                      (logsumexp: one rescale per group; argmax: a pairwise tree)
// Within a thread, reduce() sees its elements in increasing index order.
//
// Kernels, chosen from the shape alone (see plan()):
//   row  a group of G threads reduces one output: a warp, or the whole 256-thread block when there
//        are few long rows; for x whose smallest stride runs along a reduced dim (sum over the
//        last dim, a whole-tensor sum). A contiguous row is read in 16-byte vectors (four in
//        flight per thread) after a scalar head up to alignment.
//   col  each thread reduces V adjacent outputs (one 16-byte load per element row) and `ny`
//        threads split the reduced elements, combined in order through shared memory: for x whose
//        smallest stride runs along a kept dim (a sum over leading dims: the bias gradient).
// With too few outputs to fill the GPU, R is cut into S splits fixed by the shape: the first
// launch writes M x S partial accumulators, a second one (the row kernel over them) combines each
// output's S partials and stores. Every result is the same bits run to run: which thread reads
// which element and the order partials are combined in depend only on the shape, the strides and
// the data's alignment (no atomics, nothing timing-dependent).
#pragma once

#include <algorithm>
#include <cstring>

#include "reduce_util.hpp"
#include "vt/cuda/elementwise.cuh"

namespace vtred {

using ST = vt::ScalarType;
constexpr int kBlock = 256;                  // threads per block of every kernel here
constexpr int64_t kTargetThreads = 1 << 18;  // enough threads in flight to fill an H100/H200

// ---- geometry -------------------------------------------------------------------------------------
struct Geom {
  int32_t nk = 0, nr = 0;
  bool k32 = true, r32 = true;                  // M, R below 2^32: 32-bit index arithmetic
  int64_t ks[vt::kMaxDims], kst[vt::kMaxDims];  // kept dims: sizes, element strides
  int64_t rs[vt::kMaxDims], rst[vt::kMaxDims];  // reduced dims
  int64_t M = 1, R = 1;
};

// drops size-1 dims and merges neighbours that are contiguous among themselves (logical order kept)
inline void merge_dims(int64_t* s, int64_t* st, int32_t& n) {
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

inline Geom make_geom(const vt_tensor* x, const bool* reduced) {
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
  g.k32 = g.M <= 0xffffffffll;
  g.r32 = g.R <= 0xffffffffll;
  return g;
}

// element offset of row-major index i over n dims (sizes s, strides st); small: every size and i
// fit 32 bits (a 32-bit division is several times cheaper)
__host__ __device__ __forceinline__ int64_t offset_of(int64_t i, int32_t n, const int64_t* s, const int64_t* st,
                                                      bool small) {
  int64_t off = 0;
  if (small) {
    uint32_t r = (uint32_t)i;
    for (int32_t d = n - 1; d >= 0; --d) {
      const uint32_t q = r / (uint32_t)s[d];
      off += (int64_t)(r - q * (uint32_t)s[d]) * st[d];
      r = q;
    }
  } else {
    for (int32_t d = n - 1; d >= 0; --d) {
      const int64_t q = i / s[d];
      off += (i - q * s[d]) * st[d];
      i = q;
    }
  }
  return off;
}

template <class In>
__device__ __forceinline__ const In* element(const In* base, const Geom& g, int64_t r) {
  if (g.nr == 1) return base + r * g.rst[0];
  return base + offset_of(r, g.nr, g.rs, g.rst, g.r32);
}

// ---- values ---------------------------------------------------------------------------------------
template <class A, class In>
__device__ __forceinline__ A to_acc(In v) {
  if constexpr (std::is_same<In, __half>::value) return (A)__half2float(v);
  else if constexpr (std::is_same<In, __nv_bfloat16>::value) return (A)__bfloat162float(v);
  else return (A)v;
}

// a + b; integers wrap (as on cpu) instead of overflowing
template <class A>
__device__ __forceinline__ A add(A a, A b) {
  if constexpr (std::is_integral<A>::value) return (A)((uint64_t)a + (uint64_t)b);
  else return a + b;
}

// Stores a floating result into output i of dtype t (through float for the 16-bit floats: the
// cpu's rounding), or an integer result (integers wrap, bool is != 0).
__device__ __forceinline__ void put(void* out, ST t, int64_t i, double v) {
  switch (t) {
    case ST::Float32: static_cast<float*>(out)[i] = (float)v; return;
    case ST::Float64: static_cast<double*>(out)[i] = v; return;
    case ST::Float16: static_cast<__half*>(out)[i] = __float2half_rn((float)v); return;
    case ST::BFloat16: static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn((float)v); return;
    default: return;  // integer outputs come from integer accumulators
  }
}
__device__ __forceinline__ void put(void* out, ST t, int64_t i, int64_t v) {
  switch (t) {
    case ST::Bool: static_cast<bool*>(out)[i] = v != 0; return;
    case ST::UInt8: static_cast<uint8_t*>(out)[i] = (uint8_t)v; return;
    case ST::Int8: static_cast<int8_t*>(out)[i] = (int8_t)v; return;
    case ST::Int32: static_cast<int32_t*>(out)[i] = (int32_t)v; return;
    case ST::Int64: static_cast<int64_t*>(out)[i] = v; return;
    default: return;
  }
}

// ---- combining across threads (fixed trees) -------------------------------------------------------
template <class A>
__device__ __forceinline__ A shfl_down(const A& a, int d) {
  static_assert(sizeof(A) % 4 == 0, "accumulators are shuffled as 32-bit words");
  unsigned w[sizeof(A) / 4];
  memcpy(w, &a, sizeof(A));
#pragma unroll
  for (int k = 0; k < (int)(sizeof(A) / 4); ++k) w[k] = __shfl_down_sync(0xffffffffu, w[k], d);
  A r;
  memcpy(&r, w, sizeof(A));
  return r;
}

// lane 0 gets the warp's result
template <class Op, class A>
__device__ __forceinline__ A warp_combine(const Op& op, A a) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) a = op.combine(a, shfl_down(a, d));
  return a;
}

// thread 0 gets the block's result; every thread of the block must call it
template <class Op, class A>
__device__ __forceinline__ A block_combine(const Op& op, A a) {
  __shared__ alignas(16) unsigned char raw[(kBlock / 32) * sizeof(A)];
  A* slot = reinterpret_cast<A*>(raw);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  a = warp_combine(op, a);
  if (lane == 0) slot[warp] = a;
  __syncthreads();
  if (warp == 0) a = warp_combine(op, lane < kBlock / 32 ? slot[lane] : op.identity());
  __syncthreads();  // the slots are written again by the next task
  return a;
}

// The second pass: partial accumulators are the elements.
template <class Op>
struct Partial {
  using A = typename Op::A;
  Op op;
  __device__ __forceinline__ A identity() const { return op.identity(); }
  __device__ __forceinline__ A reduce(A a, A v, int64_t) const { return op.combine(a, v); }
  __device__ __forceinline__ A combine(A a, A b) const { return op.combine(a, b); }
  __device__ __forceinline__ void store(int64_t o, A a) const { op.store(o, a); }
};

// ---- kernels --------------------------------------------------------------------------------------
// elements per vector load: 16 bytes, at most 8 (1-byte types load 8 bytes: 8 accumulators a thread)
template <class In>
constexpr int vec_of() { return sizeof(In) >= 16 ? 1 : 16 / (int)sizeof(In) > 8 ? 8 : 16 / (int)sizeof(In); }

// Four vectors just loaded: elements (j, k) = v[j].v[k] at index r + j * step + k, in index order.
// An Op with kBatch reduces them as a group (its own order of work, same bits every run).
template <int V, class Op, class In>
__device__ __forceinline__ typename Op::A reduce4(const Op& op, typename Op::A a, const vt::cuda::Vec<In, V> (&v)[4],
                                                  int64_t r, int64_t step) {
  if constexpr (Op::kBatch) {
    return op.template batch<V>(a, v, r, step);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int k = 0; k < V; ++k) a = op.reduce(a, v[j].v[k], r + j * step + k);
    return a;
  }
}

// a group's share of a contiguous row: a scalar head up to 16-byte alignment, then vectors
template <int V, class Op, class In>
__device__ __forceinline__ typename Op::A row_vec(const Op& op, const In* base, int64_t r0, int64_t r1, int tx, int G) {
  using A = typename Op::A;
  A a = op.identity();
  using Vc = vt::cuda::Vec<In, V>;
  const int64_t mis = (int64_t)((reinterpret_cast<uintptr_t>(base + r0) / sizeof(In)) % V);
  const int64_t head = min(mis ? V - mis : (int64_t)0, r1 - r0);
  if (tx < head) a = op.reduce(a, base[r0 + tx], r0 + tx);
  const int64_t rv = r0 + head, nv = (r1 - rv) / V;
  const Vc* pv = reinterpret_cast<const Vc*>(base + rv);
  int64_t i = tx;
  for (; i + 3 * G < nv; i += 4 * G) {  // four 16-byte loads in flight per thread
    Vc v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = pv[i + j * G];
    a = reduce4<V>(op, a, v, rv + i * V, (int64_t)G * V);
  }
  for (; i < nv; i += G) {
    const Vc v = pv[i];
#pragma unroll
    for (int k = 0; k < V; ++k) a = op.reduce(a, v.v[k], rv + i * V + k);
  }
  for (int64_t r = rv + nv * V + tx; r < r1; r += G) a = op.reduce(a, base[r], r);
  return a;
}

// one group's share of elements [r0, r1) of the row at `base` (thread tx of G)
template <int V, class Op, class In>
__device__ __forceinline__ typename Op::A row_part(const Op& op, const In* base, const Geom& g, int64_t r0,
                                                   int64_t r1, int tx, int G) {
  using A = typename Op::A;
  A a = op.identity();
  if constexpr (V > 1) {
    if (g.nr == 1 && g.rst[0] == 1) return row_vec<V>(op, base, r0, r1, tx, G);
  }
#pragma unroll 4
  for (int64_t r = r0 + tx; r < r1; r += G) a = op.reduce(a, *element(base, g, r), r);
  return a;
}

// Task t = (output o, split s) -> group t of G threads; part: M x S partials, else op.store.
template <class Op, class In, int V>
__global__ void __launch_bounds__(kBlock) row_kernel(Op op, const In* __restrict__ x, Geom g, int G, int64_t S,
                                                     int64_t Rs, typename Op::A* part) {
  using A = typename Op::A;
  const int rows = kBlock / G;
  const int tx = G == 32 ? (int)(threadIdx.x & 31) : (int)threadIdx.x, ty = G == 32 ? (int)(threadIdx.x >> 5) : 0;
  const int64_t tasks = g.M * S;
  for (int64_t t0 = (int64_t)blockIdx.x * rows; t0 < tasks; t0 += (int64_t)gridDim.x * rows) {  // uniform
    const int64_t t = t0 + ty;
    const int64_t o = t / S;
    A a = op.identity();
    if (t < tasks) {
      const int64_t r0 = (t - o * S) * Rs, r1 = min(g.R, r0 + Rs);
      a = row_part<V>(op, x + offset_of(o, g.nk, g.ks, g.kst, g.k32), g, r0, r1, tx, G);
    }
    a = G == 32 ? warp_combine(op, a) : block_combine(op, a);
    if (tx == 0 && t < tasks) {
      if (part) part[t] = a;
      else op.store(o, a);
    }
  }
}

// Thread (tx, ty) of a block of nx x ny: outputs [o0, o0 + W), elements r0 + ty + k * ny of split
// blockIdx.y; the ny partials are combined in ty order. vec: W = V outputs adjacent in memory.
template <class Op, class In, int V>
__global__ void __launch_bounds__(kBlock) col_kernel(Op op, const In* __restrict__ x, Geom g, int ny, bool vec,
                                                     int64_t Rs, typename Op::A* part) {
  using A = typename Op::A;
  const int nx = kBlock / ny, tx = (int)threadIdx.x % nx, ty = (int)threadIdx.x / nx;
  const int W = vec ? V : 1;
  const int64_t S = gridDim.y, s = blockIdx.y;
  const int64_t o0 = ((int64_t)blockIdx.x * nx + tx) * W;
  A acc[V];
#pragma unroll
  for (int k = 0; k < V; ++k) acc[k] = op.identity();
  if (o0 < g.M) {
    const In* base = x + offset_of(o0, g.nk, g.ks, g.kst, g.k32);
    const int64_t r0 = s * Rs, r1 = min(g.R, r0 + Rs);
    if (vec) {
      using Vc = vt::cuda::Vec<In, V>;
#pragma unroll 4
      for (int64_t r = r0 + ty; r < r1; r += ny) {
        const Vc v = *reinterpret_cast<const Vc*>(element(base, g, r));
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] = op.reduce(acc[k], v.v[k], r);
      }
    } else {
#pragma unroll 4
      for (int64_t r = r0 + ty; r < r1; r += ny) acc[0] = op.reduce(acc[0], *element(base, g, r), r);
    }
  }
  if (ny > 1) {
    static_assert(kBlock * V * sizeof(A) <= 48 * 1024, "column kernel: shared memory");
    __shared__ alignas(16) unsigned char raw[kBlock * V * sizeof(A)];
    A* sm = reinterpret_cast<A*>(raw);
    if (ty > 0)
#pragma unroll
      for (int k = 0; k < V; ++k)
        if (k < W) sm[threadIdx.x * V + k] = acc[k];
    __syncthreads();
    if (ty == 0)
      for (int j = 1; j < ny; ++j)
#pragma unroll
        for (int k = 0; k < V; ++k)
          if (k < W) acc[k] = op.combine(acc[k], sm[(j * nx + tx) * V + k]);
  }
  if (ty == 0 && o0 < g.M)
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (k < W && o0 + k < g.M) {
        if (part) part[(o0 + k) * S + s] = acc[k];
        else op.store(o0 + k, acc[k]);
      }
}

// ---- the plan and the launches --------------------------------------------------------------------
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Plan {
  bool col = false;
  int G = 32, ny = 1;
  bool vec = false;
  int64_t S = 1, Rs = 0;
};

// smallest nonzero |stride| over dims of size > 1 (0-stride dims are broadcast: no memory order)
inline int64_t min_stride(const int64_t* s, const int64_t* st, int32_t n) {
  int64_t m = INT64_MAX;
  for (int32_t d = 0; d < n; ++d) {
    const int64_t a = st[d] < 0 ? -st[d] : st[d];
    if (s[d] > 1 && a > 0) m = std::min(m, a);
  }
  return m;
}

// S splits of R, at least `per` elements each, enough for kTargetThreads when `threads` (the
// threads of one split) fall short; Rs a multiple of `mult`.
inline void split(Plan& p, int64_t R, int64_t threads, int64_t per, int64_t mult) {
  p.S = 1;
  if (threads < kTargetThreads && R > per)
    p.S = std::min(cdiv(kTargetThreads, std::max<int64_t>(threads, 1)), cdiv(R, per));
  p.S = std::min<int64_t>(p.S, 65535);
  p.Rs = R == 0 ? 0 : cdiv(cdiv(R, p.S), mult) * mult;
  p.S = R == 0 ? 1 : cdiv(R, p.Rs);
}

template <int V>
Plan plan(const Geom& g, const void* data) {
  Plan p;
  const bool along_kept = g.nk > 0 && min_stride(g.ks, g.kst, g.nk) < min_stride(g.rs, g.rst, g.nr);
  p.col = g.R < 32 || along_kept;
  if (!p.col) {
    const bool contig = g.nr == 1 && g.rst[0] == 1;
    // a warp per row; the whole block only for few long rows (less to split)
    p.G = g.M < 1024 && g.R >= 1024 ? kBlock : 32;
    const int64_t w = contig ? V : 1;
    split(p, g.R, g.M * p.G, p.G * w * 8, w);
    return p;
  }
  p.ny = g.R >= 64 ? 8 : 1;
  // V adjacent outputs adjacent in memory, every group 16-byte aligned
  bool vec = V > 1 && g.nk > 0 && g.kst[g.nk - 1] == 1 && g.ks[g.nk - 1] % V == 0 &&
             (reinterpret_cast<uintptr_t>(data) % 16) == 0;
  for (int32_t d = 0; d + 1 < g.nk; ++d) vec = vec && g.kst[d] % V == 0;
  for (int32_t d = 0; d < g.nr; ++d) vec = vec && g.rst[d] % V == 0;
  p.vec = vec;
  const int64_t nx = kBlock / p.ny, groups = cdiv(g.M, vec ? V : 1);
  split(p, g.R, cdiv(groups, nx) * kBlock, (int64_t)p.ny * 8, p.ny);
  return p;
}

inline unsigned int row_blocks(int64_t tasks, int G) {
  return (unsigned int)std::max<int64_t>(1, std::min<int64_t>(cdiv(tasks, kBlock / G), 1 << 20));
}

// Reduces x (element type In, geometry g) with op into op's outputs.
template <class Op, class In>
void run(const vt::Call& c, const Op& op, const vt_tensor* x, const Geom& g) {
  using A = typename Op::A;
  constexpr int V = vec_of<In>();
  if (g.M == 0) return;
  const In* data = vt::data<const In>(x);
  const Plan p = plan<V>(g, data);
  vt::Tensor buf;
  A* part = nullptr;
  if (p.S > 1) {
    const int64_t bytes = g.M * p.S * (int64_t)sizeof(A);
    buf = c.empty(&bytes, 1, vt::kUInt8);
    part = static_cast<A*>(buf->data);
  }
  if (p.col) {
    const int64_t nx = kBlock / p.ny, groups = cdiv(g.M, p.vec ? V : 1);
    const dim3 grid((unsigned int)cdiv(groups, nx), (unsigned int)p.S);
    vt::cuda::launch(c, "reduce (columns)", col_kernel<Op, In, V>, grid, kBlock, 0, op, data, g, p.ny, p.vec, p.Rs,
                     part);
  } else {
    vt::cuda::launch(c, "reduce (rows)", row_kernel<Op, In, V>, row_blocks(g.M * p.S, p.G), kBlock, 0, op, data, g,
                     p.G, p.S, p.Rs, part);
  }
  if (p.S == 1) return;
  Geom g2;  // the partials: M rows of S
  g2.nk = 1;
  g2.ks[0] = g.M;
  g2.kst[0] = p.S;
  g2.nr = 1;
  g2.rs[0] = p.S;
  g2.rst[0] = 1;
  g2.M = g.M;
  g2.R = p.S;
  g2.k32 = g.M <= 0xffffffffll;
  const int G2 = p.S >= 512 ? kBlock : 32;
  vt::cuda::launch(c, "reduce (partials)", row_kernel<Partial<Op>, A, 1>, row_blocks(g.M, G2), kBlock, 0,
                   Partial<Op>{op}, static_cast<const A*>(part), g2, G2, (int64_t)1, p.S, (A*)nullptr);
}

}  // namespace vtred
