/* vt/capabilities.h — a pack's capability declaration, next to its registrations.
 *
 *   #include "vt/capabilities.h"
 *   VT_OPPACK_CAPABILITIES(R"json({
 *     "abi_minor": 1,
 *     "requires": {"core": ">=0.1,<1"},
 *     "providers": [{"provider": "flash", "device": "cuda", "compute_capability": {"min": "8.0"},
 *                    "dtypes": ["bfloat16", "float16"], "cuda_graphs": true,
 *                    "deterministic": true, "shapes": "head_dim 64 or 128",
 *                    "limits": [{"arg": "query", "dim": -1, "one_of": [64, 128]}]}]
 *   })json")
 *
 * The macro exports `vt_oppack_capabilities`, a function returning that JSON text. vt_describe
 * copies it into manifest.json at build time (key "capabilities"); the registry checks it when the
 * pack loads (required ABI minor, required packs and their versions, compute capability ranges)
 * and `vt-ops info PACK` shows it. The format is in docs/LAYOUT.md. Optional: a pack without it
 * loads as before. A separate header on purpose: only the file that declares includes it. */
#ifndef VT_CAPABILITIES_H_
#define VT_CAPABILITIES_H_

#include "vt/oppack.h"

#define VT_OPPACK_CAPABILITIES_SYMBOL "vt_oppack_capabilities"
typedef const char* (*vt_oppack_capabilities_fn)(void);

#define VT_OPPACK_CAPABILITIES(json_text) \
  VT_C_EXPORT const char* vt_oppack_capabilities(void) { return json_text; }

#endif /* VT_CAPABILITIES_H_ */
