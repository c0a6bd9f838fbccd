"""GPU maxout (adjacent-column grouping, uint8 argmax) against numpy references."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402

to_dev, host = cref.to_dev, cref.host


@pytest.mark.parametrize("n,m,k", [(1, 1, 1), (7, 5, 3), (17, 3, 4)])
def test_maxout_forward_backward(rng, n, m, k):
    z = rng.standard_normal((n, m * k), dtype=np.float32)
    z[0, :k] = 1.0  # a tie: the first maximum wins
    y, am = G.maxout_forward(to_dev(z), k)
    y_ref, am_ref = cref.maxout(z, k)
    np.testing.assert_array_equal(host(y), y_ref)
    np.testing.assert_array_equal(host(am), am_ref)
    assert host(am).dtype == np.uint8
    dy = rng.standard_normal((n, m), dtype=np.float32)
    np.testing.assert_array_equal(host(G.maxout_backward(to_dev(dy), am, k)), cref.maxout_grad(dy, am_ref, k))


@pytest.mark.parametrize("n,kin,m,k", [(7, 17, 5, 3), (66, 9, 23, 3), (3, 4, 2, 70), (5, 6, 33, 2)])
def test_dense_maxout_forward_backward(rng, n, kin, m, k):
    x = rng.standard_normal((n, kin), dtype=np.float32)
    w = (rng.standard_normal((kin, m * k)) / np.sqrt(kin)).astype(np.float32)
    b = rng.standard_normal(m * k).astype(np.float32)
    y, am = G.dense_maxout_forward(to_dev(x), to_dev(w), to_dev(b), k)
    z = x.astype(np.float64) @ w + b
    y_ref, am_ref = cref.maxout(z, k)
    np.testing.assert_allclose(host(y), y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(host(am), am_ref)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = G.dense_maxout_backward(to_dev(dy), to_dev(x), to_dev(w), am, k)
    dz = cref.maxout_grad(dy, am_ref, k)
    np.testing.assert_allclose(host(dx), dz @ w.T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(host(dw), x.T @ dz, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(host(db), dz.sum(0), rtol=1e-3, atol=1e-4)
    if hasattr(fastdl._C, "dense_maxout_forward"):
        y_c, am_c = fastdl._C.dense_maxout_forward(x, w, b, k)
        np.testing.assert_allclose(host(y), y_c, rtol=1e-4, atol=1e-5)


def test_maxout_errors():
    z = to_dev(np.ones((2, 6), np.float32))
    with pytest.raises(ValueError, match="z: expected shape\\[1\\] to be a multiple of pieces = 4"):
        G.maxout_forward(z, 4)
    with pytest.raises(ValueError, match="pieces: expected 1 <= pieces <= 255"):
        G.maxout_forward(z, 0)
    with pytest.raises(TypeError, match="argmax: expected dtype uint8"):
        G.maxout_backward(to_dev(np.ones((2, 3), np.float32)), to_dev(np.ones((2, 3), np.int64)), 2)
