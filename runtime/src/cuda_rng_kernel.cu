// cuda_rng_kernel.cu — the one kernel libvtrt owns: before each replay of a graph that draws random
// numbers, write the generator's (seed, offset) into the graph's device buffer. Passing them as
// kernel arguments needs no host buffer that a later replay could overwrite too early.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace vt {
namespace cu {

namespace {
__global__ void philox_fill(uint64_t* dst, uint64_t seed, uint64_t offset) {
  dst[0] = seed;
  dst[1] = offset;
}
}  // namespace

cudaError_t launch_philox_fill(uint64_t* dst, uint64_t seed, uint64_t offset, cudaStream_t s) {
  philox_fill<<<1, 1, 0, s>>>(dst, seed, offset);
  return cudaGetLastError();
}

}  // namespace cu
}  // namespace vt
