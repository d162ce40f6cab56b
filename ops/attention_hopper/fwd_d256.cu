// forward kernels at head dim 256, bfloat16 and float16, causal and not (fmha_run.cuh): example 88's
// runner's 16-bit tile at D = 256, 128 queries over two consumer warp groups, 64 keys a step (its
// O accumulator is 128 floats a thread, the S tile 32; FlashAttention-3 takes 80 keys at D = 256, not
// tried here). Forward only: pack.cu declines the backward at D = 256 (flash's compute, then the
// composed one, serve it).
#include "fmha_run.cuh"

VT_FMHA_FORWARD_TILE(d256, 256, FwdTile<128, 64, 2>)
