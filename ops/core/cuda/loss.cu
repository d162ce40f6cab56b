// ops/core/cuda/loss.cu — the CUDA compute of cross_entropy (and _backward, _fused, _grad_scale)
// and mse_loss. The meta steps and the semantics are src/loss.cpp's; cross_entropy's row kernels
// are loss_rows.cuh's (device code only, so a host emulation can run them).
//
// cross_entropy: input (N, C, d1, ...) or (C,) is P = N * inner positions of C logits (stride 1
// when inner == 1: rows, else stride inner: one thread per position). The forward reads the logits
// once: an online max / sum-of-exp (and the sum of the logits for label smoothing) per position,
// then lse and the loss; it saves only lse. The backward reads the logits once more and writes
//   grad = w * (exp(x - lse) - eps / C) - (k == target ? w * (1 - eps) : 0)
// with w the position's weight (grad_output, / count for 'mean'; 0 where target == ignore_index),
// so the probabilities are never stored. The 'mean' count of kept targets is computed on the
// device (no host round trip). Reductions ('mean'/'sum') add per-position losses in a fixed order
// in float64: the same bits on every run.
// cross_entropy_fused is the forward that also writes that gradient for grad_output 1, so forward +
// backward read the logits from memory once and write the gradient once: its second pass over a
// row reads the copy the first pass left in shared memory (a persistent block per SM that loads
// its next row while it writes this one's gradient; 16-bit rows whose two copies fit shared memory
// have the whole next row copied in with cp.async instead), or, for rows too long for that, re-reads it
// from L2, last chunk first (the most recently read), with no more rows in flight than half of L2
// holds. Its backward, cross_entropy_grad_scale, reads grad_output on the device
// and returns at once when it is exactly 1 (the usual loss.backward()), else scales the buffer in
// place: no host sync, graph-capturable.
// Target values cannot be checked on the host without a sync: a target outside [0, C) that is not
// ignore_index gives a nan loss (and a nan gradient row) instead of the cpu's IndexError, and is
// never used as an index.
//
// mse_loss: 'none' is one elementwise kernel (any strides, broadcast); 'mean'/'sum' write the
// squared differences (float32 / float64) and add them in two fixed-order stages.
#include <cmath>
#include <cstring>
#include <mutex>

#include "loss_buffer.hpp"
#include "loss_rows.cuh"
#include "vt/cuda/device.cuh"

namespace {

using namespace loss_rows;

constexpr int kFinishThreads = 1024;

Red reduction_of(const char* s) {
  if (!std::strcmp(s, "mean")) return Red::Mean;
  if (!std::strcmp(s, "sum")) return Red::Sum;
  return Red::None;
}

// 16-bit floats from double through float (the cpu's vt::convert rounds the same way for these
// values up to double rounding)
template <class T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (vt::cuda::is_reduced_float_v<T>) return T((float)v);
  else return T(v);
}

CELayout layout_of(const vt_tensor* x) {
  if (x->ndim == 1) return {1, x->sizes[0], 1};
  CELayout L{x->sizes[0], x->sizes[1], 1};
  for (int32_t d = 2; d < x->ndim; ++d) L.inner *= x->sizes[d];
  return L;
}

// The reduced loss: sum of per[0..P) in float64 (fixed order), / the number of kept targets for
// 'mean' (0 / 0 = nan, as torch). One block.
template <class A, class T>
__global__ void __launch_bounds__(kFinishThreads)
    ce_finish(const A* __restrict__ per, const int64_t* __restrict__ tgt, int64_t P, int64_t ignore, bool mean,
              T* __restrict__ out) {
  double s = 0;
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    s += (double)per[i];
    cnt += tgt[i] != ignore;
  }
  s = vt::cuda::block_sum(s);
  cnt = vt::cuda::block_sum(cnt);
  if (threadIdx.x == 0) *out = from_double<T>(mean ? s / (double)cnt : s);
}


// the number of targets != ignore (one block)
__global__ void __launch_bounds__(kFinishThreads)
    ce_count(const int64_t* __restrict__ tgt, int64_t P, int64_t ignore, long long* __restrict__ out) {
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) cnt += tgt[i] != ignore;
  cnt = vt::cuda::block_sum(cnt);
  if (threadIdx.x == 0) *out = cnt;
}

// ---- mse_loss -----------------------------------------------------------------------------------
template <class T>
__device__ __forceinline__ acc_t<T> sqdiff(T a, T b) {
  const acc_t<T> d = acc_t<T>(a) - acc_t<T>(b);
  return d * d;
}
template <class T>
struct SqDiffT {  // 'none': stored in T
  __device__ __forceinline__ T operator()(T a, T b) const { return T(sqdiff(a, b)); }
};
template <class T>
struct SqDiffA {  // to be reduced: kept in the compute type
  __device__ __forceinline__ acc_t<T> operator()(T a, T b) const { return sqdiff(a, b); }
};

