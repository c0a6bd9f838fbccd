"""What the run ran on, and the machine's measured peaks.

Peak GEMM: the best of ``repeats`` timed runs of an n^3 float32 matrix product
(2 n^3 flops) with fastdl.kernels.matmul, numpy (``a @ b``, its BLAS) and PyTorch; the
highest of the three is the peak the table compares against. Copy bandwidth: the best of
``repeats`` ``np.copyto(dst, src)`` on two arrays of ``copy_bytes`` each, counting the
bytes read plus the bytes written (2 x copy_bytes per copy) — the streaming rate a
memory-bound kernel can hope for.
"""

import os
import platform
import time

import numpy as np

import fastdl
from fastdl import kernels as K

from . import idle_threads, peers


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def info(threads, device="cpu"):
    return {
        "cpu_model": cpu_model(),
        "cores_available": available_cores(),
        "load_average": load_average(),
        "isa": fastdl.get_isa(),
        "threads": threads,
        "device": device,
        "platform": platform.platform(),
        "versions": peers.versions(),
        "environment": idle_threads.settings(),
    }


def _best(fn, repeats):
    fn()  # warm-up: page faults, packing buffers, thread start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_cpu_peak(gemm_n, copy_bytes, repeats):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    b = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    out = np.empty((gemm_n, gemm_n), np.float32)
    flops = 2.0 * gemm_n**3
    gemm = {"fastdl": lambda: K.matmul(a, b, out=out), "numpy": lambda: np.matmul(a, b, out=out)}
    t = peers.torch()
    if t is not None:
        ta, tb, tout = t.from_numpy(a), t.from_numpy(b), t.from_numpy(out)
        gemm["torch"] = lambda: t.matmul(ta, tb, out=tout)
    by_lib = {name: flops / _best(fn, repeats) / 1e9 for name, fn in gemm.items()}
    del a, b, out

    n = max(1, copy_bytes // 4)
    src = np.ones(n, np.float32)
    dst = np.zeros(n, np.float32)
    copy_gbs = 2.0 * src.nbytes / _best(lambda: np.copyto(dst, src), repeats) / 1e9
    return {
        "gemm_gflops": max(by_lib.values()),
        "gemm_gflops_by_library": {k: round(v, 1) for k, v in by_lib.items()},
        "gemm_n": gemm_n,
        "copy_gbs": copy_gbs,
        "copy_bytes": n * 4,
        "repeats": repeats,
        "how": (f"GEMM: best of {repeats} float32 {gemm_n}^3 products (2n^3 flops) with "
                f"{', '.join(by_lib)}, highest taken; copy: best of {repeats} np.copyto on "
                f"{n * 4 / 2**20:g} MiB arrays, read + written bytes counted"),
    }
