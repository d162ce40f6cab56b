// pack_loader.cpp — dlopen an op pack, check its ABI, run its init with staged registrations,
// and keep its code mapped exactly as long as anything refers to it.
//
// A Pack is reference counted: one reference while loaded, one per dispatch snapshot entry, per
// backward rule and per storage whose deleter lives in the pack. dlclose runs at zero, so unload
// never pulls code out from under a running kernel, a pending backward or a live tensor.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <mutex>

#include "dispatcher.hpp"

namespace vt {

struct Pack {
  std::atomic<int64_t> refs{1};
  void* dl = nullptr;
  int fd = -1;  // the library's descriptor when loaded through it: open until dlclose
  std::string name, path;
  bool loaded = false;
  // A reload swapped this pack's code out: what captured its kernels (a CUDA graph) is stale.
  std::atomic<bool> replaced{false};
  Staged staged;  // registrations made by init, published only if init succeeds
  // (device type, provider) pairs whose kernels init registers but this load drops: the loader
  // found the provider unfit for this machine (its capabilities, e.g. a compute capability range)
  std::vector<std::pair<int32_t, std::string>> skip;
  std::vector<Op*> defined, provided;
};

namespace {
std::mutex g_packs_mu;
std::vector<Pack*> g_mapped;  // packs whose library is still open (loaded or still referenced)
thread_local Pack* t_initialising = nullptr;

void drop_mapped(Pack* p) {
  std::lock_guard<std::mutex> g(g_packs_mu);
  for (auto it = g_mapped.begin(); it != g_mapped.end(); ++it)
    if (*it == p) {
      g_mapped.erase(it);
      break;
    }
}

Pack* registering_pack(vt_pack* h, const char* what) {
  Pack* p = reinterpret_cast<Pack*>(h);
  if (!p || p != t_initialising) {
    set_error(VT_ERR_RUNTIME, "%s may only be called from vt_oppack_init", what);
    return nullptr;
  }
  return p;
}

bool skipped(const Pack* p, int32_t device_type, const char* provider) {
  for (const auto& s : p->skip)
    if (s.first == device_type && provider && s.second == provider) return true;
  return false;
}
}  // namespace

void pack_retain(Pack* p) {
  if (p) p->refs.fetch_add(1, std::memory_order_relaxed);
}

void pack_release(Pack* p) {
  if (!p || p->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  drop_mapped(p);
  forget_unloaded(p);
  if (p->dl) dlclose(p->dl);
  if (p->fd >= 0) {
    // dlopen finds a loaded library by name before it opens anything, and this pack named its
    // library /proc/self/fd/<fd>. When the same file is mapped for another load of the pack (it
    // was unloaded while still referenced, then loaded again), dlclose above left it mapped and
    // the name still points at it: closing fd would let the next pack opened as that number be
    // handed this library. Keep the descriptor then (one per such library, for its lifetime).
    char name[64];
    std::snprintf(name, sizeof name, "/proc/self/fd/%d", p->fd);
    void* still = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (still) dlclose(still);
    else close(p->fd);
  }
  delete p;
}

const char* pack_name(const Pack* p) { return p ? p->name.c_str() : "(runtime)"; }

bool pack_replaced(const Pack* p) { return p && p->replaced.load(std::memory_order_acquire); }

// host-table entry points for registration (host.cpp puts them in the table)
vt_status host_define_op(vt_pack* h, const char* schema) {
  Pack* p = registering_pack(h, "define_op");
  return p ? stage_define(&p->staged, p, schema) : VT_ERR_RUNTIME;
}
vt_status host_register_kernel(vt_pack* h, const char* op, int32_t device_type,
                               const char* provider, int32_t priority, vt_kernel_fn fn,
                               void* user) {
  Pack* p = registering_pack(h, "register_kernel");
  if (p && skipped(p, device_type, provider)) return VT_OK;
  return p ? stage_kernel(&p->staged, p, op, device_type, provider, priority, fn, user, false)
           : VT_ERR_RUNTIME;
}
vt_status host_register_compute(vt_pack* h, const char* op, int32_t device_type,
                                const char* provider, int32_t priority, vt_kernel_fn fn,
                                void* user) {
  Pack* p = registering_pack(h, "register_compute");
  if (p && skipped(p, device_type, provider)) return VT_OK;
  return p ? stage_kernel(&p->staged, p, op, device_type, provider, priority, fn, user, true)
           : VT_ERR_RUNTIME;
}
vt_status host_register_meta(vt_pack* h, const char* op, vt_kernel_fn fn, uint32_t flags) {
  Pack* p = registering_pack(h, "register_meta");
  return p ? stage_meta(&p->staged, p, op, fn, flags) : VT_ERR_RUNTIME;
}
vt_status host_register_backward(vt_pack* h, const char* op, vt_backward_fn fn,
                                 uint64_t save_args, uint64_t save_outs) {
  Pack* p = registering_pack(h, "register_backward");
  return p ? stage_backward(&p->staged, p, op, fn, save_args, save_outs) : VT_ERR_RUNTIME;
}

}  // namespace vt

using namespace vt;

extern "C" {

using SkipList = std::vector<std::pair<int32_t, std::string>>;
// A reload's extra inputs: the pack replaced, and the ops the new library must define (its
// manifest's list), checked before anything changes.
struct Replacing {
  Pack* old = nullptr;
  std::vector<std::string> ops;
};
static vtrt_pack* load_pack(const char* dl_path, const char* path, const char* name,
                            const SkipList& skip, const Replacing* rep);
static vtrt_pack* load_fd(int32_t fd, const char* path, const char* name,
                          const int32_t* skip_device_types, const char* const* skip_providers,
                          int32_t nskip, const Replacing* rep);

vtrt_pack* vtrt_pack_load(const char* path, const char* name) {
  return load_pack(path, path, name, {}, nullptr);
}

vtrt_pack* vtrt_pack_load_fd(int32_t fd, const char* path, const char* name) {
  return vtrt_pack_load_fd_skipping(fd, path, name, nullptr, nullptr, 0);
}

vtrt_pack* vtrt_pack_load_fd_skipping(int32_t fd, const char* path, const char* name,
                                      const int32_t* skip_device_types,
                                      const char* const* skip_providers, int32_t nskip) {
  return load_fd(fd, path, name, skip_device_types, skip_providers, nskip, nullptr);
}

vtrt_pack* vtrt_pack_reload_fd(vtrt_pack* old, int32_t fd, const char* path,
                               const char* const* ops, int32_t nops,
                               const int32_t* skip_device_types,
                               const char* const* skip_providers, int32_t nskip) {
  Pack* o = reinterpret_cast<Pack*>(old);
  if (!o || !o->loaded) {
    set_error(VT_ERR_VALUE, "pack_reload: the pack to replace is not loaded");
    return nullptr;
  }
  if (nops < 0 || (nops > 0 && !ops)) {
    set_error(VT_ERR_VALUE, "pack_reload(%s): bad op list", o->name.c_str());
    return nullptr;
  }
  Replacing rep{o, {}};
  for (int32_t i = 0; i < nops; ++i) {
    if (!ops[i]) {
      set_error(VT_ERR_VALUE, "pack_reload(%s): op list entry %d is missing", o->name.c_str(), (int)i);
      return nullptr;
    }
    rep.ops.emplace_back(ops[i]);
  }
  return load_fd(fd, path, o->name.c_str(), skip_device_types, skip_providers, nskip, &rep);
}

static vtrt_pack* load_fd(int32_t fd, const char* path, const char* name,
                          const int32_t* skip_device_types, const char* const* skip_providers,
                          int32_t nskip, const Replacing* rep) {
  SkipList skip;
  for (int32_t i = 0; i < nskip; ++i) {
    if (!skip_device_types || !skip_providers || !skip_providers[i]) {
      set_error(VT_ERR_VALUE, "pack_load: skip list entry %d is missing", (int)i);
      return nullptr;
    }
    skip.emplace_back(skip_device_types[i], skip_providers[i]);
  }
  if (fd < 0) {
    set_error(VT_ERR_VALUE, "pack_load: invalid file descriptor %d", fd);
    return nullptr;
  }
  // The kernel's link to the open file: dlopen maps that very inode, even if `path` was renamed
  // or replaced after the caller checked it. dlopen also reuses a loaded library of the same
  // name, so the name must stay unique while the library is mapped: we keep our own duplicate
  // of the descriptor open until dlclose.
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) {
    set_error(VT_ERR_RUNTIME, "pack '%s': cannot duplicate the descriptor of %s", name, path);
    return nullptr;
  }
  char dl_path[64];
  std::snprintf(dl_path, sizeof dl_path, "/proc/self/fd/%d", own);
  vtrt_pack* p = load_pack(dl_path, path, name, skip, rep);
  if (p) reinterpret_cast<Pack*>(p)->fd = own;
  else close(own);
  return p;
}

// The ops a pack's init staged against the list its manifest gives: "" when they agree, else why.
static std::string ops_mismatch(const Staged& st, const std::vector<std::string>& want) {
  std::vector<std::string> extra, missing;
  for (const Op* op : st.ops)
    if (std::find(want.begin(), want.end(), op->schema.name) == want.end())
      extra.push_back(op->schema.name);
  for (const std::string& w : want) {
    bool found = false;
    for (const Op* op : st.ops) found |= op->schema.name == w;
    if (!found) missing.push_back(w);
  }
  if (extra.empty() && missing.empty()) return "";
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  };
  return "its init defined other ops than its manifest lists (defined but not listed: " +
         list(extra) + "; listed but not defined: " + list(missing) + ")";
}

