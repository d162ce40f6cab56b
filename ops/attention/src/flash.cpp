// flash.cpp — the fused CPU attention of provider "flash": attention::sdpa's forward and the
// attention::sdpa_backward op. Not here: argument checks and tile primitives (attn.hpp), the
// composed reference (composed.cpp), the meta steps (argument checks, outputs), registration and
// the backward rule (pack.cpp).
//
// Forward (flash-attention style, online softmax; the Tq x Tk matrix never exists):
//   one task = one (b, h) and a block of kBq queries. The block's scaled queries are packed
//   transposed, QT (D x kBq); then for each block of kBk keys
//     ST = K_blk * QT                (kBk x kBq: keys-major, so the softmax over keys is a
//                                     vertical, vectorised pass over rows of ST)
//     mask / causal -> -inf;  m_new = max(m, colmax ST);  P = exp(ST - m_new);  l = l*alpha + colsum P
//     O = O * alpha + P^T V_blk      (O is kBq x Dv, float accumulators)
//   with alpha = exp(m - m_new); then out = O / l and lse = m + log l (-inf and out = 0 for a row
//   whose keys are all masked, like torch's safe softmax). Causal key blocks past the query block
//   are skipped. Tasks run on the runtime's pool, handed out dynamically (largest causal blocks
//   first) so causal work balances.
// Backward (flash-attention-2 style): one task = one (b, kv head), so dK/dV/dQ accumulate race-free
//   in the task's own buffers; dK/dV over every key, summed over the query heads of the kv head's
//   group in a fixed order (one query head without grouped-query attention). Per query head h:
//   D_i = rowsum(dO * O) - dlse_i; the queries' packed forms are built once; then for each key
//   block (outer) and query block (inner), recomputing from lse:
//     ST = K QsT;  PT = exp(ST - lse);  dV += Pdrop^T dO;  dPT = V dO^T;
//     dST = PT * (dPT * dropmask - D_i);  dK += dST Qs;  dQ += dST^T K
//   where Qs = scale * Q (so dK needs no extra scaling) and dQ is scaled once at the end.
// Dtypes: float32 and float64 compute in their own type; float16/bfloat16 are converted to float32
// while packing (K and V tiles are then packed too) and results converted back.
#include <algorithm>
#include <atomic>

#include "attn.hpp"
#include "vt/autograd.hpp"

