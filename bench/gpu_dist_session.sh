#!/bin/bash
# The 2-GPU machine in one call: build, the CUDA all-reduce tests, the all-reduce benchmark vs NCCL,
# and data-parallel miniGPT (1 GPU vs 2 GPUs, same global batch). Logs under $OUT.
#   device run (kind nvidia-h200-x2, carry .whl [+ gpu_data]): bash bench/gpu_dist_session.sh
#   VT_KEEP_BUILD=1 keeps an earlier call's build; VT_DIST_TESTS=0 / VT_DIST_BENCH=0 / VT_DDP=0 skip parts;
#   VT_BENCH_ARGS passes options to bench_allreduce_cuda.py (e.g. --quick, --algos)
set -uo pipefail
export NCCL_NVLS_ENABLE=0
source bench/gpu_build.sh
nvidia-smi topo -m >> "$OUT/gpu.txt" 2>&1
if [ "${VT_DIST_TESTS:-1}" = 1 ]; then
  timeout ${VT_TEST_SECONDS:-240} python3 -m pytest -q -p no:cacheprovider -rs tests/test_distributed_cuda.py \
    > "$OUT/dist_tests.log" 2>&1; tail -40 "$OUT/dist_tests.log"
fi
if [ "${VT_DIST_BENCH:-1}" = 1 ]; then
  timeout ${VT_BENCH_SECONDS:-180} python3 -m vibetensor.distributed.run --nproc-per-node 2 \
    bench/bench_allreduce_cuda.py ${VT_BENCH_ARGS:-} > "$OUT/bench_allreduce_cuda.txt" 2>&1
  tail -45 "$OUT/bench_allreduce_cuda.txt"
fi
# data-parallel miniGPT: the shakespeare_char model (default text unless gpu_data/ was carried), no
# dropout so the runs draw the same numbers; global batch VT_DDP_BATCH (default 256: the GPU, not the
# host, sets the pace); losses and steps/s of 1 GPU vs 2 GPUs, eager and with the step in a CUDA graph
if [ "${VT_DDP:-1}" = 1 ]; then
  data=(); [ -f gpu_data/tinyshakespeare.txt ] && data=(--data gpu_data/tinyshakespeare.txt)
  common=(-m vibetensor.examples.minigpt --preset shakespeare_char "${data[@]}" --device cuda --quiet
          --dropout 0 --steps ${VT_DDP_STEPS:-100} --eval-every 100000 --amp ${VT_AMP:-bf16}
          --batch-size ${VT_DDP_BATCH:-256})
  for mode in eager graph; do
    extra=(); [ $mode = graph ] && extra=(--cuda-graph)
    timeout 150 python3 "${common[@]}" "${extra[@]}" --out "$OUT/runs/gpu1_$mode" 2>&1 | tail -2
    timeout 150 python3 -m vibetensor.distributed.run --nproc-per-node 2 "${common[@]}" "${extra[@]}" \
      --out "$OUT/runs/gpu2_$mode" 2>&1 | tail -2
    python3 - "$OUT/runs" $mode <<'PY'
import csv, sys
def rows(d):
    return [r for r in csv.DictReader(open(f"{sys.argv[1]}/{d}_{sys.argv[2]}/minigpt.csv")) if r["kind"] == "train"]
a, b = rows("gpu1"), rows("gpu2")
gap = max(abs(float(x["loss"]) - float(y["loss"])) / abs(float(x["loss"])) for x, y in zip(a[:20], b[:20]))
def rate(r):  # steps/s over the second half (warm)
    h = len(r) // 2
    return (len(r) - 1 - h) / (float(r[-1]["time_s"]) - float(r[h]["time_s"]))
print(f"DDP miniGPT {sys.argv[2]}: max relative loss gap over 20 steps {gap:.2e}; 1 GPU {rate(a):.2f} steps/s, "
      f"2 GPUs {rate(b):.2f} steps/s: {rate(b) / rate(a):.2f}x")
PY
  done
fi
