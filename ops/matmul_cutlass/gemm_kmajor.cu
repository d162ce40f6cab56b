// ops/matmul_cutlass/gemm_kmajor.cu — the GEMM with B K-major (column-major B: `linear`'s weight,
// `x @ w.mT`), see gemm.cuh.
#include "gemm.cuh"

VT_CUTLASS_BF16_GEMM(GemmKMajor, cutlass::layout::ColumnMajor);

void vt_cutlass::gemm_bf16_kmajor(vt::Call& c, const Problem& p) { gemm_bf16<GemmKMajor, false>(c, p); }
