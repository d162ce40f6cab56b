// p2p.cu — the host side of the `p2p` provider: all_reduce_ on CUDA tensors of one node through
// buffers every rank maps by CUDA IPC, with the kernel of p2p_kernels.cuh (one-shot / two-shot /
// ring / push by message size and world size). What it is not: a transport across nodes, or the other collectives (those,
// and the dtypes/ops p2p does not take, go to the nccl provider on the group's nccl fallback: p2p
// declines them with VT_ERR_NOT_IMPL and the dispatcher moves on).
//
// Tested by host emulation of the kernel's own source (tests/test_allreduce_p2p_emulation.py, any
// world size); the protocol before the parity regions (with a closing barrier) was tested on 2
// H200s (tests/test_distributed_cuda.py), this one not yet.
//
//   allreduce::p2p_new_group(rank, world_size, device, buffer_bytes, timeout, fallback) -> int
//       allocates this rank's buffer on `device` (cudaMalloc: Signal | acc0 | out0 | acc1 | out1,
//       zeroed; buffer_bytes is each region's size, the largest piece: the kernel alternates the two
//       sets by call parity instead of closing each call with a barrier) and an error word in mapped
//       host memory; fallback: an open nccl group's handle, or -1
//   allreduce::p2p_handle(group) -> Tensor       uint8 (64,) cpu: the buffer's cudaIpcMemHandle_t
//   allreduce::p2p_connect(group, handles) -> bool
//       handles: uint8 (world_size, 64) cpu, every rank's p2p_handle in rank order (vibetensor.
//       distributed exchanges them through the rendezvous store); opens the peers' buffers
//   allreduce::p2p_check(group) -> bool          raises when a wait of an earlier call timed out
//   compute of allreduce::all_reduce_ on cuda (provider "p2p", priority 10: the default there)
// VT_P2P_ALGO=oneshot|twoshot|ring|push (read at every call) pins the algorithm, for tests and
// benchmarks (push: two ranks only, two-shot elsewhere).
// Messages over nccl_above(world) go to the nccl fallback where the group has one (declined): on 2
// H200s push matched or beat NCCL up to 64 MiB (0.90x its time in fp32, 1.01x in bf16) and fell
// behind from 256 MiB (1.04x-1.23x); with more ranks our ring already trailed NCCL from 64 MiB
// while p2p was faster up to 8 MiB (bench/RESULTS.md). Without a fallback, or with VT_P2P_ALGO set,
// p2p serves every size.
// A call launches one kernel per piece of at most buffer_bytes on the call's stream and never waits
// for it: capturable in a CUDA graph (buffers are registered once, epochs live on the device). A
// wait that times out inside the kernel sets the error word; the next call (or p2p_check, which
// barrier() runs) raises, and the group is unusable from then on.
// No NVLink multicast (cuMulticast*) anywhere: shared machines keep it off.
#include <cstdlib>
#include <cstring>
#include <string>

#include "allreduce.hpp"
#include "p2p_kernels.cuh"
#include "vt/cuda/launch.cuh"

