// p2p_emulate.cpp — the p2p provider's kernel (src/p2p_kernels.cuh, its own source) run on the
// host: W ranks, each a set of std::threads (its CTAs' threads) over its own host buffer, reading
// the peers' buffers through plain pointers as it would through CUDA IPC mappings. Checks, against
// a reference computed here:
//   one-shot, two-shot, ring, push; W in {2, 3, 4, 8}; 1 element .. 1 MiB; fp32, bf16 (and fp16);
//   sum, avg, max; every rank's output bitwise equal to every other's; one-shot and two-shot bitwise
//   equal to the rank-order float reduction, the ring within rounding of it; tensors that are not
//   16-byte aligned; all calls of a W back-to-back on one group (epochs carried over, block counts
//   changing between calls);
//   ranks running mixed calls at their own pace (no join between calls, as processes do: a rank
//   starts call e + 1 while a peer still reads call e's regions; sizes, block counts, dtypes, ops
//   and algorithms, the automatic choice included, changing from call to call; messages over one
//   region in pieces, one launch each, as p2p.cu sends them), W in {2, 3, 4, 5, 8};
//   a slow reader: one rank holding on after every wait until the others have finished call e and
//   copied call e + 1 in, while it has yet to read call e's regions — the case the call-parity regions exist for (a
//   kernel that reuses a region too early fails it deterministically);
//   a rank that never arrives (every other rank's wait times out, the error names it, later calls
//   return at once); a rank that arrives late (waited for).
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

constexpr int64_t kCapacity = (1 << 20) + 4096;  // bytes of each region: the joined calls need no pieces
constexpr int64_t kSmallCapacity = 64 << 10;     // p2p.cu's least buffer_bytes: pieces from 16384 fp32
constexpr int kEmuBlocks = 3, kEmuThreads = 4;   // small CTAs: the index arithmetic, not the speed

// W ranks' memory, as p2p.cu lays out one IPC allocation: Signal | acc0 | out0 | acc1 | out1
struct Group {
  int world;
  int64_t capacity;  // bytes of each region: p2p.cu's buffer_bytes
  std::vector<char*> mem;
  std::vector<uint32_t> error;
  explicit Group(int w, int64_t capacity = kCapacity) : world(w), capacity(capacity), error((size_t)w, 0) {
    for (int r = 0; r < w; ++r) {
      const size_t size = (size_t)(kSignalBytes + 4 * capacity);
      char* m = static_cast<char*>(std::aligned_alloc(4096, size));
      std::memset(m, 0, size);
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
      p.out[q] = mem[q] + kSignalBytes + capacity;
    }
    p.parity_bytes = 2 * capacity;
    p.rank = r;
    p.world = world;
    p.timeout = 20'000'000'000LL;  // 20 s: never reached unless a rank is missing
    p.error_host = &error[r];
    return p;
  }
};

