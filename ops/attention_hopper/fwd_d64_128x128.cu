// forward kernels at head dim 64 on 128 queries x 128 keys over two consumer warp groups, bfloat16
// and float16; VT_HOPPER_FWD_D64=128x128 picks them
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d64_128x128, 64, FwdTile<128, 128, 2>)