namespace ar {

struct P2pGroup {
  int32_t rank = 0, world = 0, device = 0;
  int64_t capacity = 0;                  // bytes of each region (acc and out, of each parity)
  char* base = nullptr;                  // this rank's allocation
  char* peer[p2p::kMaxRanks] = {};       // every rank's allocation as mapped here (own: base)
  uint32_t* error_host = nullptr;        // mapped host memory the kernel writes on a timeout
  uint32_t* error_dev = nullptr;         // the device's address of it
  long long timeout_cycles = 0;
  bool connected = false;
};

namespace {

constexpr int kThreads = 512;
constexpr int64_t nccl_above(int world) { return world == 2 ? 64 << 20 : 16 << 20; }  // bytes

void check(const vt::Call& c, cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    c.fail(VT_ERR_RUNTIME, "CUDA error in %s: %s", what, cudaGetErrorString(e));
  }
}

// Makes `device` current for the CUDA calls of this file (this library's runtime) while alive.
struct DeviceGuard {
  int prev = -1;
  DeviceGuard(const vt::Call& c, int device) {
    check(c, cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) check(c, cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != prev && prev >= 0) cudaSetDevice(prev);
  }
};

P2pGroup& p2p_of(const vt::Call& c, int64_t handle) {
  Group& g = group_of(c, handle);
  if (g.provider != Provider::P2p) c.fail(VT_ERR_VALUE, "group %lld is not a p2p group", (long long)handle);
  return *static_cast<P2pGroup*>(g.impl);
}

// The error an earlier kernel left, as a RuntimeError.
void raise_if_failed(const vt::Call& c, const P2pGroup& g) {
  const uint32_t code = *reinterpret_cast<const volatile uint32_t*>(g.error_host);
  if (code == 0) return;
  const int slot = p2p::error_slot(code);
  const char* where = slot == p2p::kSlotStart ? "the start of a call"
                      : slot == p2p::kSlotMid ? "the middle of a two-shot or push call"
                                              : "a ring step";
  c.fail(VT_ERR_RUNTIME, "rank %d timed out on the GPU waiting for rank %d at %s (is it stuck, dead, or calling "
         "other collectives than this one?); the process group is unusable now (destroy_process_group() and init "
         "again)", g.rank, p2p::error_rank(code), where);
}

int forced_algo(const vt::Call& c) {
  const char* s = std::getenv("VT_P2P_ALGO");
  if (!s || !*s) return -1;
  if (!std::strcmp(s, "oneshot")) return p2p::OneShot;
  if (!std::strcmp(s, "twoshot")) return p2p::TwoShot;
  if (!std::strcmp(s, "ring")) return p2p::Ring;
  if (!std::strcmp(s, "push")) return p2p::Push;  // two ranks (else two-shot)
  c.fail(VT_ERR_VALUE, "VT_P2P_ALGO must be oneshot, twoshot, ring or push, got '%s'", s);
  return -1;
}

}  // namespace

VT_KERNEL(p2p_new_group_cpu, "allreduce::p2p_new_group") {
  const int64_t rank = c.arg(0, "rank").int_(), world = c.arg(1, "world_size").int_();
  const int64_t device = c.arg(2, "device").int_(), bytes = c.arg(3, "buffer_bytes").int_();
  const double timeout = c.arg(4, "timeout").float_();
  const int64_t fallback = c.arg(5, "fallback").int_();
  if (world < 1 || world > p2p::kMaxRanks)
    c.fail(VT_ERR_VALUE, "world_size must be in 1..%d (the GPUs of one node), got %lld", p2p::kMaxRanks, (long long)world);
  if (rank < 0 || rank >= world)
    c.fail(VT_ERR_VALUE, "rank must be in 0..%lld, got %lld", (long long)(world - 1), (long long)rank);
  if (bytes < (64 << 10) || bytes % 4096)
    c.fail(VT_ERR_VALUE, "buffer_bytes must be a multiple of 4096 and at least 65536, got %lld", (long long)bytes);
  if (!(timeout > 0)) c.fail(VT_ERR_VALUE, "timeout must be > 0 seconds, got %g", timeout);
  if (fallback >= 0 && group_of(c, fallback).provider != Provider::Nccl)
    c.fail(VT_ERR_VALUE, "fallback must be an open nccl group or -1, got %lld", (long long)fallback);
  int count = 0;
  check(c, cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    c.fail(VT_ERR_VALUE, "device must be a visible CUDA device (0..%d), got %lld", count - 1, (long long)device);
  DeviceGuard dg(c, (int)device);
  auto g = new P2pGroup;
  g->rank = (int32_t)rank, g->world = (int32_t)world, g->device = (int32_t)device, g->capacity = bytes;
  forced_algo(c);  // a bad VT_P2P_ALGO fails here already
  int khz = 0;
  if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, (int)device) != cudaSuccess || khz <= 0) khz = 2000000;
  g->timeout_cycles = (long long)(timeout * (double)khz * 1000.0);
  const size_t size = (size_t)(p2p::kSignalBytes + 4 * bytes);  // acc, out; twice (call parity)
  cudaError_t e = cudaMalloc(&g->base, size);
  if (e == cudaSuccess) e = cudaMemset(g->base, 0, size);
  if (e == cudaSuccess) e = cudaHostAlloc(&g->error_host, sizeof(uint32_t), cudaHostAllocMapped);
  if (e == cudaSuccess) *g->error_host = 0, e = cudaHostGetDevicePointer(&g->error_dev, g->error_host, 0);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();  // zeroed before any peer can see the buffer
  if (e != cudaSuccess) {
    if (g->base) cudaFree(g->base);
    if (g->error_host) cudaFreeHost(g->error_host);
    delete g;
    check(c, e, "allocating the p2p buffer");
  }
  g->peer[rank] = g->base;
  int32_t slot = -1;
  try {
    slot = add_group(c, Group{Provider::P2p, (int32_t)rank, (int32_t)world, g, (int32_t)fallback});
  } catch (...) {
    p2p_close(g);
    throw;
  }
  c.outs[0].tag = VT_INT;
  c.outs[0].v.i = slot;
}

