#!/bin/sh
# Builds the core pack's CUDA kernels with the CUDA test driver into $OUT (default
# /tmp/vt_core_cuda) and runs it. Needs nvcc and a GPU; set RUN=0 to only compile.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
NVCC=${NVCC:-nvcc}
OUT=${OUT:-/tmp/vt_core_cuda}
ARCH=${ARCH:-sm_90}
mkdir -p "$OUT"
"$NVCC" -std=c++17 -O2 -arch="$ARCH" -I"$ROOT/opsdk/include" -I"$HERE" \
  "$HERE/test_cuda.cu" "$HERE"/../cuda/*.cu -o "$OUT/test_cuda"
if [ "${RUN:-1}" != 0 ]; then "$OUT/test_cuda"; fi
