// pack.cpp — the `allreduce` op pack: collectives between the processes of a group, their meta
// steps, and the ops that open and close groups. What it is not: a transport of its own — each
// provider (shm.cpp; nccl.cpp and p2p.cu, tested on 2 H200s) brings one, behind the same ops.
//
//   allreduce::all_reduce_(self, group, op="sum")          self = op over ranks of self, in place
//   allreduce::broadcast_(self, group, src)                self = src's self, in place
//   allreduce::all_gather_(out, input, group)              out = cat(input of rank 0..W-1), in place
//   allreduce::reduce_scatter_(out, input, group, op="sum") out = rank r's 1/W of op over inputs
//   allreduce::barrier(group) -> bool                      returns once every rank called it
//   allreduce::shm_new_group(name, rank, world_size, buffer_bytes, timeout) -> int  (a handle)
//   allreduce::nccl_unique_id(library) -> Tensor, nccl_new_group(unique_id, rank, world_size, device,
//     library) -> int: the nccl provider's group (nccl.cpp)
//   allreduce::p2p_new_group(rank, world_size, device, buffer_bytes, timeout, fallback) -> int,
//     p2p_handle(group) -> Tensor, p2p_connect(group, handles) -> bool, p2p_check(group) -> bool:
//     the p2p provider's group (p2p.cu, CUDA builds only)
// Providers of all_reduce_ on cuda: p2p (priority 10: the default; fp32/bf16/fp16 with sum, avg,
// max on a p2p group; it declines the rest, VT_ERR_NOT_IMPL) and nccl (priority 0: an nccl group,
// or a p2p group's nccl fallback). vt.ops.use pins one.
//   allreduce::destroy_group(group) -> bool
// op: sum | avg | max | min | product (avg: floating dtypes only). Tensors contiguous, dtypes
// float32, float64, bfloat16, float16 (reduced in float), int32, int64; all_gather's out holds
// W * input.numel() elements and reduce_scatter's input W * out.numel(), any shapes.
// The meta steps hold every check that needs no other rank; what needs them (the same op, dtype,
// size and src on every rank) is checked by the provider when the ranks meet, and raises there.
#include <mutex>

#include "allreduce.hpp"
#include "vt/capabilities.h"

namespace ar {

Group* groups() {
  static Group table[kMaxGroups];
  return table;
}

std::mutex& table_mutex() {  // opening and closing groups only; collectives never take it
  static std::mutex mu;
  return mu;
}

int32_t add_group(const vt::Call& c, const Group& g) {
  std::lock_guard<std::mutex> lock(table_mutex());
  for (int i = 0; i < kMaxGroups; ++i)
    if (groups()[i].provider == Provider::None && groups()[i].world == 0) {
      groups()[i] = g;
      return i;
    }
  c.fail(VT_ERR_RUNTIME, "too many open process groups (%d); destroy some first", kMaxGroups);
}

}  // namespace ar