namespace {

using attn::Dims;
using attn::Strides4;
using attn::kW;

constexpr int64_t kBq = 64;  // queries per block: the columns of a score tile (4 zmm of floats)
constexpr int64_t kBk = 64;  // keys per block: the rows of a score tile

enum MaskKind { kNoMask = 0, kBoolMask = 1, kAddMask = 2 };

struct Params {
  Dims d;
  double scale = 1.0, p = 0.0;
  bool causal = false;
  uint64_t seed = 0, offset = 0;
  uint32_t thr = 0;
  const void *q = nullptr, *k = nullptr, *v = nullptr, *mask = nullptr;
  Strides4 qs{}, ks{}, vs{}, ms{};
  int mask_kind = kNoMask;  // an additive mask is already in the accumulation type
  // forward outputs: out with the strides the meta step chose, lse contiguous
  void* out = nullptr;
  Strides4 outs{};
  void* lse = nullptr;
  // backward inputs and outputs (any strides)
  const void *o = nullptr, *dout = nullptr, *lse_in = nullptr, *dlse = nullptr;
  Strides4 os{}, dos{};
  int64_t lse_s[3] = {0, 0, 0}, dlse_s[3] = {0, 0, 0};
  void *dq = nullptr, *dk = nullptr, *dv = nullptr;
  Strides4 dqs{}, dks{}, dvs{};
};

// ---- shared tile steps -----------------------------------------------------------------------------
// -inf where the mask drops (keys j0.., queries i0.. of head (b, h)); ST is keys-major (ld kBq)
template <class A>
VT_ATTN_INLINE void apply_masks(const Params& P, int64_t b, int64_t h, int64_t i0, int64_t nq, int64_t j0,
                                int64_t nk, A* ST) {
  const A ninf = -INFINITY;
  if (P.causal && j0 + nk - 1 > i0) {
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t lim = j0 + jj - i0;  // query column ii drops key j when ii < lim
      A* row = ST + jj * kBq;
      for (int64_t ii = 0; ii < kBq; ++ii) row[ii] = ii < lim ? ninf : row[ii];
    }
  }
  if (P.mask_kind == kBoolMask) {
    const uint8_t* mp = static_cast<const uint8_t*>(P.mask) + b * P.ms.b + h * P.ms.h;
    for (int64_t jj = 0; jj < nk; ++jj) {
      const uint8_t* mj = mp + (j0 + jj) * P.ms.d + i0 * P.ms.t;
      A* row = ST + jj * kBq;
      for (int64_t ii = 0; ii < nq; ++ii) row[ii] = mj[ii * P.ms.t] ? row[ii] : ninf;
    }
  } else if (P.mask_kind == kAddMask) {
    const A* mp = static_cast<const A*>(P.mask) + b * P.ms.b + h * P.ms.h;
    for (int64_t jj = 0; jj < nk; ++jj) {
      const A* mj = mp + (j0 + jj) * P.ms.d + i0 * P.ms.t;
      A* row = ST + jj * kBq;
      for (int64_t ii = 0; ii < nq; ++ii) row[ii] += mj[ii * P.ms.t];
    }
  }
}

// dst (rows x ld, zero padded past cols) = src rows with element strides (rs, cs), times s
template <class T, class A>
VT_ATTN_INLINE void pack_rows(A* dst, int64_t ld, const T* src, int64_t rs, int64_t cs, int64_t rows, int64_t cols,
                              A s) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* sr = src + r * rs;
    A* dr = dst + r * ld;
    if (cs == 1) {
      for (int64_t c = 0; c < cols; ++c) dr[c] = (A)vt::convert<A>(sr[c]) * s;
    } else {
      for (int64_t c = 0; c < cols; ++c) dr[c] = (A)vt::convert<A>(sr[c * cs]) * s;
    }
    for (int64_t c = cols; c < ld; ++c) dr[c] = A(0);
  }
}
// dst (cols x kBq) = transpose of src rows (rows <= kBq; the remaining columns are zero) times s
template <class T, class A>
VT_ATTN_INLINE void pack_transposed(A* dst, const T* src, int64_t rs, int64_t cs, int64_t rows, int64_t cols, A s) {
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = rows; r < kBq; ++r) dst[c * kBq + r] = A(0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* sr = src + r * rs;
    for (int64_t c = 0; c < cols; ++c) dst[c * kBq + r] = (A)vt::convert<A>(sr[c * cs]) * s;
  }
}

// Hands out tasks 0..n-1 dynamically to the pool's threads; worker(next, n) loops over them.
template <class Worker>
void run_tasks(const vt_host* host, int64_t n, Worker worker) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t nt = std::min<int64_t>(std::max<int32_t>(host->num_threads(), 1), n);
  vt::parallel_for(host, 0, nt, 1, [&](int64_t, int64_t) { worker(&next, n); });
}

