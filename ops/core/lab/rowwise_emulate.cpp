// rowwise_emulate.cpp — runs the row kernels of softmax/log_softmax (forward and backward,
// ../cuda/softmax_rows.cuh) and layer_norm/rms_norm forward (../cuda/norm_rows.cuh) on the host,
// every CUDA thread a std::thread (rowwise_emulate.hpp), with the plans and kernel variants the ops
// launch (softmax_rows_impl::plan / kernel_for, norm_rows_impl's, the backward's plan_rows), against
// a float64 reference. Cases cover the warp kernel (short rows up to a full warp) and the block
// kernel (a block per row: its one-barrier exchanges, several chunks), float32/bfloat16/float16/
// float64, whole 16-byte slots (the kVec kernels) and tails, aligned and misaligned bases (scalar
// accesses), layer_norm with weight and bias, either alone or neither, and the 16-bit forward's row
// pipeline (rowwise::RowPipe, "piped": 5 blocks take all the rows, each prefetching its next one). Every buffer has guard bytes before and after it: a kernel that reads
// or writes past a row's end shows as a changed guard (or, built with -fsanitize=address, an error).
//
//   g++ -std=c++20 -O2 -pthread -DVT_ROWWISE_EMULATE -I/usr/local/cuda/include -Iopsdk/include -Iops/core/lab \
//       ops/core/lab/rowwise_emulate.cpp -o /tmp/rowwise_emulate
//   /tmp/rowwise_emulate [quick|rows4096]  (exit status 0 when every case is within tolerance and no
//                                          guard changed; tests/test_rowwise_emulate.py runs `quick`,
//                                          and `rows4096` with VT_ROWS_PLAN=piped and =wide8)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../cuda/norm_rows.cuh"
#include "guarded_buffer.hpp"
#include "../cuda/softmax_rows.cuh"

namespace {

// The grid of a forward launch: pipelined plans (rowwise::RowPipe) as on a GPU with 5 resident
// blocks (so each block takes many rows, its next one prefetched), the others p.blocks.
template <class T, int K>
unsigned grid_of(rowwise::Plan& p) {
  return rowwise::plan_pipe<T, K>(p) ? rowwise::pipe_grid(p, 5) : p.blocks;
}

template <class T> const char* name_of() {
  if constexpr (std::is_same<T, float>::value) return "float32";
  else if constexpr (std::is_same<T, double>::value) return "float64";
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return "bfloat16";
  else return "float16";
}
template <class T> double tol() {
  if constexpr (std::is_same<T, float>::value) return 2e-5;
  else if constexpr (std::is_same<T, double>::value) return 1e-12;
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return 1.6e-2;
  else return 2e-3;
}

int failures = 0;

// out (as double) against ref with |d| <= tol * (1 + |ref|); prints the case and the worst error
template <class T>
void check(const std::string& what, const Buf<T>& out, const std::vector<double>& ref, const rowwise::Plan& p,
           bool guards) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(to_d(out.p[i]) - ref[i]) / (1 + std::fabs(ref[i]));
    if (!(d <= worst)) worst = d, at = i;  // nan counts as worst
  }
  const bool ok = worst <= tol<T>() && guards;
  std::printf("%-4s %-58s %s tpr %3d threads %3d chunks %lld vec %d  err %.2e%s\n", ok ? "ok" : "FAIL", what.c_str(),
              p.warp ? "warp " : "block", p.tpr, p.threads, (long long)p.chunks, (int)p.vec, worst,
              guards ? "" : "  GUARD BYTES CHANGED");
  if (!ok) {
    std::printf("     worst at %zu: got %.9g want %.9g\n", at, to_d(out.p[at]), ref[at]);
    ++failures;
  }
}

// the wide plan's kernels against the generic kernel at the same plan (on the first kBitsRows rows,
// enough for several blocks and a group's every lane): the same bytes
constexpr int64_t kBitsRows = 40;
template <class T>
void same_bits(const char* what, const Buf<T>& a, const Buf<T>& b) {
  if (std::memcmp(a.p, b.p, std::min(a.n, b.n) * sizeof(T)) != 0) {
    std::printf("FAIL %s: the wide kernel's bits differ from the generic kernel's\n", what);
    ++failures;
  }
}

