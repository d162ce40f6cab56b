// p2p_emulate.cpp — the p2p provider's kernel (src/p2p_kernels.cuh, its own source) run on the
// host: W ranks, each a set of std::threads (its CTAs' threads) over its own host buffer, reading
// the peers' buffers through plain pointers as it would through CUDA IPC mappings. Checks, against
// a reference computed here:
//   one-shot, two-shot, ring; W in {2, 3, 4, 8}; 1 element .. 1 MiB; fp32, bf16 (and fp16);
//   sum, avg, max; every rank's output bitwise equal to every other's; one-shot and two-shot bitwise
//   equal to the rank-order float reduction, the ring within rounding of it; tensors that are not
//   16-byte aligned; all calls of a W back-to-back on one group (epochs carried over, block counts
//   changing between calls); ranks running their calls at their own pace (no join between calls:
//   the end barrier's reason to exist); a rank that never arrives (every other rank's wait times out, the
//   error names it, later calls return at once); a rank that arrives late (waited for).
// Build and run (tests/test_allreduce_p2p_emulation.py does):
//   g++ -std=c++20 -O2 -pthread -DP2P_EMULATE -I/usr/local/cuda/include -Iopsdk/include -Iops/allreduce/src
//     -Iops/allreduce/lab ops/allreduce/lab/p2p_emulate.cpp -o /tmp/p2p_emulate && /tmp/p2p_emulate
// Prints one line per case family and "ALL OK"; exits 1 at the first mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "p2p_kernels.cuh"

using namespace p2p;

namespace {

constexpr int64_t kCapacity = (1 << 20) + 4096;  // bytes of each rank's acc and out regions
constexpr int kEmuBlocks = 3, kEmuThreads = 4;   // small CTAs: the index arithmetic, not the speed

// W ranks' memory, as p2p.cu lays out one IPC allocation: Signal | acc | out
struct Group {
  int world;
  std::vector<char*> mem;
  std::vector<uint32_t> error;
  explicit Group(int w) : world(w), error((size_t)w, 0) {
    for (int r = 0; r < w; ++r) {
      char* m = static_cast<char*>(std::aligned_alloc(4096, (size_t)(kSignalBytes + 2 * kCapacity)));
      std::memset(m, 0, (size_t)(kSignalBytes + 2 * kCapacity));
      mem.push_back(m);
    }
  }
  ~Group() {
    for (char* m : mem) std::free(m);
  }
  Params params(int r) {
    Params p{};
    for (int q = 0; q < world; ++q) {
      p.sig[q] = reinterpret_cast<Signal*>(mem[q]);
      p.acc[q] = mem[q] + kSignalBytes;
      p.out[q] = mem[q] + kSignalBytes + kCapacity;
    }
    p.rank = r;
    p.world = world;
    p.timeout = 20'000'000'000LL;  // 20 s: never reached unless a rank is missing
    p.error_host = &error[r];
    return p;
  }
};

const char* algo_name(int a) {
  return a == OneShot ? "one-shot" : a == TwoShot ? "two-shot" : a == Ring ? "ring" : "push";
}
const char* op_name(int o) { return o == Sum ? "sum" : o == Avg ? "avg" : "max"; }

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (!(cond)) {                                          \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);      \
      std::printf(__VA_ARGS__);                             \
      std::printf("\n");                                    \
      std::exit(1);                                         \
    }                                                       \
  } while (0)

// Launches one call on `ranks` (all of the group's when empty) and joins them.
template <class T>
void launch(Group& g, const std::vector<int>& ranks, int algo, int op, int64_t n, std::vector<T*>& data,
            long long timeout = 0) {
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<EmuCta>> ctas;
  for (int r : ranks) {
    Params p = g.params(r);
    p.input = data[r];
    p.output = data[r];
    p.n = n;
    p.algo = algo;
    p.op = op;
    if (timeout) p.timeout = timeout;
    const Plan plan = make_plan(n, (int)sizeof(T), g.world, kEmuBlocks, algo);
    emu_start(threads, ctas, all_reduce_kernel<T>, (unsigned)plan.blocks, (unsigned)kEmuThreads, p);
  }
  for (auto& t : threads) t.join();
}