// ---- forward ---------------------------------------------------------------------------------------
template <class T, class A>
VT_ATTN_INLINE void fwd_worker(const Params& P, std::atomic<int64_t>* next, int64_t ntasks) {
  const Dims& d = P.d;
  constexpr int64_t W = kW<A>;
  constexpr bool kDirect = std::is_same<T, A>::value;  // K and V are read in place
  const int64_t Dvp = attn::round_up(std::max<int64_t>(d.Dv, 1), W);
  const bool v_direct = kDirect && P.vs.d == 1 && d.Dv % W == 0;
  const int64_t nqb = (d.Tq + kBq - 1) / kBq;
  attn::Buf<A> QT(d.D * kBq), ST(kBk * kBq), O(kBq * Dvp), Kb(kDirect ? 1 : kBk * d.D), Vb(kBk * Dvp),
      stats(5 * kBq);
  attn::Buf<uint8_t> keep(P.p > 0 ? kBk * kBq : 1);
  A *m = stats.get(), *l = m + kBq, *alpha = l + kBq, *msafe = alpha + kBq, *rsum = msafe + kBq;
  const A scale = (A)P.scale;
  const A rs = P.p < 1.0 ? (A)(1.0 / (1.0 - P.p)) : A(0);

  for (;;) {
    const int64_t t = next->fetch_add(1, std::memory_order_relaxed);
    if (t >= ntasks) return;
    const int64_t bh = t / nqb, qb = nqb - 1 - t % nqb;  // the largest causal blocks first
    const int64_t b = bh / d.H, h = bh % d.H;
    const int64_t i0 = qb * kBq, nq = std::min(kBq, d.Tq - i0);
    const int64_t hk = h / d.group();  // the kv head of query head h
    const T* q = static_cast<const T*>(P.q) + b * P.qs.b + h * P.qs.h;
    const T* k = static_cast<const T*>(P.k) + b * P.ks.b + hk * P.ks.h;
    const T* v = static_cast<const T*>(P.v) + b * P.vs.b + hk * P.vs.h;

    pack_transposed<T, A>(QT.get(), q + i0 * P.qs.t, P.qs.t, P.qs.d, nq, d.D, scale);
    std::memset(O.get(), 0, sizeof(A) * (size_t)(kBq * Dvp));
    for (int64_t ii = 0; ii < kBq; ++ii) { m[ii] = -INFINITY; l[ii] = 0; }

    const int64_t kend = P.causal ? std::min(d.Tk, i0 + nq) : d.Tk;
    for (int64_t j0 = 0; j0 < kend; j0 += kBk) {
      const int64_t nk = std::min(kBk, kend - j0);
      // K (nk x D) as the broadcast operand, V (nk x Dvp) as the vector operand
      const A* ka;
      int64_t kars, kaks;
      if constexpr (kDirect) {
        ka = reinterpret_cast<const A*>(k) + j0 * P.ks.t, kars = P.ks.t, kaks = P.ks.d;
      } else {
        pack_rows<T, A>(Kb.get(), d.D, k + j0 * P.ks.t, P.ks.t, P.ks.d, nk, d.D, A(1));
        ka = Kb.get(), kars = d.D, kaks = 1;
      }
      const A* vb;
      int64_t ldv;
      if (v_direct) {
        vb = reinterpret_cast<const A*>(v) + j0 * P.vs.t, ldv = P.vs.t;
      } else {
        pack_rows<T, A>(Vb.get(), Dvp, v + j0 * P.vs.t, P.vs.t, P.vs.d, nk, d.Dv, A(1));
        vb = Vb.get(), ldv = Dvp;
      }
      A* S = ST.get();
      attn::gemm<A>(nk, kBq, d.D, ka, kars, kaks, QT.get(), kBq, S, kBq, false);
      apply_masks<A>(P, b, h, i0, nq, j0, nk, S);

      // online softmax, vertical over the keys of the block
      for (int64_t ii = 0; ii < kBq; ++ii) msafe[ii] = m[ii];
      for (int64_t jj = 0; jj < nk; ++jj) {
        const A* row = S + jj * kBq;
        for (int64_t ii = 0; ii < kBq; ++ii) msafe[ii] = row[ii] > msafe[ii] ? row[ii] : msafe[ii];
      }
      for (int64_t ii = 0; ii < kBq; ++ii) {
        const A mn = msafe[ii];
        const A ms = mn == -INFINITY ? A(0) : mn;
        alpha[ii] = attn::fexp(m[ii] - ms);
        m[ii] = mn;
        msafe[ii] = ms;
        rsum[ii] = 0;
      }
      for (int64_t jj = 0; jj < nk; ++jj) {
        A* row = S + jj * kBq;
        for (int64_t ii = 0; ii < kBq; ++ii) {
          const A e = attn::fexp(row[ii] - msafe[ii]);
          row[ii] = e;
          rsum[ii] += e;
        }
      }
      for (int64_t ii = 0; ii < kBq; ++ii) l[ii] = l[ii] * alpha[ii] + rsum[ii];
      if (P.p > 0) {
        uint8_t* kp = keep.get();
        attn::dropout_keep_tile(P.seed, P.offset, P.thr, d, bh, i0, nq, j0, nk, kp, kBq);
        for (int64_t jj = 0; jj < nk; ++jj) {
          A* row = S + jj * kBq;
          const uint8_t* kr = kp + jj * kBq;
          for (int64_t ii = 0; ii < kBq; ++ii) row[ii] = kr[ii] ? row[ii] * rs : A(0);
        }
      }
      if (j0 > 0) {
        for (int64_t ii = 0; ii < nq; ++ii) {
          A* orow = O.get() + ii * Dvp;
          const A a = alpha[ii];
          for (int64_t c = 0; c < Dvp; ++c) orow[c] *= a;
        }
      }
      attn::gemm<A>(nq, Dvp, nk, S, 1, kBq, vb, ldv, O.get(), Dvp, true);
    }
    // out = O / l, lse = m + log l
    T* out = static_cast<T*>(P.out) + b * P.outs.b + h * P.outs.h + i0 * P.outs.t;
    A* lse = static_cast<A*>(P.lse) + bh * d.Tq + i0;
    for (int64_t ii = 0; ii < nq; ++ii) {
      const A li = l[ii];
      const A inv = li > 0 ? A(1) / li : A(0);
      const A* orow = O.get() + ii * Dvp;
      T* dst = out + ii * P.outs.t;
      for (int64_t c = 0; c < d.Dv; ++c) dst[c * P.outs.d] = vt::convert<T>(orow[c] * inv);
      lse[ii] = li > 0 ? (m[ii] == -INFINITY ? A(0) : m[ii]) + std::log(li) : A(-INFINITY);
    }
  }
}