template <class T>
void fill(Buf<T>& b, std::mt19937& g, double scale) {
  std::normal_distribution<double> nd(0.0, scale);
  for (size_t i = 0; i < b.n; ++i) b.p[i] = from_d<T>(nd(g));
}

// softmax / log_softmax forward and backward over M rows of N
template <class T>
void softmax_case(int64_t M, int N, int shift, bool log, std::mt19937& g) {
  using namespace softmax_rows_impl;
  const size_t n = (size_t)M * N;
  Buf<T> x(n, shift), y(n, shift), go(n, shift), gi(n, shift);
  fill(x, g, 3.0);
  fill(go, g, 1.0);
  std::vector<double> yr(n), gr(n);
  for (int64_t r = 0; r < M; ++r) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < N; ++j) m = std::max(m, to_d(x.p[r * N + j]));
    for (int j = 0; j < N; ++j) s += std::exp(to_d(x.p[r * N + j]) - m);
    for (int j = 0; j < N; ++j) {
      const double v = to_d(x.p[r * N + j]);
      yr[r * N + j] = log ? v - m - std::log(s) : std::exp(v - m) / s;
    }
  }
  const vt::Call c;
  rowwise::Plan p = plan<T>(c, M, N, rowwise::aligned16(x.p) && rowwise::aligned16(y.p));
  const unsigned grid = grid_of<T, fwd_slots<T>()>(p);
  emu_launch(log ? kernel_for<T, true>(p) : kernel_for<T, false>(p), grid, p.threads, (const T*)x.p, y.p, M, N, p);
  char what[128];
  std::snprintf(what, sizeof what, "%s %s fwd M %lld N %d shift %d%s", log ? "log_softmax" : "softmax", name_of<T>(),
                (long long)M, N, shift, p.pipe ? " piped" : p.wide ? " wide" : "");
  check(what, y, yr, p, x.guards_intact() && y.guards_intact());
  if constexpr (sizeof(T) == 2) {
    if (p.wide) {  // the wide kernel gives the generic kernel's bits at the same plan
      const int64_t M2 = std::min<int64_t>(M, kBitsRows);
      Buf<T> y2((size_t)M2 * N, shift);
      rowwise::Plan q = p;
      q.wide = false;
      q.blocks = (unsigned)((M2 + q.rows_per_block() - 1) / q.rows_per_block());
      auto pick = [&](auto k) {
        constexpr int K = decltype(k)::value;
        return p.warp ? (log ? softmax_rows<T, K, true, true, true> : softmax_rows<T, K, true, true, false>)
                      : (log ? softmax_rows<T, K, false, true, true> : softmax_rows<T, K, false, true, false>);
      };
      auto generic = p.wide_k == 4 ? pick(std::integral_constant<int, 4>{})
                                   : pick(std::integral_constant<int, rowwise::kWideSlots>{});
      emu_launch(generic, q.blocks, q.threads, (const T*)x.p, y2.p, M2, N, q);
      same_bits(what, y, y2);
    }
  }

  // backward from the kernel's own output (as the op does from the saved output)
  for (int64_t r = 0; r < M; ++r) {
    double s = 0;
    for (int j = 0; j < N; ++j) {
      const double a = to_d(go.p[r * N + j]), b = to_d(y.p[r * N + j]);
      s += log ? a : a * b;
    }
    for (int j = 0; j < N; ++j) {
      const double a = to_d(go.p[r * N + j]), b = to_d(y.p[r * N + j]);
      gr[r * N + j] = log ? a - std::exp(b) * s : b * (a - s);
    }
  }
  const bool al = rowwise::aligned16(go.p) && rowwise::aligned16(y.p) && rowwise::aligned16(gi.p);
  p = bwd_plan<T>(c, M, N, al);
  emu_launch(log ? bwd_kernel_for<T, true>(p) : bwd_kernel_for<T, false>(p), p.blocks, p.threads, (const T*)go.p,
             (const T*)y.p, gi.p, M, N, p);
  std::snprintf(what, sizeof what, "%s %s bwd M %lld N %d shift %d", log ? "log_softmax" : "softmax", name_of<T>(),
                (long long)M, N, shift);
  check(what, gi, gr, p, go.guards_intact() && gi.guards_intact() && y.guards_intact());
}