// One call's tensors: W ranks' inputs (random in [-2, 2], optionally 4 bytes off 16-byte alignment)
template <class T>
struct Call {
  int algo, op;
  int64_t n;
  std::vector<std::vector<T>> store;
  std::vector<T*> data;
  std::vector<std::vector<float>> in;  // the inputs, as floats
  Call(int W, int algo, int op, int64_t n, bool misalign, std::mt19937& rng) : algo(algo), op(op), n(n) {
    std::uniform_real_distribution<float> dist(-2.f, 2.f);
    store.assign((size_t)W, std::vector<T>((size_t)n + 8));
    in.assign((size_t)W, std::vector<float>((size_t)n));
    for (int r = 0; r < W; ++r) {
      data.push_back(store[r].data() + (misalign ? 1 : 0));
      for (int64_t i = 0; i < n; ++i) {
        data[r][i] = from_f<T>(dist(rng));
        in[r][i] = to_f(data[r][i]);
      }
    }
  }
};

template <class T>
void verify(const Group& g, const Call<T>& c, int dtype_bits) {
  const int W = g.world, algo = c.algo, op = c.op;
  const int64_t n = c.n;
  for (int r = 0; r < W; ++r) CHECK(g.error[r] == 0, "rank %d error %#x", r, g.error[r]);
  // every rank holds the same bits
  for (int r = 1; r < W; ++r)
    CHECK(std::memcmp(c.data[r], c.data[0], (size_t)n * sizeof(T)) == 0, "%s %s W=%d n=%lld: rank %d differs from rank 0",
          algo_name(algo), op_name(op), W, (long long)n, r);
  // against the rank-order float reduction, rounded once (exact for one-shot/two-shot and max)
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    float a = c.in[0][i];
    double exact = c.in[0][i];
    for (int q = 1; q < W; ++q)
      a = combine(op, a, c.in[q][i]), exact = op == Max ? std::max(exact, (double)c.in[q][i]) : exact + c.in[q][i];
    if (op == Avg) a *= 1.0f / (float)W, exact /= W;
    const float want = to_f(from_f<T>(a)), got = to_f(c.data[0][i]);
    if (algo != Ring || op == Max)
      CHECK(got == want, "%s %s W=%d n=%lld %d-bit: element %lld is %.9g, want %.9g", algo_name(algo), op_name(op), W,
            (long long)n, dtype_bits, (long long)i, got, want);
    worst = std::max(worst, std::fabs(got - exact));
  }
  // the ring rounds each partial to T: W roundings of a relative eps of |partial| <= 2W
  const double eps = dtype_bits == 32 ? 2.4e-7 : dtype_bits == 16 ? 4e-3 : 1e-3, tol = eps * 2.0 * W * W;
  CHECK(worst <= tol, "%s %s W=%d n=%lld %d-bit: max error %g > %g", algo_name(algo), op_name(op), W, (long long)n,
        dtype_bits, worst, tol);
}

template <class T>
void one_call(Group& g, int algo, int op, int64_t n, bool misalign, std::mt19937& rng, int dtype_bits) {
  Call<T> c(g.world, algo, op, n, misalign, rng);
  std::vector<int> all;
  for (int r = 0; r < g.world; ++r) all.push_back(r);
  launch<T>(g, all, algo, op, n, c.data);
  verify(g, c, dtype_bits);
}

// Each rank runs its own sequence of calls without waiting for the others between calls (as
// processes do): a rank may start call k+1 while a peer still reads its buffer for call k, which
// only the end barrier prevents from going wrong.
void pipelined(int W, std::mt19937& rng) {
  Group g(W);
  const int64_t ns[] = {1000, 70000, 7, 100000, 4097};
  std::vector<std::unique_ptr<Call<float>>> calls;
  for (int i = 0; i < 30; ++i) calls.push_back(std::make_unique<Call<float>>(W, i % 4, (i / 4) % 3, ns[i % 5], false, rng));
  std::vector<std::thread> ranks;
  for (int r = 0; r < W; ++r)
    ranks.emplace_back([&, r] {
      for (auto& c : calls) {
        std::vector<std::thread> ts;
        std::vector<std::unique_ptr<EmuCta>> ctas;
        Params p = g.params(r);
        p.input = p.output = c->data[r];
        p.n = c->n, p.algo = c->algo, p.op = c->op;
        emu_start(ts, ctas, all_reduce_kernel<float>, (unsigned)make_plan(c->n, 4, W, kEmuBlocks, c->algo).blocks,
                  (unsigned)kEmuThreads, p);
        for (auto& t : ts) t.join();
      }
    });
  for (auto& t : ranks) t.join();
  for (auto& c : calls) verify(g, *c, 32);
}