VT_ATTN_CLONES void fwd_f32(const Params& P, std::atomic<int64_t>* n, int64_t t) { fwd_worker<float, float>(P, n, t); }
VT_ATTN_CLONES void fwd_f64(const Params& P, std::atomic<int64_t>* n, int64_t t) { fwd_worker<double, double>(P, n, t); }
VT_ATTN_CLONES void fwd_f16(const Params& P, std::atomic<int64_t>* n, int64_t t) { fwd_worker<vt::half, float>(P, n, t); }
VT_ATTN_CLONES void fwd_bf16(const Params& P, std::atomic<int64_t>* n, int64_t t) {
  fwd_worker<vt::bfloat16, float>(P, n, t);
}

// ---- backward --------------------------------------------------------------------------------------
template <class T, class A>
VT_ATTN_INLINE void bwd_worker(const Params& P, std::atomic<int64_t>* next, int64_t ntasks) {
  const Dims& d = P.d;
  constexpr int64_t W = kW<A>;
  constexpr bool kDirect = std::is_same<T, A>::value;
  const int64_t Dp = attn::round_up(std::max<int64_t>(d.D, 1), W);
  const int64_t Dvp = attn::round_up(std::max<int64_t>(d.Dv, 1), W);
  const int64_t nqb = (d.Tq + kBq - 1) / kBq, Tqp = nqb * kBq;
  const bool k_direct = kDirect && P.ks.d == 1 && d.D % W == 0;
  // per query head: the queries' packed forms, row statistics and the dQ accumulator
  attn::Buf<A> QsT(nqb * d.D * kBq), Qs(Tqp * Dp), dOT(nqb * d.Dv * kBq), dOp(Tqp * Dvp), dQ(Tqp * Dp),
      Dlt(Tqp), lse_use(Tqp);
  // per kv head: dK and dV of every key (the group's sum); per key block: K, V packed, the tiles
  attn::Buf<A> dK(d.Tk * Dp), dV(d.Tk * Dvp);
  attn::Buf<A> Kb(kDirect ? 1 : kBk * d.D), Kp(kBk * Dp), Vb(kDirect ? 1 : kBk * d.Dv), PT(kBk * kBq),
      PdT(P.p > 0 ? kBk * kBq : 1), dST(kBk * kBq);
  attn::Buf<uint8_t> keep(P.p > 0 ? kBk * kBq : 1);
  const A scale = (A)P.scale;
  const A rs = P.p < 1.0 ? (A)(1.0 / (1.0 - P.p)) : A(0);

  for (;;) {
    const int64_t task = next->fetch_add(1, std::memory_order_relaxed);
    if (task >= ntasks) return;
    const int64_t b = task / d.Hkv, hk = task % d.Hkv, G = d.group();
    const T* k = static_cast<const T*>(P.k) + b * P.ks.b + hk * P.ks.h;
    const T* v = static_cast<const T*>(P.v) + b * P.vs.b + hk * P.vs.h;
    std::memset(dK.get(), 0, sizeof(A) * (size_t)(d.Tk * Dp));
    std::memset(dV.get(), 0, sizeof(A) * (size_t)(d.Tk * Dvp));
    for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
      const int64_t bh = b * d.H + h;
      const T* q = static_cast<const T*>(P.q) + b * P.qs.b + h * P.qs.h;
      const T* o = static_cast<const T*>(P.o) + b * P.os.b + h * P.os.h;
      const T* go = static_cast<const T*>(P.dout) + b * P.dos.b + h * P.dos.h;
      const A* lse = static_cast<const A*>(P.lse_in) + b * P.lse_s[0] + h * P.lse_s[1];
      const A* glse = P.dlse ? static_cast<const A*>(P.dlse) + b * P.dlse_s[0] + h * P.dlse_s[1] : nullptr;

      // D_i = rowsum(dO * O) - dlse_i: dS = P * (dP - D) also carries the gradient of lse (dlse * P)
      for (int64_t i = 0; i < d.Tq; ++i) {
        A s = 0;
        for (int64_t c = 0; c < d.Dv; ++c)
          s += vt::convert<A>(go[i * P.dos.t + c * P.dos.d]) * vt::convert<A>(o[i * P.os.t + c * P.os.d]);
        Dlt.get()[i] = s - (glse ? glse[i * P.dlse_s[2]] : A(0));
        const A li = lse[i * P.lse_s[2]];
        lse_use.get()[i] = li == -INFINITY ? A(INFINITY) : li;  // fully masked row: P = 0
      }
      for (int64_t i = d.Tq; i < Tqp; ++i) Dlt.get()[i] = 0, lse_use.get()[i] = INFINITY;
      for (int64_t qb = 0; qb < nqb; ++qb) {
        const int64_t i0 = qb * kBq, nq = std::min(kBq, d.Tq - i0);
        pack_transposed<T, A>(QsT.get() + qb * d.D * kBq, q + i0 * P.qs.t, P.qs.t, P.qs.d, nq, d.D, scale);
        pack_transposed<T, A>(dOT.get() + qb * d.Dv * kBq, go + i0 * P.dos.t, P.dos.t, P.dos.d, nq, d.Dv, A(1));
      }
      pack_rows<T, A>(Qs.get(), Dp, q, P.qs.t, P.qs.d, d.Tq, d.D, scale);
      pack_rows<T, A>(dOp.get(), Dvp, go, P.dos.t, P.dos.d, d.Tq, d.Dv, A(1));
      std::memset(dQ.get(), 0, sizeof(A) * (size_t)(Tqp * Dp));

      for (int64_t j0 = 0; j0 < d.Tk; j0 += kBk) {
        const int64_t nk = std::min(kBk, d.Tk - j0);
        const A *ka, *va, *kp;
        int64_t kars, kaks, vars, vaks, ldkp;
        if constexpr (kDirect) {
          ka = reinterpret_cast<const A*>(k) + j0 * P.ks.t, kars = P.ks.t, kaks = P.ks.d;
          va = reinterpret_cast<const A*>(v) + j0 * P.vs.t, vars = P.vs.t, vaks = P.vs.d;
        } else {
          pack_rows<T, A>(Kb.get(), d.D, k + j0 * P.ks.t, P.ks.t, P.ks.d, nk, d.D, A(1));
          pack_rows<T, A>(Vb.get(), d.Dv, v + j0 * P.vs.t, P.vs.t, P.vs.d, nk, d.Dv, A(1));
          ka = Kb.get(), kars = d.D, kaks = 1, va = Vb.get(), vars = d.Dv, vaks = 1;
        }
        if (k_direct) {
          kp = reinterpret_cast<const A*>(k) + j0 * P.ks.t, ldkp = P.ks.t;
        } else {
          pack_rows<T, A>(Kp.get(), Dp, k + j0 * P.ks.t, P.ks.t, P.ks.d, nk, d.D, A(1));
          kp = Kp.get(), ldkp = Dp;
        }
        A* dKb = dK.get() + j0 * Dp;  // this key block's rows
        A* dVb = dV.get() + j0 * Dvp;

        for (int64_t qb = P.causal ? j0 / kBq : 0; qb < nqb; ++qb) {
          const int64_t i0 = qb * kBq, nq = std::min(kBq, d.Tq - i0);
          A* S = PT.get();
          attn::gemm<A>(nk, kBq, d.D, ka, kars, kaks, QsT.get() + qb * d.D * kBq, kBq, S, kBq, false);
          apply_masks<A>(P, b, h, i0, nq, j0, nk, S);
          const A* lu = lse_use.get() + i0;
          for (int64_t jj = 0; jj < nk; ++jj) {
            A* row = S + jj * kBq;
            for (int64_t ii = 0; ii < kBq; ++ii) row[ii] = attn::fexp(row[ii] - lu[ii]);
          }
          const A* Pd = S;  // the probabilities after dropout
          const uint8_t* kpm = keep.get();
          if (P.p > 0) {
            attn::dropout_keep_tile(P.seed, P.offset, P.thr, d, bh, i0, nq, j0, nk, keep.get(), kBq);
            for (int64_t jj = 0; jj < nk; ++jj)
              for (int64_t ii = 0; ii < kBq; ++ii)
                PdT.get()[jj * kBq + ii] = kpm[jj * kBq + ii] ? S[jj * kBq + ii] * rs : A(0);
            Pd = PdT.get();
          }
          // dV += Pd^T dO
          attn::gemm<A>(nk, Dvp, nq, Pd, kBq, 1, dOp.get() + i0 * Dvp, Dvp, dVb, Dvp, true);
          // dPT = V dO^T, then dST = PT * (dPT * drop - D)
          A* dS = dST.get();
          attn::gemm<A>(nk, kBq, d.Dv, va, vars, vaks, dOT.get() + qb * d.Dv * kBq, kBq, dS, kBq, false);
          const A* Di = Dlt.get() + i0;
          if (P.p > 0) {
            for (int64_t jj = 0; jj < nk; ++jj)
              for (int64_t ii = 0; ii < kBq; ++ii) {
                const A dp = kpm[jj * kBq + ii] ? dS[jj * kBq + ii] * rs : A(0);
                dS[jj * kBq + ii] = S[jj * kBq + ii] * (dp - Di[ii]);
              }
          } else {
            for (int64_t jj = 0; jj < nk; ++jj) {
              A* g = dS + jj * kBq;
              const A* pr = S + jj * kBq;
              for (int64_t ii = 0; ii < kBq; ++ii) g[ii] = pr[ii] * (g[ii] - Di[ii]);
            }
          }
          // dK += dS^T Qs;  dQ += dS K
          attn::gemm<A>(nk, Dp, nq, dS, kBq, 1, Qs.get() + i0 * Dp, Dp, dKb, Dp, true);
          attn::gemm<A>(nq, Dp, nk, dS, 1, kBq, kp, ldkp, dQ.get() + i0 * Dp, Dp, true);
        }
      }
      T* dq = static_cast<T*>(P.dq) + b * P.dqs.b + h * P.dqs.h;
      for (int64_t i = 0; i < d.Tq; ++i)
        for (int64_t c = 0; c < d.D; ++c) dq[i * P.dqs.t + c * P.dqs.d] = vt::convert<T>(dQ.get()[i * Dp + c] * scale);
    }
    T* dk = static_cast<T*>(P.dk) + b * P.dks.b + hk * P.dks.h;
    T* dv = static_cast<T*>(P.dv) + b * P.dvs.b + hk * P.dvs.h;
    for (int64_t j = 0; j < d.Tk; ++j) {
      for (int64_t c = 0; c < d.D; ++c) dk[j * P.dks.t + c * P.dks.d] = vt::convert<T>(dK.get()[j * Dp + c]);
      for (int64_t c = 0; c < d.Dv; ++c) dv[j * P.dvs.t + c * P.dvs.d] = vt::convert<T>(dV.get()[j * Dvp + c]);
    }
  }
}

