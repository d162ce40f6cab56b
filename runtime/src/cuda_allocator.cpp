// cuda_allocator.cpp — the stream-ordered caching allocator for CUDA memory (PyTorch's design,
// our code; notes/allocator-graphs-allreduce.md §1).
//
// - Sizes round up to 512 B. Requests <= 1 MiB come from the small pool (2 MiB segments); larger
//   ones from the large pool (a 20 MiB segment for 1-10 MiB, else the size rounded up to 2 MiB).
// - Free blocks are kept in a set ordered by (stream, size, address): best fit is one lower_bound,
//   and a block is only handed out again on the stream it was allocated on, where stream order
//   makes reuse safe without any synchronisation.
// - A found block is split when the rest is worth keeping (>= 512 B small, > 1 MiB large); freed
//   blocks merge with free neighbours of the same segment.
// - record_stream adds streams that use a block. Freeing such a block records one pooled event
//   per stream; the block returns to its pool once those complete (polled with cudaEventQuery at
//   later mallocs). While a graph is captured on the device, cudaEventQuery is illegal, so those
//   frees wait in a list until the capture ends.
// - During capture, allocations on the capturing streams come from the graph's private pool, which
//   keeps its memory (addresses baked into the graph) until every graph using it is reset.
// - Out of memory: wait for pending events, return every whole cached segment, retry once; then
//   MemoryError naming the request and the allocator's state. A per-process fraction is a hard cap.
// - The hot path (reuse) takes the device's mutex, makes no CUDA call and no heap allocation: the
//   free-block sets' tree nodes, the address map and the Block records are recycled
//   (recycling.hpp).
//
// VT_CUDA_ALLOCATOR=cudaMallocAsync selects CUDA's own stream-ordered pools instead (for comparison).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_internal.hpp"
#include "recycling.hpp"

namespace vt {
namespace cu {

namespace {

constexpr size_t kMinBlock = 512;
constexpr size_t kSmallSize = size_t{1} << 20;
constexpr size_t kSmallBuffer = size_t{2} << 20;
constexpr size_t kLargeBuffer = size_t{20} << 20;
constexpr size_t kMinLargeAlloc = size_t{10} << 20;
constexpr size_t kRoundLarge = size_t{2} << 20;

enum { kAll = 0, kSmallPool = 1, kLargePool = 2 };

void stat_add(vtrt_cuda_stat& s, int64_t n) {
  s.current += n;
  if (n > 0) {
    s.allocated += n;
    if (s.current > s.peak) s.peak = s.current;
  } else {
    s.freed -= n;
  }
}

struct BlockPool;

struct Block {
  cudaStream_t stream;
  size_t size;
  size_t requested = 0;
  char* ptr;
  BlockPool* pool;
  Block* prev = nullptr;  // neighbours within the same segment
  Block* next = nullptr;
  bool allocated = false;
  int event_count = 0;                    // cross-stream uses still running
  std::vector<cudaStream_t> stream_uses;  // streams other than `stream` that read or write it
  Block(cudaStream_t s, size_t n, char* p, BlockPool* pl) : stream(s), size(n), ptr(p), pool(pl) {}
  bool is_split() const { return prev || next; }
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream)
      return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};

struct PrivatePool;

struct BlockPool {
  std::set<Block*, BlockLess, CachedAlloc<Block*>> blocks;  // free blocks only
  bool small;
  PrivatePool* owner;  // null: the device's own pools
  BlockPool(bool s, PrivatePool* o, NodeCache* nodes)
      : blocks(BlockLess{}, CachedAlloc<Block*>(nodes)), small(s), owner(o) {}
};

// A graph's memory: blocks allocated while it was captured, kept until no graph uses the pool.
struct PrivatePool {
  uint64_t id;
  int use_count = 0;  // graphs captured into it and not reset
  int segments = 0;   // live cudaMalloc'ed segments
  BlockPool small, large;
  PrivatePool(uint64_t i, NodeCache* nodes) : id(i), small(true, this, nodes), large(false, this, nodes) {}
};

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  ~DeviceAllocator() {
    for (Block* b : spare_blocks_) delete b;
  }

