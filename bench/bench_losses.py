"""Fused losses: fastdl vs PyTorch (CPU), forward + backward, side by side per group.

    pytest bench/bench_losses.py --benchmark-only --benchmark-group-by=group

Each case checks its loss and gradient against a float64 reference before it is timed.
GB/s in extra_info count the bytes each call must move: the inputs read once and the
gradient written once.
"""

import numpy as np
import pytest

from fastdl import kernels as K

from conftest import torch

CE_SHAPES = [(128, 10), (4096, 1000)]
ELEM_SHAPES = [(4096, 1000)]


def _id(s):
    return "x".join(map(str, s))


def gbps(benchmark, nbytes):
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


def ce_reference(logits, target, ls=0.0, w=None):
    n, c = logits.shape
    x = logits.astype(np.float64)
    lsm = x - x.max(1, keepdims=True)
    lsm -= np.log(np.exp(lsm).sum(1, keepdims=True))
    q = np.eye(c)[target] if target.ndim == 1 else target.astype(np.float64)
    q = q * (1 - ls) + ls / c
    w = np.ones((n, 1)) if w is None else w.astype(np.float64)[:, None]
    return -(w * q * lsm).sum() / n, w * (np.exp(lsm) * q.sum(1, keepdims=True) - q) / n


def check(loss, grad, loss_ref, grad_ref):
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-3, atol=1e-6 / grad.shape[0])


def torch_fn(loss_fn, x, *args, **kwargs):
    """forward + backward of a torch loss w.r.t. x; returns (loss, grad) as numpy."""
    tx = torch.from_numpy(x).requires_grad_()
    targs = [torch.from_numpy(a) for a in args]

    def fn():
        loss = loss_fn(tx, *targs, **kwargs)
        (g,) = torch.autograd.grad(loss, tx)
        return loss, g

    return fn, lambda r: (r[0].item(), r[1].numpy())


@pytest.mark.parametrize("ls", [0.0, 0.1], ids=["", "smooth0.1"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_softmax_ce_labels(benchmark, shape, impl, ls):
    n, c = shape
    benchmark.group = f"softmax_cross_entropy labels fwd+bwd {_id(shape)}" + (f" ls={ls}" if ls else "")
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, n)
    if impl == "fastdl":
        fn = lambda: K.softmax_cross_entropy(logits, labels, label_smoothing=ls)  # noqa: E731
        unpack = lambda r: r  # noqa: E731
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        fn, unpack = torch_fn(torch.nn.functional.cross_entropy, logits, labels, label_smoothing=ls)
    check(*unpack(fn()), *ce_reference(logits, labels, ls))
    benchmark(fn)
    gbps(benchmark, 2 * logits.nbytes + labels.nbytes)


@pytest.mark.parametrize("shape", CE_SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl-weighted", "torch-weighted"])
def bench_softmax_ce_labels_weighted(benchmark, shape, impl):
    """Per-sample weights (Keras's sum_over_batch_size), in the same group as the
    unweighted case so the cost of weighting shows; torch's peer is
    (cross_entropy(reduction="none") * w).sum() / N."""
    n, c = shape
    benchmark.group = f"softmax_cross_entropy labels fwd+bwd {_id(shape)}"
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, n)
    w = rng.uniform(0.0, 2.0, n).astype(np.float32)
    if impl == "fastdl-weighted":
        fn = lambda: K.softmax_cross_entropy(logits, labels, sample_weight=w)  # noqa: E731
        unpack = lambda r: r  # noqa: E731
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        F = torch.nn.functional
        fn, unpack = torch_fn(lambda x, y, tw: (F.cross_entropy(x, y, reduction="none") * tw).sum() / n,
                              logits, labels, w)
    check(*unpack(fn()), *ce_reference(logits, labels, 0.0, w))
    benchmark(fn)
    gbps(benchmark, 2 * logits.nbytes + labels.nbytes + w.nbytes)


@pytest.mark.parametrize("shape", [(4096, 1000)], ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_softmax_ce_probs(benchmark, shape, impl):
    n, c = shape
    benchmark.group = f"softmax_cross_entropy probabilities fwd+bwd {_id(shape)}"
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    p = rng.random((n, c))
    probs = (p / p.sum(1, keepdims=True)).astype(np.float32)
    if impl == "fastdl":
        fn = lambda: K.softmax_cross_entropy(logits, probs)  # noqa: E731
        unpack = lambda r: r  # noqa: E731
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        fn, unpack = torch_fn(torch.nn.functional.cross_entropy, logits, probs)
    check(*unpack(fn()), *ce_reference(logits, probs))
    benchmark(fn)
    gbps(benchmark, 3 * logits.nbytes)


@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=_id)
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_elementwise_loss(benchmark, shape, loss, impl):
    benchmark.group = f"{loss} fwd+bwd {_id(shape)}"
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    t = rng.random(shape).astype(np.float32)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    if loss == "mse":
        ref = (((x64 - t64) ** 2).mean(), 2 * (x64 - t64) / x.size)
    else:
        sig = 0.5 * (1 + np.tanh(0.5 * x64))
        ref = ((np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))).mean(), (sig - t64) / x.size)
    if impl == "fastdl":
        fn = lambda: getattr(K, loss)(x, t)  # noqa: E731
        unpack = lambda r: r  # noqa: E731
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        F = torch.nn.functional
        fn, unpack = torch_fn(F.mse_loss if loss == "mse" else F.binary_cross_entropy_with_logits, x, t)
    res = unpack(fn())
    np.testing.assert_allclose(res[0], ref[0], rtol=1e-5)
    np.testing.assert_allclose(res[1], ref[1], rtol=1e-4, atol=1e-12)
    benchmark(fn)
    gbps(benchmark, 3 * x.nbytes)
