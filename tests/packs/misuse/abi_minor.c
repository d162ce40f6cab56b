/* abi_minor.c — a pack built against a *newer minor* of the ABI than the host speaks (1.<host
 * minor + 1>): refused, since it may use host-table fields this runtime lacks. */
#include <vt/oppack.h>

VT_EXPORT uint32_t vt_oppack_abi_version(void) { return (1u << 16) | (uint32_t)(VT_ABI_MINOR + 1); }

VT_EXPORT vt_status vt_oppack_init(const vt_host* host, vt_pack* pack) {
  return host->define_op(pack, "abiminor::op(Tensor x) -> Tensor");
}
