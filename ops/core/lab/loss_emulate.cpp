// loss_emulate.cpp — runs cross_entropy's CUDA kernels (../cuda/loss_rows.cuh) on the host, every
// CUDA thread a std::thread (rowwise_emulate.hpp's primitives), with the plans loss.cu launches:
//   - the fused forward (ce_fwd_rows<.., true>, ce_fwd_cols with a gradient) against the plain
//     forward (loss and lse: the same bits) and the backward kernels at grad_output 1 (the
//     gradient: the same bits), and the gradient against a float64 reference;
//   - the fused forward on fewer blocks than rows (loss.cu caps its grid: rows strided over blocks;
//     the shared-memory variant pipelines a block's rows: the next row's loads during this one's
//     gradient; the 16-bit variant, ce_fwd_rows_piped, copies the next row whole into a second
//     buffer);
//   - ce_scale_scalar (grad_output 1: untouched; else scaled; 16-byte and scalar paths, tails) and
//     ce_scale_positions (per position of an (N, C, inner) buffer, rows at 1 skipped).
// Cases: warp plans (short rows), block plans with one chunk and with several (the second pass
// last chunk first), whole 16-byte slots and tails, reductions none/sum/mean, ignore_index, label
// smoothing, float32/bfloat16/float64. Guard bytes around every buffer catch stray accesses.
//
//   g++ -std=c++20 -O2 -pthread -DVT_ROWWISE_EMULATE -I/usr/local/cuda/include -Iopsdk/include -Iops/core/lab \
//       ops/core/lab/loss_emulate.cpp -o /tmp/loss_emulate
//   /tmp/loss_emulate  (exit status 0 when every case passes; tests/test_loss_emulate.py runs it)
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../cuda/loss_rows.cuh"
#include "guarded_buffer.hpp"

namespace {

using namespace loss_rows;

// cache_slots: the dynamic shared memory of ce_fwd_rows_cached, per block (row_cache()); a new
// buffer of garbage per block, between guard bytes
size_t cache_slots = 0;
bool cache_guards_ok = true;

template <class... P, class... Args>
void launch_with_row_cache(void (*kernel)(P...), unsigned blocks, unsigned threads, Args... args) {
  for (unsigned b = 0; b < blocks; ++b) {
    EmuBlock blk((int)threads);
    std::vector<unsigned char> cache(cache_slots * sizeof(rowwise::Slot) + 2 * 64 + 16, 0x5a);
    rowwise::Slot* cp = reinterpret_cast<rowwise::Slot*>(((uintptr_t)cache.data() + 64 + 15) & ~(uintptr_t)15);
    std::memset((void*)(cp - 1), 0xa5, 16);
    std::memset((void*)(cp + cache_slots), 0xa5, 16);
    std::vector<std::thread> ts;
    ts.reserve(threads);
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        threadIdx.x = t;
        blockIdx.x = b;
        blockDim.x = threads;
        gridDim.x = blocks;
        emu_block = &blk;
        emu_row_cache = cp;
        kernel(args...);
      });
    for (auto& th : ts) th.join();
    const unsigned char* lo = reinterpret_cast<const unsigned char*>(cp - 1);
    const unsigned char* hi = reinterpret_cast<const unsigned char*>(cp + cache_slots);
    for (int i = 0; i < 16; ++i) cache_guards_ok &= lo[i] == 0xa5 && hi[i] == 0xa5;
  }
}

template <class T> const char* name_of() {
  if constexpr (std::is_same<T, float>::value) return "float32";
  else if constexpr (std::is_same<T, double>::value) return "float64";
  else return "bfloat16";
}
template <class T> double tol() {
  if constexpr (std::is_same<T, float>::value) return 2e-5;
  else if constexpr (std::is_same<T, double>::value) return 1e-12;
  else return 1.6e-2;
}

