// cuda_graph.cpp — CUDA graph capture and replay, with graph-private memory and graph-safe RNG.
//
// capture_begin (on a non-default stream) starts stream capture, routes the allocations of the
// capturing streams to a private pool (shared between graphs by pool id), and registers the capture
// so random ops see it: while a device captures, philox_args hands kernels pointers to a 16-byte
// device buffer owned by the graph (seed, offset) plus an intra-graph offset, and counts the
// numbers the graph draws. Each replay writes the generator's current (seed, offset) into that
// buffer with a one-thread kernel on the replay stream, then launches the graph and advances the
// generator by the captured total, so replays draw fresh numbers and replay k equals the eager
// run it stands for, bit for bit.
//
// Code: a call that runs a pack's kernel on a capturing stream notes the pack in the graph
// (cuda_note_capture, from the dispatcher), which references it so the code stays mapped while the
// graph lives. A hot reload marks the replaced pack; replay then refuses, naming it, instead of
// running the old code unseen (CodeUses, code_uses.cpp).
//
// Capture mode: thread-local by default. It forbids unsafe calls (syncs, event queries) on the
// capturing thread, where they would be bugs, but leaves other threads free: a data-loading
// thread doing pinned copies, or another device's training loop, keeps working while one thread
// captures (global mode would make their calls fail and invalidate the capture). Global and
// relaxed are available as in torch.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <vector>

#include "cuda_internal.hpp"

struct vtrt_cuda_graph {
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  uint64_t pool = 0;  // the private pool this graph holds a reference to (0: none)
  bool capturing = false;
  unsigned long long capture_id = 0;
  uint64_t* rng = nullptr;   // device memory: {seed, offset} of the current replay
  uint64_t rng_offset = 0;   // counters drawn so far in this capture (intra-graph offset)
  uint64_t rng_total = 0;    // ... in the finished capture: the generator advances this per replay
  vt::CodeUses code;         // the packs whose kernels the capture ran (guarded by g_mu while capturing)
};

namespace vt {
namespace cu {

namespace {
std::mutex g_mu;  // guards the capture lists (taken by random ops only while capturing)
std::vector<vtrt_cuda_graph*> g_captures[kMaxDevices];
std::atomic<int> g_ncaptures[kMaxDevices];
std::atomic<int> g_nglobal{0};  // captures in global mode: they forbid unsafe calls on every thread
std::atomic<uint64_t> g_next_pool{1};
thread_local int t_ncaptures = 0;
thread_local char t_why[160];

cudaStream_t current(int device) {
  return static_cast<cudaStream_t>(cuda_current_stream(vt_device{VT_CUDA, device}));
}

// The capture `stream` belongs to, if it is one of ours. Caller holds g_mu.
vtrt_cuda_graph* find_capture(int device, cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (cudaStreamGetCaptureInfo(stream, &st, &id) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  if (st != cudaStreamCaptureStatusActive) return nullptr;
  for (vtrt_cuda_graph* g : g_captures[device])
    if (g->capture_id == id) return g;
  return nullptr;
}

void unregister(vtrt_cuda_graph* g) {
  {
    std::lock_guard<std::mutex> l(g_mu);
    auto& v = g_captures[g->device];
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] == g) {
        v.erase(v.begin() + static_cast<long>(i));
        break;
      }
  }
  g_ncaptures[g->device].fetch_sub(1, std::memory_order_relaxed);
  if (g->mode == cudaStreamCaptureModeGlobal) g_nglobal.fetch_sub(1, std::memory_order_relaxed);
  t_ncaptures--;
  end_allocate_to_pool(g->device, g->capture_id);
  g->capturing = false;
}

void drop_pool(vtrt_cuda_graph* g) {
  if (g->pool) release_pool(g->device, g->pool);
  g->pool = 0;
  g->code.clear();  // with the pool: whenever a capture is dropped, so is what it noted
}
}  // namespace

int captures_on(int device) {
  return device >= 0 && device < kMaxDevices ? g_ncaptures[device].load(std::memory_order_relaxed) : 0;
}

int captures_on_this_thread() { return t_ncaptures; }

const char* sync_forbidden(int device) {
  if (t_ncaptures > 0) {
    std::snprintf(t_why, sizeof t_why, "this thread is capturing a CUDA graph (a graph cannot "
                  "contain a host sync)");
    return t_why;
  }
  if (g_nglobal.load(std::memory_order_relaxed) > 0) {
    std::snprintf(t_why, sizeof t_why, "another thread captures a CUDA graph in global mode");
    return t_why;
  }
  if (cuda_capturing(vt_device{VT_CUDA, device})) {
    std::snprintf(t_why, sizeof t_why, "cuda:%d's current stream is capturing a CUDA graph", device);
    return t_why;
  }
  return nullptr;
}

}  // namespace cu

