"""Idle BLAS threads must not steal the cores from the next library being timed.

After a matrix product, numpy's OpenBLAS keeps its worker threads spinning for about
2^28 cycles (~0.1 s) before they sleep. The cases time fastdl, torch and numpy
interleaved, sample by sample, so whatever runs right after numpy shares the cores with
those spinning threads and is timed far slower than it runs (docs/benchmarks.md,
"Measurement history"). ``OPENBLAS_THREAD_TIMEOUT=4`` (2^4 cycles) makes them
sleep at once; OpenBLAS reads it only when it is loaded, i.e. when numpy is imported,
so the `fastdl bench` console command starts itself again with it set. (PyTorch's and
fastdl's OpenMP threads spin only ~0.1 ms by default: nothing to do there.)
"""

import os
import sys

ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}


def settings():
    """What the report records: each variable as this process has it."""
    return {k: os.environ.get(k) for k in ENV}


def restart_with_quiet_blas(module_argv):
    """Re-executes ``python -m <module_argv...>`` with ENV set, unless it already is
    (or FASTDL_BENCH_KEEP_ENV=1 asks to measure with the environment as it is)."""
    if all(k in os.environ for k in ENV) or os.environ.get("FASTDL_BENCH_KEEP_ENV") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, **ENV}
    os.execve(sys.executable, [sys.executable, "-m", *module_argv], env)