namespace {

using ar::Group;

constexpr const char* kAllReduce = "allreduce::all_reduce_(Tensor self, int group, str op='sum') -> Tensor";
constexpr const char* kBroadcast = "allreduce::broadcast_(Tensor self, int group, int src) -> Tensor";
constexpr const char* kAllGather = "allreduce::all_gather_(Tensor out, Tensor input, int group) -> Tensor";
constexpr const char* kReduceScatter =
    "allreduce::reduce_scatter_(Tensor out, Tensor input, int group, str op='sum') -> Tensor";
constexpr const char* kBarrier = "allreduce::barrier(int group) -> bool";
constexpr const char* kShmNewGroup =
    "allreduce::shm_new_group(str name, int rank, int world_size, int buffer_bytes, float timeout) -> int";
constexpr const char* kNcclUniqueId = "allreduce::nccl_unique_id(str library='libnccl.so.2') -> Tensor";
constexpr const char* kNcclNewGroup =
    "allreduce::nccl_new_group(Tensor unique_id, int rank, int world_size, int device, str library='libnccl.so.2') "
    "-> int";
constexpr const char* kDestroyGroup = "allreduce::destroy_group(int group) -> bool";
constexpr const char* kP2pNewGroup =
    "allreduce::p2p_new_group(int rank, int world_size, int device, int buffer_bytes, float timeout, int fallback) "
    "-> int";
constexpr const char* kP2pHandle = "allreduce::p2p_handle(int group) -> Tensor";
constexpr const char* kP2pConnect = "allreduce::p2p_connect(int group, Tensor handles) -> bool";
constexpr const char* kP2pCheck = "allreduce::p2p_check(int group) -> bool";

using ar::table_mutex;

void check_tensor(const vt::Call& c, const vt_tensor* t, const char* name) {
  if (!ar::supported_dtype(t->dtype))
    c.fail(VT_ERR_TYPE, "%s has dtype %s; supported: %s", name, vt::dtype_name(t->dtype), ar::kDtypes);
  if (!vt::is_contiguous(t))
    c.fail(VT_ERR_VALUE, "%s must be contiguous (call .contiguous() first), got shape %s", name,
           vt::shape_str(t).c_str());
}

ar::Red check_red(const vt::Call& c, const char* op, const vt_tensor* t) {
  ar::Red r;
  if (!ar::parse_red(op, &r))
    c.fail(VT_ERR_VALUE, "op must be one of sum, avg, max, min, product; got '%s'", op);
  if (r == ar::Red::Avg && !vt::is_floating(t->dtype))
    c.fail(VT_ERR_TYPE, "op 'avg' needs a floating dtype, got %s (use 'sum' and divide)", vt::dtype_name(t->dtype));
  return r;
}

}  // namespace

// ---- meta steps ------------------------------------------------------------------------------------
VT_META_FN(all_reduce_meta, "allreduce::all_reduce_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  ar::group_of(c, c.arg(1, "group").int_());
  check_tensor(c, self, "self");
  check_red(c, c.arg(2, "op").str(), self);
  c.set_out_retained(0, self);
}

VT_META_FN(broadcast_meta, "allreduce::broadcast_") {
  vt_tensor* self = c.arg(0, "self").tensor();
  const Group& g = ar::group_of(c, c.arg(1, "group").int_());
  const int64_t src = c.arg(2, "src").int_();
  check_tensor(c, self, "self");
  if (src < 0 || src >= g.world)
    c.fail(VT_ERR_VALUE, "src must be a rank of the group (0..%d), got %lld", g.world - 1, (long long)src);
  c.set_out_retained(0, self);
}

VT_META_FN(all_gather_meta, "allreduce::all_gather_") {
  vt_tensor* out = c.arg(0, "out").tensor();
  const vt_tensor* input = c.arg(1, "input").tensor();
  const Group& g = ar::group_of(c, c.arg(2, "group").int_());
  check_tensor(c, out, "out");
  check_tensor(c, input, "input");
  c.check_same_dtype(out, "out", input, "input");
  if (out->numel != input->numel * g.world)
    c.fail(VT_ERR_VALUE, "out must hold world_size * input.numel() = %d * %lld elements, got %lld (shape %s)",
           g.world, (long long)input->numel, (long long)out->numel, vt::shape_str(out).c_str());
  c.set_out_retained(0, out);
}

VT_META_FN(reduce_scatter_meta, "allreduce::reduce_scatter_") {
  vt_tensor* out = c.arg(0, "out").tensor();
  const vt_tensor* input = c.arg(1, "input").tensor();
  const Group& g = ar::group_of(c, c.arg(2, "group").int_());
  check_tensor(c, out, "out");
  check_tensor(c, input, "input");
  c.check_same_dtype(out, "out", input, "input");
  check_red(c, c.arg(3, "op").str(), out);
  if (input->numel != out->numel * g.world)
    c.fail(VT_ERR_VALUE, "input must hold world_size * out.numel() = %d * %lld elements, got %lld (shape %s)",
           g.world, (long long)out->numel, (long long)input->numel, vt::shape_str(input).c_str());
  c.set_out_retained(0, out);
}