  void* malloc(size_t nbytes, cudaStream_t stream) {
    std::lock_guard<std::mutex> g(mu_);
    if (captures_.empty()) process_events();
    const size_t size = round_size(nbytes);
    BlockPool* pool = pool_for(size, stream);
    Block* b = take_free(pool, stream, size);
    if (!b) {
      b = new_segment(pool, stream, size, nbytes);
      if (!b) return nullptr;
    } else if (b->is_split()) {  // an inactive split piece becomes active
      stat_pools(stats_.inactive_split, pool, -1);
      stat_pools(stats_.inactive_split_bytes, pool, -static_cast<int64_t>(b->size));
    }
    if (should_split(b, size)) {
      Block* rest = make_block(stream, b->size - size, b->ptr + size, pool);
      rest->prev = b;
      rest->next = b->next;
      if (b->next) b->next->prev = rest;
      b->next = rest;
      b->size = size;
      pool->blocks.insert(rest);
      stat_pools(stats_.inactive_split, pool, 1);
      stat_pools(stats_.inactive_split_bytes, pool, static_cast<int64_t>(rest->size));
    }
    b->allocated = true;
    b->requested = nbytes;
    active_.insert(b->ptr, b);
    stat_pools(stats_.allocation, pool, 1);
    stat_pools(stats_.allocated_bytes, pool, static_cast<int64_t>(b->size));
    stat_pools(stats_.requested_bytes, pool, static_cast<int64_t>(nbytes));
    stat_pools(stats_.active, pool, 1);
    stat_pools(stats_.active_bytes, pool, static_cast<int64_t>(b->size));
    return b->ptr;
  }

  // Frees onto the block's own stream, whatever thread or current stream the caller has.
  bool free(void* ptr) {
    std::lock_guard<std::mutex> g(mu_);
    Block** found = active_.find(ptr);
    if (!found) return false;
    Block* b = *found;
    active_.erase(ptr);
    b->allocated = false;
    stat_pools(stats_.allocation, b->pool, -1);
    stat_pools(stats_.allocated_bytes, b->pool, -static_cast<int64_t>(b->size));
    stat_pools(stats_.requested_bytes, b->pool, -static_cast<int64_t>(b->requested));
    if (!b->stream_uses.empty()) {
      if (!captures_.empty()) {
        deferred_.push_back(b);  // no events while a capture is under way
      } else {
        insert_events(b);
      }
    } else {
      free_block(b);
    }
    return true;
  }

  bool owns(void* ptr) {
    std::lock_guard<std::mutex> g(mu_);
    return active_.find(ptr) != nullptr;
  }

  void record_stream(void* ptr, cudaStream_t s) {
    std::lock_guard<std::mutex> g(mu_);
    Block** found = active_.find(ptr);
    if (!found) return;  // not ours (a borrowed DLPack buffer): nothing to protect
    Block* b = *found;
    if (s == b->stream) return;  // stream order already protects it
    if (std::find(b->stream_uses.begin(), b->stream_uses.end(), s) == b->stream_uses.end())
      b->stream_uses.push_back(s);
  }

  vt_status empty_cache() {
    std::lock_guard<std::mutex> g(mu_);
    if (!captures_.empty())
      return set_error(VT_ERR_RUNTIME, "empty_cache(): cuda:%d is capturing a CUDA graph", device_);
    release_cached();
    return VT_OK;
  }

  void set_limit(double fraction, int64_t total) {
    std::lock_guard<std::mutex> g(mu_);
    fraction_ = fraction;
    limit_ = static_cast<size_t>(fraction * static_cast<double>(total));
  }

  void get_stats(vtrt_cuda_memory_stats* out) {
    std::lock_guard<std::mutex> g(mu_);
    *out = stats_;
    out->limit_bytes = static_cast<int64_t>(limit_);
  }

  void reset_peak() {
    std::lock_guard<std::mutex> g(mu_);
    for (vtrt_cuda_stat* s : all_stats())
      for (int i = 0; i < 3; ++i) s[i].peak = s[i].current;
  }

