// nccl.cpp — the `nccl` provider: the collectives on CUDA tensors through NCCL, loaded at run time
// (dlopen of libnccl.so.2: the nvidia-nccl-cu13 wheel's, or the system's), so the pack builds and
// loads without NCCL or CUDA. Host code only: it enqueues on the call's stream and never waits.
//
// Tested on 2 H200s (tests/test_distributed_cuda.py). The declarations below were checked against
// nccl.h of nvidia-nccl-cu13 2.32.3 (enum values, signatures, NCCL_UNIQUE_ID_BYTES) and every
// dlsym'd name against that libnccl.so.2's exports. It serves backend="nccl", and is the fallback of
// the p2p provider for what p2p does not take (other dtypes and ops, the other collectives, messages
// over 16 MiB, or 64 MiB with two ranks).
//
//   allreduce::nccl_unique_id(str library) -> Tensor        uint8 (128,) on cpu: ncclGetUniqueId
//   allreduce::nccl_new_group(Tensor unique_id, int rank, int world_size, int device, str library) -> int
//   computes of all_reduce_, broadcast_, all_gather_, reduce_scatter_ on cuda (provider "nccl")
// Rank 0 makes the id and shares it through the rendezvous store (torch's broadcastUniqueNCCLID);
// every rank then calls nccl_new_group with its own device (one device per rank, or NCCL hangs).
// destroy_group aborts the communicator (ncclCommDestroy can block forever: torch aborts too).
// NVLink SHARP (multicast objects) stays off unless the user chose otherwise: NCCL_NVLS_ENABLE=0 is
// set before the first communicator (shared machines forbid multicast; a user's value is kept).
#include <dlfcn.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <string>

#include "allreduce.hpp"

namespace ar {
namespace {

// ---- NCCL's C API, restated (nccl.h of NCCL 2.32; stable since 2.10, the oldest we accept) --------
using ncclResult_t = int;  // an enum in nccl.h: ncclSuccess = 0 ... ncclTimeout = 8
using ncclComm_t = struct ncclComm*;
struct ncclUniqueId { char internal[128]; };
static_assert(sizeof(ncclUniqueId) == 128, "NCCL_UNIQUE_ID_BYTES");
enum ncclDataType_t { ncclInt32 = 2, ncclInt64 = 4, ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9 };
enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };
using cudaStream_t = void*;
constexpr int kMinVersion = 21000;  // NCCL_VERSION_CODE of 2.10: ncclAvg and ncclBfloat16 exist

struct Nccl {
  void* lib = nullptr;
  std::string error;  // why loading failed ("" when loaded)
  int version = 0;    // NCCL_VERSION_CODE of the loaded library (major * 10000 + minor * 100 + patch)
  ncclResult_t (*GetVersion)(int*);
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  const char* (*GetErrorString)(ncclResult_t);
  const char* (*GetLastError)(ncclComm_t);  // optional (2.13+): NCCL's own message for the last error
};

// The library, loaded once per process (the first path asked for wins).
const Nccl& nccl(const vt::Call& c, const char* library) {
  static Nccl n;
  static std::once_flag once;
  std::call_once(once, [&] {
    n.lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!n.lib) {
      const char* e = dlerror();
      n.error = std::string("cannot load ") + library + ": " + (e ? e : "?") +
                " (pip install nvidia-nccl-cu13, or give the library's path)";
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(n.lib, name);
      if (!p && n.error.empty()) n.error = std::string(library) + " has no symbol " + name;
      return p;
    };
    n.GetVersion = reinterpret_cast<decltype(n.GetVersion)>(sym("ncclGetVersion"));
    n.GetUniqueId = reinterpret_cast<decltype(n.GetUniqueId)>(sym("ncclGetUniqueId"));
    n.CommInitRank = reinterpret_cast<decltype(n.CommInitRank)>(sym("ncclCommInitRank"));
    n.CommAbort = reinterpret_cast<decltype(n.CommAbort)>(sym("ncclCommAbort"));
    n.AllReduce = reinterpret_cast<decltype(n.AllReduce)>(sym("ncclAllReduce"));
    n.Broadcast = reinterpret_cast<decltype(n.Broadcast)>(sym("ncclBroadcast"));
    n.AllGather = reinterpret_cast<decltype(n.AllGather)>(sym("ncclAllGather"));
    n.ReduceScatter = reinterpret_cast<decltype(n.ReduceScatter)>(sym("ncclReduceScatter"));
    n.GetErrorString = reinterpret_cast<decltype(n.GetErrorString)>(sym("ncclGetErrorString"));
    n.GetLastError = reinterpret_cast<decltype(n.GetLastError)>(dlsym(n.lib, "ncclGetLastError"));
    if (!n.error.empty()) return;
    if (n.GetVersion(&n.version) != 0 || n.version < kMinVersion)
      n.error = std::string(library) + " is NCCL " + std::to_string(n.version / 10000) + "." +
                std::to_string(n.version / 100 % 100) + "; vibetensor needs 2.10 or newer (pip install nvidia-nccl-cu13)";
  });
  if (!n.error.empty()) c.fail(VT_ERR_RUNTIME, "%s", n.error.c_str());
  return n;
}

