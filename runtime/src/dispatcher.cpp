// dispatcher.cpp — the op table, provider selection and the boxed call.
//
// Hot path (vt::call): check and complete the arguments against the schema on the stack, pick the
// device from the first tensor, read the op's current Snapshot with one atomic load, run the
// kernel. No lock, no heap allocation. Writers (pack load/unload, pinning) take the registry mutex,
// build a new Snapshot and swap it in; the old one is retired and freed once no call is in flight
// (see Grace below), which is also what keeps a just-unloaded pack's code mapped long enough.
#include "dispatcher.hpp"

#include <algorithm>

#include "autograd.hpp"
#include "trace.hpp"
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_map>

namespace vt {

namespace {

std::unordered_map<std::string, Op*>& op_table() {
  static auto* t = new std::unordered_map<std::string, Op*>();
  return *t;
}
std::vector<Op*>& op_order() {  // every Op ever made; Ops are never freed so handles stay valid
  static auto* v = new std::vector<Op*>();
  return *v;
}
uint64_t g_seq = 0;

// What by-name lookups read without the registry mutex (backward rules and packs resolve ops by
// name): an immutable copy of the op table, republished under the mutex whenever it changes and
// retired like snapshots.
// Keys view each Op's own name (Ops are never freed once published), so a lookup allocates nothing.
using NameMap = std::unordered_map<std::string_view, Op*>;
std::atomic<const NameMap*> g_names{nullptr};
std::vector<const NameMap*> g_retired_names;  // guarded by registry_mutex()

// ---- Grace: free retired snapshots only when no call can still be reading them ---------------
std::atomic<int64_t> g_inflight{0};
std::atomic<bool> g_retired_pending{false};
std::vector<Snapshot*> g_retired;  // guarded by registry_mutex()

void free_snapshot(Snapshot* s) {
  for (auto& e : s->dev)
    if (e.pack) pack_release(e.pack);
  for (auto& list : s->fallback)
    for (auto& e : list) pack_release(e.pack);
  for (auto& table : s->tuned)
    for (auto& kv : table) pack_release(kv.second.pack);
  if (s->meta.pack) pack_release(s->meta.pack);
  if (s->backward.pack) pack_release(s->backward.pack);
  delete s;
}

void reclaim_locked() {
  // seq_cst pairs with the increment in Inflight: a call that started after this load will see
  // the snapshot published before it, so nothing retired here can still be read.
  if (g_inflight.load(std::memory_order_seq_cst) != 0) return;
  std::vector<Snapshot*> retired;
  retired.swap(g_retired);
  std::vector<const NameMap*> names;
  names.swap(g_retired_names);
  g_retired_pending.store(false, std::memory_order_relaxed);
  for (Snapshot* s : retired) free_snapshot(s);
  for (const NameMap* m : names) delete m;
}

void publish_names_locked() {
  auto* m = new NameMap();
  for (const auto& kv : op_table()) m->emplace(std::string_view(kv.second->schema.name), kv.second);
  const NameMap* old = g_names.exchange(m, std::memory_order_seq_cst);
  if (old) {
    g_retired_names.push_back(old);
    g_retired_pending.store(true, std::memory_order_relaxed);
  }
}

struct Inflight {
  Inflight() { g_inflight.fetch_add(1, std::memory_order_seq_cst); }
  ~Inflight() {
    if (g_inflight.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        g_retired_pending.load(std::memory_order_relaxed)) {
      std::unique_lock<std::mutex> lk(registry_mutex(), std::try_to_lock);
      if (lk.owns_lock()) reclaim_locked();
    }
  }
};

const Impl* select(const Op* op, int dt) {
  const auto& list = op->impls[dt];
  if (!op->pinned[dt].empty()) {
    for (const auto& im : list)
      if (im.provider == op->pinned[dt]) return &im;
  }
  const Impl* best = nullptr;
  for (const auto& im : list)
    if (!best || im.priority > best->priority ||
        (im.priority == best->priority && im.seq > best->seq))
      best = &im;
  return best;
}

Snapshot::Entry entry_of(const Impl& im, int32_t reason) {
  Snapshot::Entry e;
  e.fn = im.fn;
  e.user = im.user;
  e.pack = im.pack;
  e.compute = im.compute;
  e.reason = reason;
  e.provider = im.provider;
  pack_retain(im.pack);
  return e;
}

void publish_locked(Op* op) {
  auto* s = new Snapshot();
  for (int dt = 0; dt < kDeviceSlots; ++dt) {
    const Impl* chosen = select(op, dt);
    if (!chosen) continue;
    const bool pinned = !op->pinned[dt].empty() && chosen->provider == op->pinned[dt];
    s->dev[dt] = entry_of(*chosen, pinned ? VTRT_REASON_PIN : VTRT_REASON_PRIORITY);
    if (pinned) continue;  // a pin means this provider, for every shape: no tuning, no fallback
    const auto& list = op->impls[dt];
    if (list.size() > 1) {
      std::vector<const Impl*> order;
      for (const auto& im : list) order.push_back(&im);
      std::sort(order.begin(), order.end(), [](const Impl* a, const Impl* b) {
        return a->priority != b->priority ? a->priority > b->priority : a->seq > b->seq;
      });
      for (const Impl* im : order) s->fallback[dt].push_back(entry_of(*im, VTRT_REASON_FALLBACK));
    }
    for (const auto& kv : op->tuned[dt]) {
      for (const auto& im : list) {
        if (im.provider == kv.second) {  // a tuned provider whose pack is gone is skipped
          s->tuned[dt].emplace(kv.first, entry_of(im, VTRT_REASON_TUNED));
          s->any_tuned = true;
          break;
        }
      }
    }
  }
  s->meta = op->meta;
  if (s->meta.pack) pack_retain(s->meta.pack);
  s->backward = op->backward;
  if (s->backward.pack) pack_retain(s->backward.pack);
  Snapshot* old = op->snap.exchange(s, std::memory_order_seq_cst);
  if (old) {
    g_retired.push_back(old);
    g_retired_pending.store(true, std::memory_order_relaxed);
  }
  reclaim_locked();
}

Op* find_locked(const std::string& name) {
  auto it = op_table().find(name);
  return it == op_table().end() ? nullptr : it->second;
}

Op* staged_or_table(Staged* st, const std::string& name) {
  for (Op* op : st->ops)
    if (op->schema.name == name) return op;
  return find_locked(name);
}

}  // namespace

std::mutex& registry_mutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

// ---- staging (during a pack's init) ---------------------------------------------------------

vt_status stage_define(Staged* st, Pack* pack, const char* schema) {
  auto* op = new Op();
  if (!parse_schema(schema ? schema : "", &op->schema)) {
    delete op;
    return VT_ERR_VALUE;
  }
  std::lock_guard<std::mutex> g(registry_mutex());
  const std::string& name = op->schema.name;
  Op* existing = staged_or_table(st, name);
  // A reload defining one of the replaced pack's ops again. With the same schema it is the same
  // Op, left untouched (calls are running it) until the commit swaps its snapshot; with another
  // schema it is a new op that takes the name at the commit.
  const bool replaced = existing && st->replacing && existing->definer == st->replacing &&
                        existing->defined && !existing->restaging;
  if (replaced && existing->schema.text == op->schema.text) {
    delete op;
    existing->restaging = true;  // read only under the mutex: marks it staged (commit, discard)
    st->ops.push_back(existing);
    return VT_OK;
  }
  if (existing && !replaced) {
    set_error(VT_ERR_VALUE, "op '%s' is already defined%s%s", name.c_str(),
              existing->definer ? " by pack " : " in this pack",
              existing->definer ? pack_name(existing->definer) : "");
    delete op;
    return VT_ERR_VALUE;
  }
  if (name.back() == '_' && (op->schema.args.empty() || op->schema.args[0].type != VT_TENSOR)) {
    set_error(VT_ERR_VALUE, "op '%s' ends in '_' (in place) but its first argument is not a "
              "Tensor", name.c_str());
    delete op;
    return VT_ERR_VALUE;
  }
  // A pack defining an op again after it was unloaded (a reload) with the same schema gets the
  // same Op back, so handles resolved once (Python's, packs' cached ones) keep working.
  for (Op* old : op_order()) {
    if (!old->defined && !old->restaging && old->schema.text == op->schema.text) {
      delete op;
      op = old;
      op->restaging = true;
      for (auto& p : op->pinned) p.clear();
      break;
    }
  }
  op->definer = pack;
  op->inplace = op->schema.name.back() == '_';  // not `name`: it referred to the deleted parse
  st->ops.push_back(op);
  return VT_OK;
}

vt_status stage_kernel(Staged* st, Pack* pack, const char* op_name, int32_t device_type,
                       const char* provider, int32_t priority, vt_kernel_fn fn, void* user,
                       bool compute) {
  if (!op_name || !provider || !*provider || !fn)
    return set_error(VT_ERR_VALUE, "register_kernel: op name, provider and kernel are required");
  const int slot = device_slot(device_type);
  if (slot < 0)
    return set_error(VT_ERR_VALUE, "register_kernel(%s): unknown device type %d", op_name,
                     device_type);
  if (slot == kMetaSlot)
    return set_error(VT_ERR_VALUE, "register_kernel(%s): the meta device runs only the op's meta "
                     "step (register_meta), not kernels", op_name);
  std::lock_guard<std::mutex> g(registry_mutex());
  Op* op = staged_or_table(st, op_name);
  if (!op)
    return set_error(VT_ERR_VALUE, "register_kernel: unknown op '%s' (define it first, or load "
                     "the pack that defines it)", op_name);
  for (const auto& k : st->kernels)
    if (k.op == op_name && k.slot == slot && k.impl.provider == provider)
      return set_error(VT_ERR_VALUE, "register_kernel: provider '%s' of %s on %s registered "
                       "twice", provider, op_name, kDevices[slot].name);
  for (const auto& im : op->impls[slot])
    if (im.provider == provider && im.pack != st->replacing)  // a reload's own go at the commit
      return set_error(VT_ERR_VALUE, "register_kernel: provider '%s' of %s already exists "
                       "(loaded by pack %s)", provider, op_name, pack_name(im.pack));
  Impl im;
  im.provider = provider;
  im.priority = priority;
  im.fn = fn;
  im.user = user;
  im.pack = pack;
  im.compute = compute;
  st->kernels.push_back({op_name, slot, std::move(im)});
  return VT_OK;
}

vt_status stage_meta(Staged* st, Pack* pack, const char* op_name, vt_kernel_fn fn,
                     uint32_t flags) {
  std::lock_guard<std::mutex> g(registry_mutex());
  bool own = false;
  for (Op* op : st->ops) own |= op->schema.name == (op_name ? op_name : "");
  if (!own)
    return set_error(VT_ERR_VALUE, "register_meta: '%s' is not an op this pack defines (the meta "
                     "step belongs to the op's definition)", op_name ? op_name : "(null)");
  if (!fn) return set_error(VT_ERR_VALUE, "register_meta(%s): null function", op_name);
  if (flags & ~uint32_t{VT_META_COMPLETE})
    return set_error(VT_ERR_VALUE, "register_meta(%s): unknown flags 0x%x", op_name, flags);
  for (const auto& m : st->metas)
    if (m.op == op_name)
      return set_error(VT_ERR_VALUE, "register_meta(%s): registered twice", op_name);
  st->metas.push_back({op_name, {fn, flags, pack}});
  return VT_OK;
}

vt_status stage_backward(Staged* st, Pack* pack, const char* op_name, vt_backward_fn fn,
                         uint64_t save_args, uint64_t save_outs) {
  std::lock_guard<std::mutex> g(registry_mutex());
  bool own = false;
  for (Op* op : st->ops) own |= op->schema.name == (op_name ? op_name : "");
  if (!own)
    return set_error(VT_ERR_VALUE, "register_backward: '%s' is not an op this pack defines",
                     op_name ? op_name : "(null)");
  if (!fn) return set_error(VT_ERR_VALUE, "register_backward(%s): null function", op_name);
  st->backwards.push_back({op_name, {fn, save_args, save_outs, pack}});
  return VT_OK;
}

namespace {
void touch(std::vector<Op*>* touched, Op* op) {
  if (std::find(touched->begin(), touched->end(), op) == touched->end()) touched->push_back(op);
}

void clear_staged(Staged* st) {
  st->ops.clear();
  st->kernels.clear();
  st->backwards.clear();
  st->metas.clear();
}

// Makes `st`'s registrations current in the op table; the caller holds the registry mutex and
// publishes the `touched` ops afterwards (snapshots first, then the name map, so a lookup never
// finds an op whose snapshot is not out yet).
void apply_staged_locked(Staged* st, Pack* pack, std::vector<Op*>* defined,
                         std::vector<Op*>* touched) {
  for (Op* op : st->ops) {
    op->defined = true;
    op->definer = pack;
    op_table()[op->schema.name] = op;
    if (!op->restaging) op_order().push_back(op);
    op->restaging = false;
    defined->push_back(op);
  }
  for (auto& m : st->metas) {
    Op* op = find_locked(m.op);
    op->meta = m.meta;
    touch(touched, op);
  }
  for (auto& b : st->backwards) {
    Op* op = find_locked(b.op);
    op->backward = b.bw;
    touch(touched, op);
  }
  for (auto& k : st->kernels) {
    Op* op = find_locked(k.op);
    k.impl.seq = ++g_seq;
    op->impls[k.slot].push_back(std::move(k.impl));
    touch(touched, op);
  }
}
}  // namespace

void commit_staged(Staged* st, Pack* pack, std::vector<Op*>* defined, std::vector<Op*>* provided) {
  std::lock_guard<std::mutex> g(registry_mutex());
  std::vector<Op*> touched;
  apply_staged_locked(st, pack, defined, &touched);
  for (Op* op : touched) publish_locked(op);
  publish_names_locked();
  provided->insert(provided->end(), touched.begin(), touched.end());
  clear_staged(st);
}

void discard_staged(Staged* st) {
  {
    std::lock_guard<std::mutex> g(registry_mutex());
    for (Op* op : st->ops) {
      if (op->restaging) op->restaging = false;  // an unloaded op we meant to revive: stays
      else delete op;  // never published, so nothing can refer to it
    }
  }
  clear_staged(st);
}

// ---- unloaded ops a live graph still calls ----------------------------------------------------
//
// docs/ABI.md promises that a graph keeps its pack usable: a node holds its backward rule's pack,
// and that rule may call the pack's own ops (by handle or by name) after vt.ops.unload. So when a
// pack is unloaded, what served the ops it defined (its own kernels, meta steps and backward rules)
// is kept with the pack until the Pack itself dies; only a backward rule of that pack, running in
// the engine, can find and call them (nobody else sees an unloaded op). No extra pack references:
// the node that is running holds the pack.
namespace {
struct Unloaded {
  Op* op;
  Snapshot snap;  // the pack's own entries only; no references taken
};
std::mutex g_unloaded_mu;  // not the registry mutex: pack_release may run under that one
std::unordered_map<const Pack*, std::vector<Unloaded>>& unloaded() {
  static auto* m = new std::unordered_map<const Pack*, std::vector<Unloaded>>();
  return *m;
}

const Unloaded* find_unloaded(const Op* op, const char* name) {
  const Pack* p = backward_pack();
  if (!p) return nullptr;
  std::lock_guard<std::mutex> g(g_unloaded_mu);
  auto it = unloaded().find(p);
  if (it == unloaded().end()) return nullptr;
  for (const Unloaded& u : it->second)
    if (u.op == op || (name && u.op->schema.name == name)) return &u;
  return nullptr;
}
}  // namespace

void forget_unloaded(const Pack* pack) {
  std::lock_guard<std::mutex> g(g_unloaded_mu);
  unloaded().erase(pack);
}

namespace {
// What served the ops `pack` defined, kept for its backward rules (Unloaded above).
void keep_unloaded_locked(Pack* pack, const std::vector<Op*>& defined) {
  std::vector<Unloaded> keep;
  for (Op* op : defined) {
    const Snapshot* cur = op->snap.load(std::memory_order_acquire);
    if (!cur) continue;
    Unloaded u{op, Snapshot{}};
    for (int dt = 0; dt < kDeviceSlots; ++dt)
      if (cur->dev[dt].pack == pack) u.snap.dev[dt] = cur->dev[dt];
    if (cur->meta.pack == pack) u.snap.meta = cur->meta;
    if (cur->backward.pack == pack) u.snap.backward = cur->backward;
    keep.push_back(u);
  }
  std::lock_guard<std::mutex> gu(g_unloaded_mu);
  unloaded()[pack] = std::move(keep);
}

// Takes `pack`'s kernels, meta steps and backward rules out of its ops (the caller holds the
// registry mutex and publishes `touched`). The ops it defined leave the namespace, except those a
// reload is defining again (marked restaging): they stay defined and keep other packs' kernels.
void strip_pack_locked(Pack* pack, const std::vector<Op*>& defined,
                       const std::vector<Op*>& provided, std::vector<Op*>* touched) {
  for (Op* op : provided) {
    for (auto& list : op->impls)
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const Impl& im) { return im.pack == pack; }),
                 list.end());
    touch(touched, op);
  }
  for (Op* op : defined) {
    if (!op->restaging) {
      // The op disappears from the namespace; handles to it stay valid and report it unloaded.
      op->defined = false;
      auto it = op_table().find(op->schema.name);
      if (it != op_table().end() && it->second == op) op_table().erase(it);
      for (auto& list : op->impls) list.clear();
    }
    op->backward = Backward{};  // autograd nodes recorded earlier hold their own pack reference
    op->meta = Meta{};
    touch(touched, op);
  }
}
}  // namespace