// layer_norm (with or without weight and bias) / rms_norm (with or without weight) forward over M
// rows of N
// affine: kWeight | kBias (rms_norm has no bias)
constexpr int kNone = 0, kWeight = 1, kBias = 2, kBoth = 3;

// layer_norm / rms_norm backward over M rows of N from the forward's input, weight and statistics
// (as the op runs it): grad_input against a float64 reference from the same statistics, and, when
// the kernel adds them (one chunk: fused), grad_weight / grad_bias from its partial rows added here
// in order (column_sum's part on the GPU)
template <class T>
void norm_bwd_case(int64_t M, int N, int shift, bool rms, int affine, const Buf<T>& x, const Buf<T>& w,
                   const Buf<rowwise::acc_t<T>>& mean, const Buf<rowwise::acc_t<T>>& rstd, std::mt19937& g) {
  using namespace norm_rows_impl;
  using A = acc_t<T>;
  const size_t n = (size_t)M * N;
  Buf<T> go(n, shift), gi(n, shift);
  fill(go, g, 1.0);
  const bool has_w = affine & kWeight, want_b = !rms && (affine & kBias);
  std::vector<double> gir(n), gwr(N, 0.0), gbr(N, 0.0);
  for (int64_t r = 0; r < M; ++r) {
    const double mu = rms ? 0 : to_d(mean.p[r]), rs = to_d(rstd.p[r]);
    double s1 = 0, s2 = 0;
    for (int j = 0; j < N; ++j) {
      const double gv = to_d(go.p[r * N + j]), xh = (to_d(x.p[r * N + j]) - mu) * rs;
      const double gw = has_w ? gv * to_d(w.p[j]) : gv;
      s1 += gw;
      s2 += gw * xh;
      gwr[j] += gv * xh;
      gbr[j] += gv;
    }
    for (int j = 0; j < N; ++j) {
      const double gv = to_d(go.p[r * N + j]), xh = (to_d(x.p[r * N + j]) - mu) * rs;
      const double gw = has_w ? gv * to_d(w.p[j]) : gv;
      gir[r * N + j] = rs * (gw - (rms ? 0 : s1 / N) - xh * (s2 / N));
    }
  }
  const T* wp = has_w ? w.p : nullptr;
  const bool al = rowwise::aligned16(go.p) && rowwise::aligned16(x.p) && rowwise::aligned16(wp) &&
                  rowwise::aligned16(gi.p);
  const vt::Call c;
  rowwise::Plan p = bwd_plan<T>(c, M, N, al);
  const bool fuse = (has_w || want_b) && p.chunks == 1;
  const int64_t G = fuse ? fuse_groups(p, M) : 0;
  Buf<A> pw((size_t)std::max<int64_t>(1, G * N), 0), pb((size_t)std::max<int64_t>(1, G * N), 0);
  emu_launch(rms ? bwd_kernel_for<T, true>(p) : bwd_kernel_for<T, false>(p), p.blocks, p.threads, (const T*)go.p,
             (const T*)x.p, wp, (const A*)(rms ? nullptr : mean.p), (const A*)rstd.p, gi.p, has_w && fuse ? pw.p : nullptr,
             want_b && fuse ? pb.p : nullptr, M, N, p, fuse);
  char what[128];
  std::snprintf(what, sizeof what, "%s bwd %s%s M %lld N %d shift %d", rms ? "rms_norm" : "layer_norm", name_of<T>(),
                has_w ? " w" : "", (long long)M, N, shift);
  check(what, gi, gir, p, go.guards_intact() && gi.guards_intact() && pw.guards_intact() && pb.guards_intact());
  if (!fuse) return;
  // the partial rows added in group order, against the float64 column sums
  double worst = 0;
  for (int j = 0; j < N; ++j) {
    double sw = 0, sb = 0;
    for (int64_t k = 0; k < G; ++k) {
      sw += to_d(pw.p[k * N + j]);
      sb += to_d(pb.p[k * N + j]);
    }
    if (has_w) worst = std::max(worst, std::fabs(sw - gwr[j]) / (1 + std::fabs(gwr[j])));
    if (want_b) worst = std::max(worst, std::fabs(sb - gbr[j]) / (1 + std::fabs(gbr[j])));
  }
  if (!(worst <= (std::is_same<A, double>::value ? 1e-10 : 1e-4))) {
    std::printf("FAIL %s: grad_weight/grad_bias partials off by %.2e\n", what, worst);
    ++failures;
  }
}

