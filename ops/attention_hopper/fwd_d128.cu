// forward kernels at head dim 128, bfloat16 and float16: causal on the cooperative 128 x 128 tile in
// heaviest-first order, the rest on it persistent (fmha_run.cuh's FwdTile)
#include "fmha_run.cuh"

using Causal128 = vt_fmha::FwdTile<128, 128, 2>;
using Plain128 = vt_fmha::FwdTile<128, 128, 2, true>;
VT_FMHA_FORWARD_SPLIT(d128, 128, Causal128, Plain128)
