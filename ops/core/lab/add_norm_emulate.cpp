// add_norm_emulate.cpp — runs add_layer_norm's row kernels (../cuda/add_norm_rows.cuh: forward, and
// backward with its fused grad_weight/grad_bias partials) on the host, every CUDA thread a
// std::thread (rowwise_emulate.hpp), with the plans add_norm.cu launches, against a float64
// reference. Cases: warp plans (short rows, miniGPT's 384), block plans (one chunk and several: the
// forward re-reads the sum it wrote), 4-element slots whole (vec) and rows that are not a multiple
// of 4 or start misaligned (scalar accesses), the built dtype mixes (float32 sum with a 16-bit
// operand, 16-bit out; all-bfloat16; all-float64), grad_sum and grad_out each absent. Every buffer
// has guard bytes around it (an out-of-bounds write shows as a changed guard). Where add_norm.cu runs
// the lean kernels (the default; VT_ADD_NORM_PLAN=v1 runs v1 everywhere) they run too, against the
// same reference, and their distance from v1 is printed.
//
//   g++ -std=c++20 -O2 -pthread -DVT_ROWWISE_EMULATE -I/usr/local/cuda/include -Iopsdk/include -Iops/core/lab \
//       ops/core/lab/add_norm_emulate.cpp -o /tmp/add_norm_emulate && /tmp/add_norm_emulate
//   (exit status 0 when every case is within tolerance and no guard changed; tests/test_add_layer_norm.py runs it)
//
// The same file built by nvcc runs the cases on a GPU instead (buffers in managed memory, guards
// included; no vibetensor runtime needed, so the binary built here can travel to a GPU machine),
// then times miniGPT's rows (16384 x 384, float32 + bfloat16 -> bfloat16) by v1 and by the lean
// kernels, forward and backward, with layer_norm's norm_rows and a copy beside them, and says how far
// the lean kernels' outputs are from v1's (the A/B of VT_ADD_NORM_PLAN in one command):
//   nvcc -std=c++17 -O3 -DNDEBUG -arch=sm_90a -Iopsdk/include -Iops/core/lab -x cu \
//       ops/core/lab/add_norm_emulate.cpp -o /tmp/add_norm_gpu && /tmp/add_norm_gpu | grep -E 'FAIL|passed|bench'
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../cuda/add_norm_rows.cuh"
#ifdef __CUDACC__
#include "../cuda/norm_rows.cuh"  // the bench's reference: layer_norm on the same rows
#endif
#include "guarded_buffer.hpp"

namespace {

using namespace add_norm_impl;

#ifdef __CUDACC__
// guarded_buffer.hpp's Buf in managed memory, so the host writes inputs and reads results in place
template <class T>
struct ManagedBuf {
  unsigned char* raw = nullptr;
  size_t bytes;
  T* p;
  size_t n;
  explicit ManagedBuf(size_t count, int shift = 0) : bytes(2 * kGuard + 16 + (count + shift) * sizeof(T)), n(count) {
    if (cudaMallocManaged(&raw, bytes) != cudaSuccess) std::abort();
    std::memset(raw, kGuardByte, bytes);
    p = reinterpret_cast<T*>(((uintptr_t)raw + kGuard + 15) & ~(uintptr_t)15) + shift;
    std::memset((void*)p, 0, count * sizeof(T));
  }
  ~ManagedBuf() { cudaFree(raw); }
  ManagedBuf(const ManagedBuf&) = delete;
  bool guards_intact() const {
    const unsigned char *lo = reinterpret_cast<const unsigned char*>(p), *hi = lo + n * sizeof(T);
    for (const unsigned char* q = raw; q < lo; ++q)
      if (*q != kGuardByte) return false;
    for (const unsigned char* q = hi; q < raw + bytes; ++q)
      if (*q != kGuardByte) return false;
    return true;
  }
};
template <class T> using Mem = ManagedBuf<T>;

template <class... P, class... Args>
void emu_launch(void (*kernel)(P...), unsigned blocks, unsigned threads, Args... args) {
  kernel<<<blocks, threads>>>(args...);
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::printf("FAIL launch: %s\n", cudaGetErrorString(e));
    std::exit(2);
  }
}
#else
template <class T> using Mem = Buf<T>;
#endif