void check(const vt::Call& c, const Nccl& n, ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r == 0) return;
  const char* last = n.GetLastError ? n.GetLastError(comm) : nullptr;
  c.fail(VT_ERR_RUNTIME, "NCCL error %d in %s: %s%s%s", r, what, n.GetErrorString(r), last && *last ? ": " : "",
         last ? last : "");
}

ncclDataType_t nccl_dtype(const vt::Call& c, vt_dtype d) {
  switch (vt::scalar_type(d)) {
    case vt::ScalarType::Float32: return ncclFloat32;
    case vt::ScalarType::Float64: return ncclFloat64;
    case vt::ScalarType::Float16: return ncclFloat16;
    case vt::ScalarType::BFloat16: return ncclBfloat16;
    case vt::ScalarType::Int32: return ncclInt32;
    case vt::ScalarType::Int64: return ncclInt64;
    default: c.fail(VT_ERR_TYPE, "no NCCL type for %s", vt::dtype_name(d));
  }
}

ncclRedOp_t nccl_op(Red r) {
  switch (r) {
    case Red::Sum: return ncclSum;
    case Red::Avg: return ncclAvg;
    case Red::Max: return ncclMax;
    case Red::Min: return ncclMin;
    case Red::Product: return ncclProd;
  }
  return ncclSum;
}

struct NcclGroup {
  const Nccl* n;
  ncclComm_t comm;
  int32_t device;
};

// The nccl group behind a handle: an nccl group, or the nccl fallback of a p2p group.
NcclGroup& nccl_of(const vt::Call& c, int64_t handle, const vt_tensor* t) {
  Group* gp = &group_of(c, handle);
  if (gp->provider == Provider::P2p && gp->fallback >= 0) gp = &group_of(c, gp->fallback);
  Group& g = *gp;
  if (g.provider != Provider::Nccl)
    c.fail(VT_ERR_VALUE, "group %lld has no nccl communicator (cuda tensors need init_process_group() with "
           "NCCL installed: pip install nvidia-nccl-cu13)", (long long)handle);
  NcclGroup& ng = *static_cast<NcclGroup*>(g.impl);
  if (t->device.index != ng.device)
    c.fail(VT_ERR_VALUE, "the tensor is on cuda:%d, this rank's nccl group on cuda:%d", t->device.index, ng.device);
  return ng;
}

}  // namespace

VT_KERNEL(nccl_unique_id_cpu, "allreduce::nccl_unique_id") {
  const Nccl& n = nccl(c, c.arg(0, "library").str());
  const int64_t size = sizeof(ncclUniqueId);
  vt::Tensor id = c.empty(&size, 1, vt::kUInt8);
  check(c, n, n.GetUniqueId(static_cast<ncclUniqueId*>(id->data)), "ncclGetUniqueId");
  c.set_out(0, std::move(id));
}