template <class T>
void norm_case(int64_t M, int N, int shift, bool rms, int affine, std::mt19937& g) {
  using namespace norm_rows_impl;
  using A = acc_t<T>;
  const size_t n = (size_t)M * N;
  Buf<T> x(n, shift), y(n, shift), w(N, shift), b(N, shift);
  Buf<A> mean(M, 0), rstd(M, 0);
  fill(x, g, 2.0);
  for (size_t i = 0; i < n; ++i) x.p[i] = from_d<T>(to_d(x.p[i]) + 0.5);  // a mean away from 0
  fill(w, g, 1.0);
  fill(b, g, 1.0);
  const double eps = 1e-5;
  std::vector<double> yr(n), mr(M), rr(M);
  for (int64_t r = 0; r < M; ++r) {
    double s = 0, q = 0;
    for (int j = 0; j < N; ++j) {
      const double v = to_d(x.p[r * N + j]);
      s += rms ? v * v : v;
    }
    const double mu = rms ? 0 : s / N;
    for (int j = 0; j < N; ++j) q += (to_d(x.p[r * N + j]) - mu) * (to_d(x.p[r * N + j]) - mu);
    const double rs = 1 / std::sqrt((rms ? s / N : q / N) + eps);
    mr[r] = mu;
    rr[r] = rs;
    for (int j = 0; j < N; ++j) {
      double v = (to_d(x.p[r * N + j]) - mu) * rs;
      if (affine & kWeight) v = v * to_d(w.p[j]);
      if ((affine & kBias) && !rms) v = v + to_d(b.p[j]);
      yr[r * N + j] = v;
    }
  }
  const T* wp = affine & kWeight ? w.p : nullptr;
  const T* bp = (affine & kBias) && !rms ? b.p : nullptr;
  const bool al = rowwise::aligned16(x.p) && rowwise::aligned16(y.p) && rowwise::aligned16(wp) && rowwise::aligned16(bp);
  const vt::Call c;
  rowwise::Plan p = plan<T>(c, M, N, al);
  A* mp = rms ? nullptr : mean.p;
  const unsigned grid = grid_of<T, fwd_slots<T>()>(p);
  emu_launch(rms ? kernel_for<T, true>(p) : kernel_for<T, false>(p), grid, p.threads, (const T*)x.p, wp, bp, y.p, mp,
             rstd.p, M, N, p, eps);
  char what[128];
  std::snprintf(what, sizeof what, "%s %s%s M %lld N %d shift %d%s", rms ? "rms_norm" : "layer_norm", name_of<T>(),
                affine == kBoth ? " w+b" : affine == kWeight ? " w" : affine == kBias ? " b" : "", (long long)M, N, shift,
                p.pipe ? " piped" : p.wide ? " wide" : "");
  const bool guards = x.guards_intact() && y.guards_intact() && w.guards_intact() && b.guards_intact() &&
                      mean.guards_intact() && rstd.guards_intact();
  check(what, y, yr, p, guards);
  if constexpr (sizeof(T) == 2) {
    if (p.wide) {  // the wide kernel gives the generic kernel's bits at the same plan
      const int64_t M2 = std::min<int64_t>(M, kBitsRows);
      Buf<T> y2((size_t)M2 * N, shift);
      Buf<A> mean2(M2, 0), rstd2(M2, 0);
      rowwise::Plan q = p;
      q.wide = false;
      q.blocks = (unsigned)((M2 + q.rows_per_block() - 1) / q.rows_per_block());
      auto pick = [&](auto k) {
        constexpr int K = decltype(k)::value;
        return p.warp ? (rms ? norm_rows<T, K, true, true, true> : norm_rows<T, K, true, true, false>)
                      : (rms ? norm_rows<T, K, false, true, true> : norm_rows<T, K, false, true, false>);
      };
      auto generic = rowwise::wide_slots() == 4 ? pick(std::integral_constant<int, 4>{})
                                                : pick(std::integral_constant<int, rowwise::kWideSlots>{});
      emu_launch(generic, q.blocks, q.threads, (const T*)x.p, wp, bp, y2.p, rms ? nullptr : mean2.p, rstd2.p, M2, N, q,
                 eps);
      same_bits(what, y, y2);
      same_bits(what, rstd, rstd2);
      if (!rms) same_bits(what, mean, mean2);
    }
  }
  // the statistics in A (float for 16-bit inputs): float32's tolerance unless A is double
  double worst = 0;
  for (int64_t r = 0; r < M; ++r) {
    if (!rms) worst = std::max(worst, std::fabs(to_d(mean.p[r]) - mr[r]) / (1 + std::fabs(mr[r])));
    worst = std::max(worst, std::fabs(to_d(rstd.p[r]) - rr[r]) / (1 + std::fabs(rr[r])));
  }
  if (!(worst <= (std::is_same<A, double>::value ? 1e-12 : 2e-5))) {
    std::printf("FAIL %s: mean/rstd off by %.2e\n", what, worst);
    ++failures;
  }
  norm_bwd_case<T>(M, N, shift, rms, affine, x, w, mean, rstd, g);
}

}  // namespace

