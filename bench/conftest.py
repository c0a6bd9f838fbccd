"""Shared set-up for the benchmark suites: pinned threads, peers, and validation."""

import os

import numpy as np
import pytest

import fastdl

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
    return f"fastdl {fastdl.__version__} isa={fastdl.get_isa()} threads={THREADS}; numpy {np.__version__}; {peers}"


@pytest.fixture
def need_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed")
    return torch
