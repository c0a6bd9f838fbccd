"""Dropout: the counter-based mask bit for bit against the numpy Philox reference, its
statistics, the fused dense + dropout against the unfused pair, gradients, PyTorch's
scaling semantics and bad input."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import philox_reference as ph
import reference as ref

SIZES = (1, 7, 17, 33, 100, 129, 1000)
ACTS = list(K.ACTIVATIONS)


def with_threads(n, fn):
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(n)
    try:
        return fn()
    finally:
        fastdl.set_num_threads(before)


@pytest.mark.parametrize("size", SIZES + (64, 65, 4096 + 3, 100_003))
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_forward_bit_exact_vs_reference(isa, rng, size, p):
    x = rng.standard_normal(size, dtype=np.float32)
    seed, step, stream = 0x1234_5678_9ABC_DEF0, 17, 2
    y, mask = K.dropout_forward(x, p, seed, step, stream)
    y_ref, mask_ref = ph.dropout(x, p, seed, step, stream)
    assert mask.dtype == np.uint8 and mask.shape == ((size + 7) // 8,)
    np.testing.assert_array_equal(mask, mask_ref)  # padding bits included: they are 0
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("shape", [(3, 5, 7), (129, 33), (1,), ()])
def test_any_rank_uses_the_flat_c_order_index(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    y, mask = K.dropout_forward(x, 0.3, 5, 6)
    y_ref, mask_ref = ph.dropout(x, 0.3, 5, 6)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(mask, mask_ref)


@pytest.mark.parametrize("scale", [True, False])
def test_backward_is_the_masked_scaled_dy(isa, rng, scale):
    x = rng.standard_normal(1003, dtype=np.float32)
    _, mask = K.dropout_forward(x, 0.25, 9, 1, scale=scale)
    dy = rng.standard_normal(1003, dtype=np.float32)
    dx = K.dropout_backward(dy, mask, 0.25, scale=scale)
    keep = ph.unpack(mask, 1003)
    np.testing.assert_array_equal(dx, np.where(keep, dy * ph.scale_of(0.25, scale), np.float32(0)))


def test_scale_false_keeps_values_unchanged(rng):
    x = rng.standard_normal(500, dtype=np.float32)
    y, mask = K.dropout_forward(x, 0.4, 1, 2, scale=False)
    keep = ph.unpack(mask, 500)
    np.testing.assert_array_equal(y[keep], x[keep])
    assert (y[~keep] == 0).all() and (~keep).any()


def test_p_zero_is_the_identity(isa, rng):
    x = rng.standard_normal(1001, dtype=np.float32)
    y, mask = K.dropout_forward(x, 0.0, 3, 4)
    np.testing.assert_array_equal(y, x)
    assert (ph.unpack(mask, 1001)).all()
    assert mask[-1] == 0b1  # 1001 = 125 * 8 + 1: one valid bit in the last byte


def test_out_argument(rng):
    x = rng.standard_normal((33, 17), dtype=np.float32)
    out = np.empty_like(x)
    y, _ = K.dropout_forward(x, 0.5, 1, 1, out=out)
    assert y is out
    np.testing.assert_array_equal(out, ph.dropout(x, 0.5, 1, 1)[0])


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8])
def test_keep_rate(p):
    n = 1 << 20
    _, mask = K.dropout_forward(np.ones(n, np.float32), p, 42, 0)
    rate = ph.unpack(mask, n).mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(rate - (1 - p)) < 6 * sigma


def test_masks_independent_across_seed_step_stream():
    n, p = 1 << 18, 0.5
    x = np.ones(n, np.float32)
    base = ph.unpack(K.dropout_forward(x, p, 1, 0, 0)[1], n)
    others = [K.dropout_forward(x, p, *args)[1] for args in [(2, 0, 0), (1, 1, 0), (1, 0, 1), (2**32 + 1, 0, 0)]]
    for m in others:
        other = ph.unpack(m, n)
        agree = (other == base).mean()  # p^2 + (1-p)^2 = 0.5 for independent masks
        assert abs(agree - 0.5) < 6 * np.sqrt(0.25 / n)
    # Same arguments: the same mask (a pure function of its inputs).
    assert (ph.unpack(K.dropout_forward(x, p, 1, 0, 0)[1], n) == base).all()


def test_neighbouring_elements_uncorrelated():
    n = 1 << 18
    keep = ph.unpack(K.dropout_forward(np.ones(n, np.float32), 0.5, 7, 7)[1], n).astype(float)
    for lag in (1, 2, 3, 4, 8, 64):
        c = np.corrcoef(keep[:-lag], keep[lag:])[0, 1]
        assert abs(c) < 6 / np.sqrt(n)


def test_thread_count_does_not_change_results(isa, rng):
    x = rng.standard_normal(300_001, dtype=np.float32)
    one = with_threads(1, lambda: K.dropout_forward(x, 0.3, 11, 12, 13))
    two = with_threads(2, lambda: K.dropout_forward(x, 0.3, 11, 12, 13))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


# ---------------------------------------------------------------- fused dense + dropout

def make(rng, n, k, m, act):
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(max(k, 1))).astype(np.float32)
    b = (0.5 * rng.standard_normal(m)).astype(np.float32)
    alpha = {"prelu": rng.uniform(-0.5, 0.5, m).astype(np.float32), "leaky_relu": 0.1, "elu": 0.7}.get(act)
    return x, w, b, alpha


FUSED_SHAPES = [(1, 1, 1), (7, 17, 33), (33, 100, 7), (129, 33, 17), (17, 7, 129), (100, 300, 1000), (3, 1, 100)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_fused_equals_dense_then_dropout(isa, rng, act, shape):
    n, k, m = shape
    x, w, b, alpha = make(rng, n, k, m, act)
    p, seed, step, stream = 0.3, 2024, 3, 1
    out = K.dense_dropout_forward(x, w, b, act, p, seed, step, stream, alpha=alpha)
    dense = K.dense_forward(x, w, b, act, alpha=alpha)
    y_plain, z_plain = dense if act in K.NEEDS_Z else (dense, None)
    y_ref, mask_ref = K.dropout_forward(y_plain, p, seed, step, stream)
    assert len(out) == (3 if act in K.NEEDS_Z else 2)
    np.testing.assert_array_equal(out[1], mask_ref)
    np.testing.assert_array_equal(out[0], y_ref)
    if z_plain is not None:
        np.testing.assert_array_equal(out[2], z_plain)
    # and the mask is the reference's, bit for bit
    np.testing.assert_array_equal(out[1], ph.pack(ph.keep_mask(n * m, p, seed, step, stream)))


@pytest.mark.parametrize("scale", [True, False])
def test_fused_scale_and_no_bias(rng, scale):
    x, w, _, _ = make(rng, 65, 40, 31, "relu")
    y, mask = K.dense_dropout_forward(x, w, None, "relu", 0.5, 1, 2, scale=scale)
    y_ref, mask_ref = K.dropout_forward(K.dense_forward(x, w, None, "relu"), 0.5, 1, 2, scale=scale)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(mask, mask_ref)


def test_fused_thread_count_does_not_change_results(isa, rng):
    # m odd: tile rows share mask bytes with their neighbours.
    x, w, b, _ = make(rng, 301, 300, 517, "tanh")
    one = with_threads(1, lambda: K.dense_dropout_forward(x, w, b, "tanh", 0.2, 5, 6))
    two = with_threads(2, lambda: K.dense_dropout_forward(x, w, b, "tanh", 0.2, 5, 6))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_fused_p_zero_is_dense(rng):
    x, w, b, _ = make(rng, 20, 30, 40, "sigmoid")
    y, mask = K.dense_dropout_forward(x, w, b, "sigmoid", 0.0, 1, 1)
    np.testing.assert_array_equal(y, K.dense_forward(x, w, b, "sigmoid"))
    assert ph.unpack(mask, 800).all()


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scale", [True, False])
def test_fused_backward_vs_float64_reference(isa, rng, act, scale):
    n, k, m, p = 33, 40, 17, 0.4
    x, w, b, alpha = make(rng, n, k, m, act)
    out = K.dense_dropout_forward(x, w, b, act, p, 8, 9, alpha=alpha, scale=scale)
    y, mask = out[0], out[1]
    z = out[2] if act in K.NEEDS_Z else None
    dy = rng.standard_normal((n, m), dtype=np.float32)
    kw = {"z": z} if act in K.NEEDS_Z else ({"y": y} if act != "linear" else {})
    grads = K.dense_dropout_backward(dy, x, w, act, mask, p, alpha=alpha, scale=scale, **kw)
    keep = ph.unpack(mask, n * m).reshape(n, m)
    _, z_ref = ref.dense_forward(x, w, b, act, alpha)
    dy_eff = dy.astype(np.float64) * keep * (1.0 / (1.0 - p) if scale else 1.0)
    dx_r, dw_r, db_r, dal_r = ref.dense_backward(dy_eff, x, w, z_ref, act, alpha)
    np.testing.assert_allclose(grads[0], dx_r, rtol=1e-4, atol=1e-4 * np.sqrt(m))
    np.testing.assert_allclose(grads[1], dw_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(grads[2], db_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    if act == "prelu":
        np.testing.assert_allclose(grads[3], dal_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    no_dx = K.dense_dropout_backward(dy, x, w, act, mask, p, alpha=alpha, scale=scale, need_dx=False, **kw)
    assert no_dx[0] is None
    np.testing.assert_array_equal(no_dx[1], grads[1])


def test_reference_gradient_by_finite_differences():
    """The reference backward (dx = dy * keep * scale) is the derivative of the reference
    forward, checked in float64 by central differences of L = sum(g * y)."""
    rng = np.random.default_rng(3)
    p, seed, step = 0.3, 77, 1
    x = rng.standard_normal(50)
    g = rng.standard_normal(50)
    keep = ph.keep_mask(50, p, seed, step)

    def loss(v):
        return float((g * np.where(keep, v / (1 - p), 0.0)).sum())

    eps = 1e-6
    num = np.array([(loss(x + eps * e) - loss(x - eps * e)) / (2 * eps) for e in np.eye(50)])
    analytic = g * keep / (1 - p)
    np.testing.assert_allclose(num, analytic, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- PyTorch

def test_torch_scaling_semantics_and_keep_rate(rng):
    torch = pytest.importorskip("torch")
    p = 0.35
    x = rng.standard_normal((512, 512), dtype=np.float32)
    y, mask = K.dropout_forward(x, p, 1, 2)
    keep = ph.unpack(mask, x.size).reshape(x.shape)
    # Given our mask, y is PyTorch's inverted dropout: x * keep / (1 - p).
    np.testing.assert_allclose(y, x * keep / (1 - p), rtol=1e-6, atol=0)
    # PyTorch's own masks differ, but keep about the same rate and use the same scale.
    torch.manual_seed(0)
    ty = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    t_keep = ty != 0
    np.testing.assert_allclose(ty[t_keep], x[t_keep] / (1 - p), rtol=1e-6)
    n = x.size
    assert abs(t_keep.mean() - keep.mean()) < 8 * np.sqrt(p * (1 - p) / n)
    # and the same gradient rule
    tx = torch.from_numpy(x).requires_grad_()
    torch.manual_seed(0)
    out = torch.nn.functional.dropout(tx, p=p, training=True)
    out.backward(torch.ones_like(out))
    t_mask = out.detach().numpy() != 0
    np.testing.assert_allclose(tx.grad.numpy(), t_mask / (1 - p), rtol=1e-6)
    dx = K.dropout_backward(np.ones_like(x), mask, p)
    np.testing.assert_allclose(dx, keep / (1 - p), rtol=1e-6)


# ---------------------------------------------------------------- bad input

def test_bad_p():
    x = np.ones(10, np.float32)
    for p in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="p"):
            K.dropout_forward(x, p, 0, 0)
    with pytest.raises(ValueError, match="p = 1"):
        K.dropout_forward(x, 1.0, 0, 0)
    _, mask = K.dropout_forward(x, 0.5, 0, 0)
    with pytest.raises(ValueError, match="p"):
        K.dropout_backward(x, mask, 1.0)
    w = np.ones((10, 3), np.float32)
    with pytest.raises(ValueError, match="p"):
        K.dense_dropout_forward(x.reshape(1, 10), w, None, "relu", -1.0, 0, 0)


def test_bad_seed_step_stream():
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="seed"):
        K.dropout_forward(x, 0.5, -1, 0)
    with pytest.raises(ValueError, match="seed"):
        K.dropout_forward(x, 0.5, 2**64, 0)
    with pytest.raises(ValueError, match="step"):
        K.dropout_forward(x, 0.5, 0, 2**32)
    with pytest.raises(ValueError, match="stream"):
        K.dropout_forward(x, 0.5, 0, 0, -3)
    with pytest.raises(TypeError, match="seed"):
        K.dropout_forward(x, 0.5, 1.5, 0)
    # numpy integers are accepted, and the full 64-bit seed range works
    K.dropout_forward(x, 0.5, np.uint64(2**64 - 1), np.int32(3))


def test_bad_arrays():
    x = np.ones((4, 6), np.float32)
    with pytest.raises(TypeError, match="x.*float32"):
        K.dropout_forward(x.astype(np.float64), 0.5, 0, 0)
    with pytest.raises(TypeError, match="x"):
        K.dropout_forward([1.0, 2.0], 0.5, 0, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.dropout_forward(x[:, ::2], 0.5, 0, 0)
    with pytest.raises(ValueError, match="out"):
        K.dropout_forward(x, 0.5, 0, 0, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        K.dropout_forward(x, 0.5, 0, 0, out=x)
    _, mask = K.dropout_forward(x, 0.5, 0, 0)
    with pytest.raises(ValueError, match="mask"):
        K.dropout_backward(np.ones((4, 7), np.float32), mask, 0.5)
    with pytest.raises(TypeError, match="mask.*uint8"):
        K.dropout_backward(x, mask.astype(np.int8), 0.5)
    with pytest.raises(TypeError, match="mask"):
        K.dropout_backward(x, np.unpackbits(mask).astype(bool), 0.5)


def test_bad_dense_dropout_arguments(rng):
    x, w, b, _ = make(rng, 5, 4, 3, "relu")
    with pytest.raises(ValueError, match="x"):
        K.dense_dropout_forward(x.ravel(), w, b, "relu", 0.5, 0, 0)
    with pytest.raises(ValueError, match="w"):
        K.dense_dropout_forward(x, w[:3], b, "relu", 0.5, 0, 0)
    with pytest.raises(ValueError, match="b"):
        K.dense_dropout_forward(x, w, b[:2], "relu", 0.5, 0, 0)
    with pytest.raises(ValueError, match="activation|relux"):
        K.dense_dropout_forward(x, w, b, "relux", 0.5, 0, 0)
    y, mask = K.dense_dropout_forward(x, w, b, "relu", 0.5, 0, 0)
    dy = np.ones_like(y)
    with pytest.raises(ValueError, match="y"):
        K.dense_dropout_backward(dy, x, w, "relu", mask, 0.5)
    with pytest.raises(ValueError, match="z"):
        K.dense_dropout_backward(dy, x, w, "gelu", mask, 0.5, y=y)
    with pytest.raises(ValueError, match="mask"):
        K.dense_dropout_backward(dy, x, w, "relu", mask[:1], 0.5, y=y)


# ---------------------------------------------------------------- offset (a shard of a larger tensor)

@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5, 63, 64, 65, 1000, 2**32 * 4 - 3, 2**40 + 7])
@pytest.mark.parametrize("size", [1, 5, 64, 67, 1000, 100_003])
def test_offset_draws_the_mask_of_element_offset_plus_i(isa, rng, offset, size):
    x = rng.standard_normal(size, dtype=np.float32)
    p, seed, step, stream = 0.4, 0xDEAD_BEEF_0BAD_F00D, 11, 3
    y, mask = K.dropout_forward(x, p, seed, step, stream, offset=offset)
    keep = ph.keep(np.arange(offset, offset + size, dtype=np.uint64), p, seed, step, stream)
    np.testing.assert_array_equal(mask, ph.pack(keep))  # local bit i, padding bits 0
    np.testing.assert_array_equal(y, np.where(keep, x * ph.scale_of(p), np.float32(0)))


def test_offset_shards_reassemble_the_whole_tensors_mask(isa, rng):
    # rows split unevenly across 3 "ranks" with an odd row length: every shard's bits
    # are the whole tensor's bits of its rows
    n, m = 37, 13
    x = rng.standard_normal((n, m), dtype=np.float32)
    y, mask = K.dropout_forward(x, 0.5, 7, 8, 1)
    keep = ph.unpack(mask, n * m).reshape(n, m)
    for lo, hi in ((0, 12), (12, 24), (24, 37)):
        ys, ms = K.dropout_forward(np.ascontiguousarray(x[lo:hi]), 0.5, 7, 8, 1, offset=lo * m)
        np.testing.assert_array_equal(ph.unpack(ms, (hi - lo) * m).reshape(hi - lo, m), keep[lo:hi])
        np.testing.assert_array_equal(ys, y[lo:hi])


def test_offset_thread_count_does_not_change_results(isa, rng):
    x = rng.standard_normal(300_001, dtype=np.float32)
    a = with_threads(1, lambda: K.dropout_forward(x, 0.3, 1, 2, offset=12345))
    b = with_threads(4, lambda: K.dropout_forward(x, 0.3, 1, 2, offset=12345))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("act", ["relu", "gelu", "linear"])
@pytest.mark.parametrize("shape", [(7, 17, 33), (129, 33, 17), (40, 50, 1), (65, 20, 100)])
def test_fused_offset_equals_the_rows_of_the_whole_batch(isa, rng, act, shape):
    n, k, m = shape
    x, w, b, alpha = make(rng, n, k, m, act)
    p, seed, step, stream = 0.3, 99, 5, 2
    whole = K.dense_dropout_forward(x, w, b, act, p, seed, step, stream, alpha=alpha)
    keep = ph.unpack(whole[1], n * m).reshape(n, m)
    for lo, hi in ((0, n // 3), (n // 3, n)):
        part = K.dense_dropout_forward(np.ascontiguousarray(x[lo:hi]), w, b, act, p, seed, step, stream,
                                       alpha=alpha, offset=lo * m)
        np.testing.assert_array_equal(ph.unpack(part[1], (hi - lo) * m).reshape(hi - lo, m), keep[lo:hi])
        # the unfused pair on the same rows agrees bit for bit
        dense = K.dense_forward(np.ascontiguousarray(x[lo:hi]), w, b, act, alpha=alpha)
        y_plain = dense[0] if act in K.NEEDS_Z else dense
        y_ref, mask_ref = K.dropout_forward(y_plain, p, seed, step, stream, offset=lo * m)
        np.testing.assert_array_equal(part[0], y_ref)
        np.testing.assert_array_equal(part[1], mask_ref)


def test_bad_offset(rng):
    x = rng.standard_normal(10, dtype=np.float32)
    with pytest.raises(ValueError, match="offset"):
        K.dropout_forward(x, 0.5, 1, 1, offset=-1)
    with pytest.raises(ValueError, match="offset"):
        K.dropout_forward(x, 0.5, 1, 1, offset=2**62 - 5)
    with pytest.raises(TypeError, match="offset"):
        K.dropout_forward(x, 0.5, 1, 1, offset=1.5)
    w = rng.standard_normal((10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="offset"):
        K.dense_dropout_forward(x.reshape(1, 10), w, None, "relu", 0.5, 1, 1, offset=-3)