  void reset_accumulated() {
    std::lock_guard<std::mutex> g(mu_);
    for (vtrt_cuda_stat* s : all_stats())
      for (int i = 0; i < 3; ++i) s[i].allocated = s[i].freed = 0;
    stats_.num_alloc_retries = stats_.num_ooms = stats_.num_sync_all_streams = 0;
    stats_.num_device_alloc = stats_.num_device_free = 0;
  }

  int64_t snapshot(vtrt_cuda_block_info* out, int64_t cap) {
    std::lock_guard<std::mutex> g(mu_);
    // segment heads: blocks without a predecessor, found through every block we know about
    std::vector<Block*> heads;
    auto add_heads = [&](BlockPool& p) {
      for (Block* b : p.blocks)
        if (!b->prev) heads.push_back(b);
    };
    add_heads(small_);
    add_heads(large_);
    for (auto& kv : pools_) {
      add_heads(kv.second->small);
      add_heads(kv.second->large);
    }
    active_.for_each([&](const void*, Block* b) {
      if (!b->prev) heads.push_back(b);
    });
    for (auto& kv : events_)
      for (auto& e : kv.second)
        if (!e.second->prev) heads.push_back(e.second);
    for (Block* b : deferred_)
      if (!b->prev) heads.push_back(b);
    std::sort(heads.begin(), heads.end(), [](Block* a, Block* b) { return a->ptr < b->ptr; });
    heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
    int64_t n = 0;
    for (Block* h : heads) {
      size_t seg = 0;
      for (Block* b = h; b; b = b->next) seg += b->size;
      for (Block* b = h; b; b = b->next, ++n) {
        if (n >= cap) continue;
        vtrt_cuda_block_info& i = out[n];
        i.segment_address = reinterpret_cast<uint64_t>(h->ptr);
        i.segment_size = static_cast<int64_t>(seg);
        i.address = reinterpret_cast<uint64_t>(b->ptr);
        i.size = static_cast<int64_t>(b->size);
        i.requested_size = b->allocated ? static_cast<int64_t>(b->requested) : 0;
        i.state = b->allocated ? 1 : (b->event_count > 0 || !b->stream_uses.empty() ? 2 : 0);
        i.small_pool = b->pool->small;
        i.stream = reinterpret_cast<uint64_t>(b->stream);
        i.private_pool = b->pool->owner ? b->pool->owner->id : 0;
      }
    }
    return n;
  }

  // ---- graph-private pools (cuda_graph.cpp) ----
  void begin_pool(uint64_t id, unsigned long long capture_id) {
    std::lock_guard<std::mutex> g(mu_);
    auto& p = pools_[id];
    if (!p) p.reset(new PrivatePool(id, &nodes_));
    p->use_count++;
    captures_.emplace_back(capture_id, p.get());
  }

  void end_pool(unsigned long long capture_id) {
    std::lock_guard<std::mutex> g(mu_);
    captures_.erase(std::remove_if(captures_.begin(), captures_.end(),
                                   [&](const auto& c) { return c.first == capture_id; }),
                    captures_.end());
  }

  void release_pool(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = pools_.find(id);
    if (it == pools_.end()) return;
    PrivatePool* p = it->second.get();
    if (--p->use_count > 0 || !captures_.empty()) return;
    release_free_segments(p->small);  // graph reset is not a hot path: give the memory back now
    release_free_segments(p->large);
    if (p->segments == 0) pools_.erase(it);
  }

