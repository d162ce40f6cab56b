#!/bin/sh
# Builds the core pack (CPU sources) by hand into $OUT (default /tmp/vt_core_native) and runs the
# native kernel tests against it. Needs g++ and the scipy-openblas32 wheel in $PYTHON's env.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/vt_core_native}
OB_INC=$($PYTHON -c "import scipy_openblas32 as s; print(s.get_include_dir())")
OB_LIB=$($PYTHON -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
mkdir -p "$OUT"
g++ -std=c++17 -O3 -Wall -Wextra -fPIC -fvisibility=hidden -shared -I"$ROOT/opsdk/include" -I"$OB_INC" \
  "$HERE"/../src/*.cpp -o "$OUT/libvt_core.so" -L"$OB_LIB" -lscipy_openblas -Wl,-rpath,"$OB_LIB" -Wl,--no-undefined
g++ -std=c++17 -O2 -Wall -I"$ROOT/opsdk/include" "$HERE/test_core.cpp" -o "$OUT/test_core" \
  -L"$OUT" -lvt_core -Wl,-rpath,"$OUT" -pthread
"$OUT/test_core"