// Opens a communicator; the caller puts it in the group table.
void* nccl_open(const vt::Call& c, const vt_tensor* id, int32_t rank, int32_t world, int32_t device,
                const char* library) {
  if (id->device.type != VT_CPU || id->numel != (int64_t)sizeof(ncclUniqueId) || id->dtype.bits != 8)
    c.fail(VT_ERR_VALUE, "unique_id must be the uint8 (128,) cpu tensor of nccl_unique_id, got %lld elements",
           (long long)id->numel);
  if (!VT_HOST_HAS(c.host, cuda_exchange_device))
    c.fail(VT_ERR_ABI, "needs a vibetensor with ABI >= 1.1");
  const Nccl& n = nccl(c, library);
  ncclUniqueId uid;
  std::memcpy(&uid, id->data, sizeof uid);
  const int32_t prev = c.host->cuda_exchange_device(device);
  if (prev < 0) c.fail(VT_ERR_RUNTIME, "CUDA is not available in this vibetensor (nccl needs it)");
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);  // no NVLink multicast unless the user asked for it
  ncclComm_t comm = nullptr;
  const ncclResult_t r = n.CommInitRank(&comm, world, uid, rank);
  c.host->cuda_exchange_device(prev);
  check(c, n, r, "ncclCommInitRank");
  return new NcclGroup{&n, comm, device};
}

void nccl_close(void* impl) {
  NcclGroup* g = static_cast<NcclGroup*>(impl);
  if (g->comm) g->n->CommAbort(g->comm);
  delete g;
}

VT_COMPUTE(all_reduce_nccl, "allreduce::all_reduce_") {
  vt_tensor* self = c.out(0);
  NcclGroup& g = nccl_of(c, c.arg(1, "group").int_(), self);
  Red r;
  parse_red(c.arg(2, "op").str(), &r);
  check(c, *g.n, g.n->AllReduce(self->data, self->data, (size_t)self->numel, nccl_dtype(c, self->dtype), nccl_op(r),
                                g.comm, c.ctx->stream), "ncclAllReduce", g.comm);
}


VT_COMPUTE(broadcast_nccl, "allreduce::broadcast_") {
  vt_tensor* self = c.out(0);
  NcclGroup& g = nccl_of(c, c.arg(1, "group").int_(), self);
  check(c, *g.n, g.n->Broadcast(self->data, self->data, (size_t)self->numel, nccl_dtype(c, self->dtype),
                                (int)c.arg(2, "src").int_(), g.comm, c.ctx->stream), "ncclBroadcast", g.comm);
}

VT_COMPUTE(all_gather_nccl, "allreduce::all_gather_") {
  vt_tensor* out = c.out(0);
  const vt_tensor* input = c.arg(1, "input").tensor();
  NcclGroup& g = nccl_of(c, c.arg(2, "group").int_(), out);
  check(c, *g.n, g.n->AllGather(input->data, out->data, (size_t)input->numel, nccl_dtype(c, input->dtype), g.comm,
                                c.ctx->stream), "ncclAllGather", g.comm);
}

VT_COMPUTE(reduce_scatter_nccl, "allreduce::reduce_scatter_") {
  vt_tensor* out = c.out(0);
  const vt_tensor* input = c.arg(1, "input").tensor();
  NcclGroup& g = nccl_of(c, c.arg(2, "group").int_(), out);
  Red r;
  parse_red(c.arg(3, "op").str(), &r);
  check(c, *g.n, g.n->ReduceScatter(input->data, out->data, (size_t)out->numel, nccl_dtype(c, out->dtype),
                                    nccl_op(r), g.comm, c.ctx->stream), "ncclReduceScatter", g.comm);
}

}  // namespace ar
