// vt/cuda/host_emulation.hpp — the prologue a host (C++) build of a CUDA kernel's own source needs:
// CUDA's function and storage qualifiers as plain C++, and the built-in index variables as
// thread-local values that an emulation sets per emulated CUDA thread (one std::thread each).
// Used by the labs that test kernels' index arithmetic and protocols without a GPU
// (ops/*/lab/*_emulate.hpp); include it after cuda_fp16.h / cuda_bf16.h, whose host_defines.h
// defined these qualifiers for the host compiler.
#pragma once

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)

struct EmuDim {
  unsigned x, y, z;
};
// indices start at 0, extents at 1; the emulation sets x (and whatever else its kernels read)
inline thread_local EmuDim threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
