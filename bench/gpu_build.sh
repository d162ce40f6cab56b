# Sourced by bench/gpu_session.sh and bench/gpu_dist_session.sh on the GPU machine: the wheels from
# .whl (../shared/gpu), then an editable install built from a clean build folder (VT_KEEP_BUILD=1
# keeps an earlier call's: it can hold objects older than the carried sources). Sets OUT; logs there.
OUT=${OUT:-/tmp/vt-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
bash .whl/setup.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
[ "${VT_KEEP_BUILD:-0}" = 1 ] || rm -rf build/cp312-*
start=$(date +%s)
python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 \
  || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
