// flash_emulate.cpp — runs the flash provider's CUDA kernels (src/flash_fwd.cu, src/flash_bwd.cu;
// the float32 ones of src/flash32_fwd.cu, src/flash32_bwd.cu are cases 10 and up) on the host,
// with every CUDA thread a std::thread and the warp primitives emulated (flash_emulate.hpp),
// against a float64 reference: forward out and lse, dq, dk, dv, for bf16, fp16 and fp32, D 32, 64
// and 128 (D 32: cases 18 and up), causal and not, Tq != Tk both ways (several blocks each way),
// bool and float masks, dropout (attn.hpp's keep rule; the backward reads the seed from the
// forward's rng record), grad_lse, strided inputs, grouped-query attention (k, v with Hkv heads:
// cases 26 and up). A check of the index arithmetic for a machine without a GPU; slow (a barrier per
// emulated collective), so the shapes are small. Global tensors and each CTA's shared memory are
// heap buffers of their exact sizes: built with -fsanitize=address,undefined it also finds any
// access out of bounds (clean on 2026-11-30; the float32 cases on 2026-12-01).
//
//   g++ -std=c++20 -O2 -pthread -DFLASH_EMULATE -I/usr/local/cuda/include -Iopsdk/include \
//       -Iops/attention/src -Iops/attention/lab ops/attention/lab/flash_emulate.cpp -o /tmp/flash_emulate
//   /tmp/flash_emulate [case...]  (exit status 0 when every case is within 1e-2 of the reference,
//                                  1e-5 for float32 (lse 1e-6);
//                                  tests/test_attention.py runs a few cases the same way)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <thread>
#include <vector>

#include "flash_fwd.cu"
#include "flash_bwd.cu"
#include "flash32_fwd.cu"
#include "flash32_bwd.cu"
#include "flash_short.cu"

namespace flashcu {
template <class P>
void emu_launch(void (*kernel)(P), unsigned blocks, const P& p, unsigned threads, size_t smem_bytes) {
  std::vector<unsigned char> buf(smem_bytes);
  emu_smem = buf.data();
  for (unsigned b = 0; b < blocks; ++b) {
    if (smem_bytes) std::memset(buf.data(), 0xff, smem_bytes);  // NaN in 16- and 32-bit floats: a tile read before written shows
    EmuCta cta((int)threads);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        threadIdx.x = t;
        blockIdx.x = b;
        blockDim.x = threads;
        emu_cta = &cta;
        kernel(p);
      });
    for (auto& th : ts) th.join();
  }
}
}  // namespace flashcu

using namespace flashcu;

struct Case {
  int B, H, Tq, Tk, D;
  bool causal;
  int mask;  // kNoMask, kBoolMask, kAddMask
  double p;
  bool glse, strided;
  int dtype;  // kBf16, kFp16, kFp32
  int Hkv = 0;  // k, v heads (0: H); query head h reads kv head h / (H / Hkv)
  int split = 1;  // dK/dV CTAs a kv head (BwdParams::kv_split): partial sums, added up afterwards
};
enum { kBf16 = 0, kFp16 = 1, kFp32 = 2 };

template <class T>
T to_t(float x) {
  return T(x);
}

// f(std::integral_constant<int, D>{}) for the head dims the kernels are instantiated for
template <class F>
static void by_head_dim(int D, F f) {
  switch (D) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 128: return f(std::integral_constant<int, 128>{});
    default: std::fprintf(stderr, "no kernels for D = %d\n", D), std::exit(2);
  }
}

// max |got - want| / max(max |want|, floor)
static double rel(const std::vector<double>& got, const std::vector<double>& want, bool* nan, double floor = 1e-12) {
  double e = 0, m = floor;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) *nan = true;
    if (std::isinf(want[i])) {
      if (got[i] != want[i]) *nan = true;
      continue;
    }
    e = std::max(e, std::fabs(got[i] - want[i]));
    m = std::max(m, std::fabs(want[i]));
  }
  return e / m;
}