VT_ATTN_CLONES void bwd_f32(const Params& P, std::atomic<int64_t>* n, int64_t t) { bwd_worker<float, float>(P, n, t); }
VT_ATTN_CLONES void bwd_f64(const Params& P, std::atomic<int64_t>* n, int64_t t) { bwd_worker<double, double>(P, n, t); }
VT_ATTN_CLONES void bwd_f16(const Params& P, std::atomic<int64_t>* n, int64_t t) { bwd_worker<vt::half, float>(P, n, t); }
VT_ATTN_CLONES void bwd_bf16(const Params& P, std::atomic<int64_t>* n, int64_t t) {
  bwd_worker<vt::bfloat16, float>(P, n, t);
}

// ---- entry points ------------------------------------------------------------------------------------
// Sets P's mask fields; an additive mask of another dtype is converted to the accumulation type
// (the returned tensor keeps that copy alive).
vt::Tensor set_mask(vt::Call& c, Params& P, const vt_tensor* mask, vt_dtype acc) {
  vt::Tensor own;
  if (!mask || mask->numel == 0) return own;
  if (vt::scalar_type(mask->dtype) == vt::ScalarType::Bool) {
    P.mask_kind = kBoolMask;
  } else {
    P.mask_kind = kAddMask;
    if (!vt::same_dtype(mask->dtype, acc)) {
      own = vt::call(c.host, "core::to_dtype", {const_cast<vt_tensor*>(mask), acc});
      mask = own.get();
    }
  }
  P.mask = mask->data;
  P.ms = attn::mask_strides(mask);
  return own;
}