template <class T> const char* name_of() {
  if constexpr (std::is_same<T, float>::value) return "f32";
  else if constexpr (std::is_same<T, double>::value) return "f64";
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return "bf16";
  else return "f16";
}
template <class T> double tol() {
  if constexpr (std::is_same<T, float>::value) return 2e-5;
  else if constexpr (std::is_same<T, double>::value) return 1e-12;
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return 1.6e-2;
  else return 2e-3;
}
template <class T> double rounded(double v) { return to_d(from_d<T>(v)); }

int failures = 0;

// got against want, |d| <= tol * scale * (1 + |want|)
template <class T>
void check(const std::string& what, const T* got, const std::vector<double>& want, double scale, bool guards) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(to_d(got[i]) - want[i]) / (1 + std::fabs(want[i]));
    if (!(d <= worst)) worst = d, at = i;
  }
  const bool ok = worst <= tol<T>() * scale && guards;
  std::printf("%-4s %-70s err %.2e%s\n", ok ? "ok" : "FAIL", what.c_str(), worst, guards ? "" : "  GUARD BYTES CHANGED");
  if (!ok) {
    std::printf("     worst at %zu: got %.9g want %.9g\n", at, to_d(got[at]), want[at]);
    ++failures;
  }
}

// how far a is from b: the largest difference in units of T's rounding step at b's largest magnitude
// (0: the same values; an element that cancels to near 0 does not blow the figure up)
template <class T> double eps_of() {
  if constexpr (std::is_same<T, float>::value) return 0x1p-23;
  else if constexpr (std::is_same<T, double>::value) return 0x1p-52;
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return 0x1p-7;
  else return 0x1p-10;
}
template <class T>
double steps_apart(const T* a, const T* b, size_t n) {
  double worst = 0, top = 0;
  for (size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs(to_d(a[i]) - to_d(b[i])));
    top = std::max(top, std::fabs(to_d(b[i])));
  }
  return worst == 0 ? 0 : worst / (eps_of<T>() * top);
}

template <class B>
void fill(B& b, std::mt19937& g, double scale, double mean = 0) {
  using T = std::remove_reference_t<decltype(*b.p)>;
  std::normal_distribution<double> nd(mean, scale);
  for (size_t i = 0; i < b.n; ++i) b.p[i] = from_d<T>(nd(g));
}

bool quad_aligned(const void* p, size_t elem) { return p == nullptr || ((uintptr_t)p % (kQ * elem)) == 0; }