template <class T>
static bool run_case(const Case& cs, std::mt19937& gen) {
  const int B = cs.B, H = cs.H, Tq = cs.Tq, Tk = cs.Tk, D = cs.D, BH = B * H;
  const int Hkv = cs.Hkv ? cs.Hkv : H, G = H / Hkv;
  std::normal_distribution<float> nd;
  // storage: contiguous (B, heads, T, D), or (B, T, heads, D) memory seen as (B, heads, T, D) when strided
  auto make = [&](int T_, int nh, std::vector<T>& st, std::vector<double>& ref, Operand& op) {
    const int H = nh;
    st.resize((size_t)B * H * T_ * D);
    ref.resize(st.size());
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < T_; ++t)
          for (int d = 0; d < D; ++d) {
            const size_t mem = cs.strided ? (((size_t)b * T_ + t) * H + h) * D + d : (((size_t)b * H + h) * T_ + t) * D + d;
            const T v = to_t<T>(nd(gen));
            st[mem] = v;
            ref[(((size_t)b * H + h) * T_ + t) * D + d] = (double)static_cast<float>(v);
          }
    op.p = st.data();
    if (cs.strided) op.sb = (int64_t)T_ * H * D, op.sh = D, op.st = (int64_t)H * D;
    else op.sb = (int64_t)H * T_ * D, op.sh = (int64_t)T_ * D, op.st = D;
  };
  std::vector<T> q, k, v, g;
  std::vector<double> rq, rk, rv, rg;
  Operand oq, ok, ov, og;
  make(Tq, H, q, rq, oq);
  make(Tk, Hkv, k, rk, ok);
  make(Tk, Hkv, v, rv, ov);
  make(Tq, H, g, rg, og);
  // mask (B, 1, Tq, Tk): bool with ~30% dropped (key 0 kept; one fully masked row), or float
  std::vector<uint8_t> mb;
  std::vector<float> mf;
  Mask mask;
  if (cs.mask == kBoolMask) {
    std::uniform_real_distribution<float> u;
    mb.resize((size_t)B * Tq * Tk);
    for (size_t i = 0; i < mb.size(); ++i) mb[i] = u(gen) > 0.3f || i % Tk == 0;
    if (Tq > 3)
      for (int j = 0; j < Tk; ++j) mb[(size_t)3 * Tk + j] = 0;  // row 3 of batch 0: every key masked
    mask = Mask{mb.data(), kBoolMask, (int64_t)Tq * Tk, 0, Tk, 1};
  } else if (cs.mask == kAddMask) {
    mf.resize((size_t)B * Tq * Tk);
    for (auto& x : mf) x = nd(gen);
    mask = Mask{mf.data(), kAddMask, (int64_t)Tq * Tk, 0, Tk, 1};
  }
  const double scale = 1.0 / std::sqrt((double)D);
  const uint64_t seed = 1234567, offset = 40;
  const uint32_t thr = (uint32_t)std::ceil(cs.p * 16777216.0);
  const double rs = cs.p < 1 ? 1.0 / (1.0 - cs.p) : 0.0;

  // ---- reference (float64) ----
  const size_t n_s = (size_t)BH * Tq * Tk;
  std::vector<double> P(n_s), Pk(n_s), lse_ref((size_t)BH * Tq), out_ref((size_t)BH * Tq * D, 0.0);
  auto kvh = [&](int bh) { return bh / H * Hkv + bh % H / G; };  // (b, kv head) of query (b, h)
  for (int bh = 0; bh < BH; ++bh) {
    const int b = bh / H, bk = kvh(bh);
    for (int i = 0; i < Tq; ++i) {
      std::vector<double> s(Tk);
      double mx = -INFINITY;
      for (int j = 0; j < Tk; ++j) {
        double x = 0;
        for (int d = 0; d < D; ++d) x += rq[((size_t)bh * Tq + i) * D + d] * rk[((size_t)bk * Tk + j) * D + d];
        x *= scale;
        const size_t mi = (size_t)b * Tq * Tk + (size_t)i * Tk + j;
        if (cs.mask == kBoolMask && !mb[mi]) x = -INFINITY;
        if (cs.mask == kAddMask) x += mf[mi];
        if (cs.causal && j > i) x = -INFINITY;
        s[j] = x;
        mx = std::max(mx, x);
      }
      double l = 0;
      for (int j = 0; j < Tk; ++j) l += mx == -INFINITY ? 0 : std::exp(s[j] - mx);
      lse_ref[(size_t)bh * Tq + i] = l > 0 ? mx + std::log(l) : -INFINITY;
      for (int j = 0; j < Tk; ++j) {
        const size_t e = ((size_t)bh * Tq + i) * Tk + j;
        P[e] = l > 0 ? std::exp(s[j] - mx) / l : 0;
        bool keep = true;
        if (cs.p > 0) {
          const vt::philox::Philox4x32 r = vt::philox::philox_group(seed, offset + e / 4);
          keep = (r.x[e % 4] >> 8) >= thr;
        }
        Pk[e] = keep ? rs : 0.0;
        if (cs.p == 0) Pk[e] = 1.0;
        for (int d = 0; d < D; ++d) out_ref[((size_t)bh * Tq + i) * D + d] += P[e] * Pk[e] * rv[((size_t)bk * Tk + j) * D + d];
      }
    }
  }
  std::vector<double> glse_ref((size_t)BH * Tq, 0.0);
  std::vector<float> glse;
  if (cs.glse) {
    glse.resize(glse_ref.size());
    for (size_t i = 0; i < glse.size(); ++i) glse[i] = nd(gen), glse_ref[i] = glse[i];
  }
  std::vector<double> dq_ref((size_t)BH * Tq * D, 0.0), dk_ref(rk.size(), 0.0), dv_ref(dk_ref.size(), 0.0);
  for (int bh = 0; bh < BH; ++bh)
    for (int i = 0; i < Tq; ++i) {
      const int bk = kvh(bh);
      std::vector<double> dp(Tk);
      double dlt = 0;
      for (int j = 0; j < Tk; ++j) {
        const size_t e = ((size_t)bh * Tq + i) * Tk + j;
        double x = 0;
        for (int d = 0; d < D; ++d) x += rg[((size_t)bh * Tq + i) * D + d] * rv[((size_t)bk * Tk + j) * D + d];
        dp[j] = x * Pk[e];
        dlt += dp[j] * P[e];
      }
      dlt -= glse_ref[(size_t)bh * Tq + i];
      for (int j = 0; j < Tk; ++j) {
        const size_t e = ((size_t)bh * Tq + i) * Tk + j;
        const double ds = P[e] * (dp[j] - dlt);
        for (int d = 0; d < D; ++d) {
          dq_ref[((size_t)bh * Tq + i) * D + d] += ds * rk[((size_t)bk * Tk + j) * D + d] * scale;
          dk_ref[((size_t)bk * Tk + j) * D + d] += ds * rq[((size_t)bh * Tq + i) * D + d] * scale;
          dv_ref[((size_t)bk * Tk + j) * D + d] += P[e] * Pk[e] * rg[((size_t)bh * Tq + i) * D + d];
        }
      }
    }

  // ---- forward kernel ----
  // outputs where the meta step puts them: contiguous for contiguous inputs; for the strided
  // (B, T, H, D) ones out in that order too, and dq, dk, dv (Tq == Tk) slices of one (B, T, 3, H, D)
  // buffer, as for a packed qkv projection
  auto dest_of = [&](T* p, int T_, int64_t row, int nh = 0) {
    const int64_t heads = nh ? nh : H;
    return cs.strided ? Dest{p, (int64_t)T_ * row, D, row} : Dest{p, heads * T_ * D, (int64_t)T_ * D, D};
  };
  // an output back in (B, heads, T, D) order
  auto gather = [&](const Dest& x, int T_, int nh = 0) {
    const int H = nh ? nh : cs.H;
    std::vector<double> r((size_t)B * H * T_ * D);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < T_; ++t)
          for (int d = 0; d < D; ++d)
            r[(((size_t)b * H + h) * T_ + t) * D + d] =
                static_cast<float>(static_cast<const T*>(x.p)[b * x.sb + h * x.sh + t * x.st + d]);
    return r;
  };
  std::vector<T> out((size_t)BH * Tq * D, to_t<T>(NAN));
  std::vector<float> lse((size_t)BH * Tq, NAN);
  int64_t rng[2] = {-1, -1};
  FwdParams fp{};
  fp.q = oq, fp.k = ok, fp.v = ov, fp.out = dest_of(out.data(), Tq, (int64_t)H * D), fp.lse = lse.data(), fp.rng = rng,
  fp.mask = mask;
  constexpr bool is32 = std::is_same_v<T, float>;  // the float32 kernels (flash32_*.cu): 64-query blocks, 256 threads
  const int fwd_rows = is32 ? f32::kRows : kFwdRows;
  fp.H = H, fp.BH = BH, fp.Tq = Tq, fp.Tk = Tk, fp.nqb = (Tq + fwd_rows - 1) / fwd_rows, fp.group = G;
  fp.scale_log2 = (float)(scale * 1.4426950408889634), fp.causal = cs.causal;
  if (cs.p > 0) {
    fp.drop = Dropout{true, thr, (float)rs};
    fp.philox.seed = seed, fp.philox.offset = offset;
  }
  bool nan = false;
  by_head_dim(D, [&](auto dc) {
    constexpr int DD = decltype(dc)::value;
    if constexpr (is32) emu_launch(flash_fwd32_kernel<DD>, (unsigned)(fp.nqb * BH), fp, f32::kThreads, fwd32_smem<DD>());
    else emu_launch(flash_fwd_kernel<T, DD>, (unsigned)(fp.nqb * BH), fp, 128, fwd_smem<T, DD>());
  });
  std::vector<double> got = gather(fp.out, Tq), got_lse(lse.size());
  for (size_t i = 0; i < lse.size(); ++i) got_lse[i] = lse[i];
  const double e_out = rel(got, out_ref, &nan), e_lse = rel(got_lse, lse_ref, &nan);
  const bool rng_ok = cs.p > 0 ? (rng[0] == (int64_t)seed && rng[1] == (int64_t)offset) : (rng[0] == 0 && rng[1] == 0);

  // ---- backward kernels (from the kernel's out and lse) ----
  const bool packed = cs.strided && Tq == Tk && Hkv == H;
  std::vector<T> dqkv(packed ? 3 * rq.size() : 0, to_t<T>(NAN));
  std::vector<T> dq(rq.size(), to_t<T>(NAN)), dk(rk.size(), to_t<T>(NAN)), dv(rk.size(), to_t<T>(NAN));
  const int Tq_pad = (Tq + kStatPad - 1) / kStatPad * kStatPad;
  std::vector<float> stats((size_t)2 * BH * Tq_pad, NAN);
  BwdParams bp{};
  bp.q = oq, bp.k = ok, bp.v = ov, bp.dout = og;
  bp.o = out.data(), bp.o_sb = fp.out.sb, bp.o_sh = fp.out.sh, bp.o_st = fp.out.st, bp.o_sd = 1;
  bp.lse = lse.data(), bp.l_sb = (int64_t)H * Tq, bp.l_sh = Tq, bp.l_st = 1;
  if (cs.glse) bp.glse = glse.data(), bp.g_sb = (int64_t)H * Tq, bp.g_sh = Tq, bp.g_st = 1;
  if (packed) {
    const int64_t hd = (int64_t)H * D;
    bp.dq = dest_of(dqkv.data(), Tq, 3 * hd), bp.dk = dest_of(dqkv.data() + hd, Tq, 3 * hd);
    bp.dv = dest_of(dqkv.data() + 2 * hd, Tq, 3 * hd);
  } else {
    bp.dq = dest_of(dq.data(), Tq, (int64_t)H * D), bp.dk = dest_of(dk.data(), Tk, (int64_t)Hkv * D, Hkv);
    bp.dv = dest_of(dv.data(), Tk, (int64_t)Hkv * D, Hkv);
  }
  bp.lse2 = stats.data(), bp.delta = stats.data() + (size_t)BH * Tq_pad;
  bp.mask = mask;
  bp.D = D, bp.H = H, bp.BH = BH, bp.Tq = Tq, bp.Tk = Tk, bp.Tq_pad = Tq_pad, bp.group = G, bp.kv_split = cs.split;
  // split: dk, dv of each slot into (B, Hkv * split, Tk, D), summed below as the launcher's core::sum does
  const int S = cs.split;
  std::vector<T> dk_part(S > 1 ? rk.size() * S : 0, to_t<T>(NAN)), dv_part(dk_part.size(), to_t<T>(NAN));
  const Dest dk_whole = bp.dk, dv_whole = bp.dv;
  if (S > 1) {
    const int64_t hs = (int64_t)Tk * D;
    bp.dk = Dest{dk_part.data(), Hkv * S * hs, hs, D}, bp.dv = Dest{dv_part.data(), Hkv * S * hs, hs, D};
  }
  bp.scale = (float)scale, bp.scale_log2 = (float)(scale * 1.4426950408889634), bp.causal = cs.causal;
  // dropout's (seed, offset) as the backward rule passes it off the cpu: the forward's rng tensor,
  // read by the kernels (the launch arguments hold decoys that would give another mask)
  const int64_t rng_record[2] = {(int64_t)seed, (int64_t)offset};
  if (cs.p > 0) bp.drop = Dropout{true, thr, (float)rs}, bp.seed = seed + 1, bp.offset = offset + 7, bp.rng = rng_record;
  const unsigned rows = (unsigned)(BH * Tq_pad);
  emu_launch(flash_bwd_prepass<T>, (rows + kPrepassWarps - 1) / kPrepassWarps, bp, 32 * kPrepassWarps, 0);
  const unsigned nkb = (unsigned)((Tk + kRowsPerCta - 1) / kRowsPerCta);
  const unsigned nqb = (unsigned)((Tq + kRowsPerCta - 1) / kRowsPerCta);
  by_head_dim(D, [&](auto dc) {
    constexpr int DD = decltype(dc)::value;
    if constexpr (is32) {
      emu_launch(flash_bwd32_dkdv_kernel<DD>, nkb * B * Hkv * S, bp, f32::kThreads, dkdv32_smem<DD>());
      emu_launch(flash_bwd32_dq_kernel<DD>, nqb * BH, bp, f32::kThreads, dq32_smem<DD>());
    } else {
      emu_launch(flash_bwd_dkdv_kernel<T, DD>, nkb * B * Hkv * S, bp, 128, dkdv_smem<T, DD>());
      emu_launch(flash_bwd_dq_kernel<T, DD>, nqb * BH, bp, 128, dq_smem<T, DD>());
    }
  });
  if (S > 1) {  // the slots' sum, in float, rounded once to T, into the outputs' own layout
    for (int pass = 0; pass < 2; ++pass) {
      const std::vector<T>& part = pass ? dv_part : dk_part;
      const Dest& out = pass ? dv_whole : dk_whole;
      for (int b = 0; b < B; ++b)
        for (int h = 0; h < Hkv; ++h)
          for (int t = 0; t < Tk; ++t)
            for (int d = 0; d < D; ++d) {
              float s = 0;
              for (int i = 0; i < S; ++i)
                s += static_cast<float>(part[((((size_t)b * Hkv + h) * S + i) * Tk + t) * D + d]);
              static_cast<T*>(out.p)[b * out.sb + h * out.sh + t * out.st + d] = to_t<T>(s);
            }
    }
    bp.dk = dk_whole, bp.dv = dv_whole;
  }
  auto err = [&](const Dest& x, int T_, const std::vector<double>& w, int nh = 0) {
    // float32: a floor of 1 (inputs are N(0, 1)): with one kept key dS = P (dP - delta) is a
    // cancellation whose float32 rounding (~1e-6) is all there is of dq and dk
    return rel(gather(x, T_, nh), w, &nan, is32 ? 1.0 : 1e-12);
  };
  const double e_dq = err(bp.dq, Tq, dq_ref), e_dk = err(bp.dk, Tk, dk_ref, Hkv), e_dv = err(bp.dv, Tk, dv_ref, Hkv);
  const double tol = is32 ? 1e-5 : 1e-2, tol_lse = is32 ? 1e-6 : 1e-3;  // float32: FFMA in float32 throughout
  bool ok_all = !nan && rng_ok && e_out <= tol && e_lse <= tol_lse && e_dq <= tol && e_dk <= tol && e_dv <= tol;

  // ---- the short-sequence kernels (flash_short.cu) where they take the case: fresh outputs in the
  // same layouts, the backward from the short forward's lse ----
  char short_msg[160] = "";
  if constexpr (!is32) {
    if ((D == 32 || D == 64) && Tq <= 128 && Tk <= 128 && cs.p == 0) {
      const int nq = round16(Tq), nk = round16(Tk);
      std::vector<T> out2(out.size(), to_t<T>(NAN));
      std::vector<float> lse2(lse.size(), NAN);
      int64_t rng2[2] = {-1, -1};
      FwdParams f2 = fp;
      f2.out = dest_of(out2.data(), Tq, (int64_t)H * D), f2.lse = lse2.data(), f2.rng = rng2;
      by_head_dim(D, [&](auto dc) {
        constexpr int DD = decltype(dc)::value;
        if constexpr (DD != 128)
          emu_launch(flash_short_fwd_kernel<T, DD>, (unsigned)BH, f2, 2 * nq, short_fwd_smem<T, DD>(nq, nk));
      });
      std::vector<double> got_lse2(lse2.begin(), lse2.end());
      const double s_out = rel(gather(f2.out, Tq), out_ref, &nan), s_lse = rel(got_lse2, lse_ref, &nan);
      ok_all = ok_all && !nan && rng2[0] == 0 && rng2[1] == 0 && s_out <= tol && s_lse <= tol_lse;
      int n = std::snprintf(short_msg, sizeof short_msg, " | short: out %.1e lse %.1e", s_out, s_lse);
      if (G == 1) {
        std::vector<T> qkv2(packed ? 3 * rq.size() : 0, to_t<T>(NAN));
        std::vector<T> dq2(rq.size(), to_t<T>(NAN)), dk2(rk.size(), to_t<T>(NAN)), dv2(rk.size(), to_t<T>(NAN));
        BwdParams b2 = bp;
        b2.lse = lse2.data(), b2.lse2 = b2.delta = nullptr, b2.o = out2.data();  // no prepass: delta from O in the kernel
        if (packed) {
          const int64_t hd = (int64_t)H * D;
          b2.dq = dest_of(qkv2.data(), Tq, 3 * hd), b2.dk = dest_of(qkv2.data() + hd, Tq, 3 * hd);
          b2.dv = dest_of(qkv2.data() + 2 * hd, Tq, 3 * hd);
        } else {
          b2.dq = dest_of(dq2.data(), Tq, (int64_t)H * D), b2.dk = dest_of(dk2.data(), Tk, (int64_t)H * D);
          b2.dv = dest_of(dv2.data(), Tk, (int64_t)H * D);
        }
        by_head_dim(D, [&](auto dc) {
          constexpr int DD = decltype(dc)::value;
          if constexpr (DD != 128)
            emu_launch(flash_short_bwd_kernel<T, DD>, (unsigned)BH, b2, 2 * std::max(nq, nk),
                       short_bwd_smem<T, DD>(nq, nk));
        });
        const double s_dq = err(b2.dq, Tq, dq_ref), s_dk = err(b2.dk, Tk, dk_ref), s_dv = err(b2.dv, Tk, dv_ref);
        ok_all = ok_all && !nan && s_dq <= tol && s_dk <= tol && s_dv <= tol;
        std::snprintf(short_msg + n, sizeof short_msg - n, " dq %.1e dk %.1e dv %.1e", s_dq, s_dk, s_dv);
      }
    }
  }
  std::printf("%s %s B%d H%d Hkv%d/%d Tq%d Tk%d D%d causal=%d mask=%d p=%.2f glse=%d strided=%d: out %.1e lse %.1e dq %.1e "
              "dk %.1e dv %.1e%s%s%s\n",
              ok_all ? "ok  " : "FAIL", cs.dtype == kFp32 ? "fp32" : cs.dtype == kFp16 ? "fp16" : "bf16", B, H, Hkv, S, Tq, Tk, D, cs.causal, cs.mask, cs.p, cs.glse,
              cs.strided, e_out, e_lse, e_dq, e_dk, e_dv, short_msg, nan ? " NaN/inf mismatch" : "", rng_ok ? "" : " rng wrong");
  std::fflush(stdout);
  return ok_all;
}

