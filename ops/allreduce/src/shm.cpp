// shm.cpp — the `shm` provider: collectives between the processes of one machine over POSIX shared
// memory. What it is not: a network transport (one machine only) or a thread pool (each rank
// reduces on its calling thread; the ranks are the parallelism).
//
// The segment (shm_open + mmap; made by rank 0 under a name from the rendezvous, opened by the
// others, unlinked by rank 0 once all W ranks attached, so nothing is left in /dev/shm even if
// a rank dies later):
//   Header | Slot[W] (128 B each: seq flag, futex waiters count and pid on one cache line, the call's
//   Meta x2 on the next) | data: rank r's buffer b (b = 0, 1) at data + (2r + b) * capacity.
//
// The protocol (DeepSpeed's and vLLM's CPU shm all-reduce are the same idea; notes/allocator-
// graphs-allreduce.md §5). Every rank counts calls: call e (1, 2, ...) uses buffer e % 2, and each
// of its stages s (0, 1) ends with the rank publishing seq = 2e + s (a seq_cst store, after its
// data and Meta are written) and waiting until every peer's seq >= 2e + s (acquire loads; 32-bit,
// compared by signed difference). seq only grows, so a value of an earlier call never satisfies a later wait (epoch tags: no ABA), and a
// rank that leads by a call writes the *other* buffer. Writing buffer e % 2 again at call e + 2 is
// safe because passing call e + 1's first wait means every peer finished call e.
//   small all_reduce (one-shot): copy in, stage 0, every rank reduces all W buffers in rank order
//     (so every rank gets bitwise the same result);
//   large all_reduce (two-shot): copy in, stage 0, rank r reduces slice r of all buffers into its
//     own buffer, stage 1, every rank gathers the W reduced slices;
//   broadcast / all_gather / reduce_scatter / barrier: copy in, stage 0, copy or reduce out.
// Messages larger than a buffer go in buffer-sized pieces, one call number each.
// Meta (kind, dtype, element count, src or reduce op) is compared at stage 0: ranks that disagree
// all raise at the same call (each sees some peer differ) and the group stays usable.
// A wait gives up with an error naming the op, the call and the rank waited for: when the
// timeout passes, when that rank's process is gone (checked every few ms), or when another rank
// aborted the group (after its own timeout or failure). Such an error leaves the group broken:
// every later call raises until the group is destroyed.
// Waiting spins (long when every rank has a core, briefly when ranks outnumber the cores this
// process may run on), yields, then sleeps on a futex in the awaited rank's slot, which that rank
// wakes when it publishes (only when someone sleeps: a `waiters` count beside the flag).
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <memory>
#include <string>

#include "allreduce.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AR_PAUSE() _mm_pause()
#else
#define AR_PAUSE() ((void)0)
#endif

