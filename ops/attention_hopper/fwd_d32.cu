// forward kernels at head dim 32, bfloat16 and float16 (fmha_run.cuh); the backward at D = 32 is
// flash's (pack.cu declines it)
#include "fmha_run.cuh"

VT_FMHA_FORWARD(32)