int failures = 0;
void report(bool ok, const std::string& what) {
  std::printf("%-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
  failures += !ok;
}

const char* red_name(Red r) { return r == Red::None ? "none" : r == Red::Sum ? "sum" : "mean"; }

// P rows of C logits (inner == 1) or N positions x inner (cols); reduction `red`, label smoothing
// eps, target 1 of every 3 positions ignored (-100)
// cached: the fused forward with its row in shared memory (ce_fwd_rows_cached and its plan); its
// lse may differ from the plain forward's in the last bits (another split of the row over lanes),
// so the backward kernel then runs from the fused forward's lse
template <class T>
void ce_case(int64_t N, int C, int64_t inner, Red red, double eps, std::mt19937& g, bool fewer_blocks = false,
             bool cached = false, bool piped = false) {
  using A = acc_t<T>;
  const int64_t P = N * inner, n = P * C;
  Buf<T> x((size_t)n), gi_fused((size_t)n), gi_bwd((size_t)n);
  Buf<int64_t> tgt((size_t)P);
  Buf<A> lse_f((size_t)P), lse_p((size_t)P), per_f((size_t)P), per_p((size_t)P);
  Buf<T> none_f((size_t)P), none_p((size_t)P), one((size_t)P);  // grad_output 1 ('none': per position)
  std::normal_distribution<double> nd(0.0, 3.0);
  for (int64_t i = 0; i < n; ++i) x.p[i] = from_d<T>(nd(g));
  std::uniform_int_distribution<int64_t> ud(0, C - 1);
  long long count = 0;
  for (int64_t p = 0; p < P; ++p) {
    tgt.p[p] = p % 3 == 1 ? -100 : ud(g);
    count += tgt.p[p] != -100;
  }
  for (int64_t p = 0; p < P; ++p) one.p[p] = from_d<T>(1.0);
  const CEParams q{-100, eps};
  const CEGrad gq{-100, red, eps, &count};
  T* lo_f = red == Red::None ? none_f.p : nullptr;
  T* lo_p = red == Red::None ? none_p.p : nullptr;
  const vt::Call c;
  std::string plan;
  if (inner == 1) {
    const rowwise::Plan p = rowwise::plan_rows(c, P, C, rowwise::width<T>(), kSlots, true);
    const rowwise::Plan pf = cached ? rowwise::plan_rows(c, P, C, rowwise::width<T>(), kCachedSlots, true) : p;
    const unsigned fused_blocks = fewer_blocks ? std::max(1u, pf.blocks / 3) : pf.blocks;
    if (cached) {
      if (pf.warp || pf.chunks < 2) {
        report(false, "a cached case must have a block plan of several chunks (loss.cu uses the cache only then)");
        return;
      }
      cache_slots = (size_t)(C + rowwise::width<T>() - 1) / rowwise::width<T>();
      if constexpr (sizeof(T) == 2) {
        if (piped) {  // two row buffers; loss.cu takes it for 16-byte rows (C % 8 == 0)
          if (C % rowwise::width<T>()) {
            report(false, "a piped case must have 16-byte rows (loss.cu uses it only then)");
            return;
          }
          cache_slots *= 2;
          launch_with_row_cache(ce_fwd_rows_piped<T, kPipedSlots>, fused_blocks, pf.threads, (const T*)x.p,
                     (const int64_t*)tgt.p, P, C, pf, q, lse_f.p, lo_f, per_f.p, gi_fused.p, gq);
        }
      }
      if (!piped)
        launch_with_row_cache(ce_fwd_rows_cached<T, kCachedSlots>, fused_blocks, pf.threads, (const T*)x.p, (const int64_t*)tgt.p,
                   P, C, pf, q, lse_f.p, lo_f, per_f.p, gi_fused.p, gq);
      cache_slots = 0;
    } else {
      launch_with_row_cache(ce_fwd_rows<T, kSlots, true>, fused_blocks, p.threads, (const T*)x.p, (const int64_t*)tgt.p, P, C, p,
                 q, lse_f.p, lo_f, per_f.p, gi_fused.p, gq);
    }
    launch_with_row_cache(ce_fwd_rows<T, kSlots, false>, p.blocks, p.threads, (const T*)x.p, (const int64_t*)tgt.p, P, C, p, q,
               lse_p.p, lo_p, per_p.p, (T*)nullptr, gq);
    launch_with_row_cache(ce_bwd_rows<T, kSlots>, p.blocks, p.threads, (const T*)x.p, (const int64_t*)tgt.p,
               (const A*)lse_f.p, (const T*)one.p, gi_bwd.p, P, C, p, gq);
    char b[128];
    std::snprintf(b, sizeof b, "%s%s tpr %3d threads %3d chunks %lld vec %d blocks %u",
                  piped ? "piped " : cached ? "cached " : "",
                  pf.warp ? "warp " : "block", pf.tpr, pf.threads, (long long)pf.chunks, (int)pf.vec, fused_blocks);
    plan = b;
  } else {
    const CELayout L{N, C, inner};
    const unsigned blocks = 2, threads = 64;  // few: positions strided over blocks and threads
    launch_with_row_cache(ce_fwd_cols<T>, blocks, threads, (const T*)x.p, (const int64_t*)tgt.p, L, q, lse_f.p, lo_f, per_f.p,
               gi_fused.p, gq);
    launch_with_row_cache(ce_fwd_cols<T>, blocks, threads, (const T*)x.p, (const int64_t*)tgt.p, L, q, lse_p.p, lo_p, per_p.p,
               (T*)nullptr, gq);
    launch_with_row_cache(ce_bwd_cols<T>, blocks, threads, (const T*)x.p, (const int64_t*)tgt.p, (const A*)lse_p.p,
               (const T*)one.p, gi_bwd.p, L, gq);
    plan = "cols inner " + std::to_string(inner);
  }
  // the float64 reference gradient
  double worst = 0;
  const double w1 = red == Red::Mean ? 1.0 / (double)count : 1.0;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t base = p / inner * C * inner + p % inner;
    double m = -INFINITY, s = 0;
    for (int k = 0; k < C; ++k) m = std::max(m, to_d(x.p[base + k * inner]));
    for (int k = 0; k < C; ++k) s += std::exp(to_d(x.p[base + k * inner]) - m);
    const double l = m + std::log(s);
    for (int k = 0; k < C; ++k) {
      double want = 0;
      if (tgt.p[p] != -100)
        want = w1 * (std::exp(to_d(x.p[base + k * inner]) - l) - eps / C - (k == tgt.p[p] ? 1.0 - eps : 0.0));
      const double d = std::fabs(to_d(gi_fused.p[base + k * inner]) - want) / (w1 + std::fabs(want));
      if (!(d <= worst)) worst = d;
    }
  }
  const bool guards = x.guards_intact() && gi_fused.guards_intact() && gi_bwd.guards_intact() &&
                      lse_f.guards_intact() && per_f.guards_intact() && none_f.guards_intact() && cache_guards_ok;
  bool same_fwd = lse_f.same_bits(lse_p) && (red == Red::None ? none_f.same_bits(none_p) : per_f.same_bits(per_p));
  if (cached) {  // the same values up to rounding
    same_fwd = true;
    for (int64_t p = 0; p < P; ++p) {
      const double a = to_d(red == Red::None ? to_d(none_f.p[p]) : to_d(per_f.p[p]));
      const double b = to_d(red == Red::None ? to_d(none_p.p[p]) : to_d(per_p.p[p]));
      same_fwd &= std::fabs(to_d(lse_f.p[p]) - to_d(lse_p.p[p])) <= tol<T>() * (1 + std::fabs(to_d(lse_p.p[p])));
      same_fwd &= std::fabs(a - b) <= tol<T>() * (1 + std::fabs(b));
    }
  }
  const bool same_grad = gi_fused.same_bits(gi_bwd);
  char what[256];
  std::snprintf(what, sizeof what, "fused %-8s P %4lld C %5d %-4s eps %.1f %-59s err %.2e%s%s%s", name_of<T>(),
                (long long)P, C, red_name(red), eps, plan.c_str(), worst, same_fwd ? "" : "  LOSS/LSE DIFFER",
                same_grad ? "" : "  GRAD != BACKWARD'S", guards ? "" : "  GUARD BYTES CHANGED");
  report(worst <= tol<T>() && same_fwd && same_grad && guards, what);
}