// M rows of N: sum of S from x (S) + r (R), out of O, then the backward with grad_sum (S) and grad_out
// (O) each given or not; weight and bias of S
template <class S, class R, class O>
void add_norm_case(int64_t M, int N, int shift, bool has_gs, bool has_go, std::mt19937& g) {
  using A = acc_t<S>;
  const size_t n = (size_t)M * N;
  Mem<S> x(n, shift), sum(n, shift), gs(n, shift), gi(n, shift), w(N), b(N);
  Mem<R> r(n, shift), gr(n, shift);
  Mem<O> y(n, shift), go(n, shift);
  Mem<A> mean(M), rstd(M);
  fill(x, g, 1.0, 0.5);
  fill(r, g, 1.0);
  fill(w, g, 1.0, 1.0);
  fill(b, g, 0.5);
  fill(gs, g, 1.0);
  fill(go, g, 1.0);
#ifdef __CUDACC__
  const vt_kernel_ctx ctx{};
  const vt::Call c(&ctx, nullptr, 0, nullptr, 0, "add_norm_emulate");  // the plans only fail on huge rows
#else
  const vt::Call c;
#endif
  char what[160];
  std::snprintf(what, sizeof what, "M %lld N %d shift %d %s+%s->%s", (long long)M, N, shift, name_of<S>(), name_of<R>(),
                name_of<O>());

  // forward
  bool vec = N % kQ == 0 && quad_aligned(x.p, sizeof(S)) && quad_aligned(r.p, sizeof(R)) && quad_aligned(sum.p, sizeof(S)) &&
             quad_aligned(y.p, sizeof(O)) && quad_aligned(w.p, sizeof(S));
  rowwise::Plan p = fwd_plan<S>(c, M, N, vec);
  constexpr int K = fwd_slots<S>();
  emu_launch(p.warp ? add_norm_rows<S, R, O, K, true> : add_norm_rows<S, R, O, K, false>, p.blocks, p.threads,
             (const S*)x.p, (const R*)r.p, (const S*)w.p, (const S*)b.p, sum.p, y.p, mean.p, rstd.p, M, N, p, vec, 1e-5);
  std::vector<double> sref(n), yref(n), xh(n), rs_ref(M);
  for (int64_t i = 0; i < M; ++i) {
    double mu = 0, var = 0;
    for (int j = 0; j < N; ++j) {
      const size_t e = (size_t)i * N + j;
      sref[e] = rounded<S>(to_d(x.p[e]) + to_d(r.p[e]));  // the stored sum
      mu += sref[e];
    }
    mu /= N;
    for (int j = 0; j < N; ++j) var += (sref[(size_t)i * N + j] - mu) * (sref[(size_t)i * N + j] - mu);
    rs_ref[i] = 1 / std::sqrt(var / N + 1e-5);
    for (int j = 0; j < N; ++j) {
      const size_t e = (size_t)i * N + j;
      xh[e] = (sref[e] - mu) * rs_ref[i];
      yref[e] = xh[e] * to_d(w.p[j]) + to_d(b.p[j]);
    }
  }
  char tag[48];
  std::snprintf(tag, sizeof tag, " fwd %s tpr %d chunks %lld vec %d", p.warp ? "warp" : "block", p.tpr,
                (long long)p.chunks, (int)vec);
  const bool fguards = x.guards_intact() && r.guards_intact() && sum.guards_intact() && y.guards_intact() &&
                       mean.guards_intact() && rstd.guards_intact();
  check(std::string(what) + tag + " sum", sum.p, sref, 1, fguards);
  check(std::string(what) + tag + " out", y.p, yref, 8, fguards);
  check(std::string(what) + tag + " rstd", rstd.p, rs_ref, 8, fguards);
  // the lean kernel where add_norm.cu runs it
  bool lean = false;
  if constexpr (lean_built<S>()) lean = lean_takes(p);
  if (lean) {
    Mem<S> sum2(n, shift);
    Mem<O> y2(n, shift);
    Mem<A> mean2(M), rstd2(M);
    const int Kl = lean_fwd_slots(p, N);
    if constexpr (lean_built<S>())
      emu_launch(Kl == 3 ? add_norm_rows_lean<S, R, O, 3> : add_norm_rows_lean<S, R, O, 4>, p.blocks, p.threads,
                 (const S*)x.p, (const R*)r.p, (const S*)w.p, (const S*)b.p, sum2.p, y2.p, mean2.p, rstd2.p, M, N,
                 p.tpr, 1e-5);
    const bool guards = sum2.guards_intact() && y2.guards_intact() && mean2.guards_intact() && rstd2.guards_intact();
    const std::string lt = std::string(what) + " fwd lean K " + std::to_string(Kl);
    check(lt + " sum", sum2.p, sref, 1, guards);
    check(lt + " out", y2.p, yref, 8, guards);
    check(lt + " rstd", rstd2.p, rs_ref, 8, guards);
    // the host emulation gives v1's bits (the same arithmetic in the same order); nvcc may contract
    // the two kernels' multiply-adds differently, a rounding step or so
    std::printf("info %s: from v1, out %.1f rstd %.1f rounding steps\n", lt.c_str(), steps_apart(y2.p, y.p, n),
                steps_apart(rstd2.p, rstd.p, M));
  }

  // backward: the fused partials (one chunk) or none; then the partial rows added in order
  vec = N % kQ == 0 && quad_aligned(gs.p, sizeof(S)) && quad_aligned(go.p, sizeof(O)) && quad_aligned(gi.p, sizeof(S)) &&
        quad_aligned(gr.p, sizeof(R));
  p = bwd_plan<S>(c, M, N, vec);
  const bool fuse = has_go && p.chunks == 1;
  const int64_t G = fuse ? fuse_groups(p, M) : 0;
  Mem<A> pw((size_t)G * N), pb((size_t)G * N);
  constexpr int Kb = bwd_slots<S>();
  emu_launch(p.warp ? add_norm_bwd_rows<S, R, O, Kb, true> : add_norm_bwd_rows<S, R, O, Kb, false>, p.blocks, p.threads,
             has_gs ? (const S*)gs.p : nullptr, has_go ? (const O*)go.p : nullptr, (const S*)sum.p, (const S*)w.p,
             (const A*)mean.p, (const A*)rstd.p, gi.p, gr.p, fuse ? pw.p : nullptr, fuse ? pb.p : nullptr, M, N, p, vec,
             fuse);
  lean = false;
  if constexpr (lean_built<S>()) lean = lean_takes(p);
  std::vector<S> lean_gi;  // the lean backward's results, checked beside v1's below
  std::vector<R> lean_gr;
  std::vector<A> lean_pw, lean_pb;
  bool lean_guards = true;
  if (lean) {
    Mem<S> gi2(n, shift);
    Mem<R> gr2(n, shift);
    Mem<A> pw2((size_t)G * N), pb2((size_t)G * N);
    if constexpr (lean_built<S>())
      emu_launch(add_norm_bwd_rows_lean<S, R, O, Kb>, p.blocks, p.threads, has_gs ? (const S*)gs.p : nullptr,
                 has_go ? (const O*)go.p : nullptr, (const S*)sum.p, (const S*)w.p, (const A*)mean.p, (const A*)rstd.p,
                 gi2.p, gr2.p, fuse ? pw2.p : nullptr, fuse ? pb2.p : nullptr, M, N, p.tpr, fuse);
    lean_gi.assign(gi2.p, gi2.p + n);
    lean_gr.assign(gr2.p, gr2.p + n);
    lean_pw.assign(pw2.p, pw2.p + (size_t)G * N);
    lean_pb.assign(pb2.p, pb2.p + (size_t)G * N);
    lean_guards = gi2.guards_intact() && gr2.guards_intact() && pw2.guards_intact() && pb2.guards_intact();
  }
  std::vector<double> gref(n, 0.0), gwref(N, 0.0), gbref(N, 0.0);
  for (int64_t i = 0; i < M; ++i) {
    double mg = 0, mgx = 0;
    for (int j = 0; j < N; ++j) {
      const size_t e = (size_t)i * N + j;
      const double gwv = has_go ? to_d(go.p[e]) * to_d(w.p[j]) : 0;
      mg += gwv;
      mgx += gwv * xh[e];
    }
    mg /= N;
    mgx /= N;
    for (int j = 0; j < N; ++j) {
      const size_t e = (size_t)i * N + j;
      const double gyv = has_go ? to_d(go.p[e]) : 0;
      gref[e] = (has_gs ? to_d(gs.p[e]) : 0) + rs_ref[i] * (gyv * to_d(w.p[j]) - mg - xh[e] * mgx);
      gwref[j] += gyv * xh[e];
      gbref[j] += gyv;
    }
  }
  std::snprintf(tag, sizeof tag, " bwd %s tpr %d chunks %lld vec %d%s%s", p.warp ? "warp" : "block", p.tpr,
                (long long)p.chunks, (int)vec, has_gs ? " gs" : "", has_go ? " go" : "");
  const bool bguards = gi.guards_intact() && gr.guards_intact() && pw.guards_intact() && pb.guards_intact();
  check(std::string(what) + tag + " grad_input", gi.p, gref, 8, bguards);
  check(std::string(what) + tag + " grad_residual", gr.p, gref, 8, bguards);
  if (fuse) {
    std::vector<A> sw(N, A(0)), sb(N, A(0));
    for (int64_t k = 0; k < G; ++k)
      for (int j = 0; j < N; ++j) sw[j] += pw.p[k * N + j], sb[j] += pb.p[k * N + j];
    check(std::string(what) + tag + " grad_weight", sw.data(), gwref, 64, bguards);
    check(std::string(what) + tag + " grad_bias", sb.data(), gbref, 64, bguards);
  }
  if (lean) {
    const std::string lt = std::string(what) + " bwd lean K " + std::to_string(Kb) + (has_gs ? " gs" : "") +
                           (has_go ? " go" : "");
    check(lt + " grad_input", lean_gi.data(), gref, 8, lean_guards);
    check(lt + " grad_residual", lean_gr.data(), gref, 8, lean_guards);
    if (fuse) {
      std::vector<A> sw(N, A(0)), sb(N, A(0));
      for (int64_t k = 0; k < G; ++k)
        for (int j = 0; j < N; ++j) sw[j] += lean_pw[k * N + j], sb[j] += lean_pb[k * N + j];
      check(lt + " grad_weight", sw.data(), gwref, 64, lean_guards);
      check(lt + " grad_bias", sb.data(), gbref, 64, lean_guards);
    }
    std::printf("info %s: from v1, grad_input %.1f grad_residual %.1f rounding steps\n", lt.c_str(),
                steps_apart(lean_gi.data(), gi.p, n), steps_apart(lean_gr.data(), gr.p, n));
  }
}

