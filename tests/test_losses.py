"""Fused losses against float64 references, finite differences and PyTorch."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import reference_losses as ref

CE_SHAPES = [(1, 1), (1, 2), (2, 1), (3, 2), (7, 17), (17, 33), (128, 10), (33, 1000), (5, 1001)]
TARGETS = ["int32", "int64", "probs"]


def make_target(rng, kind, n, c):
    if kind == "probs":
        p = rng.random((n, c)) ** 3  # uneven rows with small entries
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return rng.integers(0, c, n).astype(kind)


def assert_ce_matches_reference(logits, target, ls=0.0, rtol=1e-5):
    n = logits.shape[0]
    loss, dlogits = K.softmax_cross_entropy(logits, target, label_smoothing=ls)
    loss_r, dl_r = ref.softmax_cross_entropy(logits, target, ls)
    assert isinstance(loss, float)
    assert dlogits.dtype == np.float32 and dlogits.shape == logits.shape
    np.testing.assert_allclose(loss, loss_r, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(dlogits, dl_r, rtol=1e-4, atol=2e-6 / n)


@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax_ce_vs_reference(isa, rng, shape, kind, ls):
    n, c = shape
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    assert_ce_matches_reference(logits, make_target(rng, kind, n, c), ls)


def test_one_hot_probabilities_equal_labels(isa, rng):
    n, c = 19, 37
    logits = rng.standard_normal((n, c), dtype=np.float32)
    labels = rng.integers(0, c, n)
    one_hot = np.eye(c, dtype=np.float32)[labels]
    for ls in (0.0, 0.2):
        l1, d1 = K.softmax_cross_entropy(logits, labels, label_smoothing=ls)
        l2, d2 = K.softmax_cross_entropy(logits, one_hot, label_smoothing=ls)
        np.testing.assert_allclose(l1, l2, rtol=1e-6)
        np.testing.assert_allclose(d1, d2, rtol=1e-5, atol=1e-8)


def test_probability_rows_need_not_sum_to_one(isa, rng):
    # PyTorch applies -sum q log_softmax as is; the gradient carries sum(q).
    logits = rng.standard_normal((6, 9), dtype=np.float32)
    q = rng.random((6, 9)).astype(np.float32) * 2
    assert_ce_matches_reference(logits, q, 0.1)


@pytest.mark.parametrize("kind", TARGETS)
def test_softmax_ce_extreme_logits_stay_finite(isa, kind):
    c = 7
    logits = np.array([[1e4, -1e4, 0, 5, -5, 1e4, 3],
                       [-1e4, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4],
                       [1e4, 1e4, 1e4, 1e4, 1e4, 1e4, 1e4],
                       [-1e4, 1e4, -1e4, -1e4, -1e4, -1e4, -1e4],
                       [88, -88, 0, 100, -100, 1e-7, 0]], np.float32)
    n = logits.shape[0]
    if kind == "probs":
        target = np.full((n, c), 1.0 / c, np.float32)
        target[3] = np.eye(c, dtype=np.float32)[0]  # all mass on a -1e4 logit: loss 2e4
    else:
        target = np.array([1, 0, 6, 0, 4], kind)
    for ls in (0.0, 0.1):
        loss, dlogits = K.softmax_cross_entropy(logits, target, label_smoothing=ls)
        assert np.isfinite(loss) and np.isfinite(dlogits).all()
        assert_ce_matches_reference(logits, target, ls)


@pytest.mark.parametrize("kind", TARGETS)
def test_softmax_ce_gradient_matches_finite_differences(rng, kind):
    n, c = 4, 6
    logits = rng.standard_normal((n, c), dtype=np.float32)
    target = make_target(rng, kind, n, c)
    ls = 0.15
    _, dlogits = K.softmax_cross_entropy(logits, target, label_smoothing=ls)
    x = logits.astype(np.float64)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        lp = ref.softmax_cross_entropy(x, target, ls)[0]
        x[idx] = old - h
        lm = ref.softmax_cross_entropy(x, target, ls)[0]
        x[idx] = old
        num[idx] = (lp - lm) / (2 * h)
    np.testing.assert_allclose(ref.softmax_cross_entropy(x, target, ls)[1], num, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dlogits, num, rtol=1e-4, atol=1e-7)


def test_softmax_ce_isa_paths_agree(rng):
    logits = (4 * rng.standard_normal((65, 301))).astype(np.float32)
    labels = rng.integers(0, 301, 65)
    results = {}
    previous = fastdl.get_isa()
    try:
        for name in ("avx512", "avx2", "generic"):
            if fastdl.cpu_supports(name):
                fastdl.set_isa(name)
                results[name] = K.softmax_cross_entropy(logits, labels, label_smoothing=0.1)
    finally:
        fastdl.set_isa(previous)
    base_loss, base_d = results["generic"]
    for name, (loss, d) in results.items():
        np.testing.assert_allclose(loss, base_loss, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(d, base_d, rtol=1e-5, atol=1e-9, err_msg=name)


def test_results_do_not_depend_on_thread_count(rng):
    logits = rng.standard_normal((300, 1000), dtype=np.float32)
    labels = rng.integers(0, 1000, 300).astype(np.int32)
    probs = make_target(rng, "probs", 300, 1000)
    x = rng.standard_normal(300_001, dtype=np.float32)
    t = rng.random(300_001).astype(np.float32)
    before = fastdl.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            outs.append([K.softmax_cross_entropy(logits, labels, label_smoothing=0.1),
                         K.softmax_cross_entropy(logits, probs),
                         K.mse(x, t), K.binary_cross_entropy(x, t)])
    finally:
        fastdl.set_num_threads(before)
    for other in outs[1:]:
        for (l0, g0), (l1, g1) in zip(outs[0], other):
            assert l0 == l1
            np.testing.assert_array_equal(g0, g1)


# ---------------------------------------------------------------- mse and bce

ELEM_SHAPES = [(), (1,), (7,), (33, 17), (3, 5, 7), (100_003,)]


@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=str)
def test_mse_vs_reference(isa, rng, shape):
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    loss, dpred = K.mse(pred, target)
    loss_r, d_r = ref.mse(pred, target)
    assert isinstance(loss, float) and dpred.shape == pred.shape and dpred.dtype == np.float32
    np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
    np.testing.assert_allclose(dpred, d_r, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=str)
def test_bce_vs_reference(isa, rng, shape):
    logits = np.asarray(4 * rng.standard_normal(shape), np.float32)
    target = rng.random(shape).astype(np.float32)
    loss, dlogits = K.binary_cross_entropy(logits, target)
    loss_r, d_r = ref.binary_cross_entropy(logits, target)
    assert isinstance(loss, float) and dlogits.shape == logits.shape
    np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
    size = max(logits.size, 1)
    np.testing.assert_allclose(dlogits, d_r, rtol=1e-5, atol=1e-7 / size)


def test_bce_extreme_logits_stay_finite(isa):
    x = np.array([-1e4, -100, -20, -1e-7, 0, 1e-7, 20, 100, 1e4] * 3, np.float32)
    t = np.repeat(np.array([0.0, 0.3, 1.0], np.float32), 9)
    loss, d = K.binary_cross_entropy(x, t)
    assert np.isfinite(loss) and np.isfinite(d).all()
    loss_r, d_r = ref.binary_cross_entropy(x, t)
    np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
    np.testing.assert_allclose(d, d_r, rtol=1e-5, atol=1e-9)


def test_mse_and_bce_gradients_match_finite_differences(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    t = rng.random((3, 5)).astype(np.float32)
    h = 1e-6
    for name in ("mse", "binary_cross_entropy"):
        _, g = getattr(K, name)(x, t)
        f = getattr(ref, name)
        x64 = x.astype(np.float64)
        num = np.zeros_like(x64)
        for idx in np.ndindex(x.shape):
            old = x64[idx]
            x64[idx] = old + h
            lp = f(x64, t)[0]
            x64[idx] = old - h
            lm = f(x64, t)[0]
            x64[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-8, err_msg=name)


# ---------------------------------------------------------------- PyTorch parity


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("kind", TARGETS)
def test_cross_entropy_parity_with_pytorch(rng, kind, ls):
    torch = pytest.importorskip("torch")
    n, c = 37, 101
    logits = (2 * rng.standard_normal((n, c))).astype(np.float32)
    target = make_target(rng, kind, n, c)
    loss, dlogits = K.softmax_cross_entropy(logits, target, label_smoothing=ls)
    tx = torch.tensor(logits, requires_grad=True)
    tt = torch.tensor(target.astype(np.int64) if kind != "probs" else target)
    tl = torch.nn.functional.cross_entropy(tx, tt, label_smoothing=ls)
    tl.backward()
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-5)
    np.testing.assert_allclose(dlogits, tx.grad.numpy(), rtol=1e-4, atol=1e-8)


def test_mse_and_bce_parity_with_pytorch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = (3 * rng.standard_normal((29, 41))).astype(np.float32)
    t = rng.random((29, 41)).astype(np.float32)
    for ours, theirs in ((K.mse, F.mse_loss), (K.binary_cross_entropy, F.binary_cross_entropy_with_logits)):
        loss, g = ours(x, t)
        tx = torch.tensor(x, requires_grad=True)
        tl = theirs(tx, torch.tensor(t))
        tl.backward()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-5)
        np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("bad,pos", [(10, 3), (-1, 0), (2**31 - 1, 4)])
def test_label_out_of_range_names_index_and_position(rng, dtype, bad, pos):
    logits = rng.standard_normal((5, 10), dtype=np.float32)
    labels = np.array([1, 2, 3, 4, 5], dtype)
    labels[pos] = bad
    with pytest.raises(ValueError, match=rf"target: label {bad} at index {pos} is outside \[0, 10\)"):
        K.softmax_cross_entropy(logits, labels)


def test_label_beyond_int32_is_reported_exactly(rng):
    logits = rng.standard_normal((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"label 1099511627776 at index 1"):
        K.softmax_cross_entropy(logits, np.array([0, 2**40], np.int64))


def test_softmax_ce_bad_arguments(rng):
    logits = rng.standard_normal((4, 5), dtype=np.float32)
    labels = np.array([0, 1, 2, 3], np.int64)
    with pytest.raises(TypeError, match=r"logits: expected dtype float32, got float64"):
        K.softmax_cross_entropy(logits.astype(np.float64), labels)
    with pytest.raises(TypeError, match=r"target: expected int32/int64 class labels .* got dtype float64"):
        K.softmax_cross_entropy(logits, labels.astype(np.float64))
    with pytest.raises(TypeError, match=r"target: expected int32/int64 class labels .* got dtype uint8"):
        K.softmax_cross_entropy(logits, labels.astype(np.uint8))
    with pytest.raises(TypeError, match=r"target: expected a numpy.ndarray .* got list"):
        K.softmax_cross_entropy(logits, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"logits: expected a 2-D array .* got shape \(20,\)"):
        K.softmax_cross_entropy(logits.ravel(), labels)
    with pytest.raises(ValueError, match=r"target: expected a 1-D array .* got shape \(4, 1\)"):
        K.softmax_cross_entropy(logits, labels[:, None].copy())
    with pytest.raises(ValueError, match=r"target: expected shape\[0\] == 4"):
        K.softmax_cross_entropy(logits, labels[:3].copy())
    with pytest.raises(ValueError, match=r"target: expected shape\[1\] == 5"):
        K.softmax_cross_entropy(logits, np.full((4, 6), 1 / 6, np.float32))
    with pytest.raises(ValueError, match=r"logits: expected a C-contiguous array"):
        K.softmax_cross_entropy(np.asfortranarray(logits), labels)
    with pytest.raises(ValueError, match=r"target: expected a C-contiguous array"):
        K.softmax_cross_entropy(logits, (np.arange(8, dtype=np.int64) % 4)[::2])
    with pytest.raises(ValueError, match=r"label_smoothing: expected a value in \[0, 1\], got 1.5"):
        K.softmax_cross_entropy(logits, labels, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing: expected a value in \[0, 1\], got -0.1"):
        K.softmax_cross_entropy(logits, labels, label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"logits: expected at least one row and one class"):
        K.softmax_cross_entropy(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"logits: expected at least one row and one class"):
        K.softmax_cross_entropy(np.zeros((4, 0), np.float32), labels)


@pytest.mark.parametrize("name,first", [("mse", "pred"), ("binary_cross_entropy", "logits")])
def test_elementwise_bad_arguments(rng, name, first):
    fn = getattr(K, name)
    x = rng.standard_normal((4, 5), dtype=np.float32)
    t = rng.random((4, 5)).astype(np.float32)
    with pytest.raises(TypeError, match=rf"{first}: expected dtype float32, got float64"):
        fn(x.astype(np.float64), t)
    with pytest.raises(TypeError, match=r"target: expected dtype float32, got int64"):
        fn(x, t.astype(np.int64))
    with pytest.raises(ValueError, match=r"target: expected a 2-D array .* got shape \(20,\)"):
        fn(x, t.ravel())
    with pytest.raises(ValueError, match=r"target: expected shape\[1\] == 5 \(the shape of " + first):
        fn(x, t[:, :4].copy())
    with pytest.raises(ValueError, match=rf"{first}: expected a C-contiguous array"):
        fn(x.T, t.T.copy())
    with pytest.raises(ValueError, match=r"target: expected a C-contiguous array"):
        fn(x.T.copy(), t.T)
    with pytest.raises(ValueError, match=rf"{first}: the loss is a mean and needs at least one element"):
        fn(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
