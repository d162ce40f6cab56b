// forward kernels at head dim 64 on 192 queries x 128 keys over three consumer warp groups
// (FlashAttention-3's D = 64 tile), bfloat16 and float16: causal in heaviest-first order, the rest
// persistent (fmha_run.cuh's FwdTile); VT_HOPPER_FWD_D64=192x128 picks them for every call
#include "fmha_run.cuh"

using Causal192 = vt_fmha::FwdTile<192, 128, 3>;
using Plain192 = vt_fmha::FwdTile<192, 128, 3, true>;
VT_FMHA_FORWARD_SPLIT(d64_192x128, 64, Causal192, Plain192)
