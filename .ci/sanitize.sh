#!/usr/bin/env bash
# The sanitizer job (issue 8): the runtime, its binding and the core pack built with AddressSanitizer
# and UndefinedBehaviorSanitizer (CPU only) into build-asan/, then the autograd, views, pack,
# bad-input, safetensors, threading and fuzz tests run against that build with the current
# interpreter (no new virtual environment: it needs numpy, pytest, cffi, scipy-openblas32 and
# cmake importable, as .ci/run's environment has them). Python itself is not instrumented, so
# libasan is preloaded. Any sanitizer report fails the job (halt_on_error).
#   .ci/sanitize.sh            build (incremental) and test, ~6-8 minutes on 2 cores from scratch
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/build-asan
SITE=$B/site
JOBS=${JOBS:-$(nproc)}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# the build runs instrumented tools too (vt_describe writes the pack's manifest): no leak reports
# for what a process frees by exiting, stop at the first error
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# 1. build: runtime + binding + core (no CUDA, no attention pack), -O1 -g
mkdir -p "$B"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVT_CUDA=OFF -DVT_ATTENTION=OFF \
  -DCMAKE_CUDA_COMPILER=NOTFOUND -DPython_EXECUTABLE="$(command -v python)" \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" > "$B/configure.log" 2>&1 \
  || { cat "$B/configure.log"; exit 1; }
cmake --build "$B" -j "$JOBS"

# 2. the package as a wheel lays it out (pyproject.toml's wheel.packages), in $SITE
rm -rf "$SITE"
mkdir -p "$SITE/vibetensor"
cp -r python/vibetensor/. "$SITE/vibetensor/"
for d in runtime registry cli; do
  mkdir -p "$SITE/vibetensor/$d"
  cp "$d"/*.py "$SITE/vibetensor/$d/"
done
cmake --install "$B" --prefix "$SITE" > /dev/null

# 3. the tests, against $SITE only (an editable install's import hook is dropped: see below)
LIBASAN=$(gcc -print-file-name=libasan.so)
cat > "$SITE/sitecustomize.py" <<'PY'
# Runs at start-up (also in the tests' child interpreters): an editable vibetensor install puts an
# import hook before sys.path; drop it so `import vibetensor` finds the sanitizer build.
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
PY
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# libstdc++ right after it: ASan's __cxa_throw interceptor must find the real one at start-up
# (python itself does not link libstdc++; without it the first C++ exception aborts)
export LD_PRELOAD="$LIBASAN:$(gcc -print-file-name=libstdc++.so)"
export VT_BUILTIN_PACKS=core
export VT_FUZZ_CALLS=2500
python -c "import vibetensor, sys; assert vibetensor.__file__.startswith('$SITE'), vibetensor.__file__"
T=tests
python -m pytest -q -p no:cacheprovider \
  $T/test_autograd.py $T/test_hardening_autograd.py $T/test_hardening_views.py \
  $T/test_hardening_memory.py $T/test_packs.py $T/test_hardening_packs.py $T/test_bad_input.py \
  $T/test_safetensors.py $T/test_fuzz.py "$@"
