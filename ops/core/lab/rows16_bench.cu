// ops/core/lab/rows16_bench.cu — kernel time of the 16-bit forward row kernels on one GPU, without
// the framework: the wide plan's kernels (norm_rows_wide, softmax_rows_wide) at 8 and at 4 slots
// per thread, planned as rowwise::plan_rows plans them, against the lab variants rows16_ahead.cuh
// (the next row read ahead) and rows16_warp.cuh (a warp per row). Each is timed by CUDA events
// (the median of 7 bursts of 10 launches) over M x N rows of bfloat16 (float16 with
// -DVT_BENCH_HALF) as a fraction of a device-to-device copy of the same bytes, checked against a
// float64 host reference on six rows and for the same bits on a second run. Not part of the pack
// or the tests; built and run by hand on the GPU machine:
//   nvcc -O3 -std=c++17 -DNDEBUG -gencode arch=compute_90a,code=sm_90a -I opsdk/include \
//        -I ops/core/src ops/core/lab/rows16_bench.cu -o rows16_bench
//   ./rows16_bench [M N]        (8192 4096 unless given)
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "../cuda/norm_rows.cuh"
#include "../cuda/softmax_rows.cuh"
#include "rows16_ahead.cuh"
#include "rows16_warp.cuh"

#define CHECK(x)                                                                       \
  do {                                                                                 \
    cudaError_t e_ = (x);                                                              \
    if (e_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

#ifdef VT_BENCH_HALF
using bf16 = __half;  // the 16-bit type under test
#else
using bf16 = __nv_bfloat16;
#endif

static float to_f(bf16 v) { return (float)v; }

// kernel time in us: the median of 7 means of 10 launches each
template <class F>
static double time_us(F launch) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  std::vector<double> t;
  for (int rep = 0; rep < 7; ++rep) {
    CHECK(cudaEventRecord(a));
    for (int i = 0; i < 10; ++i) launch();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 100.0);
  }
  CHECK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  return t[3];
}

enum Op { kLayer, kRms, kSoftmax, kLogSoftmax };
static const char* op_name(Op o) {
  return o == kLayer ? "layer_norm" : o == kRms ? "rms_norm" : o == kSoftmax ? "softmax" : "log_softmax";
}

// the float64 reference of row r
static void reference(Op op, const std::vector<bf16>& x, const std::vector<bf16>& w, const std::vector<bf16>& b,
                      int64_t r, int N, std::vector<double>& out) {
  const bf16* xr = x.data() + r * N;
  double s = 0, q = 0, m = -INFINITY;
  for (int j = 0; j < N; ++j) {
    const double v = to_f(xr[j]);
    s += op == kRms ? v * v : v;
    m = std::max(m, v);
  }
  const double mu = op == kLayer ? s / N : 0.0;
  for (int j = 0; j < N; ++j) q += (to_f(xr[j]) - mu) * (to_f(xr[j]) - mu);
  const double rs = op == kLayer ? 1.0 / std::sqrt(q / N + 1e-5) : 1.0 / std::sqrt(s / N + 1e-6);
  double se = 0;
  for (int j = 0; j < N; ++j) se += std::exp(to_f(xr[j]) - m);
  out.resize(N);
  for (int j = 0; j < N; ++j) {
    const double v = to_f(xr[j]);
    if (op == kLayer) out[j] = (v - mu) * rs * to_f(w[j]) + to_f(b[j]);
    else if (op == kRms) out[j] = v * rs * to_f(w[j]);
    else if (op == kSoftmax) out[j] = std::exp(v - m) / se;
    else out[j] = v - m - std::log(se);
  }
}

