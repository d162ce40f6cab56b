// forward kernels at head dim 64 on 192 queries x 128 keys over three consumer warp groups
// (FlashAttention-3's D = 64 tile), bfloat16 and float16; VT_HOPPER_FWD_D64=192x128 picks them
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d64_192x128, 64, FwdTile<192, 128, 3>)
