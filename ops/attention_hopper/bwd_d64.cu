// backward kernels at head dim 64, float16 (fmha_run.cuh)
#include "fmha_run.cuh"

VT_FMHA_BACKWARD(64)