int main(int argc, char** argv) {
  const int64_t M = argc > 2 ? std::atoll(argv[1]) : 8192;
  const int N = argc > 2 ? std::atoi(argv[2]) : 4096;
  const size_t n = (size_t)M * N;
  std::vector<bf16> hx(n), hw(N), hb(N);
  std::mt19937 gen(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : hx) v = bf16(nd(gen) * 2.f + 0.5f);
  for (auto& v : hw) v = bf16(1.f + 0.1f * nd(gen));
  for (auto& v : hb) v = bf16(0.1f * nd(gen));
  bf16 *x, *w, *b, *y;
  float *mean, *rstd;
  CHECK(cudaMalloc(&x, n * 2));
  CHECK(cudaMalloc(&y, n * 2));
  CHECK(cudaMalloc(&w, N * 2));
  CHECK(cudaMalloc(&b, N * 2));
  CHECK(cudaMalloc(&mean, M * 4));
  CHECK(cudaMalloc(&rstd, M * 4));
  CHECK(cudaMemcpy(x, hx.data(), n * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(w, hw.data(), N * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(b, hb.data(), N * 2, cudaMemcpyHostToDevice));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const double copy = time_us([&] { CHECK(cudaMemcpyAsync(y, x, n * 2, cudaMemcpyDeviceToDevice)); });
  std::printf("M %lld N %d: copy %.1f us = %.0f GB/s (read+write)\n", (long long)M, N, copy, 2.0 * n * 2 / copy / 1e3);

  // the wide plan for K slots per thread, as rowwise::plan_rows makes it for many rows: a warp plan
  // (tpr <= 32, kRowBlock threads a block) for rows of up to 32 * K slots, else a block of tpr threads
  auto wide_plan = [&](int K) {
    rowwise::Plan p;
    const int nslot = N / 8, want = (nslot + K - 1) / K;
    if (nslot <= 32 * K) {
      p.tpr = 1;
      while (p.tpr < want && p.tpr < 32) p.tpr <<= 1;
      p.threads = rowwise::kRowBlock;
      p.warp = true;
    } else {
      p.tpr = p.threads = std::min(rowwise::kMaxTpr, (want + 31) / 32 * 32);
    }
    p.chunks = (nslot + K * p.tpr - 1) / (K * p.tpr);
    p.blocks = (unsigned)((M + p.rows_per_block() - 1) / p.rows_per_block());
    p.vec = p.wide = true;
    return p;
  };
  int occ = 0;
  struct Variant {
    const char* name;
    std::function<void(Op)> run;
  };
  // the wide kernels at K slots per thread, warp or block kernel as the plan says
  auto wide = [&](auto kk, Op op) {
    constexpr int K = decltype(kk)::value;
    const rowwise::Plan p = wide_plan(K);
    const dim3 g(p.blocks), t(p.threads);
    if (op == kLayer) (p.warp ? norm_rows_impl::norm_rows_wide<bf16, K, true, false> : norm_rows_impl::norm_rows_wide<bf16, K, false, false>)<<<g, t>>>(x, w, b, y, mean, rstd, M, N, p, 1e-5);
    if (op == kRms) (p.warp ? norm_rows_impl::norm_rows_wide<bf16, K, true, true> : norm_rows_impl::norm_rows_wide<bf16, K, false, true>)<<<g, t>>>(x, w, nullptr, y, mean, rstd, M, N, p, 1e-6);
    if (op == kSoftmax) (p.warp ? softmax_rows_impl::softmax_rows_wide<bf16, K, true, false> : softmax_rows_impl::softmax_rows_wide<bf16, K, false, false>)<<<g, t>>>(x, y, M, N, p);
    if (op == kLogSoftmax) (p.warp ? softmax_rows_impl::softmax_rows_wide<bf16, K, true, true> : softmax_rows_impl::softmax_rows_wide<bf16, K, false, true>)<<<g, t>>>(x, y, M, N, p);
  };
  // the read-ahead kernels at 2 slots of 256 threads, on a grid of resident blocks that each take
  // the same number of rows
  auto ahead = [&](Op op) {
    constexpr int K = 2, R = 256;
    auto grid = [&](const void* k) {
      CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k, R, 0));
      return rows_ahead::grid_for(M, (int64_t)sms * occ);
    };
    if (op == kLayer) {
      auto k = rows_ahead::norm_rows_ahead<bf16, K, R, false>;
      k<<<grid((const void*)k), R>>>(x, w, b, y, mean, rstd, M, N, 1e-5f);
    } else if (op == kRms) {
      auto k = rows_ahead::norm_rows_ahead<bf16, K, R, true>;
      k<<<grid((const void*)k), R>>>(x, w, nullptr, y, mean, rstd, M, N, 1e-6f);
    } else if (op == kSoftmax) {
      auto k = rows_ahead::softmax_rows_ahead<bf16, K, R, false>;
      k<<<grid((const void*)k), R>>>(x, y, M, N);
    } else {
      auto k = rows_ahead::softmax_rows_ahead<bf16, K, R, true>;
      k<<<grid((const void*)k), R>>>(x, y, M, N);
    }
  };
  // the warp kernels: a warp per row, a block of kWarps rows per row group
  auto warp = [&](Op op) {
    constexpr int T = rows_warp::kWarps * 32;
    const unsigned g = (unsigned)((M + rows_warp::kWarps - 1) / rows_warp::kWarps);
    if (op == kLayer) rows_warp::norm_rows_warp<bf16, false><<<g, T>>>(x, w, b, y, mean, rstd, M, N, 1e-5f, false);
    if (op == kRms) rows_warp::norm_rows_warp<bf16, true><<<g, T>>>(x, w, nullptr, y, mean, rstd, M, N, 1e-6f, false);
    if (op == kSoftmax) rows_warp::softmax_rows_warp<bf16, false><<<g, T>>>(x, y, M, N, false);
    if (op == kLogSoftmax) rows_warp::softmax_rows_warp<bf16, true><<<g, T>>>(x, y, M, N, false);
  };
  // the classic kernels at their plan (4 slots per thread; rows longer than a chunk are read again
  // per pass): what a 16-bit row runs when no wide plan covers it in one chunk
  auto classic = [&](Op op) {
    rowwise::Plan p = wide_plan(4);
    p.wide = false;
    const dim3 g(p.blocks), t(p.threads);
    using namespace norm_rows_impl;
    using namespace softmax_rows_impl;
    if (op == kLayer) (p.warp ? norm_rows<bf16, 4, true, true, false> : norm_rows<bf16, 4, false, true, false>)<<<g, t>>>(x, w, b, y, mean, rstd, M, N, p, 1e-5);
    if (op == kRms) (p.warp ? norm_rows<bf16, 4, true, true, true> : norm_rows<bf16, 4, false, true, true>)<<<g, t>>>(x, w, nullptr, y, mean, rstd, M, N, p, 1e-6);
    if (op == kSoftmax) (p.warp ? softmax_rows<bf16, 4, true, true, false> : softmax_rows<bf16, 4, false, true, false>)<<<g, t>>>(x, y, M, N, p);
    if (op == kLogSoftmax) (p.warp ? softmax_rows<bf16, 4, true, true, true> : softmax_rows<bf16, 4, false, true, true>)<<<g, t>>>(x, y, M, N, p);
  };
  std::vector<Variant> variants;
  if (N % 8 == 0) variants.push_back({"classic", classic});
  const bool one_chunk8 = wide_plan(8).chunks == 1, one_chunk4 = wide_plan(4).chunks == 1;
  if (N % 8 == 0 && one_chunk8) variants.push_back({"wide8", [&](Op op) { wide(std::integral_constant<int, 8>{}, op); }});
  if (N % 8 == 0 && one_chunk4) variants.push_back({"wide4", [&](Op op) { wide(std::integral_constant<int, 4>{}, op); }});
  if (N % 8 == 0 && N <= rows_ahead::kMaxN) variants.push_back({"ahead", ahead});
  if (N % 8 == 0 && N >= rows_warp::kMinN && N <= rows_warp::kMaxN) variants.push_back({"warp", warp});
  std::vector<bf16> got(n), again(n);
  std::vector<double> ref;
  for (Op op : {kLayer, kRms, kSoftmax, kLogSoftmax}) {
    for (auto& v : variants) {
      CHECK(cudaMemset(y, 0xff, n * 2));
      v.run(op);
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(got.data(), y, n * 2, cudaMemcpyDeviceToHost));
      v.run(op);
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(again.data(), y, n * 2, cudaMemcpyDeviceToHost));
      const bool same = std::memcmp(got.data(), again.data(), n * 2) == 0;
      double worst = 0;  // in units of the bfloat16 ulp of the reference (2^-8 relative), abs floor
      for (int64_t r : {(int64_t)0, (int64_t)1, (int64_t)2, M / 2, M - 2, M - 1}) {
        reference(op, hx, hw, hb, r, N, ref);
        for (int j = 0; j < N; ++j) {
          const double e = std::abs(to_f(got[r * N + j]) - ref[j]);
          const double tol = std::max(std::abs(ref[j]), op >= kSoftmax ? 1e-6 : 1e-2) * (1.0 / 256);
          worst = std::max(worst, e / tol);
        }
      }
      const double us = time_us([&] { v.run(op); });
      std::printf("%-12s %-6s %7.1f us  %6.0f GB/s  %.3f of copy  err %.2f ulp  %s\n", op_name(op), v.name, us,
                  2.0 * n * 2 / us / 1e3, copy / us, worst, same ? "same bits" : "BITS DIFFER");
    }
  }
  return 0;
}