VT_KERNEL(p2p_handle_cpu, "allreduce::p2p_handle") {
  P2pGroup& g = p2p_of(c, c.arg(0, "group").int_());
  DeviceGuard dg(c, g.device);
  const int64_t size = sizeof(cudaIpcMemHandle_t);
  vt::Tensor t = c.empty(&size, 1, vt::kUInt8);
  check(c, cudaIpcGetMemHandle(static_cast<cudaIpcMemHandle_t*>(t->data), g.base), "cudaIpcGetMemHandle");
  c.set_out(0, std::move(t));
}

VT_KERNEL(p2p_connect_cpu, "allreduce::p2p_connect") {
  P2pGroup& g = p2p_of(c, c.arg(0, "group").int_());
  const vt_tensor* h = c.arg(1, "handles").tensor();
  const int64_t hs = sizeof(cudaIpcMemHandle_t);
  if (h->device.type != VT_CPU || h->dtype.bits != 8 || h->numel != g.world * hs || !vt::is_contiguous(h))
    c.fail(VT_ERR_VALUE, "handles must be a contiguous uint8 cpu tensor of world_size * %lld = %lld bytes (every "
           "rank's p2p_handle), got %lld elements", (long long)hs, (long long)(g.world * hs), (long long)h->numel);
  if (g.connected) c.fail(VT_ERR_VALUE, "group is already connected");
  DeviceGuard dg(c, g.device);
  for (int q = 0; q < g.world; ++q) {
    if (q == g.rank) continue;
    cudaIpcMemHandle_t mh;
    std::memcpy(&mh, static_cast<const char*>(h->data) + q * hs, (size_t)hs);
    void* p = nullptr;
    const cudaError_t e = cudaIpcOpenMemHandle(&p, mh, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      for (int k = 0; k < q; ++k)
        if (k != g.rank && g.peer[k]) cudaIpcCloseMemHandle(g.peer[k]), g.peer[k] = nullptr;
      c.fail(VT_ERR_RUNTIME, "cannot map rank %d's buffer (cudaIpcOpenMemHandle: %s): p2p needs every rank on its "
             "own GPU of this node, with peer access between them (else use backend='nccl')", q,
             cudaGetErrorString(e));
    }
    g.peer[q] = static_cast<char*>(p);
  }
  g.connected = true;
  c.outs[0].tag = VT_BOOL;
  c.outs[0].v.b = 1;
}

VT_KERNEL(p2p_check_cpu, "allreduce::p2p_check") {
  raise_if_failed(c, p2p_of(c, c.arg(0, "group").int_()));
  c.outs[0].tag = VT_BOOL;
  c.outs[0].v.b = 1;
}

void p2p_close(void* impl) {
  P2pGroup* g = static_cast<P2pGroup*>(impl);
  int prev = -1;
  cudaGetDevice(&prev);
  cudaSetDevice(g->device);
  cudaDeviceSynchronize();  // no kernel of ours still reads the buffers (vibetensor.distributed also
                            // meets the other ranks first, so none of theirs does either)
  for (int q = 0; q < g->world; ++q)
    if (q != g->rank && g->peer[q]) cudaIpcCloseMemHandle(g->peer[q]);
  cudaFree(g->base);
  cudaFreeHost(g->error_host);
  if (prev >= 0) cudaSetDevice(prev);
  delete g;
}

