#!/usr/bin/env bash
# CI: build examples/cpp (a C++ program that trains an XOR MLP with fastdl's kernels)
# against the C++ package of an installed fastdl, and run it; the program checks its
# own result and exits non-zero when training failed.
#
#   bash .ci/cpp-example.sh [python]     # python: an interpreter with fastdl installed
#
# Needs a C++17 compiler and CMake >= 3.18: the cmake on PATH, else the one in the
# interpreter's environment (pip's `cmake` package), else it is pip-installed there;
# likewise ninja when neither ninja nor make is found.
set -euo pipefail

# The interpreter's absolute path, resolved before leaving the caller's directory.
py_bin=$("${1:-python}" -c "import sys; print(sys.executable)")
cd "$(dirname "$0")/.."
# Prefer tools installed next to the interpreter (a venv's bin/).
PATH="$(dirname "$py_bin"):$PATH"
if ! command -v cmake >/dev/null 2>&1; then
  echo "cpp-example: no cmake found; installing it into $("$py_bin" -c 'import sys; print(sys.prefix)')" >&2
  "$py_bin" -m pip install --quiet "cmake>=3.18"
fi
if ! command -v ninja >/dev/null 2>&1 && ! command -v make >/dev/null 2>&1; then
  echo "cpp-example: neither ninja nor make found; installing ninja there too" >&2
  "$py_bin" -m pip install --quiet ninja
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# Asked from outside the checkout, so that the installed fastdl is the one imported.
cmake_dir=$(cd "$build" && "$py_bin" -c "import fastdl; print(fastdl.get_cmake_dir())")
echo "cpp-example: fastdl CMake package at $cmake_dir"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

cmake -S examples/cpp -B "$build/example" ${generator[@]+"${generator[@]}"} -DCMAKE_BUILD_TYPE=Release \
      -Dfastdl_DIR="$cmake_dir"
cmake --build "$build/example" --parallel
"$build/example/xor_mlp"