// ce_scale_scalar / ce_scale_positions on a buffer of n elements starting `shift` elements past a
// 16-byte boundary (shift > 0: the scalar path)
template <class T>
void scale_case(int64_t N, int C, int64_t inner, bool positions, double s, int shift, std::mt19937& g) {
  using A = acc_t<T>;
  const int64_t P = N * inner, n = P * C;
  Buf<T> raw((size_t)(n + shift)), before((size_t)n);
  T* buf = raw.p + shift;
  Buf<T> go((size_t)(positions ? P : 1));
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int64_t i = 0; i < n; ++i) before.p[i] = buf[i] = from_d<T>(nd(g));
  for (size_t i = 0; i < go.n; ++i) go.p[i] = from_d<T>(positions && i % 2 == 0 ? 1.0 : s * (1.0 + (double)i));
  const unsigned blocks = 3, threads = 32;
  if (positions)
    launch_with_row_cache(ce_scale_positions<T>, blocks, threads, (const T*)go.p, buf, n, CELayout{N, C, inner});
  else
    launch_with_row_cache(ce_scale_scalar<T>, blocks, threads, (const T*)go.p, buf, n, shift == 0);
  bool ok = raw.guards_intact();
  for (int64_t e = 0; e < n; ++e) {
    const A f = A(go.p[positions ? e / (C * inner) * inner + e % inner : 0]);
    const T want = f == A(1) ? before.p[e] : T(f * A(before.p[e]));
    ok &= std::memcmp(&want, &buf[e], sizeof(T)) == 0;
  }
  char what[200];
  std::snprintf(what, sizeof what, "scale %-8s %-9s n %6lld inner %lld grad_output %g shift %d", name_of<T>(),
                positions ? "positions" : "scalar", (long long)n, (long long)inner, s, shift);
  report(ok, what);
}

