/* dup_self.c — defines the same op twice within one init. */
#include <vt/oppack.h>

static vt_status init(const vt_host* host, vt_pack* pack) {
  vt_status st = host->define_op(pack, "dupself::op(Tensor x) -> Tensor");
  if (st != VT_OK) return st;
  return host->define_op(pack, "dupself::op(Tensor x) -> Tensor");
}

VT_OPPACK_DEFINE(init)