void remove_pack(Pack* pack, const std::vector<Op*>& defined, const std::vector<Op*>& provided) {
  std::lock_guard<std::mutex> g(registry_mutex());
  keep_unloaded_locked(pack, defined);
  std::vector<Op*> touched;
  strip_pack_locked(pack, defined, provided, &touched);
  for (Op* op : touched) publish_locked(op);
  publish_names_locked();
}

void replace_staged(Staged* st, Pack* pack, Pack* old, const std::vector<Op*>& old_defined,
                    const std::vector<Op*>& old_provided, std::vector<Op*>* defined,
                    std::vector<Op*>* provided) {
  std::lock_guard<std::mutex> g(registry_mutex());
  keep_unloaded_locked(old, old_defined);
  std::vector<Op*> touched;
  strip_pack_locked(old, old_defined, old_provided, &touched);  // nothing published yet ...
  std::vector<Op*> added;
  apply_staged_locked(st, pack, defined, &added);
  for (Op* op : added) touch(&touched, op);
  for (Op* op : touched) publish_locked(op);  // ... each op changes in one step, old to new
  publish_names_locked();
  provided->insert(provided->end(), added.begin(), added.end());
  clear_staged(st);
}

// ---- the call ----------------------------------------------------------------------------------

namespace {

vt_status arg_error(const Op* op, const ArgSpec& a, int32_t i, const vt_value& v) {
  return set_error(VT_ERR_TYPE, "[%s] argument '%s' (position %d) must be %s%s, got %s",
                   op->schema.name.c_str(), a.name.c_str(), i + 1, tag_name(a.type),
                   a.optional ? " or None" : "", tag_name(v.tag));
}

// A compute function may swap an output the meta step made for another tensor (e.g. a provider
// composed of other ops), but it must be the same shape, dtype and device.
__attribute__((always_inline)) inline vt_status check_replaced(const Op* op, vt_tensor* const* made, const vt_value* outs,
                         int32_t nouts) {
  for (int32_t j = 0; j < nouts; ++j) {
    if (!made[j] || (outs[j].tag == VT_TENSOR && outs[j].v.t == made[j])) continue;
    const vt_tensor* a = made[j];
    const vt_tensor* b = outs[j].tag == VT_TENSOR ? outs[j].v.t : nullptr;
    bool same = b && a->ndim == b->ndim && a->dtype.code == b->dtype.code &&
                a->dtype.bits == b->dtype.bits && a->device.type == b->device.type &&
                a->device.index == b->device.index;
    for (int32_t d = 0; same && d < a->ndim; ++d) same = a->sizes[d] == b->sizes[d];
    if (!same)
      return set_error(VT_ERR_RUNTIME, "[%s] the compute function replaced output %d with a "
                       "tensor that differs from what the meta step made (%s %s on %s)",
                       op->schema.name.c_str(), j, dtype_name(a->dtype).c_str(),
                       shape_str(a->sizes, a->ndim).c_str(), device_name(a->device).c_str());
  }
  return VT_OK;
}

// The next provider to try after `tried` declined: the best of the fallback list that is neither
// `tried` nor the first to decline. `*next` walks the list so each is tried once.
const Snapshot::Entry* next_provider(const Snapshot* snap, int slot, const Snapshot::Entry* tried,
                                     const Snapshot::Entry* first_declined, size_t* next) {
  const auto& list = snap->fallback[slot];
  while (*next < list.size()) {
    const Snapshot::Entry* cand = &list[(*next)++];
    if (cand->provider != tried->provider &&
        !(first_declined && cand->provider == first_declined->provider))
      return cand;
  }
  return nullptr;
}

void note_choice(vtrt_trace_record* rec, const Snapshot::Entry* e, const Meta* meta) {
  if (e) {
    trace_copy_name(rec->provider, e->provider.c_str());
    trace_copy_name(rec->pack, pack_name(e->pack));
    rec->reason = e->reason;
  } else {  // the meta step was the whole call
    trace_copy_name(rec->provider, "meta");
    trace_copy_name(rec->pack, meta && meta->pack ? pack_name(meta->pack) : "");
    rec->reason = VTRT_REASON_META;
  }
}

// One body, two instances: kTraced fills `rec` (which provider, why, the device); the untraced
// instance has none of that code, so an untraced call pays only the branch on tracing().
template <bool kTraced>
vt_status call_inner(Op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts,
                     vtrt_trace_record* rec) {
  if (!op) return set_error(VT_ERR_VALUE, "call: null op handle (is the pack that defines it loaded?)");
  const Schema& s = op->schema;
  const Unloaded* gone = nullptr;
  if (!op->defined && !(gone = find_unloaded(op, nullptr)))
    return set_error(VT_ERR_RUNTIME, "[%s] the pack that defined this op was unloaded",
                     s.name.c_str());
  const int32_t n = static_cast<int32_t>(s.args.size());
  if (nargs > n || nargs < 0)
    return set_error(VT_ERR_TYPE, "[%s] takes %d arguments, got %d", s.name.c_str(), n, nargs);
  if (nouts != static_cast<int32_t>(s.returns.size()))
    return set_error(VT_ERR_TYPE, "[%s] returns %zu values, caller expects %d", s.name.c_str(),
                     s.returns.size(), nouts);

  vt_value full[VT_MAX_ARGS];
  vt_device device{0, 0};
  int32_t device_arg = -1;
  for (int32_t i = 0; i < n; ++i) {
    const ArgSpec& a = s.args[i];
    if (i >= nargs) {
      if (!a.has_default)
        return set_error(VT_ERR_TYPE, "[%s] missing argument '%s' (position %d)",
                         s.name.c_str(), a.name.c_str(), i + 1);
      full[i] = a.default_value;
      continue;
    }
    vt_value v = args[i];
    if (v.tag == VT_NONE) {
      if (!a.optional) return arg_error(op, a, i, v);
    } else if (a.type == VT_SCALAR) {
      if (v.tag != VT_INT && v.tag != VT_FLOAT && v.tag != VT_BOOL) return arg_error(op, a, i, v);
    } else if (v.tag != a.type) {
      if (a.type == VT_FLOAT && v.tag == VT_INT) {  // ints are accepted where floats are
        v.tag = VT_FLOAT;
        v.v.f = static_cast<double>(v.v.i);
      } else if (a.type == VT_INT && v.tag == VT_BOOL) {
        v.tag = VT_INT;
      } else {
        return arg_error(op, a, i, v);
      }
    }
    if (v.tag == VT_TENSOR) {
      if (!v.v.t)
        return set_error(VT_ERR_TYPE, "[%s] argument '%s' is a null tensor", s.name.c_str(),
                         a.name.c_str());
      vt_device d = v.v.t->device;
      if (device_arg < 0 || s.args[device_arg].type == VT_DEVICE) {
        device = d;
        device_arg = i;
      } else if (d.type != device.type || d.index != device.index) {
        return set_error(VT_ERR_VALUE,
                         "[%s] expected all tensors on one device, but '%s' is on %s and '%s' "
                         "is on %s",
                         s.name.c_str(), s.args[device_arg].name.c_str(),
                         device_name(device).c_str(), a.name.c_str(), device_name(d).c_str());
      }
    } else if (v.tag == VT_TENSORS) {
      for (int64_t k = 0; k < v.v.ts.len; ++k) {
        const vt_tensor* t = v.v.ts.data[k];
        if (!t)
          return set_error(VT_ERR_TYPE, "[%s] argument '%s' has a null tensor at index %lld",
                           s.name.c_str(), a.name.c_str(), static_cast<long long>(k));
        if (device_arg < 0) {
          device = t->device;
          device_arg = i;
        } else if (t->device.type != device.type || t->device.index != device.index) {
          return set_error(VT_ERR_VALUE,
                           "[%s] expected all tensors on one device, but '%s' is on %s and "
                           "'%s'[%lld] is on %s", s.name.c_str(), s.args[device_arg].name.c_str(),
                           device_name(device).c_str(), a.name.c_str(),
                           static_cast<long long>(k), device_name(t->device).c_str());
        }
      }
    } else if (v.tag == VT_DEVICE && device_arg < 0) {
      device = v.v.device;
      device_arg = i;
    }
    full[i] = v;
  }
  if (device_arg < 0) device = {VT_CPU, 0};
  const int slot = device_slot(device.type);
  if (slot < 0)
    return set_error(VT_ERR_VALUE, "[%s] unknown device type %d", s.name.c_str(), device.type);

  if constexpr (kTraced) {
    rec->device = device;
    trace_options(rec, full, n);
  }

  Inflight guard;
  const Snapshot* snap = gone ? &gone->snap : op->snap.load(std::memory_order_seq_cst);
  // A backward of a graph built before its pack was unloaded can run while that pack is loaded
  // again: the op is defined anew, its kernels not registered yet. The old pack's kernels (kept
  // mapped for the graph) serve then, as they do while the op is undefined. Only when no kernel.
  if (!gone && snap && slot != kMetaSlot && !snap->dev[slot].fn) {
    const Unloaded* old = find_unloaded(op, nullptr);
    if (old && old->snap.dev[slot].fn) snap = &old->snap;
  }
  const Snapshot::Entry* e = snap ? &snap->dev[slot] : nullptr;
  const Meta* meta = snap && snap->meta.fn ? &snap->meta : nullptr;
  // What runs: the meta step alone (meta device, or an op whose meta step is its whole result),
  // the meta step then a compute function, or a whole kernel (ABI 1.0 style, or an op whose
  // output shape depends on the data).
  const bool meta_only = meta && (slot == kMetaSlot || (meta->flags & VT_META_COMPLETE));
  if (snap && snap->any_tuned && !meta_only) {  // a tuned choice for this bucket and options?
    const auto& table = snap->tuned[slot];
    if (!table.empty()) {
      auto it = table.find(tune_key(full, n));
      if (it != table.end()) e = &it->second;
    }
  }
  if (!meta_only) {
    if (slot == kMetaSlot)
      return set_error(VT_ERR_NOT_IMPL, "[%s] has no meta step, so it cannot run on the meta "
                       "device (its output shape depends on the data, or its pack predates ABI "
                       "1.1)", s.name.c_str());
    if (!e || !e->fn)
      return set_error(VT_ERR_NOT_IMPL, "[%s] no kernel for device %s (load a pack that provides "
                       "one; vt.ops.providers('%s') lists them)", s.name.c_str(),
                       device_name(device).c_str(), s.name.c_str());
    if (e->compute && !meta)
      return set_error(VT_ERR_RUNTIME, "[%s] provider of pack %s registered a compute function, "
                       "but the op has no meta step to make its outputs", s.name.c_str(),
                       pack_name(e->pack));
  }
  if (op->inplace) {
    if (vt_status st = check_inplace(op, full)) return st;
  }
  CudaDeviceGuard device_guard(device);
  vt_kernel_ctx ctx{host(), device, device.type == VT_CUDA ? cuda_current_stream(device) : nullptr,
                    e ? e->user : nullptr};
  vt_status st;
  // A provider declines a call it does not take (a shape, a dtype) by failing with
  // VT_ERR_NOT_IMPL before writing anything; unless pinned, the next provider by priority runs.
  const Snapshot::Entry* declined = nullptr;  // the first provider that declined
  vt_status declined_status = VT_OK;
  // made only when a provider declines (a local: a nested call may decline in between)
  std::unique_ptr<std::string> declined_message;
  size_t next = 0;
  for (;;) {
    for (int32_t j = 0; j < nouts; ++j) outs[j].tag = VT_NONE;
    vtrt_clear_error();  // so a kernel that fails without a message is not blamed on an old one
    bool meta_failed = false;
    {
      NoGradScope no_grad;
      if (meta_only || e->compute) {
        st = meta->fn(&ctx, full, n, outs, nouts);
        meta_failed = st != VT_OK;
        if (st == VT_OK && !meta_only) {
          vt_tensor* made[VT_MAX_ARGS];
          for (int32_t j = 0; j < nouts; ++j) made[j] = outs[j].tag == VT_TENSOR ? outs[j].v.t : nullptr;
          st = e->fn(&ctx, full, n, outs, nouts);
          if (st == VT_OK) st = check_replaced(op, made, outs, nouts);
          // the outputs a compute replaced are still ours to release, whatever happened
          for (int32_t j = 0; j < nouts; ++j)
            if (made[j] && !(outs[j].tag == VT_TENSOR && outs[j].v.t == made[j])) vtrt_release(made[j]);
        }
      } else {
        st = e->fn(&ctx, full, n, outs, nouts);
      }
    }
    if (st == VT_OK) break;
    for (int32_t j = 0; j < nouts; ++j) {
      if (outs[j].tag == VT_TENSOR && outs[j].v.t) vtrt_release(outs[j].v.t);
      outs[j].tag = VT_NONE;
    }
    // The host's status wins: it was set where the failure happened (e.g. an allocator saying
    // NOT_IMPL), while a kernel may only pass on a generic code.
    if (vtrt_last_status() != VT_OK) st = vtrt_last_status();
    if (st != VT_ERR_NOT_IMPL || meta_only || meta_failed) break;  // the meta step is everyone's
    const Snapshot::Entry* alt = next_provider(snap, slot, e, declined, &next);
    if (!alt) break;
    if (!declined) {
      declined = e;
      declined_status = st;
      declined_message = std::make_unique<std::string>(last_error());
    }
    e = alt;
    ctx.user = e->user;
  }
  if constexpr (kTraced) {
    note_choice(rec, meta_only ? nullptr : e, meta);
    if (declined) {
      rec->reason = VTRT_REASON_FALLBACK;
      trace_copy_name(rec->declined, declined->provider.c_str());
    }
  }
  if (st != VT_OK) {
    // every provider declined: the preferred one's reason is the one to read
    if (declined && st == VT_ERR_NOT_IMPL) set_error(declined_status, "%s", declined_message->c_str());
    const char* msg = last_error();
    if (msg[0] == 0) {
      set_error(st, "[%s] kernel failed without a message (status %d)", s.name.c_str(), st);
    } else if (msg[0] != '[') {
      std::string m = msg;
      set_error(st, "[%s] %s", s.name.c_str(), m.c_str());
    }
    return st;
  }
  for (int32_t j = 0; j < nouts; ++j) {
    if (outs[j].tag != s.returns[j] || (outs[j].tag == VT_TENSOR && !outs[j].v.t)) {
      for (int32_t k = 0; k < nouts; ++k)
        if (outs[k].tag == VT_TENSOR && outs[k].v.t) vtrt_release(outs[k].v.t);
      return set_error(VT_ERR_RUNTIME, "[%s] kernel returned %s for output %d, schema says %s",
                       s.name.c_str(), tag_name(outs[j].tag), j, tag_name(s.returns[j]));
    }
  }
  // a CUDA graph capturing this stream notes whose code it now holds (a relaxed load otherwise)
  if (device.type == VT_CUDA && !meta_only) cuda_note_capture(device, e->pack);
  if (op->inplace) vtrt_bump_version(full[0].v.t);
  bool recorded = false;
  if (grad_enabled() && snap->backward.fn) {
    bool any = false;
    for (int32_t i = 0; i < n && !any; ++i) {
      if (full[i].tag == VT_TENSOR) {
        any = wants_grad(full[i].v.t);
      } else if (full[i].tag == VT_TENSORS) {
        for (int64_t k = 0; k < full[i].v.ts.len && !any; ++k) any = wants_grad(full[i].v.ts.data[k]);
      }
    }
    if (any) record(op, snap, full, n, outs, nouts, device);
    recorded = any;
  }
  if (n > 0) track_views(op, full, outs, nouts, recorded);
  return VT_OK;
}

// A traced call: the same call, timed and recorded with its depth (trace.hpp).
vt_status call_traced(Op* op, const vt_value* args, int32_t nargs, vt_value* outs,
                      int32_t nouts) {
  vtrt_trace_record rec;
  // options[] is written up to noptions by trace_options (zeroing all of it would cost every
  // traced call ~300 bytes of stores for slots few ops use)
  std::memset(&rec, 0, offsetof(vtrt_trace_record, options));
  rec.op = handle_of(op);
  rec.thread = trace_thread_id();
  if (op) trace_tensors(&rec, args, nargs);
  int& depth = trace_depth();
  rec.depth = depth++;
  rec.start_ns = now_ns();
  const vt_status st = call_inner<true>(op, args, nargs, outs, nouts, &rec);
  rec.end_ns = now_ns();
  --depth;
  rec.status = st;
  if (op) trace_push(rec);
  return st;
}

}  // namespace

