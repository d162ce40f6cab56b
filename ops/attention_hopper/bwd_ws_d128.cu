// the warp-specialised Hopper backward at head dim 128 (VT_HOPPER_BWD=ws; bwd_ws.cuh)
#include "bwd_ws.cuh"

VT_WS_BACKWARD(128, kOrderFa3)