// One relaxed load when nothing is captured on the device (the common case).
bool cuda_capturing(vt_device device) {
  if (device.type != VT_CUDA || cu::captures_on(device.index) == 0) return false;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(cu::current(device.index), &st) != cudaSuccess) {
    cudaGetLastError();
    return true;  // the legacy stream while a blocking stream captures: as good as capturing
  }
  return st == cudaStreamCaptureStatusActive;
}

void cuda_philox_args(vt_device device, uint64_t count, vt_philox_args* out) {
  out->seed_ptr = out->offset_ptr = nullptr;
  out->offset_intragraph = 0;
  if (device.type == VT_CUDA && cu::captures_on(device.index) > 0) {
    std::lock_guard<std::mutex> l(cu::g_mu);
    if (vtrt_cuda_graph* g = cu::find_capture(device.index, cu::current(device.index))) {
      out->seed = out->offset = 0;
      out->seed_ptr = g->rng;
      out->offset_ptr = g->rng + 1;
      out->offset_intragraph = g->rng_offset;
      g->rng_offset += (count + 3) / 4 * 4;  // the same rounding as the eager generator
      return;
    }
  }
  philox_reserve(device, count, &out->seed, &out->offset);
}

void cuda_note_capture(vt_device device, Pack* pack) {
  if (device.type != VT_CUDA || !pack || cu::captures_on(device.index) == 0) return;
  std::lock_guard<std::mutex> l(cu::g_mu);
  if (vtrt_cuda_graph* g = cu::find_capture(device.index, cu::current(device.index)))
    g->code.note(pack);
}

}  // namespace vt

using namespace vt;

extern "C" {

vtrt_cuda_graph* vtrt_cuda_graph_new(void) {
  if (!cuda_available()) {
    cu::not_available();
    return nullptr;
  }
  return new vtrt_cuda_graph();
}

uint64_t vtrt_cuda_graph_pool_handle(void) {
  return cu::g_next_pool.fetch_add(1, std::memory_order_relaxed);
}

vt_status vtrt_cuda_graph_capture_begin(vtrt_cuda_graph* g, uint64_t pool, int32_t mode) {
  if (!cuda_available()) return cu::not_available();
  if (g->capturing || g->exec)
    return set_error(VT_ERR_RUNTIME, "capture_begin: this CUDAGraph already holds a capture; "
                     "call reset() before capturing again");
  if (cu::allocator_is_async())
    return set_error(VT_ERR_NOT_IMPL, "CUDA graphs need the native caching allocator "
                     "(VT_CUDA_ALLOCATOR=native, the default), not cudaMallocAsync");
  if (mode < 0 || mode > 2)
    return set_error(VT_ERR_VALUE, "capture_begin: capture mode %d is not 0 (global), 1 "
                     "(thread_local) or 2 (relaxed)", mode);
  const int dev = cu::current_device();
  cudaStream_t s = cu::current(dev);
  if (!s)
    return set_error(VT_ERR_RUNTIME, "capture_begin: CUDA graphs must be captured on a "
                     "non-default stream; use `with vt.cuda.graph(g):` or capture inside "
                     "`with vt.cuda.stream(vt.cuda.Stream()):`");
  cu::DeviceGuard dg(dev);
  if (!g->rng) {
    cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&g->rng), 2 * sizeof(uint64_t));
    if (e != cudaSuccess) return cu::fail(e, "cudaMalloc (graph RNG state)", dev);
  }
  auto m = static_cast<cudaStreamCaptureMode>(mode);
  cudaError_t e = cudaStreamBeginCapture(s, m);
  if (e != cudaSuccess) return cu::fail(e, "cudaStreamBeginCapture", dev);
  cudaStreamCaptureStatus st;
  e = cudaStreamGetCaptureInfo(s, &st, &g->capture_id);
  if (e != cudaSuccess) {
    cudaGraph_t junk = nullptr;
    cudaStreamEndCapture(s, &junk);
    if (junk) cudaGraphDestroy(junk);
    return cu::fail(e, "cudaStreamGetCaptureInfo", dev);
  }
  g->device = dev;
  g->stream = s;
  g->mode = m;
  g->pool = pool ? pool : vtrt_cuda_graph_pool_handle();
  g->rng_offset = 0;
  cu::begin_allocate_to_pool(dev, g->pool, g->capture_id);
  {
    std::lock_guard<std::mutex> l(cu::g_mu);
    cu::g_captures[dev].push_back(g);
  }
  cu::g_ncaptures[dev].fetch_add(1, std::memory_order_relaxed);
  if (m == cudaStreamCaptureModeGlobal) cu::g_nglobal.fetch_add(1, std::memory_order_relaxed);
  cu::t_ncaptures++;
  g->capturing = true;
  return VT_OK;
}