// stage 1: block b adds elements b*256 + t, + gridDim*256, ... in float64
template <class A>
__global__ void __launch_bounds__(vt::cuda::kThreads)
    sum_partials(const A* __restrict__ v, int64_t n, double* __restrict__ part) {
  double s = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)v[i];
  s = vt::cuda::block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// stage 2 (one block): out = sum of part[0..G) (/ n for 'mean'; 0 / 0 = nan, as torch)
template <class T>
__global__ void __launch_bounds__(kFinishThreads)
    sum_finish(const double* __restrict__ part, int64_t G, int64_t n, bool mean, T* __restrict__ out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < G; i += blockDim.x) s += part[i];
  s = vt::cuda::block_sum(s);
  if (threadIdx.x == 0) *out = from_double<T>(mean ? s / (double)n : s);
}

}  // namespace

namespace {

// the number of targets != ignore_index, on the device (for 'mean')
vt::Tensor kept_count(const vt::Call& c, const int64_t* tp, int64_t P, int64_t ignore) {
  const int64_t one[1] = {1};
  vt::Tensor count = c.empty(one, 1, vt::kInt64);
  vt::cuda::launch(c, "ce_count", ce_count, 1, kFinishThreads, 0, tp, P, ignore, vt::data<long long>(count));
  return count;
}

// The L2 cache size of the call's device in bytes, asked once per device (0 when unreadable).
int64_t l2_bytes(const vt::Call& c) {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static int bytes[kMaxDevices];
  const int d = c.ctx->device.index;
  if (d < 0 || d >= kMaxDevices) return 0;
  std::call_once(once[d], [&] {
    if (cudaDeviceGetAttribute(&bytes[d], cudaDevAttrL2CacheSize, d) != cudaSuccess) bytes[d] = 0;
  });
  return bytes[d];
}

// The most dynamic shared memory a block of `kernel` may have on the call's device (the opt-in
// limit less the kernel's static shared memory; 0 when unreadable).
template <class K>
int64_t max_dynamic_smem(const vt::Call& c, K* kernel) {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static int optin[kMaxDevices];
  const int d = c.ctx->device.index;
  if (d < 0 || d >= kMaxDevices) return 0;
  std::call_once(once[d], [&] {
    if (cudaDeviceGetAttribute(&optin[d], cudaDevAttrMaxSharedMemoryPerBlockOptin, d) != cudaSuccess) optin[d] = 0;
  });
  cudaFuncAttributes fa;
  if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) return 0;
  return (int64_t)optin[d] - (int64_t)fa.sharedSizeBytes;
}

// The fused forward's blocks (its row re-read from memory, when it does not fit shared memory): rows longer than one chunk are read twice (the second pass for the
// gradient), so the rows in flight are kept to half of L2, but at least one block per SM. Which
// block takes a row does not change its result (rows are independent; the grid strides).
unsigned fused_blocks(const vt::Call& c, const rowwise::Plan& p, int64_t row_bytes) {
  if (p.chunks <= 1) return p.blocks;
  const int64_t sms = vt::cuda::sm_count(c);
  const int64_t fit = l2_bytes(c) / 2 / std::max<int64_t>(row_bytes * p.rows_per_block(), 1);
  return (unsigned)std::min<int64_t>(p.blocks, std::max<int64_t>(sms, fit));
}

