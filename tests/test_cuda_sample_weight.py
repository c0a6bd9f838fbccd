"""GPU losses with per-sample weights (sum_i w_i l_i / N, gradient rows times w_i) against
the CPU kernels and the float64 references; bad weights refused before out= is written."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

from fastdl import kernels as K  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402

import reference_losses as ref  # noqa: E402

to_dev, host = cref.to_dev, cref.host


def _weights(rng, n):
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[::3] = 0.0
    w[n // 2] = 20.0
    return w


@pytest.mark.parametrize("n,c", [(1, 1), (7, 10), (17, 33)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("kind", [np.int32, np.int64, "probs"])
def test_weighted_softmax_cross_entropy_matches_the_cpu(rng, n, c, eps, kind):
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    t = rng.dirichlet(np.ones(c), n).astype(np.float32) if kind == "probs" else rng.integers(0, c, n).astype(kind)
    w = _weights(rng, n)
    loss, d = G.softmax_cross_entropy(to_dev(logits), to_dev(t), label_smoothing=eps, sample_weight=to_dev(w))
    loss_cpu, d_cpu = K.softmax_cross_entropy(logits, t, label_smoothing=eps, sample_weight=w)
    loss_ref, d_ref = ref.softmax_cross_entropy(logits, t, eps, w)
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_cpu, rel=1e-5, abs=2e-5) and loss == pytest.approx(loss_ref, rel=1e-5, abs=2e-5)
    np.testing.assert_allclose(host(d), d_cpu, rtol=1e-4, atol=2e-5 / n)
    np.testing.assert_allclose(host(d), d_ref, rtol=1e-4, atol=2e-5 / n)
    assert (host(d)[w == 0] == 0).all()


@pytest.mark.parametrize("shape", [(1,), (7, 3), (300, 5), (4, 3, 2)], ids=str)
@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy"])
def test_weighted_mse_and_bce_match_the_cpu(rng, name, shape):
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    t = rng.uniform(0, 1, shape).astype(np.float32)
    w = _weights(rng, shape[0])
    loss, g = getattr(G, name)(to_dev(x), to_dev(t), sample_weight=to_dev(w))
    loss_cpu, g_cpu = getattr(K, name)(x, t, sample_weight=w)
    loss_ref, g_ref = getattr(ref, name)(x, t, w)
    assert loss == pytest.approx(loss_cpu, rel=1e-5) and loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(host(g), g_cpu, rtol=1e-5, atol=1e-7 * 20 / x.size)
    np.testing.assert_allclose(host(g), g_ref, rtol=1e-5, atol=1e-7 * 20 / x.size)


def test_weights_of_one_give_the_unweighted_gpu_bits(rng):
    logits = (3 * rng.standard_normal((9, 13))).astype(np.float32)
    y = rng.integers(0, 13, 9)
    ones = to_dev(np.ones(9, np.float32))
    l0, d0 = G.softmax_cross_entropy(to_dev(logits), to_dev(y), label_smoothing=0.1)
    l1, d1 = G.softmax_cross_entropy(to_dev(logits), to_dev(y), label_smoothing=0.1, sample_weight=ones)
    assert l0 == l1
    np.testing.assert_array_equal(host(d0), host(d1))
    t = rng.random((9, 13)).astype(np.float32)
    for name in ("mse", "binary_cross_entropy"):
        l0, g0 = getattr(G, name)(to_dev(logits), to_dev(t))
        l1, g1 = getattr(G, name)(to_dev(logits), to_dev(t), sample_weight=ones)
        assert l0 == l1, name
        np.testing.assert_array_equal(host(g0), host(g1))


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "mse", "binary_cross_entropy"])
def test_bad_weights_are_refused_before_out_is_written(rng, name):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = rng.integers(0, 4, 5) if name == "softmax_cross_entropy" else rng.random((5, 4)).astype(np.float32)
    fn = getattr(G, name)
    cases = [
        (np.array([1, 2, -1, 0, 1], np.float32), ValueError, r"sample_weight: weight -1 at index 2 is negative"),
        (np.array([1, np.nan, 1, -1, 1], np.float32), ValueError, r"sample_weight: weight nan at index 1 is not finite"),
        (np.array([1, 1, 1, 1, np.inf], np.float32), ValueError, r"sample_weight: weight inf at index 4 is not finite"),
        (np.ones(4, np.float32), ValueError, r"sample_weight: expected shape\[0\] == 5"),
        (np.ones(5, np.float64), TypeError, r"sample_weight: expected dtype float32"),
        (np.ones((5, 1), np.float32), ValueError, r"sample_weight: expected a 1-D array"),
    ]
    out = to_dev(np.full((5, 4), 7.25, np.float32))
    for w, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn(to_dev(x), to_dev(t), sample_weight=to_dev(w), out=out)
        assert (host(out) == 7.25).all()
    with pytest.raises(TypeError, match=r"sample_weight: got a numpy.ndarray"):
        fn(to_dev(x), to_dev(t), sample_weight=np.ones(5, np.float32))
    scalar = cuda.to_device(np.ones((), np.float32))  # to_dev's ascontiguousarray makes it 1-D
    with pytest.raises(ValueError, match=r"sample_weight: .* is a 0-D array"):
        G.mse(scalar, scalar, sample_weight=to_dev(np.ones(1, np.float32)))