template <class T>
void all_cases(std::mt19937& g) {
  // warp plans (short rows: 1..32 lanes), block plans with one chunk and with several (a 16-byte
  // row and a row with a tail), on every reduction
  const int short_C[] = {7, 64, 130, 1000};
  for (int C : short_C)
    for (Red red : {Red::Mean, Red::Sum, Red::None}) ce_case<T>(5, C, 1, red, red == Red::Sum ? 0.0 : 0.1, g);
  ce_case<T>(40, 300, 1, Red::Mean, 0.1, g, /*fewer_blocks=*/true);
  // several chunks (float32 and float64 only: 16-bit rows this long take one chunk): a 16-byte row,
  // and a row with a tail on fewer blocks than rows
  if (sizeof(T) >= 4) {
    ce_case<T>(2, 9000, 1, Red::Mean, 0.1, g);
    ce_case<T>(3, 8195, 1, Red::None, 0.1, g, /*fewer_blocks=*/true);
  }
  // the row in shared memory (block plans of several chunks of kCachedSlots): a 16-byte row, a block
  // per row; then fewer blocks than rows (each block pipelines its rows), with a tail
  const int long_C = sizeof(T) == 2 ? 33000 : sizeof(T) == 4 ? 17000 : 8500;
  ce_case<T>(2, long_C, 1, Red::Mean, 0.1, g, false, /*cached=*/true);
  ce_case<T>(3, long_C + 3, 1, Red::Sum, 0.0, g, /*fewer_blocks=*/true, /*cached=*/true);
  ce_case<T>(7, long_C, 1, Red::None, 0.1, g, /*fewer_blocks=*/true, /*cached=*/true);
  // 16-bit 16-byte rows: the next row copied whole into the other buffer (ce_fwd_rows_piped), a
  // block per row, then blocks taking several rows (2, 2, 3 of 7), with and without smoothing
  if (sizeof(T) == 2) {
    ce_case<T>(2, long_C, 1, Red::Mean, 0.1, g, false, true, /*piped=*/true);
    ce_case<T>(7, long_C, 1, Red::Sum, 0.0, g, /*fewer_blocks=*/true, true, /*piped=*/true);
    ce_case<T>(7, long_C + 8 * 512, 1, Red::None, 0.1, g, /*fewer_blocks=*/true, true, /*piped=*/true);
  }
  ce_case<T>(3, 6, 5, Red::Mean, 0.2, g);
  ce_case<T>(2, 11, 3, Red::None, 0.0, g);
  for (double s : {1.0, 3.0, -0.5})
    for (int shift : {0, 1}) scale_case<T>(5, 37, 1, false, s, shift, g);
  scale_case<T>(4, 9, 3, true, 2.0, 0, g);
  scale_case<T>(6, 16, 1, true, -1.5, 0, g);
}

}  // namespace

int main() {
  std::mt19937 g(2026);
  all_cases<float>(g);
  all_cases<__nv_bfloat16>(g);
  all_cases<double>(g);
  if (failures) {
    std::printf("%d case(s) failed\n", failures);
    return 1;
  }
  std::printf("all cases passed\n");
  return 0;
}
