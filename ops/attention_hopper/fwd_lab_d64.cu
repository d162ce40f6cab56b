// A/B forward tile at head dim 64 (VT_HOPPER_FWD_D64=192x128l): FlashAttention-3's tile with the
// consumer groups' softmax in turns
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d64_192x128l, 64, FwdTile<192, 128, 3, false, true>)