#ifdef __CUDACC__
// miniGPT's rows (B64 T256 C384): float32 stream + bfloat16 branch -> bfloat16 out, and the backward
// with both gradients and fused partials, each by v1 and by the lean kernels (VT_ADD_NORM_PLAN's two
// choices) and how far apart they are; then layer_norm's norm_rows on the same float32 rows and a copy.
// GB/s of the rows' bytes (forward 12 per element: x, r, sum, out; backward 16: sum, grad_out,
// grad_sum, grad_input, grad_residual; layer_norm 8).
template <class T>
T* device_random(size_t n, std::mt19937& g) {
  std::vector<T> h(n);
  std::normal_distribution<double> nd(0, 1);
  for (auto& v : h) v = from_d<T>(nd(g));
  T* d = nullptr;
  cudaMalloc(&d, n * sizeof(T));
  cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T>
double device_steps_apart(const T* a, const T* b, size_t n) {
  std::vector<T> ha(n), hb(n);
  cudaMemcpy(ha.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost);
  cudaMemcpy(hb.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost);
  return steps_apart(ha.data(), hb.data(), n);
}
template <class K>
int resident(K kernel, int threads) {
  int n = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, 0);
  return n;
}

void bench() {
  using bf = __nv_bfloat16;
  const int64_t M = 64 * 256;
  const int N = 384;
  const size_t n = (size_t)M * N;
  std::mt19937 rng(7);
  float *x = device_random<float>(n, rng), *gs = device_random<float>(n, rng), *w = device_random<float>(N, rng),
        *b = device_random<float>(N, rng);
  bf *r = device_random<bf>(n, rng), *go = device_random<bf>(n, rng);
  float *sum[2], *gi[2], *mean[2], *rstd[2], *pw[2], *pb[2];
  bf *y[2], *gr[2];
  for (int v = 0; v < 2; ++v) {
    for (float** q : {&sum[v], &gi[v]}) cudaMalloc(q, n * 4);
    for (bf** q : {&y[v], &gr[v]}) cudaMalloc(q, n * 2);
    for (float** q : {&mean[v], &rstd[v]}) cudaMalloc(q, M * 4);
    for (float** q : {&pw[v], &pb[v]}) cudaMalloc(q, (size_t)kMaxGroups * N * 4);
  }
  const vt_kernel_ctx ctx{};
  const vt::Call c(&ctx, nullptr, 0, nullptr, 0, "bench");
  const rowwise::Plan pf = fwd_plan<float>(c, M, N, true);
  rowwise::Plan pbw = bwd_plan<float>(c, M, N, true);
  fuse_groups(pbw, M);
  const int Kl = lean_fwd_slots(pf, N);
  const auto fwd_v1 = add_norm_rows<float, bf, bf, fwd_slots<float>(), true>;
  const auto fwd_lean = Kl == 3 ? add_norm_rows_lean<float, bf, bf, 3> : add_norm_rows_lean<float, bf, bf, 4>;
  const auto bwd_v1 = add_norm_bwd_rows<float, bf, bf, bwd_slots<float>(), true>;
  const auto bwd_lean = add_norm_bwd_rows_lean<float, bf, bf, bwd_slots<float>()>;
  std::printf("bench plans: fwd tpr %d blocks %u (lean K %d), bwd tpr %d blocks %u; blocks an SM: fwd v1 %d lean %d, "
              "bwd v1 %d lean %d\n", pf.tpr, pf.blocks, Kl, pbw.tpr, pbw.blocks, resident(fwd_v1, pf.threads),
              resident(fwd_lean, pf.threads), resident(bwd_v1, pbw.threads), resident(bwd_lean, pbw.threads));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto time = [&](const char* what, double bytes, auto launch) {
    for (int i = 0; i < 5; ++i) launch();
    cudaEventRecord(e0);
    for (int i = 0; i < 100; ++i) launch();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    std::printf("bench %-44s %8.2f us  %7.0f GB/s\n", what, ms * 10, bytes / (ms * 1e-5) / 1e9);
  };
  time("fwd v1   f32+bf16->bf16 16384x384", 12.0 * n, [&] {
    fwd_v1<<<pf.blocks, pf.threads>>>(x, r, w, b, sum[0], y[0], mean[0], rstd[0], M, N, pf, true, 1e-5);
  });
  time("fwd lean f32+bf16->bf16 16384x384", 12.0 * n, [&] {
    fwd_lean<<<pf.blocks, pf.threads>>>(x, r, w, b, sum[1], y[1], mean[1], rstd[1], M, N, pf.tpr, 1e-5);
  });
  time("bwd v1   f32+bf16<-bf16 16384x384 (+partials)", 16.0 * n, [&] {
    bwd_v1<<<pbw.blocks, pbw.threads>>>(gs, go, sum[0], w, mean[0], rstd[0], gi[0], gr[0], pw[0], pb[0], M, N, pbw,
                                        true, true);
  });
  time("bwd lean f32+bf16<-bf16 16384x384 (+partials)", 16.0 * n, [&] {
    bwd_lean<<<pbw.blocks, pbw.threads>>>(gs, go, sum[1], w, mean[1], rstd[1], gi[1], gr[1], pw[1], pb[1], M, N,
                                          pbw.tpr, true);
  });
  const rowwise::Plan pn = norm_rows_impl::plan<float>(c, M, N, true);
  const auto ln = norm_rows_impl::kernel_for<float, false>(pn);
  time("layer_norm norm_rows f32 16384x384", 8.0 * n, [&] {
    ln<<<pn.blocks, pn.threads>>>(x, w, b, gi[0], mean[0], rstd[0], M, N, pn, 1e-5);
  });
  time("copy 16384x384 float32 (cudaMemcpy)", 8.0 * n, [&] { cudaMemcpyAsync(gi[0], x, n * 4, cudaMemcpyDeviceToDevice); });
  // the outputs of the last runs of each (layer_norm and the copy wrote only gi[0], mean[0], rstd[0]:
  // the forward and backward again)
  fwd_v1<<<pf.blocks, pf.threads>>>(x, r, w, b, sum[0], y[0], mean[0], rstd[0], M, N, pf, true, 1e-5);
  bwd_v1<<<pbw.blocks, pbw.threads>>>(gs, go, sum[0], w, mean[0], rstd[0], gi[0], gr[0], pw[0], pb[0], M, N, pbw, true,
                                      true);
  std::printf("bench lean from v1, rounding steps: sum %.1f out %.1f rstd %.1f grad_input %.1f grad_residual %.1f\n",
              device_steps_apart(sum[1], sum[0], n), device_steps_apart(y[1], y[0], n),
              device_steps_apart(rstd[1], rstd[0], M), device_steps_apart(gi[1], gi[0], n),
              device_steps_apart(gr[1], gr[0], n));
  std::printf("bench status: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
}
#endif

}  // namespace