template <class F>
void by_dtype(vt::Call& c, vt_dtype dt, F f32, F f64, F f16, F bf16, const Params& P, int64_t ntasks) {
  F f = nullptr;
  switch (vt::scalar_type(dt)) {
    case vt::ScalarType::Float32: f = f32; break;
    case vt::ScalarType::Float64: f = f64; break;
    case vt::ScalarType::Float16: f = f16; break;
    case vt::ScalarType::BFloat16: f = bf16; break;
    default:
      c.fail(VT_ERR_NOT_IMPL, "not implemented for dtype %s (supported: float32, float64, float16, bfloat16)",
             vt::dtype_name(dt));
  }
  run_tasks(c.host, ntasks, [&](std::atomic<int64_t>* next, int64_t n) { f(P, next, n); });
}

using WorkerFn = void (*)(const Params&, std::atomic<int64_t>*, int64_t);

}  // namespace

// The computes: arguments checked and outputs made by the meta steps (pack.cpp).
VT_COMPUTE(sdpa_flash_cpu, "attention::sdpa") {
  const attn::SdpaArgs a(c);
  const vt_tensor* q = a.q;
  Params P;
  P.causal = a.causal;
  P.d = attn::dims(q, a.k, a.v);
  P.scale = a.scale(P.d.D);
  P.p = a.p;
  const Dims& d = P.d;
  if (P.p > 0 && d.B * d.H * d.Tq * d.Tk > 0) {
    c.host->philox_reserve(c.ctx->device, attn::dropout_groups(d), &P.seed, &P.offset);
    P.thr = attn::dropout_threshold(P.p);
  }
  int64_t* rng = vt::data<int64_t>(c.out(2));
  rng[0] = (int64_t)P.seed;
  rng[1] = (int64_t)P.offset;
  vt::Tensor mask_own = set_mask(c, P, a.mask, attn::acc_dtype(q->dtype));
  P.q = q->data, P.k = a.k->data, P.v = a.v->data;
  P.qs = attn::strides4(q), P.ks = attn::strides4(a.k), P.vs = attn::strides4(a.v);
  P.out = c.out(0)->data, P.lse = c.out(1)->data;
  P.outs = attn::strides4(c.out(0));
  by_dtype<WorkerFn>(c, q->dtype, fwd_f32, fwd_f64, fwd_f16, fwd_bf16, P, d.B * d.H * ((d.Tq + kBq - 1) / kBq));
}