VT_META_FN(barrier_meta, "allreduce::barrier") {
  ar::group_of(c, c.arg(0, "group").int_());
  c.outs[0].tag = VT_BOOL;
  c.outs[0].v.b = 1;
}

// ---- opening and closing groups ----------------------------------------------------------------
namespace {

void check_rank(const vt::Call& c, int64_t rank, int64_t world) {
  if (world < 1 || world > 1024) c.fail(VT_ERR_VALUE, "world_size must be in 1..1024, got %lld", (long long)world);
  if (rank < 0 || rank >= world)
    c.fail(VT_ERR_VALUE, "rank must be in 0..%lld (world_size - 1), got %lld", (long long)(world - 1), (long long)rank);
}

// Reserves a slot of the group table, runs open() (which may wait for the other ranks, so outside
// the lock), fills the slot and returns the handle as the op's output.
template <class Open>
void open_group(vt::Call& c, ar::Provider provider, int32_t rank, int32_t world, Open&& open) {
  int slot = -1;
  {
    std::lock_guard<std::mutex> lock(table_mutex());
    for (int i = 0; i < ar::kMaxGroups && slot < 0; ++i)
      if (ar::groups()[i].provider == ar::Provider::None && ar::groups()[i].world == 0) slot = i;
    if (slot < 0) c.fail(VT_ERR_RUNTIME, "too many open process groups (%d); destroy some first", ar::kMaxGroups);
    ar::groups()[slot].world = -1;  // reserved
  }
  void* impl = nullptr;
  try {
    impl = open();
  } catch (...) {
    std::lock_guard<std::mutex> lock(table_mutex());
    ar::groups()[slot].world = 0;
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(table_mutex());
    ar::groups()[slot] = Group{provider, rank, world, impl};
  }
  c.outs[0].tag = VT_INT;
  c.outs[0].v.i = slot;
}

}  // namespace

VT_KERNEL(shm_new_group_cpu, "allreduce::shm_new_group") {
  const char* name = c.arg(0, "name").str();
  const int64_t rank = c.arg(1, "rank").int_(), world = c.arg(2, "world_size").int_();
  const int64_t bytes = c.arg(3, "buffer_bytes").int_();
  const double timeout = c.arg(4, "timeout").float_();
  check_rank(c, rank, world);
  // reduce_scatter puts W blocks of at least 64 elements (8 bytes at most) in a buffer
  const int64_t least = world * 512 > 4096 ? world * 512 : 4096;
  if (bytes < least || bytes % 64)
    c.fail(VT_ERR_VALUE, "buffer_bytes must be a multiple of 64 and at least %lld for world_size %lld, got %lld",
           (long long)least, (long long)world, (long long)bytes);
  if (!(timeout > 0)) c.fail(VT_ERR_VALUE, "timeout must be > 0 seconds, got %g", timeout);
  if (name[0] != '/' || std::strlen(name) > 200 || std::strchr(name + 1, '/'))
    c.fail(VT_ERR_VALUE, "name must be '/' and up to 200 characters without '/', got '%s'", name);
  open_group(c, ar::Provider::Shm, (int32_t)rank, (int32_t)world, [&]() -> void* {
    return ar::shm_open_group(c.op, name, (int32_t)rank, (int32_t)world, bytes, timeout);
  });
}

VT_KERNEL(nccl_new_group_cpu, "allreduce::nccl_new_group") {
  const vt_tensor* id = c.arg(0, "unique_id").tensor();
  const int64_t rank = c.arg(1, "rank").int_(), world = c.arg(2, "world_size").int_();
  const int64_t device = c.arg(3, "device").int_();
  const char* library = c.arg(4, "library").str();
  check_rank(c, rank, world);
  open_group(c, ar::Provider::Nccl, (int32_t)rank, (int32_t)world, [&]() -> void* {
    return ar::nccl_open(c, id, (int32_t)rank, (int32_t)world, (int32_t)device, library);
  });
}

