// allreduce.hpp — what the `allreduce` pack's files share: the reduce operations, the table of open
// process groups (which the device-independent meta steps read for world sizes), and the entry
// points of the providers (shm.cpp, nccl.cpp, p2p.cu).
//
// A process group is an int handle: a slot of `groups()`. It is opened by a provider's op
// (allreduce::shm_new_group) and closed by allreduce::destroy_group; vibetensor.distributed does
// both. Collectives on one group must be called in the same order on every rank, from one thread
// at a time (vibetensor.distributed keeps that promise; the pack does not lock).
#pragma once

#include <cstdint>
#include <cstring>

#include "vt/oppack.hpp"

namespace ar {

// ---- reduce operations (the `op` argument: "sum", "avg", "max", "min", "product") -------------
enum class Red : int32_t { Sum = 0, Avg = 1, Max = 2, Min = 3, Product = 4 };

inline bool parse_red(const char* s, Red* out) {
  static const char* const names[] = {"sum", "avg", "max", "min", "product"};
  for (int i = 0; i < 5; ++i)
    if (std::strcmp(s, names[i]) == 0) { *out = (Red)i; return true; }
  return false;
}

// ---- the kinds of collective (checked to be the same on every rank of a call) ------------------
enum class Kind : uint32_t { AllReduce = 1, Broadcast = 2, AllGather = 3, ReduceScatter = 4, Barrier = 5 };

// The dtypes every provider takes (16-bit floats are reduced in float).
inline bool supported_dtype(vt_dtype d) {
  switch (vt::scalar_type(d)) {
    case vt::ScalarType::Float32: case vt::ScalarType::Float64: case vt::ScalarType::BFloat16:
    case vt::ScalarType::Float16: case vt::ScalarType::Int32: case vt::ScalarType::Int64: return true;
    default: return false;
  }
}
constexpr const char* kDtypes = "float32, float64, bfloat16, float16, int32, int64";

// ---- open groups -------------------------------------------------------------------------------
enum class Provider : int32_t { None = 0, Shm = 1, Nccl = 2, P2p = 3 };

struct Group {
  Provider provider = Provider::None;
  int32_t rank = 0, world = 0;
  void* impl = nullptr;  // the provider's state (ShmGroup* for shm, NcclGroup* for nccl, P2pGroup* for p2p)
  int32_t fallback = -1;  // p2p: the nccl group that serves what p2p does not take (-1: none)
};
constexpr int kMaxGroups = 64;
Group* groups();  // kMaxGroups slots; handle = index
// Puts an opened group into a free slot and returns its handle (RuntimeError when all are taken).
int32_t add_group(const vt::Call& c, const Group& g);

// The open group behind a handle, or a ValueError naming the op.
inline Group& group_of(const vt::Call& c, int64_t handle) {
  if (handle < 0 || handle >= kMaxGroups || groups()[handle].provider == Provider::None)
    c.fail(VT_ERR_VALUE, "group %lld is not an open process group (init_process_group first; "
           "destroyed groups cannot be used)", (long long)handle);
  return groups()[handle];
}

// ---- the shm provider (shm.cpp) ----------------------------------------------------------------
struct ShmGroup;
// Opens (rank 0: creates) the segment `name` for `world` ranks with two buffers of `buffer_bytes`
// per rank; waits up to timeout_s for every rank to attach. Throws vt::Error naming `op`.
ShmGroup* shm_open_group(const char* op, const char* name, int32_t rank, int32_t world,
                         int64_t buffer_bytes, double timeout_s);
void shm_close_group(ShmGroup* g);

vt::KernelFn all_reduce_shm, broadcast_shm, all_gather_shm, reduce_scatter_shm, barrier_shm;

// ---- the nccl provider (nccl.cpp) --------------------------------------------------------------
void* nccl_open(const vt::Call& c, const vt_tensor* unique_id, int32_t rank, int32_t world, int32_t device,
                const char* library);
void nccl_close(void* impl);
vt::KernelFn nccl_unique_id_cpu, all_reduce_nccl, broadcast_nccl, all_gather_nccl, reduce_scatter_nccl;

// ---- the p2p provider (p2p.cu, only in CUDA builds: VT_WITH_CUDA) -------------------------------
#ifdef VT_WITH_CUDA
vt::KernelFn p2p_new_group_cpu, p2p_handle_cpu, p2p_connect_cpu, p2p_check_cpu, all_reduce_p2p;
void p2p_close(void* impl);
#endif

}  // namespace ar
