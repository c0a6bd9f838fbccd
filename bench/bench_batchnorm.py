"""Batch normalization: fastdl vs PyTorch (CPU), side by side per group.

    pytest bench/bench_batchnorm.py --benchmark-only --benchmark-group-by=group

Each case checks its results against a float64 reference before it is timed. GB/s in
extra_info count the (N, M) arrays each call must move (x read, y written; backward:
dy and x read, dx written).
"""

import numpy as np
import pytest

from fastdl import kernels as K
from fastdl.benchmarking.cases import bn_data as data, bn_reference as reference

from conftest import torch

SHAPES = [(128, 1024), (4096, 1024)]


def _id(s):
    return "x".join(map(str, s))


def gbps(benchmark, nbytes):
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_batchnorm_train_forward(benchmark, shape, impl):
    n, m = shape
    benchmark.group = f"batchnorm train forward {_id(shape)}"
    x, gamma, beta, dy = data(n, m)
    rm, rv = np.zeros(m, np.float32), np.ones(m, np.float32)
    if impl == "fastdl":
        fn = lambda: K.batchnorm_forward_train(x, gamma, beta, rm, rv)[0]  # noqa: E731
        y = fn()
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx, tg, tb, trm, trv = map(torch.from_numpy, (x, gamma, beta, rm.copy(), rv.copy()))
        fn = lambda: torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True)  # noqa: E731
        y = fn().numpy()
    np.testing.assert_allclose(y, reference(x, gamma, beta, dy)[0], rtol=1e-4, atol=1e-4)
    benchmark(fn)
    gbps(benchmark, 2 * x.nbytes)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_batchnorm_backward(benchmark, shape, impl):
    n, m = shape
    benchmark.group = f"batchnorm backward {_id(shape)}"
    x, gamma, beta, dy = data(n, m)
    _, dx_r, dg_r, db_r = reference(x, gamma, beta, dy)
    if impl == "fastdl":
        _, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, None, None)
        fn = lambda: K.batchnorm_backward(dy, x, gamma, mean, invstd)  # noqa: E731
        res = fn()
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx = torch.from_numpy(x).requires_grad_()
        tg = torch.from_numpy(gamma).requires_grad_()
        tb = torch.from_numpy(beta).requires_grad_()
        ty = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True)
        tdy = torch.from_numpy(dy)

        def fn():  # autograd on the same graph, forward kept outside the timing
            return torch.autograd.grad(ty, (tx, tg, tb), tdy, retain_graph=True)

        res = [t.numpy() for t in fn()]
    for r, e in zip(res, (dx_r, dg_r, db_r)):
        np.testing.assert_allclose(r, e, rtol=1e-3, atol=1e-3)
    benchmark(fn)
    gbps(benchmark, 3 * x.nbytes)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_batchnorm_eval(benchmark, shape, impl):
    n, m = shape
    benchmark.group = f"batchnorm eval forward {_id(shape)}"
    x, gamma, beta, _ = data(n, m)
    rm = np.full(m, 0.5, np.float32)
    rv = np.full(m, 2.0, np.float32)
    expected = (x - 0.5) / np.sqrt(2.0 + 1e-5) * gamma + beta
    if impl == "fastdl":
        fn = lambda: K.batchnorm_forward_eval(x, gamma, beta, rm, rv)  # noqa: E731
        y = fn()
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx, tg, tb, trm, trv = map(torch.from_numpy, (x, gamma, beta, rm, rv))
        fn = lambda: torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=False)  # noqa: E731
        y = fn().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    benchmark(fn)
    gbps(benchmark, 2 * x.nbytes)