 private:
  static size_t round_size(size_t n) {
    return n < kMinBlock ? kMinBlock : (n + kMinBlock - 1) / kMinBlock * kMinBlock;
  }
  static size_t segment_size(size_t n) {
    if (n <= kSmallSize) return kSmallBuffer;
    if (n < kMinLargeAlloc) return kLargeBuffer;
    return (n + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
  }
  static bool should_split(const Block* b, size_t n) {
    size_t rest = b->size - n;
    return b->pool->small ? rest >= kMinBlock : rest > kSmallSize;
  }

  std::vector<vtrt_cuda_stat*> all_stats() {
    return {stats_.allocation, stats_.segment, stats_.active, stats_.inactive_split,
            stats_.allocated_bytes, stats_.reserved_bytes, stats_.active_bytes,
            stats_.inactive_split_bytes, stats_.requested_bytes};
  }
  static void stat_pools(vtrt_cuda_stat* s, const BlockPool* p, int64_t n) {
    stat_add(s[kAll], n);
    stat_add(s[p->small ? kSmallPool : kLargePool], n);
  }

  BlockPool* pool_for(size_t size, cudaStream_t stream) {
    if (!captures_.empty()) {  // only while some graph is captured on this device
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
      unsigned long long id = 0;
      if (cudaStreamGetCaptureInfo(stream, &st, &id) == cudaSuccess &&
          st == cudaStreamCaptureStatusActive) {
        for (auto& c : captures_)
          if (c.first == id) return size <= kSmallSize ? &c.second->small : &c.second->large;
      }
      cudaGetLastError();
    }
    return size <= kSmallSize ? &small_ : &large_;
  }

  static Block* take_free(BlockPool* pool, cudaStream_t stream, size_t size) {
    Block key(stream, size, nullptr, pool);
    auto it = pool->blocks.lower_bound(&key);
    if (it == pool->blocks.end() || (*it)->stream != stream) return nullptr;
    Block* b = *it;
    pool->blocks.erase(it);
    return b;
  }

  cudaError_t device_malloc(size_t n, void** p) {
    if (limit_ && static_cast<size_t>(stats_.reserved_bytes[kAll].current) + n > limit_)
      return cudaErrorMemoryAllocation;  // the cap is hard: never ask CUDA beyond it
    DeviceGuard dg(device_);
    cudaError_t e;
    if (!captures_.empty()) {
      RelaxedCaptureGuard rg;  // a private-pool segment may be made mid-capture
      e = cudaMalloc(p, n);
    } else {
      e = cudaMalloc(p, n);
    }
    if (e != cudaSuccess) cudaGetLastError();
    else stats_.num_device_alloc++;
    return e;
  }

  Block* new_segment(BlockPool* pool, cudaStream_t stream, size_t size, size_t requested) {
    const size_t seg = segment_size(size);
    void* p = nullptr;
    cudaError_t e = device_malloc(seg, &p);
    if (e == cudaErrorMemoryAllocation && captures_.empty()) {
      stats_.num_alloc_retries++;
      release_cached();
      e = device_malloc(seg, &p);
    }
    if (e != cudaSuccess) {
      if (e == cudaErrorMemoryAllocation) {
        stats_.num_ooms++;
        oom_error(requested, seg);
      } else {
        fail(e, "cudaMalloc", device_);
      }
      return nullptr;
    }
    if (pool->owner) pool->owner->segments++;
    stat_pools(stats_.segment, pool, 1);
    stat_pools(stats_.reserved_bytes, pool, static_cast<int64_t>(seg));
    return make_block(stream, seg, static_cast<char*>(p), pool);
  }

  void oom_error(size_t requested, size_t seg) {
    int64_t free_b = -1, total_b = -1;
    if (captures_.empty()) {
      DeviceGuard dg(device_);
      size_t f = 0, t = 0;
      if (cudaMemGetInfo(&f, &t) == cudaSuccess) {
        free_b = static_cast<int64_t>(f);
        total_b = static_cast<int64_t>(t);
      }
      cudaGetLastError();
    }
    const int64_t alloc = stats_.allocated_bytes[kAll].current;
    const int64_t res = stats_.reserved_bytes[kAll].current;
    std::string dev = total_b >= 0 ? "cuda:" + std::to_string(device_) + " has " +
                                         fmt_bytes(total_b) + " in total, " + fmt_bytes(free_b) +
                                         " free"
                                   : "cuda:" + std::to_string(device_) + " is capturing a graph";
    std::string cap = limit_ ? "; the per-process cap (set_per_process_memory_fraction(" +
                                   std::to_string(fraction_) + ")) is " +
                                   fmt_bytes(static_cast<int64_t>(limit_))
                             : std::string();
    set_error(VT_ERR_MEMORY,
              "CUDA out of memory on cuda:%d: tried to allocate %s (%zu bytes, in a %s segment). "
              "%s; vibetensor holds %s allocated and %s reserved (%s cached, freed and retried)%s. "
              "Free tensors you no longer need, or lower the batch size.",
              device_, fmt_bytes(static_cast<int64_t>(requested)).c_str(), requested,
              fmt_bytes(static_cast<int64_t>(seg)).c_str(), dev.c_str(), fmt_bytes(alloc).c_str(),
              fmt_bytes(res).c_str(), fmt_bytes(res - alloc).c_str(), cap.c_str());
  }

  void free_block(Block* b) {
    BlockPool* pool = b->pool;
    const int64_t size = static_cast<int64_t>(b->size);
    for (Block* n : {b->prev, b->next}) {
      if (!n || n->allocated || n->event_count > 0 || !n->stream_uses.empty()) continue;
      pool->blocks.erase(n);
      stat_pools(stats_.inactive_split, pool, -1);
      stat_pools(stats_.inactive_split_bytes, pool, -static_cast<int64_t>(n->size));
      if (n == b->prev) {
        b->ptr = n->ptr;
        b->prev = n->prev;
        if (b->prev) b->prev->next = b;
      } else {
        b->next = n->next;
        if (b->next) b->next->prev = b;
      }
      b->size += n->size;
      drop_block(n);
    }
    if (b->is_split()) {
      stat_pools(stats_.inactive_split, pool, 1);
      stat_pools(stats_.inactive_split_bytes, pool, static_cast<int64_t>(b->size));
    }
    pool->blocks.insert(b);
    stat_pools(stats_.active, pool, -1);
    stat_pools(stats_.active_bytes, pool, -size);
  }

  void insert_events(Block* b) {
    DeviceGuard dg(device_);
    for (cudaStream_t s : b->stream_uses) {
      cudaEvent_t e = cu::take_event(event_pool_);
      if (!e || cudaEventRecord(e, s) != cudaSuccess) {
        cudaGetLastError();
        if (e) event_pool_.push_back(e);
        continue;
      }
      b->event_count++;
      events_[s].emplace_back(e, b);
    }
    b->stream_uses.clear();
    if (b->event_count == 0) free_block(b);
  }

  // Returns blocks whose cross-stream uses have completed to their pools. Never while capturing.
  void process_events() {
    if (!deferred_.empty()) {
      std::vector<Block*> d;
      d.swap(deferred_);
      for (Block* b : d) insert_events(b);
    }
    for (auto it = events_.begin(); it != events_.end();) {
      auto& q = it->second;
      while (!q.empty()) {
        cudaError_t e = cudaEventQuery(q.front().first);
        if (e == cudaErrorNotReady) {
          cudaGetLastError();
          break;
        }
        if (e != cudaSuccess) cudaGetLastError();
        event_done(q.front());
        q.pop_front();
      }
      it = q.empty() ? events_.erase(it) : std::next(it);
    }
  }

  void event_done(std::pair<cudaEvent_t, Block*>& ev) {
    event_pool_.push_back(ev.first);
    if (--ev.second->event_count == 0) free_block(ev.second);
  }

  void sync_all_events() {
    if (events_.empty() && deferred_.empty()) return;
    stats_.num_sync_all_streams++;
    std::vector<Block*> d;
    d.swap(deferred_);
    for (Block* b : d) insert_events(b);
    for (auto& kv : events_)
      for (auto& ev : kv.second) {
        cudaEventSynchronize(ev.first);
        cudaGetLastError();
        event_done(ev);
      }
    events_.clear();
  }

  void release_free_segments(BlockPool& pool) {
    DeviceGuard dg(device_);
    for (auto it = pool.blocks.begin(); it != pool.blocks.end();) {
      Block* b = *it;
      if (b->is_split()) {
        ++it;
        continue;
      }
      it = pool.blocks.erase(it);
      cudaFree(b->ptr);
      cudaGetLastError();
      stats_.num_device_free++;
      stat_pools(stats_.segment, &pool, -1);
      stat_pools(stats_.reserved_bytes, &pool, -static_cast<int64_t>(b->size));
      if (pool.owner) pool.owner->segments--;
      drop_block(b);
    }
  }

  // Every whole free segment back to CUDA: the device pools and the pools no graph uses anymore.
  void release_cached() {
    sync_all_events();
    release_free_segments(small_);
    release_free_segments(large_);
    for (auto it = pools_.begin(); it != pools_.end();) {
      PrivatePool* p = it->second.get();
      if (p->use_count == 0) {
        release_free_segments(p->small);
        release_free_segments(p->large);
      }
      it = p->use_count == 0 && p->segments == 0 ? pools_.erase(it) : std::next(it);
    }
  }

  Block* make_block(cudaStream_t stream, size_t size, char* ptr, BlockPool* pool) {
    if (spare_blocks_.empty()) return new Block(stream, size, ptr, pool);
    Block* b = spare_blocks_.back();
    spare_blocks_.pop_back();
    *b = Block(stream, size, ptr, pool);
    return b;
  }
  void drop_block(Block* b) {
    if (spare_blocks_.size() < kKeepBlocks) spare_blocks_.push_back(b);
    else delete b;
  }
  static constexpr size_t kKeepBlocks = 1024;

  const int device_;
  std::mutex mu_;
  NodeCache nodes_;                    // before the pools: their sets give nodes back to it
  std::vector<Block*> spare_blocks_;   // Block records for reuse (split rests, merged neighbours)
  BlockPool small_{true, nullptr, &nodes_}, large_{false, nullptr, &nodes_};
  PtrMap<Block*> active_;              // allocated blocks by address
  std::unordered_map<cudaStream_t, std::deque<std::pair<cudaEvent_t, Block*>>> events_;
  std::vector<cudaEvent_t> event_pool_;  // creating events concurrently is slow: reuse them
  std::vector<Block*> deferred_;         // freed during a capture, cross-stream uses pending
  std::map<uint64_t, std::unique_ptr<PrivatePool>> pools_;
  std::vector<std::pair<unsigned long long, PrivatePool*>> captures_;  // capture id -> its pool
  vtrt_cuda_memory_stats stats_{};
  size_t limit_ = 0;
  double fraction_ = 0;
};

// ---- the cudaMallocAsync backend ------------------------------------------------------------------
// CUDA's stream-ordered pools; we keep the pointer -> (size, stream, uses) map so frees go to the
// allocating stream (after the streams recorded by record_stream) and stats exist.
class AsyncAllocator {
 public:
  // Made inside cuda_available()'s one-time init: no DeviceGuard here (it would re-enter it).
  explicit AsyncAllocator(int device) : device_(device) {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;  // cache everything, as the native allocator does
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    cudaGetLastError();
  }

