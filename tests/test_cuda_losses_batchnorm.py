"""GPU fused losses and batch norm against float64 references."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402

to_dev, host = cref.to_dev, cref.host


@pytest.mark.parametrize("n,c", [(1, 1), (7, 10), (17, 33)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, "probs"])
def test_softmax_cross_entropy(rng, n, c, eps, dtype):
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    if dtype == "probs":
        t = rng.dirichlet(np.ones(c), n).astype(np.float32)
    else:
        t = rng.integers(0, c, n).astype(dtype)
    loss, d = G.softmax_cross_entropy(to_dev(logits), to_dev(t), label_smoothing=eps)
    loss_ref, d_ref = cref.softmax_cross_entropy(logits, t, eps)
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(host(d), d_ref, rtol=1e-4, atol=1e-6)


def test_softmax_cross_entropy_large_logits_and_bad_label(rng):
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, d = G.softmax_cross_entropy(to_dev(logits), to_dev(np.array([2], np.int64)))
    assert loss == pytest.approx(2000.0)
    with pytest.raises(ValueError, match=r"target: label 5 at index 1 is outside \[0, 3\)"):
        G.softmax_cross_entropy(to_dev(np.zeros((3, 3), np.float32)), to_dev(np.array([0, 5, -1], np.int32)))
    with pytest.raises(TypeError, match="target: expected int32/int64 labels or float32"):
        G.softmax_cross_entropy(to_dev(np.zeros((3, 3), np.float32)), to_dev(np.zeros(3, np.float64)))


@pytest.mark.parametrize("bad_row", [0, 8, 16])
def test_a_bad_label_leaves_out_unwritten(rng, bad_row):
    """Validate before writing: a label out of range in any row (rows 8 and 16 are in
    later blocks than row 0) leaves every row of out= as it was, as on the CPU."""
    n, c = 17, 4
    logits = to_dev(rng.standard_normal((n, c)).astype(np.float32))
    labels = rng.integers(0, c, n).astype(np.int64)
    labels[bad_row] = c
    out = to_dev(np.full((n, c), 7.0, np.float32))
    with pytest.raises(ValueError, match=rf"^target: label {c} at index {bad_row} "):
        G.softmax_cross_entropy(logits, to_dev(labels), out=out)
    np.testing.assert_array_equal(host(out), np.full((n, c), 7.0, np.float32))


@pytest.mark.parametrize("shape", [(1,), (7, 3), (300, 5)])
def test_mse_and_bce(rng, shape):
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    t = rng.uniform(0, 1, shape).astype(np.float32)
    loss, d = G.mse(to_dev(x), to_dev(t))
    diff = x.astype(np.float64) - t
    assert loss == pytest.approx((diff ** 2).mean(), rel=1e-5)
    np.testing.assert_allclose(host(d), 2 * diff / x.size, rtol=1e-5, atol=1e-8)
    loss, d = G.binary_cross_entropy(to_dev(x), to_dev(t))
    loss_ref, d_ref = cref.bce_with_logits(x, t)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(host(d), d_ref, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="target: expected"):
        G.mse(to_dev(x), to_dev(np.zeros(shape[0] + 1, np.float32)))


@pytest.mark.parametrize("n,m", [(2, 1), (7, 33), (50, 5)])
def test_batchnorm_train_eval_backward(rng, n, m):
    x = (2 * rng.standard_normal((n, m)) + 1).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, m).astype(np.float32)
    beta = rng.standard_normal(m).astype(np.float32)
    rm, rv = rng.standard_normal(m).astype(np.float32), rng.uniform(0.5, 2, m).astype(np.float32)
    rm_d, rv_d = to_dev(rm), to_dev(rv)
    y, mean, invstd = G.batchnorm_forward_train(to_dev(x), to_dev(gamma), to_dev(beta), rm_d, rv_d)
    y_r, mean_r, invstd_r, rm_r, rv_r = cref.batchnorm_train(x, gamma, beta, rm, rv)
    np.testing.assert_allclose(host(y), y_r, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(mean), mean_r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host(invstd), invstd_r, rtol=1e-4)
    np.testing.assert_allclose(host(rm_d), rm_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(rv_d), rv_r, rtol=1e-5, atol=1e-6)
    ye = G.batchnorm_forward_eval(to_dev(x), to_dev(gamma), to_dev(beta), rm_d, rv_d)
    np.testing.assert_allclose(host(ye), (x - rm_r) / np.sqrt(rv_r + 1e-5) * gamma + beta, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    grads = G.batchnorm_backward(to_dev(dy), to_dev(x), to_dev(gamma), mean, invstd)
    for got, want in zip(grads, cref.batchnorm_backward(dy, x, gamma, mean_r, invstd_r)):
        np.testing.assert_allclose(host(got), want, rtol=1e-3, atol=1e-4)


def test_batchnorm_one_row_is_an_error():
    one = to_dev(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="x: batch norm in training needs more than one row"):
        G.batchnorm_forward_train(to_dev(np.ones((1, 3), np.float32)), one, one, one, one)
