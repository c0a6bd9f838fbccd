"""Maxout: against a numpy reference (exact), ties, the fused GEMM epilogue against the
unfused pair, ReLU as a special case, gradients, PyTorch parity and bad input."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

SIZES = (1, 7, 17, 33, 100, 129, 1000)
PIECES = (1, 2, 3, 4, 5)


def maxout_reference(z, k):
    """(y, argmax) with numpy: adjacent groups, first maximum wins."""
    n, cols = z.shape
    g = z.reshape(n, cols // k, k)
    return g.max(axis=2), g.argmax(axis=2).astype(np.uint8)


def maxout_backward_reference(dy, argmax, k):
    n, m = dy.shape
    dz = np.zeros((n, m, k), dy.dtype)
    np.put_along_axis(dz, argmax[..., None].astype(np.intp), dy[..., None], axis=2)
    return dz.reshape(n, m * k)


def make(rng, n, k, m, pieces, dtype=np.float32):
    x = rng.standard_normal((n, k)).astype(dtype)
    w = (rng.standard_normal((k, m * pieces)) / np.sqrt(max(k, 1))).astype(dtype)
    b = (0.5 * rng.standard_normal(m * pieces)).astype(dtype)
    return x, w, b


def with_threads(n, fn):
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(n)
    try:
        return fn()
    finally:
        fastdl.set_num_threads(before)


@pytest.mark.parametrize("pieces", PIECES + (8, 40))
@pytest.mark.parametrize("n, m", [(v, 33) for v in SIZES] + [(7, v) for v in SIZES])
def test_forward_backward_vs_reference(rng, pieces, n, m):
    z = rng.standard_normal((n, m * pieces), dtype=np.float32)
    y, am = K.maxout_forward(z, pieces)
    y_ref, am_ref = maxout_reference(z, pieces)
    assert y.dtype == np.float32 and am.dtype == np.uint8 and y.shape == am.shape == (n, m)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dz = K.maxout_backward(dy, am, pieces)
    np.testing.assert_array_equal(dz, maxout_backward_reference(dy, am_ref, pieces))


@pytest.mark.parametrize("pieces", (2, 3, 5))
def test_ties_first_max_wins(rng, pieces):
    z = np.repeat(rng.standard_normal((9, 4, 1), dtype=np.float32), pieces, axis=2)
    z[0, 0, -1] = z[0, 0, 0] + 1  # one clear winner at the last piece
    z[1, 1, 1:] = z[1, 1, 0] + 2  # a tie between pieces 1.. -> 1
    z = z.reshape(9, 4 * pieces)
    y, am = K.maxout_forward(z, pieces)
    expected = np.zeros((9, 4), np.uint8)
    expected[0, 0] = pieces - 1
    expected[1, 1] = 1
    np.testing.assert_array_equal(am, expected)
    np.testing.assert_array_equal(y, maxout_reference(z, pieces)[0])


def test_ties_in_the_fused_path_straddling_tiles(isa):
    # Every column equal: every unit's argmax is 0, including groups that straddle the
    # GEMM's micro-tiles (pieces 3 and 5 never divide NR).
    for pieces in (3, 5, 40):
        x = np.ones((5, 4), np.float32)
        w = np.ones((4, 30 * pieces), np.float32)
        y, am = K.dense_maxout_forward(x, w, None, pieces)
        assert (am == 0).all() and (y == 4).all()


DENSE_SHAPES = ([(v, 17, 33) for v in SIZES] + [(7, v, 33) for v in SIZES] + [(33, 100, v) for v in SIZES]
                + [(65, 600, 70), (3, 0, 5)])


@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_equals_dense_then_maxout(isa, rng, pieces, shape):
    """Bit-identical: the epilogue adds the same bias to the same accumulators and scans
    the same way; K = 600 > KC exercises the partial sums carried through C."""
    n, k, m = shape
    x, w, b = make(rng, n, k, m, pieces)
    y, am = K.dense_maxout_forward(x, w, b, pieces)
    y_ref, am_ref = K.maxout_forward(K.dense_forward(x, w, b), pieces)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    # and against float64 numpy (the unfused pair is itself only a float32 GEMM)
    y64, _ = maxout_reference(x.astype(np.float64) @ w.astype(np.float64) + b, pieces)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=2e-5 * np.sqrt(max(k, 1)) + 1e-5)


@pytest.mark.parametrize("pieces", (7, 16, 33, 255))
def test_fused_large_piece_counts(isa, rng, pieces):
    # Groups wider than a micro-tile span several tiles.
    x, w, b = make(rng, 13, 20, 3, pieces)
    y, am = K.dense_maxout_forward(x, w, b, pieces)
    y_ref, am_ref = K.maxout_forward(K.dense_forward(x, w, b), pieces)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)


def test_fused_without_bias(rng):
    x, w, _ = make(rng, 31, 50, 21, 3)
    y, am = K.dense_maxout_forward(x, w, None, 3)
    y_ref, am_ref = K.maxout_forward(K.dense_forward(x, w, None), 3)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)


def test_fused_thread_count_does_not_change_results(isa, rng):
    x, w, b = make(rng, 257, 300, 301, 3)
    one = with_threads(1, lambda: K.dense_maxout_forward(x, w, b, 3))
    two = with_threads(2, lambda: K.dense_maxout_forward(x, w, b, 3))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_relu_is_maxout_with_a_zero_piece(isa, rng):
    """pieces = 2 with piece 1's weights and bias zero: max(z, 0) = relu(z)."""
    n, k, m = 65, 70, 45
    x = rng.standard_normal((n, k), dtype=np.float32)
    w1 = rng.standard_normal((k, m), dtype=np.float32)
    b1 = rng.standard_normal(m, dtype=np.float32)
    w = np.zeros((k, 2 * m), np.float32)
    w[:, 0::2] = w1
    b = np.zeros(2 * m, np.float32)
    b[0::2] = b1
    y, am = K.dense_maxout_forward(x, w, b, 2)
    relu = K.dense_forward(x, w1, b1, "relu")
    np.testing.assert_array_equal(y, relu)
    np.testing.assert_array_equal(am, (relu == 0).astype(np.uint8) * (K.dense_forward(x, w1, b1) < 0))


