"""Shared set-up for the benchmark suites: pinned threads, peers, and validation."""

import os
import sys

# numpy's idle OpenBLAS threads spin ~0.1 s after each product and slow whatever is
# timed next (fastdl/benchmarking/idle_threads.py); OpenBLAS reads this when numpy is
# imported, so it only takes effect if nothing imported numpy before this file.
_BLAS_QUIET = "numpy" not in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastdl  # noqa: E402

#: Threads for fastdl and every peer, printed in the header. FASTDL_BENCH_THREADS overrides.
THREADS = int(os.environ.get("FASTDL_BENCH_THREADS", os.cpu_count() or 1))

try:
    import torch

    torch.set_num_threads(THREADS)
except ImportError:  # peers missing on the machine are skipped, not failed
    torch = None

fastdl.set_num_threads(THREADS)


def pytest_report_header(config):
    peers = f"torch {torch.__version__}" if torch else "torch absent"
    blas = "OPENBLAS_THREAD_TIMEOUT=" + (os.environ["OPENBLAS_THREAD_TIMEOUT"] if _BLAS_QUIET else "unset (numpy was imported first)")
    return (f"fastdl {fastdl.__version__} isa={fastdl.get_isa()} threads={THREADS}; numpy {np.__version__}; {peers}; "
            f"{blas}")


@pytest.fixture
def need_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed")
    return torch
