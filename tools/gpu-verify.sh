#!/usr/bin/env bash
# fastdl's GPU verification run (docs/gpu.md, "Verifying on a GPU"):
#   tools/gpu-verify.sh --prepare          here, with the package registry: fills wheelhouse/
#                                          (a numpy 2.4 wheel and a fastdl wheel for Python 3.12)
#   tools/gpu-verify.sh [--out DIR]        on the GPU machine: installs from wheelhouse/, runs
#                                          the tests, compute-sanitizer and the goals; writes
#                                          report.json, summary.txt and logs to DIR (or $OUT)
#   tools/gpu-verify.sh --dry [--out DIR]  anywhere: the same on Numba's CUDA simulator with
#                                          tiny shapes (CI runs it: tests/test_gpu_verify.py)
# Other options: --budget SECONDS, --only/--skip STEP,..., --pytest-arg ARG; see --help.
# PYTHON picks the interpreter (default python3: on the GPU machine, the one with PyTorch).
set -uo pipefail
cd "$(dirname "$0")/.."
exec env PYTHONUNBUFFERED=1 "${PYTHON:-python3}" tools/gpu_verify.py "$@"
