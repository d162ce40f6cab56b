// throw_init.cpp — init registers an op and then lets a C++ exception escape vt_oppack_init
// (which the ABI forbids). The host must survive it, refuse the pack and roll the op back.
#include <vt/oppack.h>

#include <stdexcept>

namespace {
vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "throwinit::ghost(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  throw std::runtime_error("throwinit: exception out of init");
}
}  // namespace

VT_OPPACK_DEFINE(init)