const char* algo_name(int a) {
  return a < 0 ? "auto" : a == OneShot ? "one-shot" : a == TwoShot ? "two-shot" : a == Ring ? "ring" : "push";
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

// Rank r's side of one all-reduce, as p2p.cu makes it: pieces of at most one region, each one launch
// (one call of the device counter) that ends before the next starts, as kernels on one stream do.
// algo -1: the automatic choice (make_plan's, per piece).
template <class T>
void run_rank(Group& g, int r, int algo, int op, int64_t n, T* data, long long timeout = 0) {
  const int64_t per = g.capacity / (int64_t)sizeof(T);
  for (int64_t done = 0; done < n; done += per) {
    Params p = g.params(r);
    p.n = std::min(n - done, per);
    p.input = p.output = data + done;
    const Plan plan = make_plan(p.n, (int)sizeof(T), g.world, kEmuBlocks, algo);
    p.algo = plan.algo;
    p.op = op;
    if (timeout) p.timeout = timeout;
    std::vector<std::thread> threads;
    std::vector<std::unique_ptr<EmuCta>> ctas;
    emu_start(threads, ctas, all_reduce_kernel<T>, (unsigned)plan.blocks, (unsigned)kEmuThreads, p);
    for (auto& t : threads) t.join();
  }
}

// One call on `ranks`, each at its own pace; returns when all have finished it.
template <class T>
void launch(Group& g, const std::vector<int>& ranks, int algo, int op, int64_t n, std::vector<T*>& data,
            long long timeout = 0) {
  std::vector<std::thread> threads;
  for (int r : ranks) threads.emplace_back([&, r] { run_rank<T>(g, r, algo, op, n, data[r], timeout); });
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
  // the algorithm the kernel ran (the automatic choice resolved; pieces but the last are all alike)
  const bool ring = make_plan(std::min(n, g.capacity / (int64_t)sizeof(T)), (int)sizeof(T), W, kEmuBlocks, algo).algo == Ring;
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
    if (!ring || op == Max)
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

// A call of any dtype, for sequences that mix them.
struct AnyCall {
  virtual ~AnyCall() = default;
  virtual void run(Group& g, int r) = 0;   // rank r's side, in pieces
  virtual void check(const Group& g) = 0;  // after every rank has run it
};
template <class T>
struct TypedCall : AnyCall {
  Call<T> c;
  int bits;
  TypedCall(int W, int algo, int op, int64_t n, bool misalign, std::mt19937& rng, int bits)
      : c(W, algo, op, n, misalign, rng), bits(bits) {}
  void run(Group& g, int r) override { run_rank<T>(g, r, c.algo, c.op, c.n, c.data[r]); }
  void check(const Group& g) override { verify(g, c, bits); }
};

// `count` random calls: every algorithm and the automatic choice, fp32/bf16/fp16, sum/avg/max, sizes
// whose block counts differ (1 to kEmuBlocks CTAs; one-shot 128 fp32 is 32 packs, one CTA, 136 two),
// some unaligned, some over one region of a kSmallCapacity group (pieces).
std::vector<std::unique_ptr<AnyCall>> mixed_calls(int W, int count, std::mt19937& rng) {
  const int64_t ns[] = {1, 7, 100, 128, 136, 1000, 4097, 20000, 40000, 70001};
  std::vector<std::unique_ptr<AnyCall>> calls;
  for (int i = 0; i < count; ++i) {
    const int algo = (int)(rng() % 5) - 1, op = (int)(rng() % 3), kind = (int)(rng() % 4);
    const int64_t n = ns[rng() % (sizeof ns / sizeof ns[0])];
    const bool mis = rng() % 4 == 0;
    if (kind == 3) calls.push_back(std::make_unique<TypedCall<__nv_bfloat16>>(W, algo, op, n, mis, rng, 16));
    else if (kind == 2) calls.push_back(std::make_unique<TypedCall<__half>>(W, algo, op, n, mis, rng, 11));
    else calls.push_back(std::make_unique<TypedCall<float>>(W, algo, op, n, mis, rng, 32));
  }
  return calls;
}

// Each rank runs the whole sequence without waiting for the others between calls (as processes
// do): a rank may start call e + 1 while a peer still reads its regions of call e, which only the
// call-parity regions keep apart. Checked once all ranks are done.
int pipelined(int W, int count, std::mt19937& rng) {
  Group g(W, kSmallCapacity);
  auto calls = mixed_calls(W, count, rng);
  std::vector<std::thread> ranks;
  for (int r = 0; r < W; ++r)
    ranks.emplace_back([&, r] {
      for (auto& c : calls) c->run(g, r);
    });
  for (auto& t : ranks) t.join();
  for (auto& c : calls) c->check(g);
  // every launch counted once, in every block's copy of the counter, on every rank
  const uint32_t e = reinterpret_cast<const Signal*>(g.mem[0])->epoch[0];
  for (int r = 0; r < W; ++r)
    for (int b = 0; b < kMaxBlocks; ++b)
      CHECK(reinterpret_cast<const Signal*>(g.mem[r])->epoch[b] == e, "W=%d rank %d block %d counted %u calls, block 0 of "
            "rank 0 %u", W, r, b, reinterpret_cast<const Signal*>(g.mem[r])->epoch[b], e);
  return (int)e;
}

// The last rank holds on after every wait it passes (p2p_emulate.hpp) until the others are in the
// next call, which (without the call parity) overwrites the regions it has yet to read. Sizes that
// change the block count from call to call (blocks a launch leaves out must still agree on the
// parity of the next one: one-shot 128 fp32 is one CTA, 136 two).
void slow_reader(int W) {
  Group g(W, kSmallCapacity);
  std::mt19937 rng(99);
  std::vector<std::unique_ptr<AnyCall>> calls;
  for (int algo : {OneShot, TwoShot, Ring, Push})
    for (int64_t n : {1000, 128, 136, 4097, 20000})
      calls.push_back(std::make_unique<TypedCall<float>>(W, algo, Sum, n, false, rng, 32));
  emu_slow_rank = W - 1;
  std::vector<std::thread> ranks;
  for (int r = 0; r < W; ++r)
    ranks.emplace_back([&, r] {
      for (auto& c : calls) c->run(g, r);
    });
  for (auto& t : ranks) t.join();
  emu_slow_rank = -1;
  for (auto& c : calls) c->check(g);
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
  if (argc > 1 && std::strcmp(argv[1], "slow-reader") == 0) {  // that case alone
    for (int W : {2, 3}) slow_reader(W);
    std::printf("slow reader: the others run ahead into the next call, every result right (W = 2, 3) OK\n");
    return 0;
  }
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
  for (int W : {1, 2, 3, 4, 5, 8}) {
    const int launches = pipelined(W, 60, rng);
    std::printf("pipelined W=%d: 60 mixed calls (%d launches) per rank, each rank at its own pace OK\n", W, launches);
  }
  for (int W : {2, 3}) slow_reader(W);
  std::printf("slow reader: the others run ahead into the next call, every result right (W = 2, 3) OK\n");
  no_show();
  std::printf("ALL OK\n");
  return 0;
}
