// A/B forward tiles at head dim 128 (VT_HOPPER_FWD_D128): the softmax in turns, persistent
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d128_128x128l, 128, FwdTile<128, 128, 2, false, true>)
VT_FMHA_FORWARD_TILE(d128_128x128p, 128, FwdTile<128, 128, 2, true>)
