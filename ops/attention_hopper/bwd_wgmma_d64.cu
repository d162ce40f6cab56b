// our Hopper backward at head dim 64, bfloat16 and float16 (bwd_wgmma.cuh)
#include "bwd_wgmma.cuh"

VT_WGMMA_BACKWARD(64)