namespace ar {
namespace {

constexpr uint64_t kMagic = 0x76742d73686d3031ull;  // "vt-shm01"
constexpr int64_t kOneShotMaxBytes = 256 << 10;   // all_reduce: one-shot up to this, two-shot above
constexpr int kSpinsIdle = 4000;    // pause-spins before sleeping, when every rank has a core of its own
constexpr int kSpinsBusy = 50;      // ... when ranks outnumber cores (the awaited rank needs ours)
constexpr int kYields = 4;          // sched_yield()s after spinning, before sleeping on the futex
constexpr long kSleepNs = 2000000;  // futex sleeps at most this long between the checks below
constexpr double kLivenessEvery = 0.005;  // seconds between checks that the awaited rank lives

struct Meta {
  uint32_t kind;   // Kind
  uint32_t dtype;  // code << 16 | bits
  int64_t count;   // elements of the whole call (not of the piece)
  int64_t aux;     // src (broadcast) or Red (reductions)
  int64_t pad;
};

struct alignas(128) Slot {
  std::atomic<uint32_t> seq;      // 2e + s (mod 2^32) once stage s of call e is done by this rank
  std::atomic<uint32_t> waiters;  // peers asleep on seq (futex): the writer wakes them
  int32_t pid;
  char pad0[64 - 3 * sizeof(uint32_t)];
  Meta meta[2];                   // the call's Meta, per buffer
};
static_assert(sizeof(Slot) == 128, "Slot is two cache lines");
static_assert(std::atomic<uint32_t>::is_always_lock_free && sizeof(std::atomic<uint32_t>) == 4,
              "seq must be a plain lock-free word to live in shared memory and serve as a futex");

// seq wraps around; peers are never more than a few stages apart, so a signed difference orders them
inline bool reached(uint32_t seq, uint32_t target) { return (int32_t)(seq - target) >= 0; }

// futex on a word of the shared segment (not FUTEX_PRIVATE: the waiters are other processes)
inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long ns) {
  timespec ts{0, ns};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
inline void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

struct alignas(128) Header {
  uint64_t magic;
  int32_t world;
  int32_t pad;
  int64_t capacity;
  std::atomic<int32_t> attached;  // ranks that mapped the segment
  std::atomic<int32_t> aborted;   // 0, or 1 + the rank that gave up on the group
};

size_t data_offset(int32_t world) {
  const size_t n = sizeof(Header) + sizeof(Slot) * (size_t)world;
  return (n + 4095) & ~(size_t)4095;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A process that exited (or is a zombie waiting to be reaped) is gone.
bool process_alive(int32_t pid) {
  if (pid <= 0) return true;  // not attached yet: the timeout covers it
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64], buf[256];
  std::snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return errno != ENOENT;
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');  // "pid (comm) S ..."
  return !(close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

}  // namespace

struct ShmGroup {
  std::string name;
  int32_t rank = 0, world = 0;
  int64_t capacity = 0;
  double timeout = 0;
  void* base = nullptr;
  size_t size = 0;
  Header* h = nullptr;
  Slot* slots = nullptr;
  char* data = nullptr;
  uint64_t calls = 0;     // calls made on this group (the e of the protocol)
  int spins = 0;          // kSpinsIdle or kSpinsBusy
  std::string broken;     // why the group cannot be used any more ("" while it can)

  char* buf(int32_t r, uint64_t e) const { return data + (size_t)(2 * r + (int)(e & 1)) * (size_t)capacity; }
};

namespace {

[[noreturn]] void fail_group(ShmGroup& g, const char* op, vt_status st, const std::string& why) {
  g.broken = why;
  int32_t none = 0;
  g.h->aborted.compare_exchange_strong(none, g.rank + 1, std::memory_order_acq_rel);
  vt::fail(st, "[%s] %s; the process group is unusable now (destroy_process_group() and init again)", op,
           why.c_str());
}

// Waits until rank r's seq reaches target: spins, yields, then sleeps on the futex of r's seq (r's
// store wakes it). The timeout counts from when spinning stopped being enough.
void wait_for(ShmGroup& g, const char* op, int32_t r, uint32_t target) {
  std::atomic<uint32_t>& seq = g.slots[r].seq;
  for (int i = 0; i < g.spins; ++i) {
    if (reached(seq.load(std::memory_order_acquire), target)) return;
    AR_PAUSE();
  }
  for (int i = 0; i < kYields; ++i) {
    if (reached(seq.load(std::memory_order_acquire), target)) return;
    sched_yield();
  }
  const double start = now_s();
  double next_check = start;
  for (;;) {
    g.slots[r].waiters.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t v = seq.load(std::memory_order_seq_cst);
    if (!reached(v, target)) futex_wait(&seq, v, kSleepNs);
    g.slots[r].waiters.fetch_sub(1, std::memory_order_seq_cst);
    if (reached(seq.load(std::memory_order_acquire), target)) return;
    const double t = now_s();
    if (t < next_check) continue;
    next_check = t + kLivenessEvery;
    const int32_t ab = g.h->aborted.load(std::memory_order_acquire);
    char why[256];
    if (ab > 0 && ab - 1 != g.rank) {
      std::snprintf(why, sizeof why, "rank %d gave up on the group (it timed out or failed; see its error) "
                    "while rank %d waited for rank %d at call %llu", ab - 1, g.rank, r, (unsigned long long)g.calls);
      fail_group(g, op, VT_ERR_RUNTIME, why);
    }
    if (!process_alive(g.slots[r].pid)) {
      std::snprintf(why, sizeof why, "rank %d (pid %d) exited while rank %d waited for it at call %llu", r,
                    g.slots[r].pid, g.rank, (unsigned long long)g.calls);
      fail_group(g, op, VT_ERR_RUNTIME, why);
    }
    if (t - start > g.timeout) {
      std::snprintf(why, sizeof why, "rank %d timed out after %.1f s waiting for rank %d (pid %d) at call %llu "
                    "(is it stuck, or calling other collectives than this one?)", g.rank, g.timeout, r,
                    g.slots[r].pid, (unsigned long long)g.calls);
      fail_group(g, op, VT_ERR_RUNTIME, why);
    }
  }
}

// Publishes stage s of the current call and waits for every peer to reach it.
void stage(ShmGroup& g, const char* op, int s) {
  const uint32_t target = (uint32_t)(2 * g.calls + (uint64_t)s);
  Slot& me = g.slots[g.rank];
  me.seq.store(target, std::memory_order_seq_cst);  // seq_cst: ordered before the waiters load
  if (me.waiters.load(std::memory_order_seq_cst) != 0) futex_wake(&me.seq);
  for (int32_t k = 1; k < g.world; ++k) wait_for(g, op, (g.rank + k) % g.world, target);
}

const char* kind_name(uint32_t k) {
  switch ((Kind)k) {
    case Kind::AllReduce: return "all_reduce";
    case Kind::Broadcast: return "broadcast";
    case Kind::AllGather: return "all_gather";
    case Kind::ReduceScatter: return "reduce_scatter";
    case Kind::Barrier: return "barrier";
  }
  return "?";
}

std::string meta_str(const Meta& m) {
  static const char* const reds[] = {"sum", "avg", "max", "min", "product"};
  const vt_dtype d{(uint8_t)(m.dtype >> 16), (uint8_t)(m.dtype & 0xffff), 1};
  char s[160];
  if (m.kind == (uint32_t)Kind::Barrier) return "barrier";
  int n = std::snprintf(s, sizeof s, "%s of %lld %s elements", kind_name(m.kind), (long long)m.count,
                        vt::dtype_name(d));
  if (m.kind == (uint32_t)Kind::Broadcast)
    std::snprintf(s + n, sizeof s - (size_t)n, " from src %lld", (long long)m.aux);
  else if (m.kind != (uint32_t)Kind::AllGather && m.aux >= 0 && m.aux < 5)
    std::snprintf(s + n, sizeof s - (size_t)n, " with op %s", reds[m.aux]);
  return s;
}

// Starts a piece of a call: the call number, this rank's Meta; after stage 0, checks the peers'.
struct Piece {
  ShmGroup& g;
  const char* op;
  Meta m;

  Piece(ShmGroup& g, const char* op, Kind kind, vt_dtype dt, int64_t count, int64_t aux) : g(g), op(op) {
    if (!g.broken.empty())
      vt::fail(VT_ERR_RUNTIME, "[%s] the process group is unusable after an earlier error (%s); "
               "destroy_process_group() and init again", op, g.broken.c_str());
    m = Meta{(uint32_t)kind, (uint32_t)dt.code << 16 | dt.bits, count, aux, 0};
  }
  char* begin() {  // the next call number and this rank's buffer for it
    ++g.calls;
    g.slots[g.rank].meta[g.calls & 1] = m;
    return g.buf(g.rank, g.calls);
  }
  void arrive() {  // stage 0 + the check that every rank makes the same call
    stage(g, op, 0);
    for (int32_t r = 0; r < g.world; ++r) {
      const Meta& o = g.slots[r].meta[g.calls & 1];
      if (o.kind != m.kind || o.dtype != m.dtype || o.count != m.count || o.aux != m.aux)
        vt::fail(VT_ERR_VALUE, "[%s] ranks disagree at call %llu: rank %d calls %s, rank %d calls %s", op,
                 (unsigned long long)g.calls, g.rank, meta_str(m).c_str(), r, meta_str(o).c_str());
    }
  }
};

// ---- reductions: out[i] = op over k of in[k][i], in the acc type, in rank order -------------------
template <class T, class A>
inline A combine(Red r, A a, A b) {
  switch (r) {
    case Red::Sum: case Red::Avg: return a + b;
    case Red::Product: return a * b;
    case Red::Max: return (a != a || a >= b) ? a : b;  // NaN wins, like torch.max
    case Red::Min: return (a != a || a <= b) ? a : b;
  }
  return a;
}

template <class T, Red R>
void reduce_block(T* out, char* const* in, int32_t nin, int64_t off, int64_t n, int32_t world) {
  using A = vt::acc_t<T>;
  constexpr int64_t B = 512;
  A acc[B];
  for (int64_t i0 = 0; i0 < n; i0 += B) {
    const int64_t m = n - i0 < B ? n - i0 : B;
    const T* x = reinterpret_cast<const T*>(in[0]) + off + i0;
    for (int64_t j = 0; j < m; ++j) acc[j] = static_cast<A>(x[j]);
    for (int32_t k = 1; k < nin; ++k) {
      const T* y = reinterpret_cast<const T*>(in[k]) + off + i0;
      for (int64_t j = 0; j < m; ++j) acc[j] = combine<T, A>(R, acc[j], static_cast<A>(y[j]));
    }
    if (R == Red::Avg) {
      const A w = static_cast<A>(world);
      for (int64_t j = 0; j < m; ++j) acc[j] = acc[j] / w;
    }
    T* o = out + i0;
    for (int64_t j = 0; j < m; ++j) o[j] = vt::convert<T>(acc[j]);
  }
}

// out[0, n) = op over the W buffers' elements [off, off + n)
void reduce(const char* op, vt_dtype dt, Red r, void* out, char* const* in, int32_t nin, int64_t off, int64_t n,
            int32_t world) {
  vt::dispatch(vt::kArithTypes, dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out);
    switch (r) {
      case Red::Sum: return reduce_block<T, Red::Sum>(o, in, nin, off, n, world);
      case Red::Avg: return reduce_block<T, Red::Avg>(o, in, nin, off, n, world);
      case Red::Max: return reduce_block<T, Red::Max>(o, in, nin, off, n, world);
      case Red::Min: return reduce_block<T, Red::Min>(o, in, nin, off, n, world);
      case Red::Product: return reduce_block<T, Red::Product>(o, in, nin, off, n, world);
    }
  });
}

ShmGroup& shm_of(const vt::Call& c, int64_t handle) {
  Group& g = group_of(c, handle);
  if (g.provider != Provider::Shm) c.fail(VT_ERR_VALUE, "group %lld is not a shm group", (long long)handle);
  return *static_cast<ShmGroup*>(g.impl);
}

// Elements of one piece: a whole buffer, a multiple of 64 elements (cache lines stay whole); at least
// 64, since shm_new_group asks for 512 bytes of buffer per rank.
int64_t piece_elems(const ShmGroup& g, int64_t esize, int64_t parts) {
  return (g.capacity / (esize * parts)) / 64 * 64;
}

}  // namespace

// ---- opening and closing -----------------------------------------------------------------------
ShmGroup* shm_open_group(const char* op, const char* name, int32_t rank, int32_t world, int64_t buffer_bytes,
                         double timeout_s) {
  auto g = std::make_unique<ShmGroup>();
  g->name = name;
  g->rank = rank;
  g->world = world;
  g->capacity = buffer_bytes;
  g->timeout = timeout_s;
  cpu_set_t cpus;
  const int ncpu = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  g->spins = world <= ncpu ? kSpinsIdle : kSpinsBusy;
  g->size = data_offset(world) + (size_t)world * 2 * (size_t)buffer_bytes;
  const double start = now_s();
  int fd = -1;
  if (rank == 0) {
    fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) vt::fail(VT_ERR_RUNTIME, "[%s] shm_open('%s') failed: %s", op, name, std::strerror(errno));
    // posix_fallocate reserves the pages now: a /dev/shm too small for the segment is this clear
    // error rather than a SIGBUS at some later first touch
    int e = ftruncate(fd, (off_t)g->size) != 0 ? errno : posix_fallocate(fd, 0, (off_t)g->size);
    if (e != 0) {
      close(fd);
      shm_unlink(name);
      vt::fail(VT_ERR_MEMORY, "[%s] cannot size the shared segment '%s' to %zu bytes: %s (is /dev/shm large "
               "enough? vibetensor.distributed takes a smaller buffer from VT_SHM_BUFFER_BYTES)", op, name, g->size, std::strerror(e));
    }
  } else {
    for (;;) {  // rank 0 makes it; wait until it exists with its full size
      fd = shm_open(name, O_RDWR, 0600);
      struct stat st;
      if (fd >= 0 && fstat(fd, &st) == 0 && (size_t)st.st_size >= g->size) break;
      if (fd >= 0) close(fd);
      fd = -1;
      if (now_s() - start > timeout_s)
        vt::fail(VT_ERR_RUNTIME, "[%s] rank %d timed out after %.1f s waiting for rank 0 to create the shared "
                 "segment '%s'", op, rank, timeout_s, name);
      usleep(1000);
    }
  }
  void* base = mmap(nullptr, g->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  close(fd);
  if (base == MAP_FAILED) {
    if (rank == 0) shm_unlink(name);
    vt::fail(VT_ERR_MEMORY, "[%s] mmap of the shared segment '%s' (%zu bytes) failed: %s", op, name, g->size,
             std::strerror(map_errno));
  }
  g->base = base;
  g->h = static_cast<Header*>(base);
  g->slots = reinterpret_cast<Slot*>(static_cast<char*>(base) + sizeof(Header));
  g->data = static_cast<char*>(base) + data_offset(world);
  Header* h = g->h;
  auto give_up = [&](const char* why) {
    if (rank == 0) shm_unlink(name);
    munmap(base, g->size);
    vt::fail(VT_ERR_RUNTIME, "[%s] rank %d: %s", op, rank, why);
  };
  if (rank == 0) {  // ftruncate zero-filled it: counters start at 0
    h->world = world;
    h->capacity = buffer_bytes;
    reinterpret_cast<std::atomic<uint64_t>*>(&h->magic)->store(kMagic, std::memory_order_release);
  } else {
    while (reinterpret_cast<std::atomic<uint64_t>*>(&h->magic)->load(std::memory_order_acquire) != kMagic) {
      if (now_s() - start > timeout_s) give_up("timed out waiting for rank 0 to initialise the shared segment");
      usleep(1000);
    }
    if (h->world != world || h->capacity != buffer_bytes) {
      char why[160];
      std::snprintf(why, sizeof why, "the shared segment was made for world_size %d and buffer_bytes %lld, this "
                    "rank has %d and %lld", h->world, (long long)h->capacity, world, (long long)buffer_bytes);
      give_up(why);
    }
  }
  g->slots[rank].pid = (int32_t)getpid();
  h->attached.fetch_add(1, std::memory_order_acq_rel);
  // everyone attached: rank 0 unlinks the name (the memory lives while mapped)
  while (h->attached.load(std::memory_order_acquire) < world) {
    if (now_s() - start > timeout_s) {
      char why[160];
      std::snprintf(why, sizeof why, "timed out after %.1f s: only %d of %d ranks attached to the shared segment",
                    timeout_s, h->attached.load(), world);
      give_up(why);
    }
    usleep(200);
  }
  if (rank == 0) shm_unlink(name);
  return g.release();
}

void shm_close_group(ShmGroup* g) {
  if (!g) return;
  munmap(g->base, g->size);
  delete g;
}

// ---- computes ------------------------------------------------------------------------------------
VT_COMPUTE(all_reduce_shm, "allreduce::all_reduce_") {
  vt_tensor* self = c.out(0);
  ShmGroup& g = shm_of(c, c.arg(1, "group").int_());
  Red r;
  parse_red(c.arg(2, "op").str(), &r);
  Piece p(g, c.op, Kind::AllReduce, self->dtype, self->numel, (int64_t)r);
  const int64_t es = vt::element_size(self->dtype), n = self->numel;
  const int64_t per = piece_elems(g, es, 1);
  char* in[1024];
  char* out = static_cast<char*>(self->data);
  int64_t done = 0;
  do {
    const int64_t m = n - done < per ? n - done : per;
    char* mine = p.begin();
    std::memcpy(mine, out + done * es, (size_t)(m * es));
    p.arrive();
    for (int32_t k = 0; k < g.world; ++k) in[k] = g.buf(k, g.calls);
    if (m * es <= kOneShotMaxBytes || g.world <= 2) {
      reduce(c.op, self->dtype, r, out + done * es, in, g.world, 0, m, g.world);
    } else {  // two-shot: slice `rank` reduced into this rank's buffer, then every slice gathered
      const int64_t slice = ((m + g.world - 1) / g.world + 15) / 16 * 16;
      const int64_t lo = slice * g.rank < m ? slice * g.rank : m;
      const int64_t hi = lo + slice < m ? lo + slice : m;
      if (hi > lo) reduce(c.op, self->dtype, r, mine + lo * es, in, g.world, lo, hi - lo, g.world);
      stage(g, c.op, 1);
      for (int32_t k = 0; k < g.world; ++k) {
        const int64_t a = slice * k < m ? slice * k : m, b = a + slice < m ? a + slice : m;
        if (b > a) std::memcpy(out + (done + a) * es, in[k] + a * es, (size_t)((b - a) * es));
      }
    }
    done += m;
  } while (done < n);
}

VT_COMPUTE(broadcast_shm, "allreduce::broadcast_") {
  vt_tensor* self = c.out(0);
  ShmGroup& g = shm_of(c, c.arg(1, "group").int_());
  const int32_t src = (int32_t)c.arg(2, "src").int_();
  Piece p(g, c.op, Kind::Broadcast, self->dtype, self->numel, src);
  const int64_t es = vt::element_size(self->dtype), n = self->numel;
  const int64_t per = piece_elems(g, es, 1);
  char* data = static_cast<char*>(self->data);
  int64_t done = 0;
  do {
    const int64_t m = n - done < per ? n - done : per;
    char* mine = p.begin();
    if (g.rank == src) std::memcpy(mine, data + done * es, (size_t)(m * es));
    p.arrive();
    if (g.rank != src) std::memcpy(data + done * es, g.buf(src, g.calls), (size_t)(m * es));
    done += m;
  } while (done < n);
}

VT_COMPUTE(all_gather_shm, "allreduce::all_gather_") {
  vt_tensor* out = c.out(0);
  const vt_tensor* input = c.arg(1, "input").tensor();
  ShmGroup& g = shm_of(c, c.arg(2, "group").int_());
  Piece p(g, c.op, Kind::AllGather, input->dtype, input->numel, 0);
  const int64_t es = vt::element_size(input->dtype), n = input->numel;
  const int64_t per = piece_elems(g, es, 1);
  const char* src = static_cast<const char*>(input->data);
  char* dst = static_cast<char*>(out->data);
  int64_t done = 0;
  do {
    const int64_t m = n - done < per ? n - done : per;
    char* mine = p.begin();
    std::memcpy(mine, src + done * es, (size_t)(m * es));
    p.arrive();
    for (int32_t k = 0; k < g.world; ++k)
      std::memcpy(dst + (k * n + done) * es, g.buf(k, g.calls), (size_t)(m * es));
    done += m;
  } while (done < n);
}

VT_COMPUTE(reduce_scatter_shm, "allreduce::reduce_scatter_") {
  vt_tensor* out = c.out(0);
  const vt_tensor* input = c.arg(1, "input").tensor();
  ShmGroup& g = shm_of(c, c.arg(2, "group").int_());
  Red r;
  parse_red(c.arg(3, "op").str(), &r);
  Piece p(g, c.op, Kind::ReduceScatter, out->dtype, out->numel, (int64_t)r);
  const int64_t es = vt::element_size(out->dtype), n = out->numel;
  const int64_t per = piece_elems(g, es, g.world);  // W blocks of `per` in a buffer
  const char* src = static_cast<const char*>(input->data);
  char* dst = static_cast<char*>(out->data);
  char* in[1024];
  int64_t done = 0;
  do {
    const int64_t m = n - done < per ? n - done : per;
    char* mine = p.begin();
    for (int32_t k = 0; k < g.world; ++k)  // block k of the buffer: input[k * n + done, + m)
      std::memcpy(mine + k * m * es, src + (k * n + done) * es, (size_t)(m * es));
    p.arrive();
    for (int32_t k = 0; k < g.world; ++k) in[k] = g.buf(k, g.calls);
    reduce(c.op, out->dtype, r, dst + done * es, in, g.world, g.rank * m, m, g.world);
    done += m;
  } while (done < n);
}

VT_COMPUTE(barrier_shm, "allreduce::barrier") {
  ShmGroup& g = shm_of(c, c.arg(0, "group").int_());
  Piece p(g, c.op, Kind::Barrier, vt_dtype{0, 0, 1}, 0, 0);
  p.begin();
  p.arrive();
}

}  // namespace ar