VT_COMPUTE(all_reduce_p2p, "allreduce::all_reduce_") {
  vt_tensor* self = c.out(0);
  const int64_t handle = c.arg(1, "group").int_();
  const Group& grp = group_of(c, handle);
  // what p2p does not take it declines (VT_ERR_NOT_IMPL): the dispatcher hands the call to the nccl
  // provider (unless p2p is pinned), which serves an nccl group or this group's nccl fallback
  if (grp.provider == Provider::Nccl)
    c.fail(VT_ERR_NOT_IMPL, "group %lld is an nccl group, not a p2p one", (long long)handle);
  P2pGroup& g = p2p_of(c, handle);
  Red r;
  parse_red(c.arg(2, "op").str(), &r);
  const vt::ScalarType st = vt::scalar_type(self->dtype);
  const bool takes = (r == Red::Sum || r == Red::Avg || r == Red::Max) &&
                     (st == vt::ScalarType::Float32 || st == vt::ScalarType::BFloat16 || st == vt::ScalarType::Float16);
  if (!takes) {
    if (grp.fallback >= 0)
      c.fail(VT_ERR_NOT_IMPL, "p2p reduces float32, bfloat16 and float16 with sum, avg or max, not %s with '%s' "
             "(the nccl provider takes it)", vt::dtype_name(self->dtype), c.arg(2, "op").str());
    c.fail(VT_ERR_TYPE, "p2p reduces float32, bfloat16 and float16 with sum, avg or max; %s with '%s' needs the nccl "
           "fallback, which this group lacks (pip install nvidia-nccl-cu13)", vt::dtype_name(self->dtype),
           c.arg(2, "op").str());
  }
  if (!g.connected) c.fail(VT_ERR_VALUE, "group %lld is not connected yet (p2p_connect)", (long long)handle);
  if (self->device.index != g.device)
    c.fail(VT_ERR_VALUE, "the tensor is on cuda:%d, this rank's p2p group on cuda:%d", self->device.index, g.device);
  raise_if_failed(c, g);
  if (self->numel == 0) return;
  DeviceGuard dg(c, g.device);
  p2p::Params p{};
  for (int q = 0; q < g.world; ++q) {
    p.sig[q] = reinterpret_cast<p2p::Signal*>(g.peer[q]);
    p.acc[q] = g.peer[q] + p2p::kSignalBytes;
    p.out[q] = g.peer[q] + p2p::kSignalBytes + g.capacity;
  }
  p.parity_bytes = 2 * g.capacity;  // acc1, out1 follow acc0, out0
  p.rank = g.rank, p.world = g.world, p.op = r == Red::Sum ? p2p::Sum : r == Red::Avg ? p2p::Avg : p2p::Max;
  p.timeout = g.timeout_cycles;
  p.error_host = g.error_dev;
  const int64_t es = vt::element_size(self->dtype);
  const int64_t per = g.capacity / es;  // elements of one piece: one kernel, one epoch
  const int forced = forced_algo(c);      // read per call: benchmarks switch it between calls
  if (grp.fallback >= 0 && forced < 0 && self->numel * es > nccl_above(g.world))
    c.fail(VT_ERR_NOT_IMPL, "p2p hands messages over %lld MiB to the nccl provider (faster there); "
           "VT_P2P_ALGO=ring makes p2p take them", (long long)(nccl_above(g.world) >> 20));
  char* data = static_cast<char*>(self->data);
  vt::cuda::dispatch(vt::types<float, vt::bfloat16, vt::half>{}, self->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t done = 0; done < self->numel; done += per) {
      const int64_t n = self->numel - done < per ? self->numel - done : per;  // every piece a call of the counter
      const p2p::Plan plan = p2p::make_plan(n, (int)es, g.world, p2p::kMaxBlocks, forced);
      p.input = p.output = data + done * es;
      p.n = n;
      p.algo = plan.algo;
      p2p::all_reduce_kernel<T><<<plan.blocks, kThreads, 0, vt::cuda::stream(c)>>>(p);
      check(c, cudaGetLastError(), "launching the p2p all-reduce kernel");
    }
  });
}

}  // namespace ar
