#!/bin/bash
# One GPU-machine session in one call: install, build, GPU tests, benchmarks; logs under $OUT.
#   device run: bash bench/gpu_session.sh [pytest-selection...]   (carry .whl; see ../shared/gpu)
#   VT_BENCHES="bench/x.py ..." picks the benchmarks, VT_TEST_SECONDS caps the tests,
#   VT_BENCH_SECONDS each benchmark, VT_TEST_WORKERS the pytest-xdist workers, VT_WORKLOADS=1 the
#   three examples on cuda (VT_AMP, VT_GRAPH=1; gpu_data/tinyshakespeare.txt if carried),
#   VT_CUTLASS=0 skips the CUTLASS pack, VT_HOPPER=1 builds the Hopper attention pack, VT_TESTS=0 the tests,
#   VT_OPCHECK=1 runs `vt-ops test core|attention` on cpu and cuda
# The last lines printed are the summary (test counts, benchmark tables).
# With helpers editing the tree, run a committed snapshot instead of the live tree: here
# `git -c tar.umask=0022 archive HEAD -o gpu_data/head.tar` (gpu_data/ is untracked, so it travels;
# umask 0022 because the loader refuses group-writable pack folders), then on the device
# `mkdir -p /tmp/src && tar xf gpu_data/head.tar -C /tmp/src && cp -r .whl /tmp/src && cd /tmp/src && bash bench/gpu_session.sh`.
set -uo pipefail
source bench/gpu_build.sh
# build_pack NAME FOLDER VAR: `vt-ops build` ops/FOLDER outside $OUT (only logs come back) and export
# VAR naming the built pack, for the tests and benchmarks that load it (they skip without it)
build_pack() {
  local start=$(date +%s)
  vt-ops build "ops/$2" -o "/tmp/vt-$1" > "$OUT/$1_build.log" 2>&1 \
    && export "$3=/tmp/vt-$1/packs/$2" \
    || { echo "$1 pack build failed:"; tail -5 "$OUT/$1_build.log"; }
  echo "$1 pack build: $(( $(date +%s) - start )) s"
}
# the CUTLASS matmul provider (VT_CUTLASS=0 skips it); VT_HOPPER=1: the CUTLASS Hopper attention
# pack too (tests/test_attention_hopper.py, its benchmark)
[ "${VT_CUTLASS:-1}" = 1 ] && build_pack cutlass matmul_cutlass VT_CUTLASS_PACK
[ "${VT_HOPPER:-0}" = 1 ] && build_pack hopper attention_hopper VT_ATTN_HOPPER_PACK
sel=("$@")
[ ${#sel[@]} -eq 0 ] && sel=(tests)
par=(); python3 -c "import xdist" 2>/dev/null && par=(-n "${VT_TEST_WORKERS:-8}")  # pytest-xdist there
if [ "${VT_TESTS:-1}" = 1 ]; then
  timeout ${VT_TEST_SECONDS:-330} python3 -m pytest -q -p no:cacheprovider "${par[@]}" "${sel[@]}" \
    > "$OUT/tests.log" 2>&1 || grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | sort -u | head -60
  tail -3 "$OUT/tests.log"
fi
for b in ${VT_BENCHES:-bench/bench_cuda_runtime.py bench/bench_cuda_elementwise.py bench/bench_cuda_reduce.py \
    bench/bench_cuda_nn.py bench/bench_cuda_matmul.py bench/bench_cuda_index.py bench/bench_cuda_optim.py \
    bench/bench_attention_cuda.py bench/bench_train_cuda.py}; do
  [ -f "$b" ] || continue
  timeout ${VT_BENCH_SECONDS:-150} python3 "$b" > "$OUT/$(basename "$b" .py).txt" 2>&1
  tail -25 "$OUT/$(basename "$b" .py).txt"
done
# VT_OPCHECK=1: `vt-ops test` of the core and attention packs on cpu and cuda (issue 12's opcheck)
if [ "${VT_OPCHECK:-0}" = 1 ]; then
  for pk in core attention; do
    timeout ${VT_OPCHECK_SECONDS:-150} vt-ops test $pk > "$OUT/opcheck_$pk.txt" 2>&1; echo "vt-ops test $pk: rc $?"
    tail -4 "$OUT/opcheck_$pk.txt"
  done
fi
# VT_WORKLOADS=1: the three examples trained on cuda (logs under $OUT/runs). tinyshakespeare is read
# from gpu_data/tinyshakespeare.txt when an (untracked) copy was carried there, else the default data.
if [ "${VT_WORKLOADS:-0}" = 1 ]; then
  data=(); [ -f gpu_data/tinyshakespeare.txt ] && data=(--preset shakespeare_char --data gpu_data/tinyshakespeare.txt)
  timeout ${VT_WORKLOAD_SECONDS:-300} python3 -m vibetensor.examples.minigpt --device cuda --quiet \
    --amp ${VT_AMP:-bf16} ${VT_GRAPH:+--cuda-graph} "${data[@]}" --out "$OUT/runs/minigpt" 2>&1 | tail -4
  timeout 120 python3 -m vibetensor.examples.reverse --device cuda --quiet --out "$OUT/runs/reverse" 2>&1 | tail -2
  timeout 120 python3 -m vibetensor.examples.vit --device cuda --quiet --out "$OUT/runs/vit" 2>&1 | tail -2
fi
