// A/B forward tile at head dim 128 (VT_HOPPER_FWD_D128=128x176l): FlashAttention-3's non-causal
// D = 128 tile, 176 keys a step, the softmax in turns
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d128_128x176l, 128, FwdTile<128, 176, 2, false, true>)
