// code_uses.cpp — the packs a CUDA graph captured kernels of, and the replay-time check that none
// was swapped out by a hot reload since (the graph would go on running the old code).
//
// Plain runtime code with a C API of its own (vtrt_code_uses_*), so the check is tested without a
// GPU; cuda_graph.cpp keeps one CodeUses per graph.
#include <algorithm>

#include "internal.hpp"

namespace vt {

void CodeUses::note(Pack* p) {
  if (!p || std::find(packs_.begin(), packs_.end(), p) != packs_.end()) return;
  pack_retain(p);
  packs_.push_back(p);
}

void CodeUses::clear() {
  std::vector<Pack*> packs;
  packs.swap(packs_);
  for (Pack* p : packs) pack_release(p);
}

vt_status CodeUses::check(const char* what) const {
  for (const Pack* p : packs_)
    if (pack_replaced(p))
      return set_error(VT_ERR_RUNTIME, "%s: pack '%s' was reloaded (vt.ops.reload) after this was "
                       "captured, and the capture still runs its old code; capture again to run "
                       "the new code (reset() and capture, or a new CUDAGraph)", what,
                       pack_name(p));
  return VT_OK;
}

}  // namespace vt

struct vtrt_code_uses {
  vt::CodeUses uses;
};

extern "C" {

vtrt_code_uses* vtrt_code_uses_new(void) { return new vtrt_code_uses(); }
void vtrt_code_uses_free(vtrt_code_uses* u) { delete u; }
void vtrt_code_uses_note(vtrt_code_uses* u, vtrt_pack* pack) {
  u->uses.note(reinterpret_cast<vt::Pack*>(pack));
}
int32_t vtrt_code_uses_count(const vtrt_code_uses* u) {
  return static_cast<int32_t>(u->uses.packs().size());
}
const char* vtrt_code_uses_pack(const vtrt_code_uses* u, int32_t i) {
  const auto& packs = u->uses.packs();
  return i >= 0 && i < static_cast<int32_t>(packs.size()) ? vt::pack_name(packs[i]) : nullptr;
}
vt_status vtrt_code_uses_check(const vtrt_code_uses* u, const char* what) {
  return u->uses.check(what ? what : "replay");
}

}  // extern "C"