// rowwise_emulate [quick]: quick runs one case of each kind (warp kernel with short rows and with
// a full warp, block kernel with whole slots, with scalar tails, with one chunk and with several),
// as tests/test_rowwise_emulate.py does
int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  std::mt19937 g(7);
  if (argc > 1 && std::string(argv[1]) == "rows4096") {  // 16-bit 4096-element rows (VT_ROWS_PLAN=piped, wide8)
    softmax_case<__nv_bfloat16>(515, 4096, 0, true, g);
    norm_case<__nv_bfloat16>(515, 4096, 0, false, kBoth, g);
    std::printf("%s: %d failing\n", failures ? "FAILED" : "all cases passed", failures);
    return failures ? 1 : 0;
  }
  if (quick) {
    softmax_case<float>(37, 7, 1, false, g);                    // warp, tpr 2, scalar tails
    norm_case<__nv_bfloat16>(530, 100, 0, false, kBoth, g);     // warp, tpr 4, dead rows in the last block
    norm_case<__nv_bfloat16>(517, 1024, 0, false, kBoth, g);    // warp, tpr 32, 4 slots per lane (wide: the same plan)
    norm_case<float>(512, 384, 0, false, kBoth, g);             // miniGPT's rows: bwd partials per block of 8 warps
    softmax_case<__nv_bfloat16>(515, 4096, 0, true, g);         // wide: block of 128 (wide8: 64; classic: 128, pipelined)
    norm_case<__nv_bfloat16>(515, 4096, 0, false, kBoth, g);    // the same for layer_norm (rows prefetched)
    softmax_case<__half>(37, 4104, 0, false, g);                 // wide, few rows spread wide, slots absent
    norm_case<__nv_bfloat16>(37, 3000, 1, false, kWeight, g);   // block, misaligned: scalar accesses
    norm_case<float>(2, 1030, 0, true, kNone, g);               // block, one chunk, tails
    softmax_case<float>(2, 17000, 0, false, g);                 // block, several chunks
    std::printf("%s: %d failing\n", failures ? "FAILED" : "all cases passed", failures);
    return failures ? 1 : 0;
  }
  // warp kernel, short rows (a group of tpr <= 32 lanes, several rows per warp or block; dead rows
  // in the last block), whole slots and tails, aligned and misaligned; M >= 512 (fewer rows than
  // that are spread wider, over a block)
  for (int N : {1, 7, 64, 100, 768, 1024}) {
    for (int shift : {0, 1}) {
      softmax_case<float>(515, N, shift, false, g);
      softmax_case<__nv_bfloat16>(515, N, shift, true, g);
      norm_case<float>(515, N, shift, false, kBoth, g);
      norm_case<__nv_bfloat16>(515, N, shift, false, kBoth, g);
      norm_case<__half>(515, N, shift, true, kWeight, g);
    }
  }
  // few rows: tiny rows stay on the warp kernel, longer ones spread over a block
  for (int N : {5, 64, 768}) {
    softmax_case<float>(37, N, 1, true, g);
    norm_case<__nv_bfloat16>(37, N, 0, false, kBoth, g);
  }
  softmax_case<double>(515, 200, 0, false, g);
  norm_case<double>(515, 250, 0, false, kNone, g);
  softmax_case<double>(37, 200, 1, true, g);
  norm_case<double>(37, 250, 0, true, kWeight, g);
  // weight or bias alone (the other is a slot of ones / of -0)
  norm_case<float>(515, 96, 0, false, kWeight, g);
  norm_case<__nv_bfloat16>(515, 96, 0, false, kBias, g);
  norm_case<__half>(515, 2048, 0, false, kBias, g);
  norm_case<float>(515, 4096, 0, true, kNone, g);
  // the rows of the benchmark (8192 x 4096 there): a block of 128 (16-bit) / 128 (float32) threads
  // per row, 16-byte slots, with odd row counts, and the same rows misaligned or one element longer
  // (scalar accesses, a partial last slot)
  for (int N : {4096, 4097}) {
    for (int shift : {0, 1}) {
      if (N == 4097 && shift == 1) continue;
      softmax_case<float>(515, N, shift, false, g);
      softmax_case<__nv_bfloat16>(515, N, shift, false, g);
      softmax_case<__half>(515, N, shift, true, g);
      norm_case<float>(515, N, shift, false, kBoth, g);
      norm_case<float>(515, N, shift, true, kWeight, g);
      norm_case<__nv_bfloat16>(515, N, shift, false, kBoth, g);
      norm_case<__nv_bfloat16>(515, N, shift, true, kWeight, g);
      norm_case<__half>(515, N, shift, false, kBoth, g);
    }
  }
  // just past the warp kernel (1024 elements): a block of 64 threads; and 2048
  softmax_case<float>(515, 1025, 0, false, g);
  softmax_case<float>(515, 2048, 0, true, g);
  softmax_case<__nv_bfloat16>(515, 1032, 0, false, g);
  softmax_case<__half>(515, 3001, 1, true, g);
  norm_case<__nv_bfloat16>(515, 2050, 1, false, kNone, g);
  norm_case<__half>(515, 1032, 0, true, kWeight, g);
  norm_case<float>(517, 1028, 0, false, kBoth, g);
  // block kernel: long rows, few rows spread wider, and rows over several chunks
  softmax_case<float>(3, 4096, 0, false, g);
  softmax_case<float>(600, 2100, 1, true, g);
  softmax_case<__nv_bfloat16>(4, 5000, 0, true, g);
  norm_case<float>(5, 4096, 0, false, kBoth, g);
  norm_case<float>(520, 1030, 0, true, kWeight, g);
  norm_case<__nv_bfloat16>(3, 4100, 1, false, kBoth, g);
  norm_case<__nv_bfloat16>(600, 4104, 0, false, kBoth, g);
  norm_case<__nv_bfloat16>(7, 16384, 0, false, kBoth, g);
  softmax_case<__nv_bfloat16>(3, 16392, 0, false, g);
  softmax_case<float>(2, 17000, 1, true, g);
  norm_case<float>(2, 17001, 0, false, kBoth, g);
  norm_case<__nv_bfloat16>(2, 40000, 0, true, kWeight, g);
  std::printf("%s: %d failing\n", failures ? "FAILED" : "all cases passed", failures);
  return failures ? 1 : 0;
}