int main(int argc, char** argv) {
  std::mt19937 gen(7);
  std::vector<Case> cases = {
      {1, 2, 100, 130, 64, false, kNoMask, 0.0, false, false, false},
      {1, 2, 100, 130, 64, true, kNoMask, 0.0, false, false, true},
      {1, 1, 130, 70, 64, true, kBoolMask, 0.0, true, false, false},
      {2, 1, 64, 64, 64, false, kAddMask, 0.0, false, true, false},
      {1, 1, 70, 90, 64, true, kNoMask, 0.3, false, false, false},
      {1, 2, 90, 130, 128, false, kNoMask, 0.0, true, false, true},
      {1, 1, 130, 100, 128, true, kAddMask, 0.0, false, true, false},
      {1, 1, 65, 140, 128, false, kBoolMask, 0.25, false, false, true},
      {1, 1, 1, 33, 128, true, kNoMask, 0.0, false, false, false},
      {1, 1, 300, 260, 64, true, kBoolMask, 0.1, true, false, false},
      // float32 (flash32_*.cu)
      {1, 2, 100, 130, 64, false, kNoMask, 0.0, false, false, kFp32},
      {1, 2, 130, 100, 64, true, kNoMask, 0.0, false, false, kFp32},
      {2, 1, 64, 64, 64, true, kNoMask, 0.0, false, true, kFp32},
      {1, 1, 70, 150, 128, true, kAddMask, 0.0, true, false, kFp32},
      {1, 1, 90, 70, 64, false, kBoolMask, 0.3, false, false, kFp32},
      {1, 1, 1, 33, 128, true, kNoMask, 0.0, false, true, kFp32},
      {1, 1, 200, 260, 64, true, kBoolMask, 0.1, true, false, kFp32},
      {1, 2, 150, 90, 128, false, kNoMask, 0.2, false, true, kFp32},
      // D 32 (the ViT's 256 / 8 heads: T = 65, one partial block past a whole one, strided q/k/v)
      {1, 2, 65, 65, 32, false, kNoMask, 0.0, false, true, false},
      {1, 2, 100, 190, 32, true, kBoolMask, 0.0, true, false, true},
      {1, 1, 200, 70, 32, true, kAddMask, 0.2, false, false, false},
      {1, 1, 1, 33, 32, false, kNoMask, 0.0, false, true, true},  // not causal: dq would be 0 (a 16-bit check has no floor)
      {1, 2, 65, 65, 32, false, kNoMask, 0.0, false, true, kFp32},
      {1, 1, 130, 100, 32, true, kBoolMask, 0.3, true, false, kFp32},
      {1, 1, 70, 150, 32, true, kAddMask, 0.0, false, true, kFp32},
      {1, 1, 1, 33, 32, false, kNoMask, 0.1, false, false, kFp32},
      // grouped-query attention: k, v with Hkv heads (MQA at 1); dk, dv summed over each group
      {2, 4, 100, 130, 64, true, kBoolMask, 0.2, true, false, kBf16, 2},
      {1, 3, 130, 70, 128, false, kAddMask, 0.0, false, true, kFp16, 1},
      {1, 4, 65, 65, 32, true, kNoMask, 0.0, false, true, kBf16, 2},
      {2, 4, 100, 130, 64, true, kBoolMask, 0.2, true, false, kFp32, 2},
      {1, 3, 70, 150, 128, false, kAddMask, 0.0, false, true, kFp32, 1},
      {1, 4, 65, 90, 32, true, kNoMask, 0.1, false, false, kFp32, 2},
      // the group split over CTAs (kv_split: a small grid's MQA/GQA), partial dK/dV summed afterwards
      {1, 6, 100, 130, 64, true, kBoolMask, 0.2, true, true, kBf16, 1, 3},
      {1, 4, 70, 90, 128, false, kAddMask, 0.0, false, false, kFp32, 1, 4},
      {2, 4, 65, 65, 32, true, kNoMask, 0.1, false, true, kFp16, 2, 2},
      // short sequences (flash_short.cu also runs; 3, 18, 21 and, forward only, 28 too): whole 128-row
      // heads, Tq != Tk both ways with partial 16-row groups, fully masked rows, grad_lse, packed outputs
      {2, 2, 128, 128, 64, true, kBoolMask, 0.0, true, true, kFp16},
      {1, 2, 100, 70, 32, true, kAddMask, 0.0, true, false, kBf16},
      {1, 1, 70, 100, 64, false, kBoolMask, 0.0, false, true, kBf16},
      {1, 3, 17, 128, 32, true, kNoMask, 0.0, false, false, kFp16},
  };
  std::vector<bool> run(cases.size(), argc == 1);  // arguments: the case indices to run (default all)
  for (int a = 1; a < argc; ++a)
    if (std::atoi(argv[a]) >= 0 && std::atoi(argv[a]) < (int)cases.size()) run[std::atoi(argv[a])] = true;
  int bad = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (!run[i]) continue;
    bad += cases[i].dtype == kFp32   ? !run_case<float>(cases[i], gen)
           : cases[i].dtype == kFp16 ? !run_case<__half>(cases[i], gen)
                                     : !run_case<__nv_bfloat16>(cases[i], gen);
  }
  std::printf("%d case(s) failed\n", bad);
  return bad ? 1 : 0;
}