vt_status call(Op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts) {
  if (tracing()) return call_traced(op, args, nargs, outs, nouts);
  return call_inner<false>(op, args, nargs, outs, nouts, nullptr);
}

}  // namespace vt

using namespace vt;

extern "C" {

vt_op* vtrt_find_op(const char* name) {
  Op* op = nullptr;
  {
    Inflight guard;  // the map read below is not freed while we are in flight
    const NameMap* m = g_names.load(std::memory_order_seq_cst);
    if (m && name) {
      auto it = m->find(std::string_view(name));
      if (it != m->end()) op = it->second;
    }
  }
  if (!op && name) {  // a backward rule of an unloaded pack calling one of the pack's own ops
    if (const Unloaded* u = find_unloaded(nullptr, name)) op = u->op;
  }
  if (!op) set_error(VT_ERR_VALUE, "unknown op '%s'", name ? name : "(null)");
  return handle_of(op);
}

int32_t vtrt_op_count(void) {
  std::lock_guard<std::mutex> g(registry_mutex());
  return static_cast<int32_t>(op_order().size());
}

const char* vtrt_op_name_at(int32_t i) {
  std::lock_guard<std::mutex> g(registry_mutex());
  if (i < 0 || i >= static_cast<int32_t>(op_order().size())) return nullptr;
  Op* op = op_order()[i];
  return op->defined ? op->schema.name.c_str() : "";
}

vt_status vtrt_check_schema(const char* schema) {
  Op probe;
  return parse_schema(schema ? schema : "", &probe.schema) ? VT_OK : vtrt_last_status();
}

const char* vtrt_op_name(const vt_op* h) { return op_of(const_cast<vt_op*>(h))->schema.name.c_str(); }
const char* vtrt_op_schema(const vt_op* h) { return op_of(const_cast<vt_op*>(h))->schema.text.c_str(); }
int32_t vtrt_op_defined(const vt_op* h) { return op_of(const_cast<vt_op*>(h))->defined; }

int32_t vtrt_op_num_args(const vt_op* h) {
  return static_cast<int32_t>(op_of(const_cast<vt_op*>(h))->schema.args.size());
}
int32_t vtrt_op_num_outputs(const vt_op* h) {
  return static_cast<int32_t>(op_of(const_cast<vt_op*>(h))->schema.returns.size());
}
vt_status vtrt_op_arg(const vt_op* h, int32_t i, vtrt_arg_info* out) {
  const Schema& s = op_of(const_cast<vt_op*>(h))->schema;
  if (i < 0 || i >= static_cast<int32_t>(s.args.size()))
    return set_error(VT_ERR_INDEX, "[%s] has no argument %d", s.name.c_str(), i);
  const ArgSpec& a = s.args[i];
  *out = {a.name.c_str(), a.type, a.optional, a.kwonly, a.has_default, a.default_text.c_str()};
  return VT_OK;
}
int32_t vtrt_op_output_type(const vt_op* h, int32_t i) {
  const Schema& s = op_of(const_cast<vt_op*>(h))->schema;
  return i >= 0 && i < static_cast<int32_t>(s.returns.size()) ? s.returns[i] : VT_NONE;
}

vt_status vtrt_call(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs,
                    int32_t nouts) {
  return call(op_of(op), args, nargs, outs, nouts);
}

vt_tensor* vtrt_call_t(vt_op* op, vt_tensor* a) {
  vt_value arg;
  arg.tag = VT_TENSOR;
  arg.v.t = a;
  vt_value out;
  return call(op_of(op), &arg, 1, &out, 1) == VT_OK ? out.v.t : nullptr;
}

vt_tensor* vtrt_call_tt(vt_op* op, vt_tensor* a, vt_tensor* b) {
  vt_value args[2];
  args[0].tag = VT_TENSOR;
  args[0].v.t = a;
  args[1].tag = VT_TENSOR;
  args[1].v.t = b;
  vt_value out;
  return call(op_of(op), args, 2, &out, 1) == VT_OK ? out.v.t : nullptr;
}

// tensor-with-Python-scalar calls (`x + 1.0`, `x * 2`): the scalar keeps its type
static vt_tensor* call_with_scalar(vt_op* op, vt_tensor* a, vt_value b) {
  vt_value args[2];
  args[0].tag = VT_TENSOR;
  args[0].v.t = a;
  args[1] = b;
  vt_value out;
  return call(op_of(op), args, 2, &out, 1) == VT_OK ? out.v.t : nullptr;
}

vt_tensor* vtrt_call_tf(vt_op* op, vt_tensor* a, double b) {
  vt_value v;
  v.tag = VT_FLOAT;
  v.v.f = b;
  return call_with_scalar(op, a, v);
}

vt_tensor* vtrt_call_ti(vt_op* op, vt_tensor* a, int64_t b) {
  vt_value v;
  v.tag = VT_INT;
  v.v.i = b;
  return call_with_scalar(op, a, v);
}

int32_t vtrt_op_num_providers(const vt_op* h, int32_t device_type) {
  const int slot = device_slot(device_type);
  if (slot < 0) return 0;
  std::lock_guard<std::mutex> g(registry_mutex());
  return static_cast<int32_t>(op_of(const_cast<vt_op*>(h))->impls[slot].size());
}

vt_status vtrt_op_provider(const vt_op* h, int32_t device_type, int32_t i,
                           vtrt_provider_info* out) {
  Op* op = op_of(const_cast<vt_op*>(h));
  const int slot = device_slot(device_type);
  if (slot < 0)
    return set_error(VT_ERR_VALUE, "[%s] unknown device type %d", op->schema.name.c_str(),
                     device_type);
  std::lock_guard<std::mutex> g(registry_mutex());
  auto& list = op->impls[slot];
  if (i < 0 || i >= static_cast<int32_t>(list.size()))
    return set_error(VT_ERR_INDEX, "[%s] provider index %d out of range", op->schema.name.c_str(), i);
  // best first: sort a view of indices by (priority, seq) descending
  std::vector<const Impl*> order;
  for (auto& im : list) order.push_back(&im);
  std::sort(order.begin(), order.end(), [](const Impl* a, const Impl* b) {
    return a->priority != b->priority ? a->priority > b->priority : a->seq > b->seq;
  });
  const Impl* im = order[i];
  const Impl* active = select(op, slot);
  *out = {im->provider.c_str(), pack_name(im->pack), im->priority, im == active};
  return VT_OK;
}

// Does `op` have a provider so named on device slot `slot`? `names` gets the ones it has ("none").
// Called with the registry mutex held.
static bool has_provider(const Op* op, int slot, const char* provider, std::string* names) {
  bool found = false;
  for (const auto& im : op->impls[slot]) {
    found |= im.provider == provider;
    *names += (names->empty() ? "" : ", ") + im.provider;
  }
  if (names->empty()) *names = "none";
  return found;
}

vt_status vtrt_op_pin(vt_op* h, int32_t device_type, const char* provider) {
  Op* op = op_of(h);
  const int slot = device_slot(device_type);
  if (slot < 0)
    return set_error(VT_ERR_VALUE, "[%s] unknown device type %d", op->schema.name.c_str(),
                     device_type);
  std::lock_guard<std::mutex> g(registry_mutex());
  if (provider && *provider) {
    std::string names;
    if (!has_provider(op, slot, provider, &names))
      return set_error(VT_ERR_VALUE, "[%s] no provider '%s' on this device (available: %s)",
                       op->schema.name.c_str(), provider, names.c_str());
    op->pinned[slot] = provider;
  } else {
    op->pinned[slot].clear();
  }
  publish_locked(op);
  return VT_OK;
}

const char* vtrt_op_pinned(const vt_op* h, int32_t device_type) {
  const int slot = device_slot(device_type);
  if (slot < 0) return nullptr;
  std::lock_guard<std::mutex> g(registry_mutex());
  const std::string& p = op_of(const_cast<vt_op*>(h))->pinned[slot];
  return p.empty() ? nullptr : p.c_str();
}

vt_status vtrt_op_tune_set(vt_op* h, int32_t device_type, const vt_dtype* dtypes,
                           const int32_t* ndims, const int64_t* sizes, int32_t ntensors,
                           const vt_value* args, int32_t nargs, const char* provider) {
  Op* op = op_of(h);
  if (!op) return set_error(VT_ERR_VALUE, "tune: null op handle");
  const int slot = device_slot(device_type);
  if (slot < 0 || slot == kMetaSlot)
    return set_error(VT_ERR_VALUE, "[%s] tune: device type %d has no providers to choose from",
                     op->schema.name.c_str(), device_type);
  if (ntensors < 0 || (ntensors > 0 && (!dtypes || !ndims)))
    return set_error(VT_ERR_VALUE, "[%s] tune: bad tensor description", op->schema.name.c_str());
  int64_t total = 0;
  for (int32_t i = 0; i < ntensors; ++i) {
    if (ndims[i] < 0 || ndims[i] > VT_MAX_DIMS)
      return set_error(VT_ERR_VALUE, "[%s] tune: tensor %d has %d dims (0..%d expected)",
                       op->schema.name.c_str(), i, ndims[i], VT_MAX_DIMS);
    total += ndims[i];
  }
  if (total > 0 && !sizes)
    return set_error(VT_ERR_VALUE, "[%s] tune: sizes missing", op->schema.name.c_str());
  // the options must describe the call as the dispatcher will hold it: one value per argument
  const int32_t n = static_cast<int32_t>(op->schema.args.size());
  if (nargs != n || (n > 0 && !args))
    return set_error(VT_ERR_VALUE, "[%s] tune: %d argument values given, the schema has %d",
                     op->schema.name.c_str(), args ? nargs : 0, n);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t tag = args[i].tag;
    if (tag < VT_NONE || tag > VT_TENSORS)
      return set_error(VT_ERR_VALUE, "[%s] tune: argument %d has tag %d", op->schema.name.c_str(),
                       i, tag);
    if ((tag == VT_STR && !args[i].v.s) ||
        (tag == VT_INTS && args[i].v.ints.len > 0 && !args[i].v.ints.data))
      return set_error(VT_ERR_VALUE, "[%s] tune: argument %d's value is missing",
                       op->schema.name.c_str(), i);
  }
  const uint64_t key = vtrt_tune_key(dtypes, ndims, sizes, ntensors, args, nargs);
  std::lock_guard<std::mutex> g(registry_mutex());
  if (provider && *provider) {
    std::string names;
    if (!has_provider(op, slot, provider, &names))
      return set_error(VT_ERR_VALUE, "[%s] tune: no provider '%s' on %s (available: %s)",
                       op->schema.name.c_str(), provider, kDevices[slot].name, names.c_str());
    op->tuned[slot][key] = provider;
  } else {
    op->tuned[slot].erase(key);
  }
  publish_locked(op);
  return VT_OK;
}

vt_status vtrt_op_tune_clear(vt_op* h, int32_t device_type) {
  Op* op = op_of(h);
  if (!op) return set_error(VT_ERR_VALUE, "tune: null op handle");
  const int slot = device_type < 0 ? -1 : device_slot(device_type);
  if (device_type >= 0 && slot < 0)
    return set_error(VT_ERR_VALUE, "[%s] unknown device type %d", op->schema.name.c_str(),
                     device_type);
  std::lock_guard<std::mutex> g(registry_mutex());
  for (int dt = 0; dt < kDeviceSlots; ++dt)
    if (slot < 0 || dt == slot) op->tuned[dt].clear();
  publish_locked(op);
  return VT_OK;
}

int32_t vtrt_op_tune_count(const vt_op* h, int32_t device_type) {
  const int slot = device_slot(device_type);
  if (!h || slot < 0) return 0;
  std::lock_guard<std::mutex> g(registry_mutex());
  return static_cast<int32_t>(op_of(const_cast<vt_op*>(h))->tuned[slot].size());
}

}  // extern "C"
