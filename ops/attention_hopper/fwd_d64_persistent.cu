// forward kernels at head dim 64 on 128 x 64 tiles, persistent (one CTA per SM walking tiles: the
// example's "ping-pong"), bfloat16 and float16; VT_HOPPER_FWD_D64=128x64p picks them
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d64_128x64p, 64, FwdTile<128, 64, 2, true>)