// cross_entropy, and with `grad` cross_entropy_fused (the gradient for grad_output 1 too).
void ce_forward_cuda(const vt::Call& c, const vt_tensor* grad) {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* t = c.arg(1, "target").tensor();
  const CEParams q{c.arg(2, "ignore_index").int_(), c.arg(3, "label_smoothing").float_()};
  const Red red = reduction_of(c.arg(4, "reduction").str());
  const CELayout L = layout_of(x);
  const int64_t P = L.N * L.inner;
  const vt_tensor* loss = c.out(0);
  const vt_tensor* lse = c.out(1);
  rowwise::Contig xc(c, x), tc(c, t);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  CEGrad gq{q.ignore, red, q.eps, nullptr};
  vt::Tensor count;
  if (grad && red == Red::Mean && P > 0) {
    count = kept_count(c, tp, P, q.ignore);
    gq.count = vt::data<const long long>(count);
  }
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    A* lp = vt::data<A>(lse);
    T* gp = grad ? vt::data<T>(grad) : nullptr;
    vt::Tensor per;
    if (red != Red::None) {
      const int64_t sz[1] = {P};
      per = c.empty(sz, 1, vt::dtype_of<A>());
    }
    T* lo = red == Red::None ? vt::data<T>(loss) : nullptr;
    A* pp = red == Red::None ? nullptr : vt::data<A>(per);
    if (P > 0 && L.inner == 1) {
      const bool aligned = rowwise::aligned16(xp) && (!gp || rowwise::aligned16(gp));
      const rowwise::Plan p = rowwise::plan_rows(c, P, L.C, rowwise::width<T>(), kSlots, aligned);
      // the fused forward keeps a row longer than a chunk in shared memory when it fits (a block per
      // row): the logits are read from memory once
      const rowwise::Plan pc = rowwise::plan_rows(c, P, L.C, rowwise::width<T>(), kCachedSlots, aligned);
      const int64_t cache = (L.C + rowwise::width<T>() - 1) / rowwise::width<T>() * (int64_t)sizeof(rowwise::Slot);
      auto* cached = ce_fwd_rows_cached<T, kCachedSlots>;
      bool piped_done = false;
      if constexpr (sizeof(T) == 2) {
        auto* piped = ce_fwd_rows_piped<T, kPipedSlots>;
        if (gp && pc.vec && !pc.warp && pc.chunks > 1 && rowwise::pipe_enabled() &&
            2 * cache <= max_dynamic_smem(c, piped)) {
          // 16-bit rows whose two copies fit: the next row copied in whole while this one is worked on
          vt::cuda::check(c, cudaFuncSetAttribute(piped, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(2 * cache)),
                          "ce_fwd_rows (fused, rows prefetched): cudaFuncSetAttribute");
          int per_sm = 0;
          vt::cuda::check(c,
                          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, piped, pc.threads, (size_t)(2 * cache)),
                          "ce_fwd_rows (fused, rows prefetched): occupancy");
          const int64_t resident = (int64_t)vt::cuda::sm_count(c) * std::max(per_sm, 1);
          vt::cuda::launch(c, "ce_fwd_rows (fused, rows prefetched)", piped, (unsigned)std::min<int64_t>(P, resident),
                           pc.threads, (size_t)(2 * cache), xp, tp, P, (int)L.C, pc, q, lp, lo, pp, gp, gq);
          piped_done = true;
        }
      }
      if (piped_done) {
        // launched above
      } else if (gp && !pc.warp && pc.chunks > 1 && cache <= max_dynamic_smem(c, cached)) {
        vt::cuda::check(c, cudaFuncSetAttribute(cached, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)cache),
                        "ce_fwd_rows (fused, row in shared memory): cudaFuncSetAttribute");
        // a persistent grid (the kernel pipelines the rows a block takes): the blocks that are resident
        int per_sm = 0;
        vt::cuda::check(c, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cached, pc.threads, (size_t)cache),
                        "ce_fwd_rows (fused, row in shared memory): occupancy");
        const int64_t resident = (int64_t)vt::cuda::sm_count(c) * std::max(per_sm, 1);
        vt::cuda::launch(c, "ce_fwd_rows (fused, row in shared memory)", cached,
                         (unsigned)std::min<int64_t>(P, resident), pc.threads, (size_t)cache, xp, tp, P, (int)L.C, pc,
                         q, lp, lo, pp, gp, gq);
      } else if (gp)
        vt::cuda::launch(c, "ce_fwd_rows (fused)", ce_fwd_rows<T, kSlots, true>,
                         fused_blocks(c, p, L.C * (int64_t)sizeof(T)), p.threads, 0, xp, tp, P, (int)L.C, p, q, lp, lo,
                         pp, gp, gq);
      else
        vt::cuda::launch(c, "ce_fwd_rows", ce_fwd_rows<T, kSlots, false>, p.blocks, p.threads, 0, xp, tp, P,
                         (int)L.C, p, q, lp, lo, pp, gp, gq);
    } else if (P > 0) {
      vt::cuda::launch(c, "ce_fwd_cols", ce_fwd_cols<T>, vt::cuda::grid_for(P), vt::cuda::kThreads, 0, xp, tp, L, q,
                       lp, lo, pp, gp, gq);
    }
    if (red != Red::None)
      vt::cuda::launch(c, "ce_finish", ce_finish<A, T>, 1, kFinishThreads, 0, pp, tp, P, q.ignore, red == Red::Mean,
                       vt::data<T>(loss));
  });
}

VT_COMPUTE(cross_entropy_cuda, "core::cross_entropy") { ce_forward_cuda(c, nullptr); }

VT_COMPUTE(cross_entropy_fused_cuda, "core::cross_entropy_fused") {
  core::ce_buffer_fresh(c.out(2));
  ce_forward_cuda(c, c.out(2));
}

