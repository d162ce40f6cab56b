// thread_pool.cpp — the runtime's one pool of worker threads, shared by every pack through
// host->parallel_for, so packs never start threads of their own.
//
// A parallel_for splits [begin, end) into at most num_threads chunks; the caller runs chunk 0 and
// waits for the workers. Workers are started once, lazily. Nested calls (a kernel calling
// parallel_for from inside a worker) run inline, so the pool can never deadlock on itself.
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
  // the job in flight
  uint64_t generation = 0;
  vt_range_fn fn = nullptr;
  void* closure = nullptr;
  int64_t begin = 0, end = 0, chunk = 0;
  int32_t pending = 0;
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
      vt_range_fn f;
      void* c;
      int64_t b, e;
      {
        std::unique_lock<std::mutex> lk(mu);
        work_cv.wait(lk, [&] { return generation != seen; });
        seen = generation;
        if (id >= nthreads) continue;  // pool shrank: sit this one out
        f = fn;
        c = closure;
        b = begin + id * chunk;
        e = std::min(end, b + chunk);
      }
      if (b < e) f(c, b, e);
      std::lock_guard<std::mutex> lk(mu);
      if (--pending == 0) done_cv.notify_one();
    }
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
    p.pending = nt - 1;
    p.generation++;
  }
  p.work_cv.notify_all();
  fn(closure, begin, std::min(end, begin + chunk));
  std::unique_lock<std::mutex> lk(p.mu);
  p.done_cv.wait(lk, [&] { return p.pending == 0; });
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
