// the zero-spill variant of our Hopper backward at head dim 64 (VT_HOPPER_BWD=wgmma2; bwd_wgmma2.cuh)
#include "bwd_wgmma2.cuh"

VT_WGMMA2_BACKWARD(64)
