#!/usr/bin/env bash
# Developer build: compiles fastdl._C in place (into fastdl/) so `PYTHONPATH=. pytest`
# runs against this tree without a pip install. Usage: tools/dev-build.sh [build-dir]
# Needs pybind11 and cmake in the active Python environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/dev}
py=${PYTHON:-python}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTDL_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" ${FASTDL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
cp "$build"/_C*.so "$root/fastdl/"
