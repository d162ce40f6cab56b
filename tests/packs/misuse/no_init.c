/* no_init.c — exports vt_oppack_abi_version but no vt_oppack_init: not an op pack. */
#include <vt/oppack.h>

VT_EXPORT uint32_t vt_oppack_abi_version(void) { return ((uint32_t)VT_ABI_MAJOR << 16) | VT_ABI_MINOR; }

VT_EXPORT int noinit_something_else(void) { return 42; }
