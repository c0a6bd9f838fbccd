#!/usr/bin/env bash
# The README's test command, as a script so the README and CI run the same thing.
# Run it inside a fresh virtual environment: it installs fastdl with its test and cuda
# extras, mpi4py (the mpi extra: tests/test_distributed.py, with .ci/mpi-setup.sh's
# Open MPI) (and the CPU build of PyTorch for the parity tests), runs the suite, then
# runs the GPU kernel tests again on Numba's CUDA simulator (no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet ".[test,cuda,mpi]" "torch==2.13.0"
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

run_pytest .
echo "== GPU kernels on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
NUMBA_ENABLE_CUDASIM=1 run_pytest test_cuda_*.py