@pytest.mark.parametrize("pieces", PIECES)
@pytest.mark.parametrize("need_dx", [True, False])
def test_dense_backward_vs_float64_reference(isa, rng, pieces, need_dx):
    n, k, m = 33, 40, 17
    x, w, b = make(rng, n, k, m, pieces)
    y, am = K.dense_maxout_forward(x, w, b, pieces)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = K.dense_maxout_backward(dy, x, w, am, pieces, need_dx=need_dx)
    dz = maxout_backward_reference(dy.astype(np.float64), am, pieces)
    np.testing.assert_allclose(dw, x.astype(np.float64).T @ dz, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(db, dz.sum(0), rtol=1e-4, atol=1e-4 * np.sqrt(n))
    if need_dx:
        np.testing.assert_allclose(dx, dz @ w.astype(np.float64).T, rtol=1e-4, atol=1e-4 * np.sqrt(m * pieces))
    else:
        assert dx is None


def test_reference_gradient_by_finite_differences():
    """float64 central differences of L = sum(g * maxout(x @ w + b)) against the
    reference backward (random data: no ties, so maxout is differentiable there)."""
    rng = np.random.default_rng(5)
    n, k, m, pieces = 4, 5, 3, 3
    x, w, b = (a.astype(np.float64) for a in make(rng, n, k, m, pieces))
    g = rng.standard_normal((n, m))

    def loss(x_, w_, b_):
        return float((g * maxout_reference(x_ @ w_ + b_, pieces)[0]).sum())

    _, am = maxout_reference(x @ w + b, pieces)
    dz = maxout_backward_reference(g, am, pieces)
    eps = 1e-6
    for name, arr, analytic in (("x", x, dz @ w.T), ("w", w, x.T @ dz), ("b", b, dz.sum(0))):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args = {"x": (x, w, b), "w": (x, w, b), "b": (x, w, b)}[name]
            a_p = [plus if v is arr else v for v in args]
            a_m = [minus if v is arr else v for v in args]
            num[idx] = (loss(*a_p) - loss(*a_m)) / (2 * eps)
        np.testing.assert_allclose(num, analytic, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("shape", [(128, 784, 256, 3), (33, 17, 7, 2), (5, 9, 4, 5)])
def test_torch_parity(rng, shape):
    torch = pytest.importorskip("torch")
    n, k, m, pieces = shape
    x, w, b = make(rng, n, k, m, pieces)
    lin = torch.nn.Linear(k, m * pieces)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w.T.copy()))
        lin.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).requires_grad_()
    ty = lin(tx).view(n, m, pieces).max(dim=-1)
    y, am = K.dense_maxout_forward(x, w, b, pieces)
    np.testing.assert_allclose(y, ty.values.detach().numpy(), rtol=1e-5, atol=1e-5 * np.sqrt(k))
    np.testing.assert_array_equal(am, ty.indices.numpy())
    dy = rng.standard_normal((n, m), dtype=np.float32)
    ty.values.backward(torch.from_numpy(dy))
    dx, dw, db = K.dense_maxout_backward(dy, x, w, am, pieces)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4 * np.sqrt(m * pieces))
    np.testing.assert_allclose(dw, lin.weight.grad.numpy().T, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-4, atol=1e-4 * np.sqrt(n))


