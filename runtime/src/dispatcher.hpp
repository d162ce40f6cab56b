// dispatcher.hpp — ops, their providers, and the immutable dispatch snapshots calls read.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "device.hpp"
#include "internal.hpp"
#include "schema.hpp"

namespace vt {

struct Impl {
  std::string provider;
  int32_t priority = 0;
  uint64_t seq = 0;  // registration order: among equal priorities the newest wins
  vt_kernel_fn fn = nullptr;
  void* user = nullptr;
  Pack* pack = nullptr;
  bool compute = false;  // a compute function: runs after the op's meta step made the outputs
};

// The op's meta step (ABI 1.1): checks, output shapes/dtypes, output allocation.
struct Meta {
  vt_kernel_fn fn = nullptr;
  uint32_t flags = 0;  // VT_META_*
  Pack* pack = nullptr;
};

struct Backward {
  vt_backward_fn fn = nullptr;
  uint64_t save_args = 0, save_outs = 0;
  Pack* pack = nullptr;
};

// What a call reads: the chosen kernel per device type. Never mutated once published; each entry
// holds a reference on its pack so the code stays mapped while the snapshot may be in use.
struct Snapshot {
  struct Entry {
    vt_kernel_fn fn = nullptr;
    void* user = nullptr;
    Pack* pack = nullptr;
    bool compute = false;
    int32_t reason = 0;    // VTRT_REASON_* (vt/runtime_trace.h): why it was chosen, for traces
    std::string provider;  // for traces and for telling providers apart on the fallback path
  } dev[kDeviceSlots];  // by device slot (device.hpp)
  // Per device slot, every provider best first: when the chosen one declines a call (returns
  // VT_ERR_NOT_IMPL from its kernel or compute), the next one here takes it. Empty while pinned.
  std::vector<Entry> fallback[kDeviceSlots];
  // Per device slot, tuned choices by shape bucket (trace.hpp tune_key). Empty while pinned.
  std::unordered_map<uint64_t, Entry> tuned[kDeviceSlots];
  bool any_tuned = false;  // so a call without tuned entries tests one flag
  Meta meta;          // holds its pack too
  Backward backward;  // the op's backward rule (device independent); holds its pack too
};

struct Op {
  Schema schema;  // parsed in place: its defaults point into itself, so an Op never moves
  bool defined = false;
  bool restaging = false;  // an unloaded op being defined again by a loading pack
  bool inplace = false;  // name ends in '_': mutates argument 0 (version bump, autograd rules)
  Pack* definer = nullptr;
  std::vector<Impl> impls[kDeviceSlots];  // by device slot; guarded by registry_mutex()
  std::string pinned[kDeviceSlots];
  std::unordered_map<uint64_t, std::string> tuned[kDeviceSlots];  // shape bucket -> provider
  Meta meta;  // guarded by registry_mutex(); calls read the snapshot's copy
  std::atomic<Snapshot*> snap{nullptr};
  Backward backward;  // guarded by registry_mutex(); calls read the snapshot's copy
};

inline Op* op_of(vt_op* h) { return reinterpret_cast<Op*>(h); }
inline vt_op* handle_of(Op* op) { return reinterpret_cast<vt_op*>(op); }

std::mutex& registry_mutex();  // guards the op table and every op's impl lists

// The pack loader's side of registration (pack_loader.cpp calls these).
struct Staged {
  // A reload (vtrt_pack_reload_fd_skipping): the loaded pack this one is to replace. Its ops and
  // providers may be registered again; they change hands at commit, in one step.
  Pack* replacing = nullptr;
  std::vector<Op*> ops;  // defined by the pack, not yet visible (or, in a reload, the replaced
                         // pack's live ops defined again with the same schema)
  struct Kernel {
    std::string op;
    int slot;  // device slot (device.hpp)
    Impl impl;
  };
  std::vector<Kernel> kernels;
  struct Bw {
    std::string op;
    Backward bw;
  };
  std::vector<Bw> backwards;
  struct Mt {
    std::string op;
    Meta meta;
  };
  std::vector<Mt> metas;
};
vt_status stage_define(Staged* st, Pack* pack, const char* schema);
vt_status stage_kernel(Staged* st, Pack* pack, const char* op, int32_t device_type,
                       const char* provider, int32_t priority, vt_kernel_fn fn, void* user,
                       bool compute);
vt_status stage_meta(Staged* st, Pack* pack, const char* op, vt_kernel_fn fn, uint32_t flags);
vt_status stage_backward(Staged* st, Pack* pack, const char* op, vt_backward_fn fn,
                         uint64_t save_args, uint64_t save_outs);
void commit_staged(Staged* st, Pack* pack, std::vector<Op*>* defined, std::vector<Op*>* provided);
// A reload's commit: under one hold of the registry mutex the old pack's kernels, meta steps and
// backward rules leave its ops and the staged ones arrive, and each op touched publishes one new
// snapshot, so a call on another thread runs the old code or the new, never neither. Ops the old
// pack defined that `st` defines again with the same schema stay the same Op, defined throughout.
void replace_staged(Staged* st, Pack* pack, Pack* old, const std::vector<Op*>& old_defined,
                    const std::vector<Op*>& old_provided, std::vector<Op*>* defined,
                    std::vector<Op*>* provided);
void discard_staged(Staged* st);
void remove_pack(Pack* pack, const std::vector<Op*>& defined, const std::vector<Op*>& provided);
void forget_unloaded(const Pack* pack);  // the pack object is going away (pack_loader.cpp)
// The pack whose backward rule this thread is running (autograd.cpp), or null.
const Pack* backward_pack();

vt_status call(Op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts);

}  // namespace vt
