// autograd.hpp — reverse-mode autograd: the graph recorded at dispatch time and the engine.
//
// A tensor that requires grad carries an AutogradMeta. Every op called while grad mode is on and
// with an input that requires grad records a Node: the op's backward rule, the values it saved and
// one Edge per tensor input pointing at where that input's gradient goes next (the input's own
// grad_fn, or the AccumulateGrad node of a leaf). The engine (autograd.cpp) walks the graph from
// the roots in dependency order on the calling thread, with no Python and no thread creation.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "dispatcher.hpp"

namespace vt {

struct Node;

// A Python (or other foreign) callback attached to the graph: a tensor hook or the backward of a
// user-defined function. `release(ctx)` runs when the graph lets go of it.
struct Callback {
  void* ctx = nullptr;
  void (*release)(void* ctx) = nullptr;
};

using vt_hook_fn = vtrt_hook_fn;
using vt_custom_backward_fn = vtrt_custom_backward_fn;

struct Hook {
  vt_hook_fn fn;
  Callback cb;
};

struct AutogradMeta {
  // Guards `grad` and `accumulator`: several threads may run backward into one shared leaf, and
  // build graphs on it, at once. Not on the forward hot path (only leaves' edges take it).
  std::mutex mu;
  bool requires_grad = false;
  bool retains_grad = false;
  vt_tensor* grad = nullptr;       // accumulated gradient (owned)
  Node* grad_fn = nullptr;         // owned (unless weak_fn); null for leaves
  bool weak_fn = false;            // a node's saved output: grad_fn is that node, not owned
  uint32_t output_nr = 0;          // which output of grad_fn this tensor is
  Node* accumulator = nullptr;     // weak: a leaf's AccumulateGrad node while a graph holds it
  std::vector<Hook> hooks;         // leaf hooks (non-leaf hooks live on grad_fn as pre-hooks)
  // A view's grad_fn was made against this state of its base's history (history_id): when the
  // base's history is rewritten (an in-place op on it or on another of its views), it is remade.
  uint64_t base_history = 0;
};

struct Edge {
  Node* node = nullptr;  // owned reference; null: this input needs no gradient
  uint32_t input_nr = 0;
};

struct SavedTensor {
  vt_tensor* t = nullptr;  // owned
  uint64_t version = 0;
};

struct InputMeta {  // what a gradient for an input must look like
  int64_t sizes[VT_MAX_DIMS];
  int32_t ndim;
  vt_dtype dtype;
  vt_device device;
};

// CopySlices: the history of a base after an in-place op on one of its views (PyTorch's name and
// idea): the gradient of the base passes through unchanged outside the view, and through the
// in-place op's own node (`inner`) inside it.
enum class NodeKind { Op, Accumulate, Custom, CopySlices };

struct Geometry {  // a tensor's place in its storage (elements)
  std::vector<int64_t> sizes, strides;
  int64_t offset = 0;
};

struct Node {
  std::atomic<int64_t> refs{1};
  uint64_t seq = 0;
  NodeKind kind = NodeKind::Op;
  uint32_t num_outputs = 0;           // forward outputs = gradients this node receives
  std::vector<Edge> next;             // one per flattened tensor input
  std::vector<InputMeta> input_meta;  // one per flattened tensor input
  std::vector<std::vector<Hook>> pre_hooks;  // per output: hooks of non-leaf tensors
  std::vector<uint8_t> retain_output;        // per output: a non-leaf that retains its grad
  std::vector<vt_tensor*> retained;          // weak pointers to those outputs (cleared on death)

  // Op nodes
  Op* op = nullptr;
  Backward backward;                   // fn + save masks + pack (pack referenced)
  std::vector<vt_value> args;          // the forward's arguments (tensors: saved or VT_NONE)
  std::vector<vt_value> outs;          // the forward's saved outputs (detached aliases)
  std::vector<SavedTensor> saved;      // every tensor referenced from args/outs, with versions
  std::vector<vt_tensor*> saved_outs;  // the output aliases among them (weakly linked to us)
  std::vector<std::vector<int64_t>> int_lists;
  std::vector<std::vector<vt_tensor*>> tensor_lists;
  std::vector<std::string> strings;
  std::vector<int32_t> flat_arg;       // flattened input k -> argument index
  std::vector<int32_t> flat_elem;      // flattened input k -> element in a Tensor[] (or -1)
  vt_device device{VT_CPU, 0};
  bool released = false;               // saved values freed after a backward without retain

  // AccumulateGrad
  vt_tensor* leaf = nullptr;           // owned

  // Custom (user-defined Function, or split: several views joined by one cat in the backward)
  vt_custom_backward_fn custom = nullptr;
  Callback custom_cb;
  std::string name;
  bool multi_view = false;  // outputs are views of one input (split): none may be written in place

  // CopySlices
  Node* inner = nullptr;  // owned: the in-place op's node; its input 0 is the view's old value
  Geometry base, view;
};

void node_retain(Node* n);
void node_release(Node* n);

bool grad_enabled();
// Kernels run with recording off: ops a kernel calls through the host are its implementation,
// not part of the user's graph (only the outer call is recorded).
struct NoGradScope {
  bool prev;
  NoGradScope();
  ~NoGradScope();
};
AutogradMeta* meta(vt_tensor* t);         // null when t has none
AutogradMeta* ensure_meta(vt_tensor* t);
void free_meta(TensorImpl* t);             // on tensor death

// Called by vt::call after a kernel succeeded. Returns nonzero (error set) when recording is
// refused (e.g. an in-place op on a leaf that requires grad).
vt_status check_inplace(Op* op, const vt_value* args);
void record(Op* op, const Snapshot* snap, const vt_value* args, int32_t nargs, vt_value* outs,
            int32_t nouts, vt_device device);
// Whether an op called on t must be recorded: t requires grad, or t is a view whose base does.
bool wants_grad(const vt_tensor* t);
// Called by vt::call after a successful call (and its record): outputs of a non-in-place op that
// share argument 0's memory become its views (view_base); after an in-place op on a view, the
// base's history is rewritten (CopySlices).
void track_views(Op* op, const vt_value* args, vt_value* outs, int32_t nouts, bool recorded);

}  // namespace vt
