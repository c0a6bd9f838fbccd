"""Dense + maxout: fastdl's fused epilogue (z never stored) vs PyTorch Linear + view/max,
and fastdl's unfused pair (dense_forward + maxout_forward) for reference.

    pytest bench/bench_maxout.py --benchmark-only --benchmark-group-by=group

Shapes are (N, K, units, pieces). Each case is validated before it is timed. GFLOP/s in
extra_info counts the GEMM: 2 * N * K * units * pieces.
"""

import numpy as np
import pytest

from fastdl import kernels as K

from conftest import torch

SHAPES = [(128, 784, 256, 3), (1024, 1024, 512, 2)]


def _id(s):
    return "x".join(map(str, s))


def data(n, k, m, pieces, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m * pieces)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m * pieces, dtype=np.float32)
    return x, w, b


def gflops(benchmark, flops):
    benchmark.extra_info["GFLOP/s"] = round(flops / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "fastdl-unfused", "torch"])
def bench_dense_maxout_forward(benchmark, shape, impl):
    n, k, m, pieces = shape
    benchmark.group = f"dense_maxout_forward {_id(shape)}"
    x, w, b = data(n, k, m, pieces)
    y_ref = (x.astype(np.float64) @ w + b).reshape(n, m, pieces).max(-1)
    if impl == "fastdl":
        fn = lambda: K.dense_maxout_forward(x, w, b, pieces)  # noqa: E731
        y = fn()[0]
    elif impl == "fastdl-unfused":
        fn = lambda: K.maxout_forward(K.dense_forward(x, w, b), pieces)  # noqa: E731
        y = fn()[0]
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w.T.copy()), torch.from_numpy(b)
        fn = lambda: torch.nn.functional.linear(tx, tw, tb).view(n, m, pieces).max(dim=-1)  # noqa: E731
        y = fn().values.numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-3, atol=1e-3)
    benchmark(fn)
    gflops(benchmark, 2.0 * n * k * m * pieces)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_dense_maxout_backward(benchmark, shape, impl):
    n, k, m, pieces = shape
    benchmark.group = f"dense_maxout_backward {_id(shape)}"
    x, w, b = data(n, k, m, pieces)
    y, am = K.dense_maxout_forward(x, w, b, pieces)
    dy = np.random.default_rng(1).standard_normal((n, m), dtype=np.float32)
    dz = np.zeros((n, m, pieces), np.float32)
    np.put_along_axis(dz, am[..., None].astype(np.intp), dy[..., None], axis=2)
    dz = dz.reshape(n, m * pieces)
    ref = (dz @ w.T, x.T @ dz, dz.sum(0))
    if impl == "fastdl":
        fn = lambda: K.dense_maxout_backward(dy, x, w, am, pieces)  # noqa: E731
        res = fn()
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w.T.copy()).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        ty = torch.nn.functional.linear(tx, tw, tb).view(n, m, pieces).max(dim=-1).values
        tdy = torch.from_numpy(dy)

        def fn():  # autograd on the same graph, forward kept outside the timing
            return torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)

        dx_t, dw_t, db_t = (t.numpy() for t in fn())
        res = (dx_t, dw_t.T, db_t)
    for r, e in zip(res, ref):
        np.testing.assert_allclose(r, e, rtol=1e-3, atol=1e-2)
    benchmark(fn)
    gflops(benchmark, 4.0 * n * k * m * pieces)
