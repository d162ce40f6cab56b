// forward kernels at head dim 64, bfloat16 and float16 (fmha_run.cuh)
#include "fmha_run.cuh"

VT_FMHA_FORWARD(64)