  void* malloc(size_t n, cudaStream_t s) {
    if (n == 0) n = 1;
    std::lock_guard<std::mutex> g(mu_);
    if (limit_ && static_cast<size_t>(stats_.allocated_bytes[kAll].current) + n > limit_) {
      stats_.num_ooms++;
      set_error(VT_ERR_MEMORY, "CUDA out of memory on cuda:%d: tried to allocate %s; %s allocated, "
                "the per-process cap is %s (cudaMallocAsync backend)", device_,
                fmt_bytes(static_cast<int64_t>(n)).c_str(),
                fmt_bytes(stats_.allocated_bytes[kAll].current).c_str(),
                fmt_bytes(static_cast<int64_t>(limit_)).c_str());
      return nullptr;
    }
    DeviceGuard dg(device_);
    void* p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, n, s);
    if (e != cudaSuccess) {
      if (e == cudaErrorMemoryAllocation) stats_.num_ooms++;
      cudaGetLastError();
      set_error(VT_ERR_MEMORY, "CUDA out of memory on cuda:%d: cudaMallocAsync of %s failed: %s",
                device_, fmt_bytes(static_cast<int64_t>(n)).c_str(), cudaGetErrorString(e));
      return nullptr;
    }
    live_[p] = Entry{n, s, {}};
    stat_add(stats_.allocation[kAll], 1);
    stat_add(stats_.allocated_bytes[kAll], static_cast<int64_t>(n));
    stat_add(stats_.requested_bytes[kAll], static_cast<int64_t>(n));
    return p;
  }