void no_show() {
  // rank 2 of 3 never launches: ranks 0 and 1 give up after the timeout, naming rank 2
  Group g(3);
  std::vector<std::vector<float>> store(3, std::vector<float>(1000, 1.f));
  std::vector<float*> data{store[0].data(), store[1].data(), store[2].data()};
  const auto t0 = std::chrono::steady_clock::now();
  launch<float>(g, {0, 1}, OneShot, Sum, 1000, data, 100'000'000LL);  // 0.1 s
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int r = 0; r < 2; ++r) {
    CHECK(g.error[r] != 0, "rank %d: no error after a peer never arrived", r);
    CHECK(error_rank(g.error[r]) == 2 && error_slot(g.error[r]) == kSlotStart, "rank %d: error %#x names rank %d slot %d",
          r, g.error[r], error_rank(g.error[r]), error_slot(g.error[r]));
  }
  CHECK(s < 5, "the timed-out call took %.1f s", s);
  // a later call on a broken group returns at once and leaves the data alone
  const auto t1 = std::chrono::steady_clock::now();
  launch<float>(g, {0, 1}, Ring, Sum, 1000, data);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() < 2, "a call after the error waited");
  CHECK(store[0][5] == 1.f, "a call after the error changed the data");
  // a ring whose last rank stops arriving midway times out too (ranks 0, 1 of 3 on a large message)
  Group h(3);
  std::vector<std::vector<float>> big(3, std::vector<float>(300000, 1.f));
  std::vector<float*> bd{big[0].data(), big[1].data(), big[2].data()};
  launch<float>(h, {0, 1}, Ring, Sum, 300000, bd, 100'000'000LL);
  CHECK(h.error[0] != 0 && h.error[1] != 0, "ring without rank 2: errors %#x %#x", h.error[0], h.error[1]);
  std::printf("no-show rank: both others time out naming rank 2 (%.2f s), later calls return at once\n", s);
  // a rank that arrives late, but within the timeout, is waited for (every algorithm)
  for (int algo : {OneShot, TwoShot, Ring}) {
    Group k(3);
    std::vector<std::vector<float>> v(3, std::vector<float>(70000));
    for (int r = 0; r < 3; ++r)
      for (size_t i = 0; i < v[r].size(); ++i) v[r][i] = (float)(r + 1) * (float)(i % 7);
    std::vector<float*> vd{v[0].data(), v[1].data(), v[2].data()};
    std::thread early([&] { launch<float>(k, {0, 1}, algo, Sum, 70000, vd, 5'000'000'000LL); });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    launch<float>(k, {2}, algo, Sum, 70000, vd, 5'000'000'000LL);
    early.join();
    for (int r = 0; r < 3; ++r) {
      CHECK(k.error[r] == 0, "%s: rank %d error %#x after a late peer", algo_name(algo), r, k.error[r]);
      for (size_t i = 0; i < v[r].size(); ++i)
        CHECK(v[r][i] == 6.f * (float)(i % 7), "%s: rank %d element %zu is %g after a late peer", algo_name(algo), r, i,
              v[r][i]);
    }
  }
  std::printf("late rank (0.15 s behind): waited for, results right (one-shot, two-shot, ring)\n");
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "quick") == 0;
  std::mt19937 rng(1234);
  const int64_t sizes[] = {1, 7, 8, 1000, 4097, 65539, 262144};  // 262144 fp32 = 1 MiB
  for (int W : {2, 3, 4, 8}) {
    Group g(W);  // one group per W: every call below is back-to-back on it
    int calls = 0, k = 0;
    for (int algo : {OneShot, TwoShot, Ring, Push}) {  // push: two-shot where W != 2
      for (int64_t n : sizes) {
        if (quick && n > 70000 && W > 2) continue;
        const int op = k % 3;
        const bool mis = k % 4 == 3;
        ++k;
        one_call<float>(g, algo, op, n, mis, rng, 32);
        one_call<__nv_bfloat16>(g, algo, (op + 1) % 3, n, mis, rng, 16);
        calls += 2;
        if (n == 4097) one_call<__half>(g, algo, (op + 2) % 3, n, !mis, rng, 11), ++calls;
      }
    }
    // every op on the smallest and a mid size, each algorithm, fp32 and bf16, back-to-back
    for (int algo : {OneShot, TwoShot, Ring, Push})
      for (int op : {Sum, Avg, Max}) {
        one_call<float>(g, algo, op, 1, false, rng, 32);
        one_call<__nv_bfloat16>(g, algo, op, 4100, true, rng, 16);
        calls += 2;
      }
    std::printf("W=%d: %d back-to-back calls (one-shot, two-shot, ring, push; fp32, bf16, fp16; sum, avg, max) OK\n", W,
                calls);
  }
  for (int W : {2, 3, 5}) pipelined(W, rng);
  std::printf("pipelined: 30 calls per rank, each rank at its own pace (W = 2, 3, 5) OK\n");
  no_show();
  std::printf("ALL OK\n");
  return 0;
}
