#!/bin/bash
# One GPU-machine session in one call: install, build, GPU tests, benchmarks; logs under $OUT.
#   device run: bash bench/gpu_session.sh [pytest-selection...]   (carry .whl; see ../shared/gpu)
#   VT_BENCHES="bench/x.py ..." picks the benchmarks, VT_TEST_SECONDS caps the tests
# The last lines printed are the summary (test counts, benchmark tables).
set -uo pipefail
OUT=${OUT:-/tmp/vt-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
bash .whl/setup.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
start=$(date +%s)
python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 \
  || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
sel=("$@")
[ ${#sel[@]} -eq 0 ] && sel=(tests)
timeout ${VT_TEST_SECONDS:-330} python3 -m pytest -q -p no:cacheprovider "${sel[@]}" > "$OUT/tests.log" 2>&1
tail -25 "$OUT/tests.log"
for b in ${VT_BENCHES:-bench/bench_cuda_runtime.py bench/bench_pack_build_cuda.py}; do
  [ -f "$b" ] && timeout 150 python3 "$b" > "$OUT/$(basename "$b" .py).txt" 2>&1
  tail -25 "$OUT/$(basename "$b" .py).txt"
done
