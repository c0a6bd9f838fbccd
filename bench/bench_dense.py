"""Dense layer and GEMM: fastdl vs PyTorch (CPU) vs numpy, side by side per group.

    pytest bench/bench_dense.py --benchmark-only --benchmark-group-by=group

Each case checks its result against a reference before it is timed. GFLOP/s go to
extra_info (2*N*K*M per GEMM; backward counts its two GEMMs).
"""

import numpy as np
import pytest

from fastdl import kernels as K

from conftest import torch

# The three regimes that behave differently: tiny (call overhead: batch 1-32, widths
# 16-64), medium (batch 128, widths 784-1024) and large (batch 1024-4096).
SHAPES = [(1, 64, 64), (32, 16, 64), (32, 64, 64),
          (128, 784, 1024), (128, 1024, 1024), (1024, 1024, 1024), (4096, 1024, 1024)]


def data(n, k, m, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    return x, w, b


def gflops(benchmark, flops):
    benchmark.extra_info["GFLOP/s"] = round(flops / benchmark.stats.stats.median / 1e9, 1)


def _id(s):
    return "x".join(map(str, s))


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch", "numpy"])
def bench_dense_forward_relu(benchmark, shape, impl):
    n, k, m = shape
    benchmark.group = f"dense_forward relu {_id(shape)}"
    x, w, b = data(n, k, m)
    expected = np.maximum(x @ w + b, 0)
    if impl == "fastdl":
        out = np.empty((n, m), np.float32)
        fn = lambda: K.dense_forward(x, w, b, "relu", out=out)  # noqa: E731
        res = fn()
    elif impl == "torch":
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx, tw, tb = map(torch.from_numpy, (x, w, b))
        fn = lambda: torch.relu(torch.addmm(tb, tx, tw))  # noqa: E731
        res = fn().numpy()
    else:
        fn = lambda: np.maximum(x @ w + b, 0)  # noqa: E731
        res = fn()
    np.testing.assert_allclose(res, expected, rtol=1e-3, atol=1e-3)
    benchmark(fn)
    gflops(benchmark, 2.0 * n * k * m)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_dense_backward_relu(benchmark, shape, impl):
    n, k, m = shape
    benchmark.group = f"dense_backward relu {_id(shape)}"
    x, w, b = data(n, k, m)
    y = K.dense_forward(x, w, b, "relu")
    dy = np.random.default_rng(1).standard_normal((n, m), dtype=np.float32)
    dz = dy * (y > 0)
    ref = (dz @ w.T, x.T @ dz, dz.sum(0))
    if impl == "fastdl":
        fn = lambda: K.dense_backward(dy, x, w, "relu", y=y)  # noqa: E731
        res = fn()
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        tdy = torch.from_numpy(dy)
        ty = torch.relu(torch.addmm(tb, tx, tw))

        def fn():  # autograd on the same graph, forward kept outside the timing
            return torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)

        res = [t.numpy() for t in fn()]
    for r, e in zip(res, ref):
        np.testing.assert_allclose(r, e, rtol=1e-3, atol=1e-2)
    benchmark(fn)
    gflops(benchmark, 4.0 * n * k * m)


@pytest.mark.parametrize("impl", ["fastdl", "torch", "numpy"])
def bench_gemm_2048(benchmark, impl):
    n = 2048
    benchmark.group = "gemm 2048^3"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if impl == "fastdl":
        out = np.empty((n, n), np.float32)
        fn = lambda: K.matmul(a, b, out=out)  # noqa: E731
    elif impl == "torch":
        if torch is None:
            pytest.skip("PyTorch is not installed")
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fn = lambda: (ta @ tb).numpy()  # noqa: E731
    else:
        fn = lambda: a @ b  # noqa: E731
    np.testing.assert_allclose(fn()[:64], (a[:64].astype(np.float64) @ b), rtol=1e-3, atol=1e-2)
    benchmark.pedantic(fn, rounds=7, iterations=1, warmup_rounds=1)
    gflops(benchmark, 2.0 * n**3)