VT_COMPUTE(sdpa_backward_cpu, "attention::sdpa_backward") {
  const attn::SdpaBackwardArgs a(c);
  const vt_tensor* q = a.q;
  Params P;
  P.causal = a.causal;
  P.scale = a.scale;
  P.p = a.p;
  P.seed = (uint64_t)a.seed;
  P.offset = (uint64_t)a.offset;
  P.d = attn::dims(q, a.k, a.v);
  const Dims& d = P.d;
  vt_tensor* dq = c.out(0);
  vt_tensor* dk = c.out(1);
  vt_tensor* dv = c.out(2);
  if (P.p > 0) P.thr = attn::dropout_threshold(P.p);
  vt::Tensor mask_own = set_mask(c, P, a.mask, attn::acc_dtype(q->dtype));
  P.q = q->data, P.k = a.k->data, P.v = a.v->data, P.o = a.out->data, P.dout = a.go->data;
  P.qs = attn::strides4(q), P.ks = attn::strides4(a.k), P.vs = attn::strides4(a.v);
  P.os = attn::strides4(a.out), P.dos = attn::strides4(a.go);
  P.lse_in = a.lse->data;
  for (int i = 0; i < 3; ++i) P.lse_s[i] = a.lse->strides[i];
  if (a.glse) {
    P.dlse = a.glse->data;
    for (int i = 0; i < 3; ++i) P.dlse_s[i] = a.glse->strides[i];
  }
  P.dq = dq->data, P.dk = dk->data, P.dv = dv->data;
  P.dqs = attn::strides4(dq), P.dks = attn::strides4(dk), P.dvs = attn::strides4(dv);
  if (d.Tq == 0 || d.Tk == 0) {  // no scores: every gradient is zero (in whatever layout they have)
    for (vt_tensor* g : {dq, dk, dv}) vt::call(c.host, "core::fill_", {g, 0.0});
  } else {
    by_dtype<WorkerFn>(c, q->dtype, bwd_f32, bwd_f64, bwd_f16, bwd_bf16, P, d.B * d.Hkv);
  }
}