  bool free(void* p) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    Entry e = std::move(it->second);
    live_.erase(it);
    stat_add(stats_.allocation[kAll], -1);
    stat_add(stats_.allocated_bytes[kAll], -static_cast<int64_t>(e.size));
    stat_add(stats_.requested_bytes[kAll], -static_cast<int64_t>(e.size));
    DeviceGuard dg(device_);
    for (cudaStream_t u : e.uses) {  // the free waits for the other streams' work
      cudaEvent_t ev;
      if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess) {
        cudaEventRecord(ev, u);
        cudaStreamWaitEvent(e.stream, ev, 0);
        cudaEventDestroy(ev);
      }
    }
    cudaFreeAsync(p, e.stream);
    cudaGetLastError();
    return true;
  }

  void record_stream(void* p, cudaStream_t s) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = live_.find(p);
    if (it == live_.end() || it->second.stream == s) return;
    auto& u = it->second.uses;
    if (std::find(u.begin(), u.end(), s) == u.end()) u.push_back(s);
  }

  void get_stats(vtrt_cuda_memory_stats* out) {
    std::lock_guard<std::mutex> g(mu_);
    *out = stats_;
    cudaMemPool_t pool;
    uint64_t cur = 0, high = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) {
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &cur);
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &high);
    }
    cudaGetLastError();
    out->reserved_bytes[kAll].current = static_cast<int64_t>(cur);
    out->reserved_bytes[kAll].peak = static_cast<int64_t>(high);
    out->limit_bytes = static_cast<int64_t>(limit_);
  }

  void empty_cache() {
    DeviceGuard dg(device_);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) {
      cudaDeviceSynchronize();
      cudaMemPoolTrimTo(pool, 0);
    }
    cudaGetLastError();
  }

  void set_limit(double fraction, int64_t total) {
    std::lock_guard<std::mutex> g(mu_);
    limit_ = static_cast<size_t>(fraction * static_cast<double>(total));
  }

  void reset_peak() {
    std::lock_guard<std::mutex> g(mu_);
    stats_.allocated_bytes[kAll].peak = stats_.allocated_bytes[kAll].current;
    stats_.allocation[kAll].peak = stats_.allocation[kAll].current;
  }

 private:
  struct Entry {
    size_t size;
    cudaStream_t stream;
    std::vector<cudaStream_t> uses;
  };
  const int device_;
  std::mutex mu_;
  std::unordered_map<void*, Entry> live_;
  vtrt_cuda_memory_stats stats_{};
  size_t limit_ = 0;
};