static vtrt_pack* load_pack(const char* dl_path, const char* path, const char* name,
                            const SkipList& skip, const Replacing* rep) {
  if (!path || !name || !*name) {
    set_error(VT_ERR_VALUE, "pack_load: a path and a name are required");
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> g(g_packs_mu);
    for (Pack* p : g_mapped)
      if (p->loaded && p->name == name && !(rep && p == rep->old)) {
        set_error(VT_ERR_VALUE, "pack '%s' is already loaded (from %s)", name, p->path.c_str());
        return nullptr;
      }
  }
  dlerror();
  void* dl = dlopen(dl_path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char* e = dlerror();
    set_error(VT_ERR_ABI, "pack '%s': cannot load %s: %s", name, path, e ? e : "unknown error");
    return nullptr;
  }
  auto abi = reinterpret_cast<vt_oppack_abi_fn>(dlsym(dl, VT_OPPACK_ABI_SYMBOL));
  auto init = reinterpret_cast<vt_oppack_init_fn>(dlsym(dl, VT_OPPACK_INIT_SYMBOL));
  if (!abi || !init) {
    dlclose(dl);
    set_error(VT_ERR_ABI, "pack '%s': %s is not a vibetensor op pack (missing symbol %s)", name,
              path, !abi ? VT_OPPACK_ABI_SYMBOL : VT_OPPACK_INIT_SYMBOL);
    return nullptr;
  }
  uint32_t v = abi();
  uint32_t major = v >> 16, minor = v & 0xffff;
  if (major != VT_ABI_MAJOR || minor > VT_ABI_MINOR) {
    dlclose(dl);
    set_error(VT_ERR_ABI, "pack '%s' was built for op-pack ABI %u.%u but this runtime speaks "
              "%d.%d (majors must match, the pack's minor must not be newer); rebuild it with "
              "`vt-ops build`", name, major, minor, VT_ABI_MAJOR, VT_ABI_MINOR);
    return nullptr;
  }
  auto* p = new Pack();
  p->dl = dl;
  p->name = name;
  p->path = path;
  p->skip = skip;
  p->staged.replacing = rep ? rep->old : nullptr;
  vtrt_clear_error();
  t_initialising = p;
  vt_status st;
  try {
    st = init(host(), reinterpret_cast<vt_pack*>(p));
  } catch (...) {  // a C++ pack that let an exception escape: refuse it, keep the process alive
    st = set_error(VT_ERR_RUNTIME, "an exception escaped vt_oppack_init");
  }
  t_initialising = nullptr;
  const std::string mismatch = st == VT_OK && rep ? ops_mismatch(p->staged, rep->ops) : "";
  if (st != VT_OK || !mismatch.empty()) {
    std::string msg = vtrt_last_error();
    discard_staged(&p->staged);
    const char* kept = rep ? " (the loaded pack is unchanged)" : "";
    if (!mismatch.empty())
      set_error(VT_ERR_VALUE, "pack '%s': %s: rebuild it with `vt-ops build` so the manifest is "
                "written from the library%s", name, mismatch.c_str(), kept);
    else
      set_error(st == VT_ERR_ABI ? VT_ERR_ABI : VT_ERR_RUNTIME,
                "pack '%s' failed to initialise (status %d): %s; all its registrations were "
                "rolled back%s", name, st, msg.empty() ? "no message" : msg.c_str(), kept);
    p->refs.store(0);
    dlclose(dl);
    delete p;
    return nullptr;
  }
  if (rep) {
    Pack* old = rep->old;
    old->replaced.store(true, std::memory_order_release);  // before the swap: no replay after it
    replace_staged(&p->staged, p, old, old->defined, old->provided, &p->defined, &p->provided);
    p->staged.replacing = nullptr;
    old->loaded = false;
    // Its "loaded" reference is kept, never dropped: replaced code stays mapped for good (see
    // vtrt_pack_reload_fd in vt/runtime.h).
  } else {
    commit_staged(&p->staged, p, &p->defined, &p->provided);
  }
  p->loaded = true;
  std::lock_guard<std::mutex> g(g_packs_mu);
  g_mapped.push_back(p);
  return reinterpret_cast<vtrt_pack*>(p);
}

vt_status vtrt_pack_unload(vtrt_pack* h) {
  Pack* p = reinterpret_cast<Pack*>(h);
  if (!p || !p->loaded) return set_error(VT_ERR_VALUE, "pack_unload: pack is not loaded");
  p->loaded = false;
  remove_pack(p, p->defined, p->provided);
  pack_release(p);  // the "loaded" reference; snapshots, graphs and tensors may hold more
  return VT_OK;
}

int32_t vtrt_pack_is_mapped(const char* path) {
  std::lock_guard<std::mutex> g(g_packs_mu);
  for (Pack* p : g_mapped)
    if (p->path == path) return 1;
  return 0;
}

void vtrt_pack_retain(vtrt_pack* h) { pack_retain(reinterpret_cast<Pack*>(h)); }

int64_t vtrt_pack_refs(const vtrt_pack* h) {
  return reinterpret_cast<const Pack*>(h)->refs.load();
}

}  // extern "C"
