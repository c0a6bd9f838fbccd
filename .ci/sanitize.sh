#!/usr/bin/env bash
# Builds fastdl._C with AddressSanitizer + UndefinedBehaviorSanitizer into a scratch
# copy of the tree and runs the CPU kernel tests against it. Any ASan/UBSan report
# fails the run. Usage: bash .ci/sanitize.sh [python]   (needs pybind11, cmake, ninja,
# numpy, pytest, hypothesis in that Python's environment; with pytest-xdist it runs two workers)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A scratch copy, so the sanitized extension never lands in the source tree.
(cd "$root" && git ls-files -z 2>/dev/null | tar --null -T - -cf - 2>/dev/null || tar -cf - csrc fastdl tests tools CMakeLists.txt pyproject.toml) | tar -xf - -C "$work"
cd "$work"
FASTDL_CMAKE_ARGS="-DFASTDL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" PYTHON="$py" tools/dev-build.sh "$work/build" >/dev/null
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
# Python itself leaks by design at exit: leak checking off; everything else fatal.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
tests=$(ls tests/test_*.py | grep -v -e test_cuda -e test_cpp_package -e test_cli -e test_mpi || true)
# Two workers where pytest-xdist is installed (the test extra): the sanitized suite is
# CI's longest step (docs/benchmarks.md, "Measurement history").
workers=()
if "$py" -c "import xdist" 2>/dev/null; then workers=(-n 2 --dist worksteal); fi
LD_PRELOAD="$asan:$ubsan" PYTHONPATH="$work" "$py" -m pytest -q -p no:cacheprovider -x ${workers[@]+"${workers[@]}"} $tests \
  -k "not torch and not pytorch"