vt_status vtrt_cuda_graph_capture_end(vtrt_cuda_graph* g) {
  if (!g->capturing)
    return set_error(VT_ERR_RUNTIME, "capture_end: no capture in progress (capture_begin first)");
  cu::DeviceGuard dg(g->device);
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(g->stream, &graph);
  cu::unregister(g);
  if (e != cudaSuccess || !graph) {
    if (graph) cudaGraphDestroy(graph);
    cu::drop_pool(g);
    cudaGetLastError();
    return set_error(VT_ERR_RUNTIME, "capture_end: the capture on cuda:%d failed: %s (%s). "
                     "Something not allowed in a graph ran during capture: a host sync, work on "
                     "another stream not joined to the capture stream, or a capture ended on "
                     "another thread", g->device, cudaGetErrorString(e), cudaGetErrorName(e));
  }
  g->graph = graph;
  g->rng_total = g->rng_offset;
  e = cudaGraphInstantiate(&g->exec, graph, 0);
  if (e != cudaSuccess) {
    g->exec = nullptr;
    cudaGraphDestroy(graph);
    g->graph = nullptr;
    cu::drop_pool(g);
    return cu::fail(e, "cudaGraphInstantiate", g->device);
  }
  return VT_OK;
}

void vtrt_cuda_graph_capture_abort(vtrt_cuda_graph* g) {
  if (!g->capturing) return;
  cu::DeviceGuard dg(g->device);
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(g->stream, &graph);
  cudaGetLastError();
  if (graph) cudaGraphDestroy(graph);
  cu::unregister(g);
  cu::drop_pool(g);
}

vt_status vtrt_cuda_graph_replay(vtrt_cuda_graph* g) {
  if (!g->exec)
    return set_error(VT_ERR_RUNTIME, "replay(): nothing captured; capture_begin()/capture_end() "
                     "or `with vt.cuda.graph(g):` first");
  if (vt_status st = g->code.check("CUDAGraph.replay()")) return st;
  cu::DeviceGuard dg(g->device);
  cudaStream_t s = cu::current(g->device);
  if (g->rng_total) {
    uint64_t seed, offset;
    philox_reserve(vt_device{VT_CUDA, g->device}, g->rng_total, &seed, &offset);
    cudaError_t e = cu::launch_philox_fill(g->rng, seed, offset, s);
    if (e != cudaSuccess) return cu::fail(e, "graph RNG state update", g->device);
  }
  cudaError_t e = cudaGraphLaunch(g->exec, s);
  return e == cudaSuccess ? VT_OK : cu::fail(e, "cudaGraphLaunch", g->device);
}

vt_status vtrt_cuda_graph_reset(vtrt_cuda_graph* g) {
  if (g->capturing)
    return set_error(VT_ERR_RUNTIME, "reset(): a capture is in progress; capture_end() first");
  if (g->device >= 0) {
    cu::DeviceGuard dg(g->device);
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    cudaGetLastError();
  }
  g->exec = nullptr;
  g->graph = nullptr;
  g->rng_total = 0;
  cu::drop_pool(g);
  return VT_OK;
}

void vtrt_cuda_graph_free(vtrt_cuda_graph* g) {
  if (!g) return;
  vtrt_cuda_graph_capture_abort(g);
  vtrt_cuda_graph_reset(g);
  if (g->rng) {
    cu::DeviceGuard dg(g->device);
    cudaFree(g->rng);
    cudaGetLastError();
  }
  delete g;
}

uint64_t vtrt_cuda_graph_pool(const vtrt_cuda_graph* g) { return g->pool; }

int32_t vtrt_cuda_graph_num_packs(const vtrt_cuda_graph* g) {
  return static_cast<int32_t>(g->code.packs().size());
}

const char* vtrt_cuda_graph_pack(const vtrt_cuda_graph* g, int32_t i) {
  const auto& packs = g->code.packs();
  return i >= 0 && i < static_cast<int32_t>(packs.size()) ? pack_name(packs[i]) : nullptr;
}

int32_t vtrt_cuda_is_current_stream_capturing(void) {
  if (!cuda_available()) return 0;
  return cuda_capturing(vt_device{VT_CUDA, cu::current_device()});
}

}  // extern "C"