bool g_async = false;
DeviceAllocator* g_native[kMaxDevices];
AsyncAllocator* g_asyncs[kMaxDevices];

bool valid(int index) { return index >= 0 && index < device_count(); }

void* alloc_fn(void*, size_t nbytes, int32_t index, void* stream) {
  if (!valid(index)) {
    set_error(VT_ERR_VALUE, "cuda:%d: no such device (this machine has %d)", index, device_count());
    return nullptr;
  }
  auto s = static_cast<cudaStream_t>(stream);
  return g_async ? g_asyncs[index]->malloc(nbytes, s) : g_native[index]->malloc(nbytes, s);
}

void free_fn(void*, void* ptr, size_t, int32_t index, void*) {
  if (!valid(index) || !ptr) return;
  if (g_async) g_asyncs[index]->free(ptr);
  else g_native[index]->free(ptr);
}

}  // namespace

void begin_allocate_to_pool(int device, uint64_t pool, unsigned long long capture_id) {
  g_native[device]->begin_pool(pool, capture_id);
}
void end_allocate_to_pool(int device, unsigned long long capture_id) {
  g_native[device]->end_pool(capture_id);
}
void release_pool(int device, uint64_t pool) { g_native[device]->release_pool(pool); }
bool allocator_is_async() { return g_async; }

}  // namespace cu

// Called once, from cuda_available(), when a GPU is present.
void install_cuda_allocator() {
  const char* env = std::getenv("VT_CUDA_ALLOCATOR");
  if (env && std::strcmp(env, "cudaMallocAsync") == 0) {
    cu::g_async = true;
  } else if (env && *env && std::strcmp(env, "native") != 0) {
    std::fprintf(stderr, "vibetensor: VT_CUDA_ALLOCATOR=%s is not 'native' or 'cudaMallocAsync'; "
                         "using native\n", env);
  }
  int n = 0;
  cudaGetDeviceCount(&n);
  n = std::min(n, cu::kMaxDevices);
  for (int i = 0; i < n; ++i) {
    if (cu::g_async) cu::g_asyncs[i] = new cu::AsyncAllocator(i);  // leaked on purpose: tensors
    else cu::g_native[i] = new cu::DeviceAllocator(i);              // may die after exit hooks
  }
  vtrt_allocator a{cu::alloc_fn, cu::free_fn, nullptr};
  vtrt_set_allocator(VT_CUDA, &a);
}

