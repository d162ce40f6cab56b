// thread_pool.cpp — the runtime's one pool of worker threads, shared by every pack through
// host->parallel_for, so packs never start threads of their own.
//
// A parallel_for splits [begin, end) into at most num_threads chunks; the caller runs chunk 0 and
// waits for the workers. Workers are started once, lazily. Nested calls (a kernel calling
// parallel_for from inside a worker) run inline, so the pool can never deadlock on itself.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "internal.hpp"

namespace vt {

namespace {

struct Pool {
  std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::vector<std::thread> workers;
  int32_t nthreads = 0;  // including the caller
  // the job in flight: fields are written before `generation` is bumped (release) and read after
  // it is seen (acquire); workers and the caller spin briefly before sleeping, since ops come
  // back to back and a sleep/wake hand-off costs ~50 us, more than many kernels.
  std::atomic<uint64_t> generation{0};
  vt_range_fn fn = nullptr;
  void* closure = nullptr;
  int64_t begin = 0, end = 0, chunk = 0;
  int32_t job_threads = 0;
  std::atomic<int32_t> pending{0};
  static constexpr int kSpin = 20000;  // ~50-100 us of polling
  std::mutex call_mu;  // one parallel_for at a time (callers from several threads queue up)

  Pool() {
    unsigned hw = std::thread::hardware_concurrency();
    nthreads = hw ? static_cast<int32_t>(hw) : 1;
    if (const char* env = std::getenv("VT_NUM_THREADS")) nthreads = std::max(1, std::atoi(env));
  }

  void ensure_started() {
    // called with call_mu held
    while (static_cast<int32_t>(workers.size()) < nthreads - 1) {
      int32_t id = static_cast<int32_t>(workers.size()) + 1;
      workers.emplace_back([this, id] { worker_loop(id); });
      workers.back().detach();  // lives for the process; never joined at exit
    }
  }

  void worker_loop(int32_t id) {
    t_in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int i = 0; g == seen && i < kSpin; ++i) {
        cpu_relax();
        g = generation.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu);
        work_cv.wait(lk, [&] { return generation.load(std::memory_order_acquire) != seen; });
        g = generation.load(std::memory_order_acquire);
      }
      seen = g;
      if (id >= job_threads) continue;  // not part of this job (the pool shrank)
      int64_t b = begin + id * chunk;
      int64_t e = std::min(end, b + chunk);
      if (b < e) fn(closure, b, e);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu);
        done_cv.notify_one();
      }
    }
  }

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  static thread_local bool t_in_worker;
};

thread_local bool Pool::t_in_worker = false;

Pool& pool() {
  static Pool* p = new Pool();  // leaked: detached workers reference it until process exit
  return *p;
}

}  // namespace

int32_t num_threads() { return pool().nthreads; }

void parallel_for(int64_t begin, int64_t end, int64_t grain, vt_range_fn fn, void* closure) {
  if (end <= begin) return;
  Pool& p = pool();
  if (grain < 1) grain = 1;
  int64_t n = end - begin;
  int32_t nt = p.nthreads;
  if (nt <= 1 || n <= grain || Pool::t_in_worker) {
    fn(closure, begin, end);
    return;
  }
  std::unique_lock<std::mutex> call_lock(p.call_mu, std::try_to_lock);
  if (!call_lock.owns_lock()) {  // another thread is using the pool: run inline rather than wait
    fn(closure, begin, end);
    return;
  }
  int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / grain);
  int64_t chunk = (n + chunks - 1) / chunks;
  p.ensure_started();
  {
    std::lock_guard<std::mutex> lk(p.mu);
    p.fn = fn;
    p.closure = closure;
    p.begin = begin;
    p.end = end;
    p.chunk = chunk;
    p.job_threads = nt;
    p.pending.store(nt - 1, std::memory_order_relaxed);  // workers 1..nt-1 take part
    p.generation.fetch_add(1, std::memory_order_release);
  }
  p.work_cv.notify_all();
  fn(closure, begin, std::min(end, begin + chunk));
  for (int i = 0; p.pending.load(std::memory_order_acquire) != 0 && i < Pool::kSpin; ++i)
    Pool::cpu_relax();
  if (p.pending.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(p.mu);
    p.done_cv.wait(lk, [&] { return p.pending.load(std::memory_order_acquire) == 0; });
  }
}

}  // namespace vt

extern "C" {
void vtrt_set_num_threads(int32_t n) {
  auto& p = vt::pool();
  std::lock_guard<std::mutex> g(p.call_mu);
  std::lock_guard<std::mutex> lk(p.mu);
  p.nthreads = n < 1 ? 1 : n;
}
int32_t vtrt_get_num_threads(void) { return vt::pool().nthreads; }
}
