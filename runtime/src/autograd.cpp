// autograd.cpp — recording nodes at dispatch time, and the backward engine.
//
// The engine: count, for every node reachable from the roots, how many edges point at it; run
// nodes whose count reached zero, newest first (a max-heap on creation order); each node adds the
// gradients it produces into its successors' input buffers (summing with core::add). Leaves
// accumulate into .grad through their AccumulateGrad node. Everything runs on the calling thread;
// backward rules call ops, which use the runtime's one thread pool for their own work.
#include "autograd.hpp"

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>

namespace vt {

namespace {
thread_local bool t_grad_enabled = true;
thread_local const Pack* t_backward_pack = nullptr;  // whose backward rule runs on this thread
std::atomic<uint64_t> g_node_seq{0};

vt_value none_value() {
  vt_value v;
  std::memset(&v, 0, sizeof v);
  v.tag = VT_NONE;
  return v;
}

// The runtime's own uses of ops (accumulation, dense copies, seed gradients, views of a base),
// resolved once: the runtime never frees an op and gives the same one back when core is reloaded.
struct OpSlot {
  const char* name;
  std::atomic<vt_op*> op;
};
OpSlot kAdd{"core::add", {nullptr}}, kContiguous{"core::contiguous", {nullptr}},
    kOnes{"core::ones", {nullptr}}, kZeros{"core::zeros", {nullptr}},
    kAsStrided{"core::as_strided", {nullptr}}, kCopy{"core::copy_", {nullptr}},
    kZero{"core::zero_", {nullptr}}, kSlice{"core::slice", {nullptr}}, kCat{"core::cat", {nullptr}};

// One output of an op; null (error set) on failure.
vt_tensor* call1(OpSlot& slot, std::initializer_list<vt_value> in) {
  vt_op* op = slot.op.load(std::memory_order_acquire);
  if (!op) {
    op = vtrt_find_op(slot.name);
    if (!op) return nullptr;
    slot.op.store(op, std::memory_order_release);
  }
  vt_value args[8];
  int32_t k = 0;
  for (const auto& v : in) args[k++] = v;
  vt_value out;
  if (call(op_of(op), args, k, &out, 1) != VT_OK) return nullptr;
  return out.v.t;
}

vt_value T(vt_tensor* t) {
  vt_value v = none_value();
  v.tag = VT_TENSOR;
  v.v.t = t;
  return v;
}
vt_value Ints(const int64_t* data, int64_t len) {
  vt_value v = none_value();
  v.tag = VT_INTS;
  v.v.ints = {data, len};
  return v;
}
vt_value Int(int64_t i) {
  vt_value v = none_value();
  v.tag = VT_INT;
  v.v.i = i;
  return v;
}

bool requires_grad(const vt_tensor* t) {
  const TensorImpl* ti = impl(t);
  return ti->ag && ti->ag->requires_grad;
}

bool is_float(vt_dtype d) { return d.code == VT_DL_FLOAT || d.code == VT_DL_BFLOAT; }
bool same_dtype(vt_dtype a, vt_dtype b) {
  return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes;
}

// Its elements fill a block of memory exactly once, in some order of dimensions.
bool non_overlapping_dense(const vt_tensor* t) {
  int32_t dims[VT_MAX_DIMS];
  int32_t k = 0;
  for (int32_t d = 0; d < t->ndim; ++d) {
    if (t->sizes[d] == 0) return true;
    if (t->sizes[d] != 1) dims[k++] = d;
  }
  std::sort(dims, dims + k, [&](int32_t a, int32_t b) { return t->strides[a] < t->strides[b]; });
  int64_t expected = 1;
  for (int32_t i = 0; i < k; ++i) {
    if (t->strides[dims[i]] != expected) return false;
    expected *= t->sizes[dims[i]];
  }
  return true;
}

// An alias of t (same storage and geometry) with no autograd history: what a node keeps of its
// outputs, so a tensor -> grad_fn -> saved output -> tensor cycle can never form.
vt_tensor* detached_alias(vt_tensor* t) {
  TensorImpl* ti = impl(t);
  return vtrt_as_strided(t, ti->sizes, ti->strides, ti->pub.ndim, 0);
}

InputMeta input_meta_of(const vt_tensor* t) {
  InputMeta m;
  m.ndim = t->ndim;
  std::memcpy(m.sizes, t->sizes, sizeof(int64_t) * t->ndim);
  m.dtype = t->dtype;
  m.device = t->device;
  return m;
}

// ---- views ----------------------------------------------------------------------------------------
//
// A view an op made knows its base (TensorImpl::view_base). Its history is "a view of the base's
// history", so when the base's history is rewritten (an in-place op on the base, or on any of
// its views, which makes the base's grad_fn a CopySlices) the view's grad_fn is stale: it is
// remade on its next use as core::as_strided of the base, which reaches the new history.

// Identifies the state of a tensor's history: changes whenever its grad_fn is replaced.
uint64_t history_id(vt_tensor* t) {
  AutogradMeta* m = impl(t)->ag;
  return m && m->grad_fn ? m->grad_fn->seq + 1 : 0;
}

bool base_wants_grad(const TensorImpl* ti) {
  return ti->view_base && !ti->view_nograd && requires_grad(ti->view_base);
}

// Makes t's history as_strided(base) of its base's current history.
void remake_view_history(vt_tensor* t) {
  TensorImpl* ti = impl(t);
  vt_tensor* base = ti->view_base;
  const bool prev = t_grad_enabled;
  t_grad_enabled = true;
  vt_tensor* v = call1(kAsStrided, {T(base), Ints(ti->sizes, ti->pub.ndim),
                                    Ints(ti->strides, ti->pub.ndim),
                                    Int(ti->offset - impl(base)->offset)});
  t_grad_enabled = prev;
  if (!v) {  // cannot happen for a view inside its base; keep the old history
    vtrt_clear_error();
    return;
  }
  AutogradMeta* vm = impl(v)->ag;
  AutogradMeta* m = ensure_meta(t);
  if (m->grad_fn && !m->weak_fn) node_release(m->grad_fn);
  m->weak_fn = false;
  m->grad_fn = vm ? vm->grad_fn : nullptr;
  node_retain(m->grad_fn);
  m->output_nr = 0;
  m->requires_grad = true;
  m->base_history = history_id(base);
  vtrt_release(v);
}

void refresh_view(vt_tensor* t) {
  TensorImpl* ti = impl(t);
  if (!base_wants_grad(ti)) return;
  AutogradMeta* m = ti->ag;
  if (m && m->requires_grad && !m->grad_fn) return;  // a leaf of its own (requires_grad_())
  if (!m || !m->grad_fn || m->base_history != history_id(ti->view_base)) remake_view_history(t);
}

// Where the gradient for tensor t goes: its grad_fn, or its leaf accumulator (made on demand).
Edge edge_of(vt_tensor* t) {
  refresh_view(t);
  AutogradMeta* m = meta(t);
  Edge e;
  if (!m || !m->requires_grad) return e;
  if (m->grad_fn) {
    node_retain(m->grad_fn);
    return {m->grad_fn, m->output_nr};
  }
  std::lock_guard<std::mutex> lock(m->mu);
  if (Node* acc = m->accumulator) {
    // Another thread may be dropping the last reference right now: take one only if it is alive.
    int64_t r = acc->refs.load(std::memory_order_relaxed);
    while (r > 0 && !acc->refs.compare_exchange_weak(r, r + 1, std::memory_order_acq_rel)) {}
    if (r > 0) return {acc, 0};
  }
  auto* acc = new Node();
  acc->kind = NodeKind::Accumulate;
  acc->seq = g_node_seq.fetch_add(1, std::memory_order_relaxed);
  acc->num_outputs = 1;
  acc->pre_hooks.resize(1);
  acc->retain_output.assign(1, 0);
  acc->retained.assign(1, nullptr);
  vtrt_retain(t);
  acc->leaf = t;
  m->accumulator = acc;  // weak: cleared when the accumulator dies
  return {acc, 0};
}

void release_saved(Node* n) {
  // A saved output alias points back at this node without owning it; if anything else still
  // holds the alias, cut that link before the node can go away.
  for (vt_tensor* t : n->saved_outs) {
    AutogradMeta* m = impl(t)->ag;
    if (m && m->weak_fn && m->grad_fn == n) {
      m->grad_fn = nullptr;
      m->weak_fn = false;
      m->requires_grad = false;
    }
  }
  n->saved_outs.clear();
  for (auto& s : n->saved) vtrt_release(s.t);
  n->saved.clear();
  for (auto& a : n->args)
    if (a.tag == VT_TENSOR || a.tag == VT_TENSORS) a = none_value();
  for (auto& o : n->outs) o = none_value();
  n->tensor_lists.clear();
  n->released = true;
}

void release_callback(Callback& cb) {
  if (cb.release) cb.release(cb.ctx);
  cb = Callback{};
}

void destroy(Node* n, std::vector<Node*>& pending) {
  release_saved(n);
  for (auto& e : n->next)
    if (e.node) pending.push_back(e.node);
  for (auto& hooks : n->pre_hooks)
    for (auto& h : hooks) release_callback(h.cb);
  for (vt_tensor* t : n->retained)
    if (t) impl(t)->ag->retains_grad = false;
  if (n->backward.pack) pack_release(n->backward.pack);
  if (n->kind == NodeKind::Custom) release_callback(n->custom_cb);
  if (n->inner) pending.push_back(n->inner);
  if (n->leaf) {
    if (AutogradMeta* m = impl(n->leaf)->ag) {
      std::lock_guard<std::mutex> lock(m->mu);
      if (m->accumulator == n) m->accumulator = nullptr;
    }
    vtrt_release(n->leaf);
  }
  delete n;
}

}  // namespace

bool grad_enabled() { return t_grad_enabled; }
const Pack* backward_pack() { return t_backward_pack; }
NoGradScope::NoGradScope() : prev(t_grad_enabled) { t_grad_enabled = false; }
NoGradScope::~NoGradScope() { t_grad_enabled = prev; }

void node_retain(Node* n) {
  if (n) n->refs.fetch_add(1, std::memory_order_relaxed);
}

// Iterative, so releasing a 100k-node chain cannot overflow the stack.
void node_release(Node* n) {
  std::vector<Node*> pending{n};
  while (!pending.empty()) {
    Node* x = pending.back();
    pending.pop_back();
    if (x && x->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(x, pending);
  }
}

AutogradMeta* meta(vt_tensor* t) { return impl(t)->ag; }

AutogradMeta* ensure_meta(vt_tensor* t) {
  TensorImpl* ti = impl(t);
  if (!ti->ag) ti->ag = new AutogradMeta();
  return ti->ag;
}

void free_meta(TensorImpl* t) {
  AutogradMeta* m = t->ag;
  t->ag = nullptr;
  if (m->grad) vtrt_release(m->grad);
  if (m->grad_fn) {
    if (m->retains_grad && m->output_nr < m->grad_fn->retained.size())
      m->grad_fn->retained[m->output_nr] = nullptr;
    if (!m->weak_fn) node_release(m->grad_fn);
  }
  for (auto& h : m->hooks) release_callback(h.cb);
  delete m;
}

// ---- in-place ops: the memory they write ---------------------------------------------------------
//
// An in-place op writes self while reading its other arguments, element by element in some order.
// That is only well defined when no element of self shares memory with another element of self
// (an expand()ed or overlapping view) and no other argument partly overlaps self (x[1:].add_(x[:-1])
// would read values it already wrote). The identical view (x.add_(x)) is fine: each element reads
// itself before writing itself. Like torch, such calls are refused rather than run in some order.

namespace {

// Calls f(offset) for every element's offset (in elements) in t's storage.
template <class F>
void for_each_offset(const vt_tensor* t, F f) {
  if (t->numel == 0) return;
  const int32_t nd = t->ndim;
  int64_t idx[VT_MAX_DIMS] = {0};
  int64_t off = impl(t)->offset;
  for (;;) {
    f(off);
    int32_t d = nd - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < t->sizes[d]) {
        off += t->strides[d];
        break;
      }
      off -= t->strides[d] * (t->sizes[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// The bytes [lo, hi) of t's storage its elements lie in (lo == hi for an empty tensor).
void byte_span(const vt_tensor* t, int64_t* lo, int64_t* hi) {
  const int64_t item = static_cast<int64_t>(dtype_size(t->dtype));
  int64_t a = impl(t)->offset, b = impl(t)->offset;
  for (int32_t d = 0; d < t->ndim && t->numel; ++d) {
    const int64_t ext = t->strides[d] * (t->sizes[d] - 1);
    (ext < 0 ? a : b) += ext;
  }
  *lo = a * item;
  *hi = t->numel ? (b + 1) * item : *lo;
}

// Exact: whether some byte in [lo, hi) is covered twice by the elements of a and b (b may be null:
// then whether a covers a byte twice). A bitmap over the range; only reached for the rare layouts
// the cheap tests below cannot decide.
bool covered_twice(const vt_tensor* a, const vt_tensor* b, int64_t lo, int64_t hi) {
  int64_t unit = static_cast<int64_t>(dtype_size(a->dtype));
  if (b) unit = std::min(unit, static_cast<int64_t>(dtype_size(b->dtype)));
  std::vector<bool> seen(static_cast<size_t>((hi - lo) / unit) + 1, false);
  bool twice = false;
  auto mark = [&](const vt_tensor* t, bool set, bool test) {
    const int64_t item = static_cast<int64_t>(dtype_size(t->dtype));
    for_each_offset(t, [&](int64_t off) {
      for (int64_t byte = off * item; byte < off * item + item; byte += unit) {
        if (byte < lo || byte >= hi) continue;
        const size_t i = static_cast<size_t>((byte - lo) / unit);
        if (test && seen[i]) twice = true;
        if (set) seen[i] = true;
      }
    });
  };
  if (b) {
    mark(a, true, false);
    mark(b, false, true);
  } else {
    mark(a, true, true);
  }
  return twice;
}

bool overlaps_itself(const vt_tensor* t) {
  if (t->numel <= 1 || vtrt_is_contiguous(t) || non_overlapping_dense(t)) return false;
  int32_t dims[VT_MAX_DIMS];
  int32_t k = 0;
  for (int32_t d = 0; d < t->ndim; ++d) {
    if (t->sizes[d] == 1) continue;
    if (t->strides[d] == 0) return true;  // expand(): the common case
    dims[k++] = d;
  }
  // Each dimension stepping past everything the smaller ones span cannot overlap (slices, steps,
  // transposes); only layouts failing that (as_strided) need the exact test.
  auto mag = [&](int32_t d) { return t->strides[d] < 0 ? -t->strides[d] : t->strides[d]; };
  std::sort(dims, dims + k, [&](int32_t x, int32_t y) { return mag(x) < mag(y); });
  int64_t reach = 0;
  bool simple = true;
  for (int32_t i = 0; i < k && simple; ++i) {
    simple = mag(dims[i]) > reach;
    reach += mag(dims[i]) * (t->sizes[dims[i]] - 1);
  }
  if (simple) return false;
  int64_t lo, hi;
  byte_span(t, &lo, &hi);
  return covered_twice(t, nullptr, lo, hi);
}

bool same_view(const vt_tensor* a, const vt_tensor* b) {
  return impl(a)->offset == impl(b)->offset && same_dtype(a->dtype, b->dtype) &&
         a->ndim == b->ndim && std::memcmp(a->sizes, b->sizes, sizeof(int64_t) * a->ndim) == 0 &&
         std::memcmp(a->strides, b->strides, sizeof(int64_t) * a->ndim) == 0;
}

// Whether b shares memory with self other than as the very same view.
bool partly_overlaps(const vt_tensor* self, const vt_tensor* b) {
  if (impl(self)->storage != impl(b)->storage || self->numel == 0 || b->numel == 0) return false;
  if (same_view(self, b)) return false;
  int64_t alo, ahi, blo, bhi;
  byte_span(self, &alo, &ahi);
  byte_span(b, &blo, &bhi);
  const int64_t lo = std::max(alo, blo), hi = std::min(ahi, bhi);
  if (lo >= hi) return false;
  // a dense tensor covers every byte of its span, so intersecting spans share bytes
  if (non_overlapping_dense(self) && non_overlapping_dense(b)) return true;
  return covered_twice(self, b, lo, hi);
}

}  // namespace

vt_status check_inplace(Op* op, const vt_value* args) {
  const Schema& s = op->schema;
  if (args[0].tag != VT_TENSOR) return VT_OK;
  vt_tensor* self = args[0].v.t;
  if (overlaps_itself(self))
    return set_error(VT_ERR_RUNTIME,
                     "[%s] '%s' has elements that share memory (an expand()ed or overlapping "
                     "view), so writing it in place is ambiguous; clone() it first",
                     s.name.c_str(), s.args[0].name.c_str());
  for (size_t i = 1; i < s.args.size(); ++i) {
    const vt_value& v = args[i];
    const int64_t len = v.tag == VT_TENSOR ? 1 : v.tag == VT_TENSORS ? v.v.ts.len : 0;
    for (int64_t k = 0; k < len; ++k) {
      const vt_tensor* t = v.tag == VT_TENSOR ? v.v.t : v.v.ts.data[k];
      if (partly_overlaps(self, t))
        return set_error(VT_ERR_RUNTIME,
                         "[%s] argument '%s' partly overlaps the memory of '%s', which the op "
                         "writes; clone() it first", s.name.c_str(), s.args[i].name.c_str(),
                         s.args[0].name.c_str());
    }
  }
  if (!t_grad_enabled) return VT_OK;
  const TensorImpl* si = impl(self);
  if (si->view_base && si->view_nograd && requires_grad(si->view_base)) {
    for (size_t i = 1; i < s.args.size(); ++i)
      if (args[i].tag == VT_TENSOR && wants_grad(args[i].v.t))
        return set_error(VT_ERR_RUNTIME,
                         "[%s] '%s' is a view made in no_grad mode of a tensor that requires "
                         "grad, and is being modified in place with grad mode on; make the view "
                         "and the in-place op both inside or both outside no_grad",
                         s.name.c_str(), s.args[0].name.c_str());
  }
  AutogradMeta* m = meta(self);
  if (m && m->grad_fn && m->grad_fn->multi_view)
    return set_error(VT_ERR_RUNTIME,
                     "[%s] '%s' is one of the views split() or chunk() returned; those views "
                     "cannot be modified in place while grad mode is on (their gradients are "
                     "joined by one cat in the backward); clone() it first",
                     s.name.c_str(), s.args[0].name.c_str());
  if (m && m->requires_grad && !m->grad_fn)
    return set_error(VT_ERR_RUNTIME,
                     "[%s] a leaf tensor that requires grad cannot be modified in place (use "
                     "`with vt.no_grad():` for parameter updates, or work on a copy)",
                     s.name.c_str());
  if (m && m->requires_grad && impl(self)->storage->leaf_requires_grad.load())
    return set_error(VT_ERR_RUNTIME,
                     "[%s] a view of a leaf tensor that requires grad cannot be modified in place "
                     "(use `with vt.no_grad():`, or work on a copy)", s.name.c_str());
  return VT_OK;
}

void record(Op* op, const Snapshot* snap, const vt_value* args, int32_t nargs, vt_value* outs,
            int32_t nouts, vt_device device) {
  const Backward& bw = snap->backward;
  if (!bw.fn) return;  // no backward rule: the op is not differentiable, outputs get no history
  auto* n = new Node();
  n->seq = g_node_seq.fetch_add(1, std::memory_order_relaxed);
  n->op = op;
  n->backward = bw;
  pack_retain(bw.pack);
  n->device = device;
  n->num_outputs = static_cast<uint32_t>(nouts);
  n->pre_hooks.resize(nouts);
  n->retain_output.assign(nouts, 0);
  n->retained.assign(nouts, nullptr);
  n->args.resize(nargs);
  n->int_lists.reserve(nargs);
  n->tensor_lists.reserve(nargs);
  n->strings.reserve(nargs);
  // A saved input with history is kept as an alias holding the history it has now, not as the
  // tensor itself: an in-place op may later make the tensor's history lead back to this node
  // (y.add_(y * y); y[0] = y[1] * 2), and a saved tensor that is that tensor would close a
  // cycle and never be freed. Leaves and saved outputs are kept as they are.
  auto save = [&](vt_tensor* t) {
    AutogradMeta* m = meta(t);
    if (m && m->grad_fn && !m->weak_fn) {
      vt_tensor* alias = detached_alias(t);
      AutogradMeta* am = ensure_meta(alias);
      am->requires_grad = true;
      am->grad_fn = m->grad_fn;
      node_retain(m->grad_fn);
      am->output_nr = m->output_nr;
      t = alias;
    } else {
      vtrt_retain(t);
    }
    n->saved.push_back({t, vtrt_version(t)});
    return t;
  };
  for (int32_t i = 0; i < nargs; ++i) {
    vt_value v = args[i];
    const bool keep = (bw.save_args >> i) & 1;
    if (v.tag == VT_TENSOR) {
      n->next.push_back(edge_of(v.v.t));
      n->input_meta.push_back(input_meta_of(v.v.t));
      n->flat_arg.push_back(i);
      n->flat_elem.push_back(-1);
      if (!keep) v = none_value();
      else v.v.t = save(v.v.t);
    } else if (v.tag == VT_TENSORS) {
      std::vector<vt_tensor*> list;
      for (int64_t k = 0; k < v.v.ts.len; ++k) {
        vt_tensor* t = v.v.ts.data[k];
        n->next.push_back(edge_of(t));
        n->input_meta.push_back(input_meta_of(t));
        n->flat_arg.push_back(i);
        n->flat_elem.push_back(static_cast<int32_t>(k));
        if (keep) list.push_back(save(t));
      }
      if (keep) {
        n->tensor_lists.push_back(std::move(list));
        v.v.ts.data = n->tensor_lists.back().data();
      } else {
        v = none_value();
      }
    } else if (v.tag == VT_INTS) {
      n->int_lists.emplace_back(v.v.ints.data, v.v.ints.data + v.v.ints.len);
      v.v.ints.data = n->int_lists.back().data();
    } else if (v.tag == VT_STR) {
      n->strings.emplace_back(v.v.s);
      v.v.s = n->strings.back().c_str();
    }
    n->args[i] = v;
  }
  n->outs.resize(nouts);
  for (int32_t j = 0; j < nouts; ++j) {
    n->outs[j] = none_value();
    if (((bw.save_outs >> j) & 1) && outs[j].tag == VT_TENSOR) {
      // An alias of the output that still knows it came from this node (so double backward
      // through a saved output works), linked weakly so the node does not keep itself alive.
      vt_tensor* alias = detached_alias(outs[j].v.t);
      n->saved.push_back({alias, vtrt_version(alias)});
      if (is_float(alias->dtype)) {
        AutogradMeta* am = ensure_meta(alias);
        am->requires_grad = true;
        am->grad_fn = n;
        am->weak_fn = true;
        am->output_nr = static_cast<uint32_t>(j);
        n->saved_outs.push_back(alias);
      }
      n->outs[j].tag = VT_TENSOR;
      n->outs[j].v.t = alias;
    }
  }
  // The outputs now have history. An in-place op's output is its first argument: its grad_fn is
  // replaced, and its old history is what the node's edge for that argument points at.
  for (int32_t j = 0; j < nouts; ++j) {
    if (outs[j].tag != VT_TENSOR || !is_float(outs[j].v.t->dtype)) continue;
    AutogradMeta* m = ensure_meta(outs[j].v.t);
    if (m->grad_fn && !m->weak_fn) node_release(m->grad_fn);
    m->weak_fn = false;
    node_retain(n);
    m->grad_fn = n;
    m->output_nr = static_cast<uint32_t>(j);
    m->requires_grad = true;
  }
  node_release(n);  // the outputs hold it now
}

bool wants_grad(const vt_tensor* t) {
  const TensorImpl* ti = impl(t);
  return (ti->ag && ti->ag->requires_grad) || base_wants_grad(ti);
}

namespace {

Geometry geometry_of(const vt_tensor* t) {
  Geometry g;
  g.sizes.assign(t->sizes, t->sizes + t->ndim);
  g.strides.assign(t->strides, t->strides + t->ndim);
  g.offset = impl(t)->offset;
  return g;
}

// After an in-place op recorded node N on `view` (its grad_fn): the base's history becomes
// CopySlices(N), whose edges are the base's old history and N's edges for its other arguments,
// and the view becomes a view of that new history.
void rebase_view(vt_tensor* view) {
  TensorImpl* vi = impl(view);
  AutogradMeta* m = vi->ag;
  if (!m || !m->grad_fn || m->weak_fn || m->grad_fn->kind != NodeKind::Op) return;
  vt_tensor* base = vi->view_base;
  Node* inner = m->grad_fn;
  auto* cs = new Node();
  cs->kind = NodeKind::CopySlices;
  cs->name = "CopySlices";
  cs->seq = g_node_seq.fetch_add(1, std::memory_order_relaxed);
  cs->num_outputs = 1;
  cs->pre_hooks.resize(1);
  cs->retain_output.assign(1, 0);
  cs->retained.assign(1, nullptr);
  cs->device = inner->device;
  cs->next.push_back(edge_of(base));
  cs->input_meta.push_back(input_meta_of(base));
  for (size_t k = 1; k < inner->next.size(); ++k) {
    node_retain(inner->next[k].node);
    cs->next.push_back(inner->next[k]);
    cs->input_meta.push_back(inner->input_meta[k]);
  }
  cs->base = geometry_of(base);
  cs->view = geometry_of(view);
  cs->inner = inner;  // the view's reference, handed over
  m->grad_fn = nullptr;
  AutogradMeta* bm = ensure_meta(base);
  if (bm->grad_fn && !bm->weak_fn) node_release(bm->grad_fn);
  bm->weak_fn = false;
  bm->grad_fn = cs;
  bm->output_nr = 0;
  bm->requires_grad = true;
  remake_view_history(view);
}

}  // namespace

void track_views(Op* op, const vt_value* args, vt_value* outs, int32_t nouts, bool recorded) {
  if (args[0].tag != VT_TENSOR) return;
  vt_tensor* self = args[0].v.t;
  TensorImpl* si = impl(self);
  if (op->inplace) {
    if (si->view_base && recorded) rebase_view(self);
    return;
  }
  for (int32_t j = 0; j < nouts; ++j) {
    if (outs[j].tag != VT_TENSOR || outs[j].v.t == self) continue;
    TensorImpl* oi = impl(outs[j].v.t);
    if (oi->storage != si->storage || oi->view_base) continue;
    vt_tensor* base = si->view_base ? si->view_base : self;
    vtrt_retain(base);
    oi->view_base = base;
    oi->view_nograd = !t_grad_enabled || si->view_nograd;
    if (oi->ag && oi->ag->grad_fn) oi->ag->base_history = history_id(base);
  }
}

// ---- the engine ----------------------------------------------------------------------------------

namespace {

struct Engine {
  bool retain_graph, create_graph, accumulate;
  const vt_host* host = vt::host();
  // capture for autograd.grad: (node, input_nr) -> index into captured
  std::unordered_map<Node*, std::vector<std::pair<uint32_t, size_t>>> captures;
  std::vector<vt_tensor*> captured;

  // buf + g, consuming both; on failure returns null and remembers the error in `failed`.
  vt_status failed = VT_OK;
  vt_tensor* add(vt_tensor* buf, vt_tensor* g) {
    if (!buf) return g;
    if (!g) return buf;
    vt_tensor* s = call1(kAdd, {T(buf), T(g)});
    vtrt_release(buf);
    vtrt_release(g);
    if (!s && failed == VT_OK) failed = vtrt_last_status();
    return s;
  }

  vt_status run_hooks(std::vector<Hook>& hooks, vt_tensor** grad) {
    for (auto& h : hooks) {
      vt_tensor* repl = nullptr;
      vt_status s = h.fn(h.cb.ctx, *grad, &repl);
      if (s != VT_OK) return s;
      if (repl) {
        vtrt_release(*grad);
        *grad = repl;
      }
    }
    return VT_OK;
  }

  // A gradient stored on a tensor is dense and laid out like that tensor (PyTorch's gradient
  // layout contract): sum's backward hands out a stride-0 expansion, and kept as is,
  // `p.grad.add_(t)` would hit one cell and clip_grad_norm_ would see one value. Steals g when it
  // is fresh and well laid out, otherwise stores a contiguous copy. Consumes g; null on failure.
  vt_tensor* stored_grad(const vt_tensor* like, vt_tensor* g) {
    // fresh: nothing else sees g's memory (a view holds its base: both may refer to it)
    const TensorImpl* gi = impl(g);
    const vt_tensor* base = gi->view_base;
    const int64_t holders = 1 + (base && impl(base)->refs.load() == 1 ? 1 : 0);
    const bool fresh = gi->refs.load() == 1 && gi->storage->refs.load() == holders;
    const bool like_param = non_overlapping_dense(g) &&
        (vtrt_is_contiguous(g) || std::memcmp(g->strides, like->strides,
                                              sizeof(int64_t) * g->ndim) == 0);
    if (fresh && like_param) return g;
    vt_tensor* c = call1(kContiguous, {T(g)});
    vtrt_release(g);
    return c;
  }

  vt_status accumulate_leaf(Node* n, vt_tensor* g) {
    vt_tensor* leaf = n->leaf;
    AutogradMeta* m = ensure_meta(leaf);
    if (vt_status s = run_hooks(m->hooks, &g)) {  // outside the lock: a hook may run Python
      vtrt_release(g);
      return s;
    }
    // Other threads may be accumulating into this leaf too: the read-modify-write of .grad is
    // one step under the leaf's lock.
    std::lock_guard<std::mutex> lock(m->mu);
    if (m->grad) {
      vt_tensor* sum = call1(kAdd, {T(m->grad), T(g)});
      vtrt_release(g);
      if (!sum) return vtrt_last_status();
      g = sum;
    }
    vt_tensor* stored = stored_grad(leaf, g);
    if (!stored) return vtrt_last_status();
    if (m->grad) vtrt_release(m->grad);
    m->grad = stored;
    return VT_OK;
  }

  vt_status run_op(Node* n, std::vector<vt_tensor*>& in, std::vector<vt_tensor*>& out_grads) {
    const Schema& s = n->op->schema;
    if (n->released)
      return set_error(VT_ERR_RUNTIME,
                       "[%s] backward through the graph a second time: its saved tensors were "
                       "freed after the first backward (pass retain_graph=True to keep them)",
                       s.name.c_str());
    for (size_t k = 0; k < n->saved.size(); ++k) {
      const SavedTensor& st = n->saved[k];
      uint64_t now = vtrt_version(st.t);
      if (now != st.version)
        return set_error(VT_ERR_RUNTIME,
                         "[%s] a tensor saved for backward was modified in place afterwards "
                         "(version %llu when saved, now %llu); clone it before modifying",
                         s.name.c_str(), static_cast<unsigned long long>(st.version),
                         static_cast<unsigned long long>(now));
    }
    const int32_t nargs = static_cast<int32_t>(n->args.size());
    std::vector<uint8_t> needs(nargs, 0);
    std::vector<vt_value> grad_args(nargs, none_value());
    std::vector<std::vector<vt_tensor*>> list_slots(nargs);
    for (size_t k = 0; k < n->next.size(); ++k)
      if (n->next[k].node) needs[n->flat_arg[k]] = 1;
    for (int32_t i = 0; i < nargs; ++i) {
      if (s.args[i].type == VT_TENSORS && needs[i]) {
        int64_t len = 0;
        for (size_t k = 0; k < n->flat_arg.size(); ++k) len += n->flat_arg[k] == i;
        list_slots[i].assign(len, nullptr);
        grad_args[i].tag = VT_TENSORS;
        grad_args[i].v.ts.data = list_slots[i].data();
        grad_args[i].v.ts.len = len;
      }
    }
    std::vector<vt_value> grad_outs(n->num_outputs, none_value());
    for (uint32_t j = 0; j < n->num_outputs; ++j)
      if (in[j]) grad_outs[j] = T(in[j]);
    vt_kernel_ctx ctx{host, n->device, cuda_current_stream(n->device), nullptr};
    const Pack* prev_pack = t_backward_pack;
    t_backward_pack = n->backward.pack;  // its own ops stay callable even if it was unloaded
    vt_status st = n->backward.fn(&ctx, n->args.data(), nargs, n->outs.data(),
                                  static_cast<int32_t>(n->outs.size()), grad_outs.data(),
                                  needs.data(), grad_args.data());
    t_backward_pack = prev_pack;
    if (st != VT_OK) {
      const char* msg = last_error();
      if (msg[0] != '[') {
        std::string m = msg[0] ? msg : "backward rule failed without a message";
        set_error(st, "[%s] backward: %s", s.name.c_str(), m.c_str());
      }
      return st;
    }
    // flatten into out_grads (one per edge), checking each gradient's shape and dtype
    out_grads.assign(n->next.size(), nullptr);
    for (size_t k = 0; k < n->next.size(); ++k) {
      int32_t i = n->flat_arg[k];
      vt_tensor* g = nullptr;
      if (grad_args[i].tag == VT_TENSOR && n->flat_elem[k] < 0) {
        g = grad_args[i].v.t;
        grad_args[i].tag = VT_NONE;
      } else if (grad_args[i].tag == VT_TENSORS && n->flat_elem[k] >= 0) {
        g = list_slots[i][n->flat_elem[k]];
        list_slots[i][n->flat_elem[k]] = nullptr;
      }
      out_grads[k] = g;
      if (!g) continue;
      const InputMeta& im = n->input_meta[k];
      if (g->ndim != im.ndim || std::memcmp(g->sizes, im.sizes, sizeof(int64_t) * im.ndim) != 0 ||
          g->dtype.code != im.dtype.code || g->dtype.bits != im.dtype.bits) {
        std::string msg = "[" + s.name + "] backward returned a gradient of shape " +
                          shape_str(g->sizes, g->ndim) + " " + dtype_name(g->dtype) +
                          " for argument '" + s.args[i].name + "' of shape " +
                          shape_str(im.sizes, im.ndim) + " " + dtype_name(im.dtype);
        for (auto* x : out_grads) vtrt_release(x);
        out_grads.clear();
        return set_error(VT_ERR_RUNTIME, "%s", msg.c_str());
      }
    }
    return VT_OK;
  }

  // CopySlices: g is the gradient of the whole base. Outside the view it passes to the base's
  // old history unchanged; the view's part goes through the in-place op's node, whose gradient
  // for its input 0 (the view's old value) takes its place. Built from ops (zeros, as_strided,
  // copy_), so it runs on every device and, with create_graph, is itself differentiable.
  vt_status run_copy_slices(Node* n, std::vector<vt_tensor*>& in,
                            std::vector<vt_tensor*>& out_grads) {
    vt_tensor* g = in[0];
    const Geometry &b = n->base, &v = n->view;
    // the base's elements lie in [lo, lo + span) of its storage; a buffer of that many elements
    // holds the gradient in the base's own layout, so the view's geometry applies to it as is
    int64_t lo = b.offset, hi = b.offset;
    for (size_t d = 0; d < b.sizes.size(); ++d) {
      const int64_t ext = b.strides[d] * (b.sizes[d] - 1);
      (ext < 0 ? lo : hi) += ext;
    }
    const int64_t span = g->numel ? hi - lo + 1 : 0;
    vt_value dt = none_value(), dev = none_value();
    dt.tag = VT_DTYPE;
    dt.v.dtype = g->dtype;
    dev.tag = VT_DEVICE;
    dev.v.device = g->device;
    vt_tensor *buf = nullptr, *gb = nullptr, *gv = nullptr, *gin = nullptr, *r = nullptr;
    std::vector<vt_tensor*> inner_in(1, nullptr), inner_out;
    auto done = [&](vt_status st) {
      for (vt_tensor* x : {buf, gv, gin, r}) vtrt_release(x);
      for (vt_tensor* x : inner_out) vtrt_release(x);
      if (st != VT_OK) vtrt_release(gb);
      return st;
    };
    buf = call1(kZeros, {Ints(&span, 1), dt, dev});
    if (!buf) return done(vtrt_last_status());
    gb = call1(kAsStrided, {T(buf), Ints(b.sizes.data(), (int64_t)b.sizes.size()),
                            Ints(b.strides.data(), (int64_t)b.strides.size()), Int(b.offset - lo)});
    if (!gb || !(r = call1(kCopy, {T(gb), T(g)}))) return done(vtrt_last_status());
    gv = call1(kAsStrided, {T(buf), Ints(v.sizes.data(), (int64_t)v.sizes.size()),
                            Ints(v.strides.data(), (int64_t)v.strides.size()), Int(v.offset - lo)});
    if (!gv || !(gin = call1(kContiguous, {T(gv)}))) return done(vtrt_last_status());
    inner_in[0] = gin;
    if (vt_status st = run_op(n->inner, inner_in, inner_out)) return done(st);
    vtrt_release(r);
    r = inner_out[0] ? call1(kCopy, {T(gv), T(inner_out[0])}) : call1(kZero, {T(gv)});
    if (!r) return done(vtrt_last_status());
    out_grads.assign(n->next.size(), nullptr);
    out_grads[0] = gb;
    for (size_t k = 1; k < n->next.size() && k < inner_out.size(); ++k) {
      out_grads[k] = inner_out[k];
      inner_out[k] = nullptr;
    }
    return done(VT_OK);
  }

  vt_status run_custom(Node* n, std::vector<vt_tensor*>& in, std::vector<vt_tensor*>& out_grads) {
    if (n->released)
      return set_error(VT_ERR_RUNTIME, "[%s] backward through the graph a second time "
                       "(pass retain_graph=True)", n->name.c_str());
    out_grads.assign(n->next.size(), nullptr);
    vt_status s = n->custom(n->custom_cb.ctx, in.data(), static_cast<int32_t>(in.size()),
                            out_grads.data(), static_cast<int32_t>(out_grads.size()));
    if (s != VT_OK) {
      for (auto* g : out_grads) vtrt_release(g);
      out_grads.clear();
    }
    return s;
  }

  vt_status run(std::vector<Node*>& roots_nodes, std::vector<uint32_t>& roots_nr,
                std::vector<vt_tensor*>& roots_grad) {
    // 1. dependency counts over the reachable graph
    std::unordered_map<Node*, int64_t> deps;
    std::vector<Node*> stack(roots_nodes.begin(), roots_nodes.end());
    std::unordered_map<Node*, bool> seen;
    while (!stack.empty()) {
      Node* x = stack.back();
      stack.pop_back();
      if (seen[x]) continue;
      seen[x] = true;
      for (auto& e : x->next)
        if (e.node) {
          deps[e.node]++;
          stack.push_back(e.node);
        }
    }
    // 2. seed the buffers
    std::unordered_map<Node*, std::vector<vt_tensor*>> buffers;
    auto buffer_of = [&](Node* x) -> std::vector<vt_tensor*>& {
      auto& b = buffers[x];
      if (b.empty()) b.assign(x->num_outputs, nullptr);
      return b;
    };
    for (size_t r = 0; r < roots_nodes.size(); ++r) {
      auto& b = buffer_of(roots_nodes[r]);
      b[roots_nr[r]] = add(b[roots_nr[r]], roots_grad[r]);
      roots_grad[r] = nullptr;
    }
    auto cmp = [](Node* a, Node* b) { return a->seq < b->seq; };
    std::priority_queue<Node*, std::vector<Node*>, decltype(cmp)> ready(cmp);
    for (Node* rn : roots_nodes)
      if (deps[rn] == 0) {
        deps[rn] = -1;  // queued once, even when it is the root of several outputs
        ready.push(rn);
      }
    vt_status status = VT_OK;
    bool prev_mode = t_grad_enabled;
    t_grad_enabled = create_graph;
    while (!ready.empty() && status == VT_OK && failed == VT_OK) {
      Node* x = ready.top();
      ready.pop();
      std::vector<vt_tensor*> in = std::move(buffer_of(x));
      buffers.erase(x);
      // pre-hooks (hooks of non-leaf tensors), retain_grad, and captures for autograd.grad
      for (uint32_t j = 0; j < x->num_outputs && status == VT_OK; ++j) {
        if (in[j] && !x->pre_hooks[j].empty()) status = run_hooks(x->pre_hooks[j], &in[j]);
        if (in[j] && x->retain_output[j] && x->retained[j]) {
          vt_tensor* keep = x->retained[j];
          AutogradMeta* m = ensure_meta(keep);
          vtrt_retain(in[j]);
          vt_tensor* g = m->grad ? add(m->grad, in[j]) : in[j];
          m->grad = g ? stored_grad(keep, g) : nullptr;
          if (!m->grad && failed == VT_OK) failed = vtrt_last_status();
        }
      }
      auto cap = captures.find(x);
      if (cap != captures.end()) {
        for (auto& [nr, idx] : cap->second)
          if (in[nr]) {
            vtrt_retain(in[nr]);
            captured[idx] = add(captured[idx], in[nr]);
          }
      }
      std::vector<vt_tensor*> out;
      if (status == VT_OK) {
        if (x->kind == NodeKind::Accumulate) {
          if (accumulate && in[0]) {
            status = accumulate_leaf(x, in[0]);
            in[0] = nullptr;
          }
        } else {
          bool any = false;
          for (auto* g : in) any |= g != nullptr;
          if (any) {
            status = x->kind == NodeKind::Op           ? run_op(x, in, out)
                     : x->kind == NodeKind::CopySlices ? run_copy_slices(x, in, out)
                                                       : run_custom(x, in, out);
            if (status == VT_OK && !retain_graph) {
              release_saved(x);
              if (x->inner) release_saved(x->inner);
              if (x->kind == NodeKind::Custom && !x->multi_view) x->released = true;
            }
          }
        }
      }
      for (auto* g : in) vtrt_release(g);
      // deliver gradients to successors; a successor is ready once all its edges delivered
      for (size_t k = 0; k < x->next.size(); ++k) {
        const Edge& e = x->next[k];
        vt_tensor* g = k < out.size() ? out[k] : nullptr;
        if (!e.node) {
          vtrt_release(g);
          continue;
        }
        if (g && status == VT_OK) {
          auto& b = buffer_of(e.node);
          b[e.input_nr] = add(b[e.input_nr], g);
        } else {
          vtrt_release(g);
        }
        if (--deps[e.node] == 0) ready.push(e.node);
      }
    }
    t_grad_enabled = prev_mode;
    for (auto& [node, b] : buffers)
      for (auto* g : b) vtrt_release(g);
    return status != VT_OK ? status : failed;
  }
};

}  // namespace

}  // namespace vt

using namespace vt;

// ---- split: several views of one tensor, one node -------------------------------------------------
// split()/chunk() return views of consecutive pieces along a dim. Recorded as a slice node each,
// their backward would write each piece's gradient into a zero tensor of the input's size and add
// those up (a memset, a copy and an add of the whole input per piece); one node for all pieces
// joins their gradients with one cat, zeros standing in for a piece no gradient reached.
namespace {

struct SplitInfo {
  int64_t dim;
  vt_dtype dtype;
  vt_device device;
  std::vector<std::vector<int64_t>> shapes;  // each piece's sizes
};

// The pieces' gradients already lie in one buffer in the input's arrangement (a backward that
// writes its input gradients into one allocation, as sdpa's does for q, k, v split from one
// projection): the sizes of the whole input, viewed over that buffer, or null. Each piece must
// share the first one's storage and strides and start where the one before it ends along dim, and
// the whole view must not overlap itself (else it would not equal the cat).
vt_tensor* joined_view(const SplitInfo& info, vt_tensor* const* parts, int32_t n) {
  const TensorImpl* p0 = impl(parts[0]);
  const int32_t nd = p0->pub.ndim;
  const int64_t d = info.dim;
  if (d < 0 || d >= nd) return nullptr;
  int64_t at = p0->offset;
  std::vector<int64_t> sizes(p0->sizes, p0->sizes + nd);
  sizes[d] = 0;
  for (int32_t j = 0; j < n; ++j) {
    const TensorImpl* p = impl(parts[j]);
    if (p->storage != p0->storage || p->pub.ndim != nd || p->pub.dtype.code != info.dtype.code ||
        p->pub.dtype.bits != info.dtype.bits || p->offset != at ||
        !std::equal(p->strides, p->strides + nd, p0->strides))
      return nullptr;
    at += p->sizes[d] * p0->strides[d];
    sizes[d] += p->sizes[d];
  }
  // non-overlapping: with the dims in increasing stride, each stride covers everything inside it
  std::vector<int32_t> order(nd);
  for (int32_t i = 0; i < nd; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p0->strides[a] < p0->strides[b]; });
  int64_t span = 1;
  for (int32_t i : order) {
    if (sizes[i] == 1) continue;
    if (p0->strides[i] < span) return nullptr;
    span = p0->strides[i] * sizes[i];
  }
  vt_tensor* v = call1(kAsStrided, {T(parts[0]), Ints(sizes.data(), nd), Ints(p0->strides, nd), Int(0)});
  if (!v) vtrt_clear_error();  // cannot happen inside the storage; the cat stands in
  return v;
}

vt_status split_backward(void* ctx, vt_tensor* const* grad_outs, int32_t nouts, vt_tensor** grad_ins,
                         int32_t nins) {
  const auto* info = static_cast<const SplitInfo*>(ctx);
  if (nins < 1 || std::none_of(grad_outs, grad_outs + nouts, [](vt_tensor* g) { return g != nullptr; }))
    return VT_OK;
  if (std::all_of(grad_outs, grad_outs + nouts, [](vt_tensor* g) { return g != nullptr; }))
    if ((grad_ins[0] = joined_view(*info, grad_outs, nouts))) return VT_OK;
  vt_value dt = none_value(), dev = none_value();
  dt.tag = VT_DTYPE;
  dt.v.dtype = info->dtype;
  dev.tag = VT_DEVICE;
  dev.v.device = info->device;
  std::vector<vt_tensor*> parts(grad_outs, grad_outs + nouts), zeros;
  vt_status st = VT_OK;
  for (int32_t j = 0; j < nouts && st == VT_OK; ++j) {
    if (parts[j]) continue;
    const auto& sh = info->shapes[j];
    parts[j] = call1(kZeros, {Ints(sh.data(), static_cast<int64_t>(sh.size())), dt, dev});
    if (parts[j]) zeros.push_back(parts[j]); else st = vtrt_last_status();
  }
  if (st == VT_OK) {
    vt_value list = none_value();
    list.tag = VT_TENSORS;
    list.v.ts.data = parts.data();
    list.v.ts.len = nouts;
    grad_ins[0] = call1(kCat, {list, Int(info->dim)});
    if (!grad_ins[0]) st = vtrt_last_status();
  }
  for (vt_tensor* z : zeros) vtrt_release(z);
  return st;
}

void split_release(void* ctx) { delete static_cast<SplitInfo*>(ctx); }
}  // namespace

extern "C" {

int32_t vtrt_is_grad_enabled(void) { return t_grad_enabled; }
void vtrt_set_grad_enabled(int32_t on) { t_grad_enabled = on != 0; }

int32_t vtrt_requires_grad(vt_tensor* t) { return wants_grad(t); }

vt_status vtrt_set_requires_grad(vt_tensor* t, int32_t on) {
  AutogradMeta* m = meta(t);
  if (m && m->grad_fn && !on)
    return set_error(VT_ERR_RUNTIME, "requires_grad_: only leaf tensors can be switched off; "
                     "use .detach() for a tensor without history");
  if (on && !is_float(t->dtype))
    return set_error(VT_ERR_TYPE, "requires_grad_: only floating-point tensors can require "
                     "gradients, got %s", dtype_name(t->dtype).c_str());
  if (!on && !m) return VT_OK;
  ensure_meta(t)->requires_grad = on != 0;
  // Views of this leaf record history but write its memory: check_inplace refuses them. The mark
  // stays after requires_grad_(False); it only matters for views that themselves require grad.
  if (on && !meta(t)->grad_fn) impl(t)->storage->leaf_requires_grad.store(true);
  return VT_OK;
}

int32_t vtrt_is_leaf(vt_tensor* t) {
  refresh_view(t);
  AutogradMeta* m = meta(t);
  return !m || !m->grad_fn;
}

vt_tensor* vtrt_grad(vt_tensor* t) {
  AutogradMeta* m = meta(t);
  if (!m) return nullptr;
  std::lock_guard<std::mutex> lock(m->mu);
  if (m->grad) vtrt_retain(m->grad);
  return m->grad;
}

vt_status vtrt_set_grad(vt_tensor* t, vt_tensor* g) {
  if (g && (g->ndim != t->ndim ||
            std::memcmp(g->sizes, t->sizes, sizeof(int64_t) * t->ndim) != 0))
    return set_error(VT_ERR_VALUE, "grad: assigned gradient of shape %s to a tensor of shape %s",
                     shape_str(g->sizes, g->ndim).c_str(), shape_str(t->sizes, t->ndim).c_str());
  if (g && !same_dtype(g->dtype, t->dtype))
    return set_error(VT_ERR_TYPE, "grad: assigned gradient of dtype %s to a tensor of dtype %s",
                     dtype_name(g->dtype).c_str(), dtype_name(t->dtype).c_str());
  if (g && (g->device.type != t->device.type || g->device.index != t->device.index))
    return set_error(VT_ERR_VALUE, "grad: assigned gradient on %s to a tensor on %s",
                     device_name(g->device).c_str(), device_name(t->device).c_str());
  AutogradMeta* m = ensure_meta(t);
  if (g) vtrt_retain(g);
  std::lock_guard<std::mutex> lock(m->mu);
  if (m->grad) vtrt_release(m->grad);
  m->grad = g;
  return VT_OK;
}

// The name of the op that made t ("" for leaves), and its node's identity for graph inspection.
const char* vtrt_grad_fn_name(vt_tensor* t) {
  refresh_view(t);
  AutogradMeta* m = meta(t);
  if (!m || !m->grad_fn) return "";
  Node* n = m->grad_fn;
  return n->kind == NodeKind::Op ? n->op->schema.name.c_str() : n->name.c_str();
}

vt_tensor* vtrt_detach(vt_tensor* t) { return detached_alias(t); }

vt_status vtrt_register_hook(vt_tensor* t, vt_hook_fn fn, void* ctx, void (*release)(void*)) {
  AutogradMeta* m = meta(t);
  if (!m || !m->requires_grad)
    return set_error(VT_ERR_RUNTIME, "register_hook: the tensor does not require grad");
  Hook h{fn, {ctx, release}};
  if (m->grad_fn) m->grad_fn->pre_hooks[m->output_nr].push_back(h);
  else m->hooks.push_back(h);
  return VT_OK;
}

vt_status vtrt_retain_grad(vt_tensor* t) {
  AutogradMeta* m = meta(t);
  if (!m || !m->requires_grad)
    return set_error(VT_ERR_RUNTIME, "retain_grad: the tensor does not require grad");
  if (!m->grad_fn) return VT_OK;  // leaves keep their grad anyway
  m->retains_grad = true;
  m->grad_fn->retain_output[m->output_nr] = 1;
  m->grad_fn->retained[m->output_nr] = t;  // weak; cleared when t dies (free_meta)
  return VT_OK;
}

// Attaches a user-defined backward (e.g. vt.autograd.Function) to already computed outputs.
vt_status vtrt_record_custom(vt_tensor* const* inputs, int32_t nin, vt_tensor* const* outputs,
                             int32_t nout, vt_custom_backward_fn fn, void* ctx,
                             void (*release)(void*), const char* name) {
  auto* n = new Node();
  n->kind = NodeKind::Custom;
  n->seq = g_node_seq.fetch_add(1, std::memory_order_relaxed);
  n->custom = fn;
  n->custom_cb = {ctx, release};
  n->name = name ? name : "Function";
  n->num_outputs = static_cast<uint32_t>(nout);
  n->pre_hooks.resize(nout);
  n->retain_output.assign(nout, 0);
  n->retained.assign(nout, nullptr);
  for (int32_t i = 0; i < nin; ++i) {
    n->next.push_back(edge_of(inputs[i]));
    n->input_meta.push_back(input_meta_of(inputs[i]));
    n->flat_arg.push_back(i);
    n->flat_elem.push_back(-1);
  }
  for (int32_t j = 0; j < nout; ++j) {
    if (!is_float(outputs[j]->dtype)) continue;
    AutogradMeta* m = ensure_meta(outputs[j]);
    if (m->grad_fn && !m->weak_fn) node_release(m->grad_fn);
    m->weak_fn = false;
    node_retain(n);
    m->grad_fn = n;
    m->output_nr = static_cast<uint32_t>(j);
    m->requires_grad = true;
  }
  node_release(n);
  return VT_OK;
}

// n views of self: pieces of the given sizes, in order, along dim (which the caller checked:
// the sizes sum to self's size there). outs receives n new references.
vt_status vtrt_split(vt_tensor* self, const int64_t* sizes, int32_t n, int64_t dim, vt_tensor** outs) {
  std::fill(outs, outs + n, nullptr);
  const bool nograd_views = !t_grad_enabled || impl(self)->view_nograd;
  const bool record = t_grad_enabled && n > 1 && is_float(self->dtype) && wants_grad(self);
  {
    NoGradScope no_grad;  // the pieces are recorded below as one node, not as a slice node each
    int64_t start = 0;
    for (int32_t i = 0; i < n; ++i) {
      outs[i] = call1(kSlice, {T(self), Int(dim), Int(start), Int(start + sizes[i]), Int(1)});
      if (!outs[i]) {
        for (int32_t k = 0; k < i; ++k) vtrt_release(outs[k]);
        std::fill(outs, outs + n, nullptr);
        return vtrt_last_status();
      }
      start += sizes[i];
    }
  }
  for (int32_t i = 0; i < n; ++i) impl(outs[i])->view_nograd = nograd_views;  // made as if outside the scope
  if (!record) return VT_OK;
  auto* info = new SplitInfo{dim, self->dtype, self->device, {}};
  for (int32_t i = 0; i < n; ++i) info->shapes.emplace_back(outs[i]->sizes, outs[i]->sizes + outs[i]->ndim);
  vt_status st = vtrt_record_custom(&self, 1, outs, n, split_backward, info, split_release, "SplitBackward");
  if (st != VT_OK) {
    for (int32_t i = 0; i < n; ++i) vtrt_release(outs[i]);
    std::fill(outs, outs + n, nullptr);
    return st;
  }
  for (int32_t i = 0; i < n; ++i) {
    AutogradMeta* m = ensure_meta(outs[i]);
    m->grad_fn->multi_view = true;
    // made against the base's current history: remade as as_strided of the base only if it changes
    if (vt_tensor* base = impl(outs[i])->view_base) m->base_history = history_id(base);
  }
  return VT_OK;
}

// Backward from `roots` (seeded with `grads`, NULL = ones for a one-element root). With
// `inputs`, computes d(roots)/d(inputs) into `out_grads` (new references, NULL where none flowed)
// without touching .grad; otherwise accumulates into the leaves' .grad.
vt_status vtrt_backward(vt_tensor* const* roots, vt_tensor* const* grads, int32_t n,
                        int32_t retain_graph, int32_t create_graph, vt_tensor* const* inputs,
                        int32_t ninputs, vt_tensor** out_grads) {
  Engine eng;
  eng.retain_graph = retain_graph != 0;
  eng.create_graph = create_graph != 0;
  eng.accumulate = inputs == nullptr;
  std::vector<Node*> nodes;
  std::vector<uint32_t> nrs;
  std::vector<vt_tensor*> seeds;
  // every early return goes through here: the edges taken so far hold their graphs alive
  auto fail = [&](vt_status s) {
    for (auto* g : seeds) vtrt_release(g);
    for (auto* c : eng.captured) vtrt_release(c);
    for (Node* x : nodes) node_release(x);
    return s;
  };
  for (int32_t i = 0; i < n; ++i) {
    vt_tensor* r = roots[i];
    if (!wants_grad(r))
      return fail(set_error(VT_ERR_RUNTIME, "backward: tensor %d does not require grad and has "
                            "no grad_fn (did you forget requires_grad_() or compute under "
                            "no_grad?)", i));
    vt_tensor* g = grads ? grads[i] : nullptr;
    if (g) {
      if (g->ndim != r->ndim || std::memcmp(g->sizes, r->sizes, sizeof(int64_t) * r->ndim) != 0)
        return fail(set_error(VT_ERR_VALUE, "backward: gradient of shape %s for an output of "
                              "shape %s", shape_str(g->sizes, g->ndim).c_str(),
                              shape_str(r->sizes, r->ndim).c_str()));
      if (!same_dtype(g->dtype, r->dtype))
        return fail(set_error(VT_ERR_TYPE, "backward: gradient of dtype %s for an output of "
                              "dtype %s", dtype_name(g->dtype).c_str(),
                              dtype_name(r->dtype).c_str()));
      vtrt_retain(g);
    } else {
      if (r->numel != 1)
        return fail(set_error(VT_ERR_RUNTIME, "backward: grad can be implicitly created only "
                              "for one-element outputs, got shape %s; pass a gradient",
                              shape_str(r->sizes, r->ndim).c_str()));
      vt_value size;
      std::memset(&size, 0, sizeof size);
      size.tag = VT_INTS;
      size.v.ints = {r->sizes, r->ndim};
      vt_value dt;
      std::memset(&dt, 0, sizeof dt);
      dt.tag = VT_DTYPE;
      dt.v.dtype = r->dtype;
      vt_value dev;
      std::memset(&dev, 0, sizeof dev);
      dev.tag = VT_DEVICE;
      dev.v.device = r->device;
      g = call1(kOnes, {size, dt, dev});
      if (!g) return fail(vtrt_last_status());
    }
    seeds.push_back(g);
    Edge e = edge_of(r);
    nodes.push_back(e.node);
    nrs.push_back(e.input_nr);
  }
  if (inputs) {
    eng.captured.assign(ninputs, nullptr);
    for (int32_t i = 0; i < ninputs; ++i) {
      if (!wants_grad(inputs[i])) {
        return fail(set_error(VT_ERR_RUNTIME, "grad: input %d does not require grad", i));
      }
      Edge e = edge_of(inputs[i]);
      eng.captures[e.node].push_back({e.input_nr, static_cast<size_t>(i)});
      nodes.push_back(e.node);  // keep it alive for the run; not a root (no seed)
      nrs.push_back(UINT32_MAX);
    }
  }
  std::vector<Node*> root_nodes(nodes.begin(), nodes.begin() + n);
  std::vector<uint32_t> root_nrs(nrs.begin(), nrs.begin() + n);
  vt_status s = eng.run(root_nodes, root_nrs, seeds);
  for (Node* x : nodes) node_release(x);
  nodes.clear();
  if (s != VT_OK) return fail(s);
  if (inputs)
    for (int32_t i = 0; i < ninputs; ++i) out_grads[i] = eng.captured[i];
  return VT_OK;
}

}  // extern "C"
