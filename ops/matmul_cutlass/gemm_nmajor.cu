// ops/matmul_cutlass/gemm_nmajor.cu — the GEMM with B N-major (row-major B: `x @ w`), see gemm.cuh.
#include "gemm.cuh"

VT_CUTLASS_BF16_GEMM(GemmNMajor, cutlass::layout::RowMajor);

void vt_cutlass::gemm_bf16_nmajor(vt::Call& c, const Problem& p) { gemm_bf16<GemmNMajor, true>(c, p); }