VT_KERNEL(destroy_group_cpu, "allreduce::destroy_group") {
  const int64_t h = c.arg(0, "group").int_();
  Group g;
  {
    std::lock_guard<std::mutex> lock(table_mutex());
    g = ar::group_of(c, h);
    ar::groups()[h] = Group{};
  }
  if (g.provider == ar::Provider::Shm) ar::shm_close_group(static_cast<ar::ShmGroup*>(g.impl));
  if (g.provider == ar::Provider::Nccl) ar::nccl_close(g.impl);
#ifdef VT_WITH_CUDA
  if (g.provider == ar::Provider::P2p) ar::p2p_close(g.impl);
#endif
  c.outs[0].tag = VT_BOOL;
  c.outs[0].v.b = 1;
}

namespace {

vt_status allreduce_init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "allreduce", [&] {
    vt::Registrar shm(host, pack, "shm", 0);
    shm.define(kAllReduce, all_reduce_meta);
    shm.define(kBroadcast, broadcast_meta);
    shm.define(kAllGather, all_gather_meta);
    shm.define(kReduceScatter, reduce_scatter_meta);
    shm.define(kBarrier, barrier_meta);
    shm.compute("allreduce::all_reduce_", VT_CPU, ar::all_reduce_shm);
    shm.compute("allreduce::broadcast_", VT_CPU, ar::broadcast_shm);
    shm.compute("allreduce::all_gather_", VT_CPU, ar::all_gather_shm);
    shm.compute("allreduce::reduce_scatter_", VT_CPU, ar::reduce_scatter_shm);
    shm.compute("allreduce::barrier", VT_CPU, ar::barrier_shm);
    shm.def(kShmNewGroup, VT_CPU, shm_new_group_cpu);
    shm.def(kDestroyGroup, VT_CPU, destroy_group_cpu);
    // NCCL, loaded at run time (backend="nccl", and p2p's fallback)
    vt::Registrar nccl(host, pack, "nccl", 0);
    nccl.def(kNcclUniqueId, VT_CPU, ar::nccl_unique_id_cpu);
    nccl.def(kNcclNewGroup, VT_CPU, nccl_new_group_cpu);
    nccl.compute("allreduce::all_reduce_", VT_CUDA, ar::all_reduce_nccl);
    nccl.compute("allreduce::broadcast_", VT_CUDA, ar::broadcast_nccl);
    nccl.compute("allreduce::all_gather_", VT_CUDA, ar::all_gather_nccl);
    nccl.compute("allreduce::reduce_scatter_", VT_CUDA, ar::reduce_scatter_nccl);
#ifdef VT_WITH_CUDA
    // CUDA IPC buffers and our kernels (p2p.cu); above nccl for all_reduce_
    vt::Registrar p2p(host, pack, "p2p", 10);
    p2p.def(kP2pNewGroup, VT_CPU, ar::p2p_new_group_cpu);
    p2p.def(kP2pHandle, VT_CPU, ar::p2p_handle_cpu);
    p2p.def(kP2pConnect, VT_CPU, ar::p2p_connect_cpu);
    p2p.def(kP2pCheck, VT_CPU, ar::p2p_check_cpu);
    p2p.compute("allreduce::all_reduce_", VT_CUDA, ar::all_reduce_p2p);
#endif
  });
}

}  // namespace

VT_OPPACK_DEFINE(allreduce_init)

// What the providers need and promise (vt/capabilities.h; checked at load, shown by vt-ops info).
VT_OPPACK_CAPABILITIES(R"json({
  "abi_minor": 1,
  "providers": [
    {"provider": "shm", "device": "cpu", "deterministic": true,
     "shapes": "processes of one machine; every rank reduces in rank order, so all get equal bits"},
    {"provider": "nccl", "device": "cuda", "cuda_graphs": false, "deterministic": false,
     "shapes": "NCCL loaded at run time; reduction order is NCCL's"},
    {"provider": "p2p", "device": "cuda", "cuda_graphs": true, "deterministic": true,
     "shapes": "the GPUs of one node (up to 16) through CUDA IPC; float32, bfloat16, float16 with sum, avg, max (the rest goes to the group's nccl fallback); one-shot, two-shot, ring or (two ranks) push by size; over 16 MiB (64 MiB with two ranks) to the nccl fallback where there is one"}
  ]
})json")