int main() {
  std::mt19937 g(2026);
  using bf = __nv_bfloat16;
  using hf = __half;
  // miniGPT's rows: 512 rows or more take warp plans (the backward: 3 slots per lane, the block's
  // groups adding their partials in shared memory); fewer, a block of 64 threads per row
  add_norm_case<float, bf, bf>(520, 384, 0, true, true, g);
  add_norm_case<float, bf, bf>(9, 384, 0, false, true, g);
  // the lean kernels' other shapes: 4 slots a lane (512), a backward of 2 used slots in 3, dead
  // rows in the last block (523), one lane a row with an absent slot (8), grad_sum or grad_out absent
  add_norm_case<float, bf, bf>(515, 512, 0, true, true, g);
  add_norm_case<bf, bf, bf>(523, 256, 0, false, true, g);
  add_norm_case<float, hf, float>(515, 128, 0, true, false, g);
  add_norm_case<float, bf, bf>(37, 8, 0, true, true, g);
  add_norm_case<float, bf, float>(9, 384, 0, true, false, g);
  add_norm_case<float, float, float>(33, 384, 0, true, true, g);
  add_norm_case<float, hf, hf>(17, 384, 0, true, true, g);
  // short rows (tpr < 32), tails (not a multiple of 4), misaligned bases (scalar accesses)
  add_norm_case<float, bf, bf>(37, 5, 0, true, true, g);
  add_norm_case<float, bf, bf>(37, 130, 0, true, true, g);
  add_norm_case<float, bf, bf>(11, 384, 1, true, true, g);
  // block plans: one chunk, several (the forward re-reads its sum; the backward has no fused partials)
  add_norm_case<float, bf, bf>(6, 2048, 0, true, true, g);
  add_norm_case<float, bf, bf>(3, 9000, 0, true, true, g);
  add_norm_case<float, float, hf>(2, 9001, 1, true, true, g);
  // all-bfloat16 and all-float64
  add_norm_case<bf, bf, bf>(21, 384, 0, true, true, g);
  add_norm_case<double, double, double>(13, 100, 0, true, true, g);
  add_norm_case<double, double, double>(2, 5000, 0, true, true, g);
  if (failures) {
    std::printf("%d FAILED\n", failures);
    return 1;
  }
  std::printf("all cases passed\n");
#ifdef __CUDACC__
  bench();
#endif
  return 0;
}