VT_COMPUTE(cross_entropy_grad_scale_cuda, "core::cross_entropy_grad_scale") {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* gr = c.out(0);
  const Red red = reduction_of(c.arg(2, "reduction").str());
  const CELayout L = layout_of(gr);
  const int64_t n = gr->numel;
  if (n == 0) return;
  rowwise::Contig gc(c, go);
  vt::cuda::dispatch(vt::kFloatingTypes, gr->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* sp = vt::data<const T>(gc.t);
    T* gp = vt::data<T>(gr);
    // a few blocks per SM: when grad_output is 1 they only read it and return
    const unsigned blocks = std::min<unsigned>(vt::cuda::grid_for(n), 1024u);
    if (red == Red::None)
      vt::cuda::launch(c, "ce_scale_positions", ce_scale_positions<T>, blocks, vt::cuda::kThreads, 0, sp, gp, n, L);
    else
      vt::cuda::launch(c, "ce_scale_scalar", ce_scale_scalar<T>, blocks, vt::cuda::kThreads, 0, sp, gp, n,
                       rowwise::aligned16(gp));
  });
}

VT_COMPUTE(cross_entropy_backward_cuda, "core::cross_entropy_backward") {
  const vt_tensor* go = c.arg(0, "grad_output").tensor();
  const vt_tensor* x = c.arg(1, "input").tensor();
  const vt_tensor* t = c.arg(2, "target").tensor();
  const vt_tensor* lse = c.arg(3, "lse").tensor();
  CEGrad q{c.arg(4, "ignore_index").int_(), reduction_of(c.arg(6, "reduction").str()),
           c.arg(5, "label_smoothing").float_(), nullptr};
  const CELayout L = layout_of(x);
  const int64_t P = L.N * L.inner;
  const vt_tensor* gin = c.out(0);
  if (x->numel == 0) return;
  rowwise::Contig xc(c, x), tc(c, t), gc(c, go), lc(c, lse);
  const int64_t* tp = vt::data<const int64_t>(tc.t);
  vt::Tensor count;
  if (q.red == Red::Mean) {
    count = kept_count(c, tp, P, q.ignore);
    q.count = vt::data<const long long>(count);
  }
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = vt::data<const T>(xc.t);
    const T* gp = vt::data<const T>(gc.t);
    const A* lp = vt::data<const A>(lc.t);
    T* ip = vt::data<T>(gin);
    if (L.inner == 1) {
      const rowwise::Plan p = rowwise::plan_rows(c, P, L.C, rowwise::width<T>(), kSlots,
                                                 rowwise::aligned16(xp) && rowwise::aligned16(ip));
      vt::cuda::launch(c, "ce_bwd_rows", ce_bwd_rows<T, kSlots>, p.blocks, p.threads, 0, xp, tp, lp, gp, ip, P,
                       (int)L.C, p, q);
    } else {
      vt::cuda::launch(c, "ce_bwd_cols", ce_bwd_cols<T>, vt::cuda::grid_for(P), vt::cuda::kThreads, 0, xp, tp, lp, gp,
                       ip, L, q);
    }
  });
}

VT_COMPUTE(mse_loss_cuda, "core::mse_loss") {
  const vt_tensor* x = c.arg(0, "input").tensor();
  const vt_tensor* y = c.arg(1, "target").tensor();
  const Red red = reduction_of(c.arg(2, "reduction").str());
  const vt_tensor* out = c.out(0);
  vt::cuda::dispatch(vt::kFloatingTypes, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    if (red == Red::None) {
      vt::cuda::elementwise<T, T, T>(c, SqDiffT<T>{}, out, x, y);
      return;
    }
    int64_t shape[vt::kMaxDims];
    const int32_t nd = vt::broadcast_shape(c.op, x, "input", y, "target", shape);
    vt::Tensor sq = c.empty(shape, nd, vt::dtype_of<A>());
    const int64_t n = sq->numel;
    vt::cuda::elementwise<A, T, T>(c, SqDiffA<T>{}, sq, x, y);
    const int64_t G = std::min<int64_t>(1024, (n + 4095) / 4096);
    const int64_t gs[1] = {std::max<int64_t>(G, 1)};
    vt::Tensor part = c.empty(gs, 1, vt::kFloat64);
    if (G > 0)
      vt::cuda::launch(c, "sum_partials", sum_partials<A>, (unsigned)G, vt::cuda::kThreads, 0, vt::data<const A>(sq), n,
                       vt::data<double>(part));
    vt::cuda::launch(c, "sum_finish", sum_finish<T>, 1, kFinishThreads, 0, vt::data<const double>(part), G, n,
                     red == Red::Mean, vt::data<T>(out));
  });
}

}  // namespace

void register_loss_cuda(vt::Registrar& r) {
  r.compute("core::cross_entropy", VT_CUDA, cross_entropy_cuda);
  r.compute("core::cross_entropy_backward", VT_CUDA, cross_entropy_backward_cuda);
  r.compute("core::cross_entropy_fused", VT_CUDA, cross_entropy_fused_cuda);
  r.compute("core::cross_entropy_grad_scale", VT_CUDA, cross_entropy_grad_scale_cuda);
  r.compute("core::mse_loss", VT_CUDA, mse_loss_cuda);
}