def test_bad_input(rng):
    z = rng.standard_normal((4, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="pieces.*4 does not divide"):
        K.maxout_forward(z, 4)
    for bad in (0, 256, -1):
        with pytest.raises(ValueError, match="pieces"):
            K.maxout_forward(z, bad)
    with pytest.raises(TypeError, match="pieces"):
        K.maxout_forward(z, 2.0)
    with pytest.raises(TypeError, match="z.*float32"):
        K.maxout_forward(z.astype(np.float64), 2)
    with pytest.raises(ValueError, match="z.*2-D"):
        K.maxout_forward(z.ravel(), 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.maxout_forward(np.asfortranarray(z), 2)
    y, am = K.maxout_forward(z, 3)
    with pytest.raises(TypeError, match="argmax.*uint8"):
        K.maxout_backward(y, am.astype(np.int64), 3)
    with pytest.raises(ValueError, match="argmax"):
        K.maxout_backward(y, am[:, :1].copy(), 3)
    bad_am = am.copy()
    bad_am[2, 1] = 3
    with pytest.raises(IndexError, match=r"argmax.*\(2, 1\).*3"):
        K.maxout_backward(y, bad_am, 3)
    x, w, b = make(rng, 5, 4, 3, 2)
    with pytest.raises(ValueError, match="pieces.*4 does not divide"):
        K.dense_maxout_forward(x, w, b, 4)
    with pytest.raises(ValueError, match="b"):
        K.dense_maxout_forward(x, w, b[:3], 2)
    with pytest.raises(ValueError, match="w"):
        K.dense_maxout_forward(x, w[:3], b, 2)
    with pytest.raises(TypeError, match="x"):
        K.dense_maxout_forward(x.astype(np.float16), w, b, 2)
    y, am = K.dense_maxout_forward(x, w, b, 2)
    with pytest.raises(ValueError, match="dy"):
        K.dense_maxout_backward(y[:, :2].copy(), x, w, am, 2)
    with pytest.raises(TypeError, match="argmax"):
        K.dense_maxout_backward(y, x, w, am.astype(np.int8), 2)