vt_status cuda_record_stream(vt_tensor* t, void* stream) {
  Storage* s = impl(t)->storage;
  if (!s->data) return VT_OK;
  if (t->device.type == VT_CPU) {
    if (cuda_available())
      cu::host_record_stream(s->data, static_cast<cudaStream_t>(stream), cu::current_device());
    return VT_OK;
  }
  if (t->device.type != VT_CUDA) return VT_OK;
  if (!cu::check_device(t->device.index, "record_stream")) return vtrt_last_status();
  if (s->deleter) return VT_OK;  // memory we did not allocate (DLPack): its owner's business
  auto st = static_cast<cudaStream_t>(stream);
  if (cu::g_async) cu::g_asyncs[t->device.index]->record_stream(s->data, st);
  else cu::g_native[t->device.index]->record_stream(s->data, st);
  return VT_OK;
}

}  // namespace vt

using namespace vt;

extern "C" {

vt_status vtrt_cuda_memory_stats_get(int32_t device, vtrt_cuda_memory_stats* out) {
  if (!cu::check_device(device, "memory_stats")) return vtrt_last_status();
  if (cu::g_async) cu::g_asyncs[device]->get_stats(out);
  else cu::g_native[device]->get_stats(out);
  return VT_OK;
}

vt_status vtrt_cuda_reset_peak_memory_stats(int32_t device) {
  if (!cu::check_device(device, "reset_peak_memory_stats")) return vtrt_last_status();
  if (cu::g_async) cu::g_asyncs[device]->reset_peak();
  else cu::g_native[device]->reset_peak();
  return VT_OK;
}

vt_status vtrt_cuda_reset_accumulated_memory_stats(int32_t device) {
  if (!cu::check_device(device, "reset_accumulated_memory_stats")) return vtrt_last_status();
  if (!cu::g_async) cu::g_native[device]->reset_accumulated();
  return VT_OK;
}

vt_status vtrt_cuda_empty_cache(int32_t device) {
  if (!cu::check_device(device, "empty_cache")) return vtrt_last_status();
  if (cu::g_async) {
    cu::g_asyncs[device]->empty_cache();
    return VT_OK;
  }
  return cu::g_native[device]->empty_cache();
}

vt_status vtrt_cuda_set_memory_fraction(int32_t device, double fraction) {
  if (!cu::check_device(device, "set_per_process_memory_fraction")) return vtrt_last_status();
  if (!(fraction >= 0.0 && fraction <= 1.0))
    return set_error(VT_ERR_VALUE, "set_per_process_memory_fraction: fraction must be in [0, 1], "
                     "got %g", fraction);
  size_t f = 0, t = 0;
  {
    cu::DeviceGuard g(device);
    cudaError_t e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) return cu::fail(e, "cudaMemGetInfo", device);
  }
  // fraction 1.0 still caps at the device's size, which CUDA enforces anyway
  if (cu::g_async) cu::g_asyncs[device]->set_limit(fraction, static_cast<int64_t>(t));
  else cu::g_native[device]->set_limit(fraction, static_cast<int64_t>(t));
  return VT_OK;
}

const char* vtrt_cuda_allocator_backend(void) {
  cuda_available();
  return cu::g_async ? "cudaMallocAsync" : "native";
}

int64_t vtrt_cuda_memory_snapshot(int32_t device, vtrt_cuda_block_info* out, int64_t cap) {
  if (!cu::check_device(device, "memory_snapshot")) return -1;
  if (cu::g_async) return 0;  // CUDA's pools do not show their blocks
  return cu::g_native[device]->snapshot(out, cap);
}

vt_status vtrt_cuda_record_stream(vt_tensor* t, void* stream) { return cuda_record_stream(t, stream); }

}  // extern "C"
