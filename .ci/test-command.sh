#!/usr/bin/env bash
# The README's test command, as a script so the README and CI run the same thing.
# Run it inside a fresh virtual environment: it installs fastdl with its test and cuda
# extras, the interop extras (sklearn, onnx with onnxruntime, safetensors: their tests
# skip without them), mpi4py (the mpi extra: tests/test_distributed.py, with
# .ci/mpi-setup.sh's Open MPI) (and the CPU build of PyTorch for the parity tests),
# type-checks the package (mypy), runs the suite, then runs the GPU kernel tests again
# on Numba's CUDA simulator (no GPU needed).
#
# It builds fastdl from this checkout, unless FASTDL_WHEEL names a wheel built from it:
# CI (.ci/run) builds one wheel, smoke-tests it alone (.ci/wheel.sh) and passes it here,
# so that the C++ kernels are compiled once per run.
set -euo pipefail
cd "$(dirname "$0")/.."
# MPI for the distributed tests: Debian's Open MPI when root can install it, else
# those tests are skipped (mpi4py cannot build without an MPI library).
extras="test,cuda,examples,plot,sklearn,onnx,safetensors"
if bash .ci/mpi-setup.sh; then extras="$extras,mpi"; else
  echo "MPI unavailable: tests/test_distributed.py will be skipped" >&2; fi
python -m pip install --quiet "${FASTDL_WHEEL:-.}[$extras]" "torch==2.13.0"
# The package's types: mypy from the repository root checks the checkout's fastdl against
# its annotations and the compiled module's stub (fastdl/_C.pyi), as Python 3.9 reads it
# and, with numpy's array types (whose stubs need Python 3.10), as 3.11 does
# ([tool.mypy] in pyproject.toml says why both). Any error fails the run.
echo "== mypy"
python -m mypy
python -m mypy --python-version 3.11 --warn-unused-ignores
# From outside the source tree, so the tests import the installed package.
cd tests

run_pytest() {
  set +e
  python -m pytest -q -p no:cacheprovider "$@"
  local rc=$?
  set -e
  # pytest exits 5 when no test ran: that is a failure here too.
  if [ "$rc" -eq 5 ]; then echo "no tests ran: $*" >&2; return 1; fi
  return "$rc"
}

# Two pytest-xdist workers, tests dealt out as each finishes (worksteal): on CI's two
# cores they shorten both the suite and the simulator's run by about a third or more
# (docs/benchmarks.md, "Measurement history").
# Not more workers: each worker's kernels already run two OpenMP threads.
workers=(-n 2 --dist worksteal)
run_pytest "${workers[@]}" .
echo "== GPU kernels on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
NUMBA_ENABLE_CUDASIM=1 run_pytest "${workers[@]}" test_cuda_*.py
