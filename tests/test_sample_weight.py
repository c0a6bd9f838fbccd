"""Per-sample weights in the fused losses: Keras 3's "sum_over_batch_size" reduction,
loss = sum_i w_i l_i / N (divided by N, not by sum(w)) and each sample's gradient times
w_i, weighed inside the loss kernels. Against float64 references, finite differences and
PyTorch, on every ISA path; weights of one against the unweighted results; bad weights
refused before anything is written."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K
from fastdl import losses as L
from fastdl._device import get_backend

import reference_losses as ref

CE_SHAPES = [(1, 1), (1, 7), (3, 2), (7, 17), (33, 1000), (5, 1001)]
TARGETS = ["int32", "int64", "probs"]
ELEMENTWISE = ["mse", "binary_cross_entropy"]
# (N,) rows of one element each, (N, C), (N, A, B): a sample is a slice along axis 0.
# Samples shorter than a vector (8 lanes on avx2, 16 on avx512) run flat, longer ones
# row by row: C = 1, 3, 5, 12 (one path or the other by ISA), 17, 35, 301.
ELEM_SHAPES = [(1,), (7,), (1, 5), (20, 3), (11, 12), (33, 17), (3, 5, 7), (100_003,), (257, 301)]


def make_target(rng, kind, n, c):
    if kind == "probs":
        p = rng.random((n, c)) ** 3
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return rng.integers(0, c, n).astype(kind)


def make_weights(rng, kind, n):
    if kind == "zeros":
        return np.zeros(n, np.float32)
    if kind == "ones":
        return np.ones(n, np.float32)
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[rng.random(n) < 0.2] = 0.0  # some samples left out
    w[n // 2] = 50.0  # and one that dominates
    return w


def elem_inputs(rng, name, shape):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    t = (rng.standard_normal(shape) if name == "mse" else rng.random(shape)).astype(np.float32)
    return x, t


def ce(logits, target, ls=0.0, w=None, **kw):
    return K.softmax_cross_entropy(logits, target, label_smoothing=ls, sample_weight=w, **kw)


# ---------------------------------------------------------------- against float64


@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_weighted_softmax_ce_vs_reference(isa, rng, shape, kind, ls):
    n, c = shape
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    target = make_target(rng, kind, n, c)
    w = make_weights(rng, "mixed", n)
    loss, d = ce(logits, target, ls, w)
    loss_r, d_r = ref.softmax_cross_entropy(logits, target, ls, w)
    assert isinstance(loss, float) and d.shape == logits.shape and d.dtype == np.float32
    # test_losses.py's bounds, with the absolute parts scaled by the largest weight
    wmax = max(1.0, float(w.max()))
    np.testing.assert_allclose(loss, loss_r, rtol=1e-5, atol=1e-6 * wmax)
    np.testing.assert_allclose(d, d_r, rtol=1e-4, atol=2e-6 * wmax / n)
    assert (d[w == 0] == 0).all(), "a sample of weight 0 has no gradient"


@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_weighted_elementwise_vs_reference(isa, rng, name, shape):
    x, t = elem_inputs(rng, name, shape)
    w = make_weights(rng, "mixed", shape[0])
    loss, g = getattr(K, name)(x, t, sample_weight=w)
    loss_r, g_r = getattr(ref, name)(x, t, w)
    assert isinstance(loss, float) and g.shape == x.shape and g.dtype == np.float32
    np.testing.assert_allclose(loss, loss_r, rtol=1e-5)
    # sigmoid(x) - t cancels: test_losses.py's absolute bound, scaled by the largest weight
    np.testing.assert_allclose(g, g_r, rtol=1e-5, atol=1e-7 * float(w.max()) / x.size)
    assert (g[w == 0] == 0).all(), "a sample of weight 0 has no gradient"


def test_a_one_dimensional_prediction_weighs_each_element(rng):
    # pred (N,): each element is a sample, so the weighted loss is the weighted mean times sum(w) / N.
    x, t = elem_inputs(rng, "mse", (9,))
    w = rng.uniform(0, 2, 9).astype(np.float32)
    loss, g = K.mse(x, t, sample_weight=w)
    d = x.astype(np.float64) - t
    assert loss == pytest.approx((w * d * d).sum() / 9, rel=1e-6)
    np.testing.assert_allclose(g, 2 * w * d / 9, rtol=1e-6)


# ---------------------------------------------------------------- zeros and ones


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("kind", TARGETS)
def test_softmax_ce_weights_of_one_give_the_unweighted_bits(isa, rng, kind, ls):
    # Each row's factors are multiplied by w in double; times one is exact.
    for n, c in ((1, 3), (13, 33), (300, 200)):
        logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
        target = make_target(rng, kind, n, c)
        loss0, d0 = ce(logits, target, ls)
        loss1, d1 = ce(logits, target, ls, np.ones(n, np.float32))
        assert loss1 == loss0
        np.testing.assert_array_equal(d1, d0)


@pytest.mark.parametrize("shape", ELEM_SHAPES, ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_weights_of_one_match_the_unweighted_result(isa, rng, name, shape):
    # Same gradient bits (the scale is w * (1 / size), exact for w = 1); the loss sums
    # row by row instead of in fixed element chunks: the same to float32 rounding.
    x, t = elem_inputs(rng, name, shape)
    loss0, g0 = getattr(K, name)(x, t)
    loss1, g1 = getattr(K, name)(x, t, sample_weight=np.ones(shape[0], np.float32))
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)


@pytest.mark.parametrize("form", ["int64", "probs", "mse", "binary_cross_entropy"])
def test_weights_of_zero_give_zero_loss_and_gradient(isa, rng, form):
    n, c = 6, 11
    w = np.zeros(n, np.float32)
    w[::2] = -0.0  # negative zero is zero, not a negative weight
    if form in ELEMENTWISE:
        x, t = elem_inputs(rng, form, (n, c))
        loss, g = getattr(K, form)(x, t, sample_weight=w)
    else:
        x = (3 * rng.standard_normal((n, c))).astype(np.float32)
        loss, g = ce(x, make_target(rng, form, n, c), 0.1, w)
    assert loss == 0.0
    assert (g == 0).all()


def test_a_zero_weight_drops_its_sample_but_keeps_the_batch_size(rng):
    # Keras divides by N, not by sum(w): dropping a sample this way scales the mean.
    n, c = 8, 5
    logits = rng.standard_normal((n, c)).astype(np.float32)
    y = rng.integers(0, c, n)
    w = np.ones(n, np.float32)
    w[3] = 0.0
    loss, d = ce(logits, y, w=w)
    kept = np.arange(n) != 3
    loss_kept, d_kept = ce(np.ascontiguousarray(logits[kept]), y[kept])
    assert loss == pytest.approx(loss_kept * (n - 1) / n, rel=1e-6)
    np.testing.assert_allclose(d[kept], d_kept * (n - 1) / n, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- finite differences


def _numeric_grad(f, x, h=1e-6):
    x = x.astype(np.float64)
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        lp = f(x)
        x[idx] = old - h
        lm = f(x)
        x[idx] = old
        num[idx] = (lp - lm) / (2 * h)
    return num


@pytest.mark.parametrize("kind", TARGETS)
def test_weighted_softmax_ce_gradient_matches_finite_differences(rng, kind):
    n, c = 5, 6
    logits = rng.standard_normal((n, c), dtype=np.float32)
    target = make_target(rng, kind, n, c)
    w = make_weights(rng, "mixed", n)
    ls = 0.15
    _, d = ce(logits, target, ls, w)
    num = _numeric_grad(lambda x: ref.softmax_cross_entropy(x, target, ls, w)[0], logits)
    np.testing.assert_allclose(ref.softmax_cross_entropy(logits, target, ls, w)[1], num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d, num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3), (5,), (2, 3, 2)], ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_weighted_elementwise_gradient_matches_finite_differences(rng, name, shape):
    x, t = elem_inputs(rng, name, shape)
    w = make_weights(rng, "mixed", shape[0])
    _, g = getattr(K, name)(x, t, sample_weight=w)
    f = getattr(ref, name)
    num = _numeric_grad(lambda x64: f(x64, t, w)[0], x)
    np.testing.assert_allclose(f(x, t, w)[1], num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- PyTorch parity


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("kind", TARGETS)
def test_weighted_cross_entropy_parity_with_pytorch(rng, kind, ls):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, c = 37, 101
    logits = (2 * rng.standard_normal((n, c))).astype(np.float32)
    target = make_target(rng, kind, n, c)
    w = make_weights(rng, "mixed", n)
    loss, d = ce(logits, target, ls, w)
    tx = torch.tensor(logits, requires_grad=True)
    tt = torch.tensor(target.astype(np.int64) if kind != "probs" else target)
    tl = (F.cross_entropy(tx, tt, label_smoothing=ls, reduction="none") * torch.tensor(w)).sum() / n
    tl.backward()
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-5)
    np.testing.assert_allclose(d, tx.grad.numpy(), rtol=1e-4, atol=1e-7)


def test_class_weights_as_sample_weights_relate_to_pytorch_class_weighted_loss(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, c = 41, 9
    logits = (2 * rng.standard_normal((n, c))).astype(np.float32)
    y = rng.integers(0, c, n)
    cw = rng.uniform(0.2, 3.0, c).astype(np.float32)
    loss, d = ce(logits, y, w=cw[y])
    tx = torch.tensor(logits, requires_grad=True)
    ty, tcw = torch.tensor(y), torch.tensor(cw)
    summed = F.cross_entropy(tx, ty, weight=tcw, reduction="sum") / n
    summed.backward()
    np.testing.assert_allclose(loss, summed.item(), rtol=1e-5)
    np.testing.assert_allclose(d, tx.grad.numpy(), rtol=1e-4, atol=1e-7)
    # PyTorch's reduction="mean" divides by the weights' sum instead of N.
    mean = F.cross_entropy(tx.detach(), ty, weight=tcw).item()
    np.testing.assert_allclose(loss * n / cw[y].astype(np.float64).sum(), mean, rtol=1e-5)


@pytest.mark.parametrize("shape", [(29, 41), (13,), (6, 4, 5)], ids=str)
def test_weighted_mse_and_bce_parity_with_pytorch(rng, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = make_weights(rng, "mixed", shape[0])
    for name, theirs in (("mse", F.mse_loss), ("binary_cross_entropy", F.binary_cross_entropy_with_logits)):
        x, t = elem_inputs(rng, name, shape)
        loss, g = getattr(K, name)(x, t, sample_weight=w)
        tx = torch.tensor(x, requires_grad=True)
        per_element = theirs(tx, torch.tensor(t), reduction="none").reshape(shape[0], -1)
        tl = (per_element.mean(dim=1) * torch.tensor(w)).sum() / shape[0]
        tl.backward()
        np.testing.assert_allclose(loss, tl.item(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-4, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------- threads


def test_weighted_results_do_not_depend_on_thread_count(rng):
    n, c = 300, 1000
    logits = rng.standard_normal((n, c), dtype=np.float32)
    labels = rng.integers(0, c, n).astype(np.int32)
    probs = make_target(rng, "probs", n, c)
    w = make_weights(rng, "mixed", n)
    x1, t1 = elem_inputs(rng, "binary_cross_entropy", (300_001,))
    w1 = make_weights(rng, "mixed", 300_001)
    x2, t2 = elem_inputs(rng, "mse", (400, 300))
    w2 = make_weights(rng, "mixed", 400)
    before = fastdl.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            outs.append([ce(logits, labels, 0.1, w), ce(logits, probs, 0.0, w),
                         K.mse(x1, t1, sample_weight=w1), K.binary_cross_entropy(x1, t1, sample_weight=w1),
                         K.mse(x2, t2, sample_weight=w2), K.binary_cross_entropy(x2, t2, sample_weight=w2)])
    finally:
        fastdl.set_num_threads(before)
    for other in outs[1:]:
        for (l0, g0), (l1, g1) in zip(outs[0], other):
            assert l0 == l1
            np.testing.assert_array_equal(g0, g1)


# ---------------------------------------------------------------- bad weights


def _with(w, i, v):
    w = w.copy()
    w[i] = v
    return w


BAD_WEIGHTS = [
    ("negative", lambda w: _with(w, 2, -1.0), ValueError, r"sample_weight: weight -1 at index 2 is negative"),
    ("tiny-negative", lambda w: _with(w, 4, -1e-30), ValueError, r"sample_weight: weight -1e-30 at index 4 is negative"),
    ("nan", lambda w: _with(w, 1, np.nan), ValueError, r"sample_weight: weight nan at index 1 is not finite"),
    ("inf", lambda w: _with(w, 3, np.inf), ValueError, r"sample_weight: weight inf at index 3 is not finite"),
    ("-inf-first-of-two", lambda w: _with(_with(w, 0, -np.inf), 4, -2.0), ValueError,
     r"sample_weight: weight -inf at index 0 is not finite"),
    ("too-short", lambda w: w[:-1].copy(), ValueError, r"sample_weight: expected shape\[0\] == 5"),
    ("too-long", lambda w: np.append(w, 1.0).astype(np.float32), ValueError, r"sample_weight: expected shape\[0\] == 5"),
    ("float64", lambda w: w.astype(np.float64), TypeError, r"sample_weight: expected dtype float32, got float64"),
    ("int32", lambda w: w.astype(np.int32), TypeError, r"sample_weight: expected dtype float32, got int32"),
    ("big-endian", lambda w: w.astype(">f4"), TypeError, r"sample_weight: expected dtype float32"),
    ("strided", lambda w: np.repeat(w, 2)[::2], ValueError, r"sample_weight: expected a C-contiguous array"),
    ("reversed", lambda w: w[::-1], ValueError, r"sample_weight: expected a C-contiguous array"),
    ("2-D", lambda w: w[:, None].copy(), ValueError, r"sample_weight: expected a 1-D array"),
    ("0-D", lambda w: np.ones((), np.float32), ValueError, r"sample_weight: expected a 1-D array"),
    ("scalar", lambda w: 2.0, TypeError, r"sample_weight: expected a numpy.ndarray .* got float"),
    ("list", lambda w: w.tolist(), TypeError, r"sample_weight: expected a numpy.ndarray"),
]
FORMS = ["int32", "int64", "probs", "mse", "binary_cross_entropy"]


def _call(form, x, t, w, out):
    if form in ELEMENTWISE:
        return getattr(K, form)(x, t, sample_weight=w, out=out)
    return ce(x, t, 0.1, w, out=out)


def _form_inputs(rng, form, n=5, c=4):
    if form in ELEMENTWISE:
        return elem_inputs(rng, form, (n, c))
    return rng.standard_normal((n, c)).astype(np.float32), make_target(rng, form, n, c)


@pytest.mark.parametrize("case", BAD_WEIGHTS, ids=[b[0] for b in BAD_WEIGHTS])
@pytest.mark.parametrize("form", FORMS)
def test_bad_weights_are_refused_before_out_is_written(rng, form, case):
    _, mutate, exc, match = case
    x, t = _form_inputs(rng, form)
    w = mutate(np.linspace(0.5, 2.0, 5, dtype=np.float32))
    out = np.full(x.shape, 7.25, np.float32)
    snaps = [a.copy() for a in (x, t, out)]
    with pytest.raises(exc, match=match):
        _call(form, x, t, w, out)
    for a, s in zip((x, t, out), snaps):
        assert a.tobytes() == s.tobytes()


@pytest.mark.parametrize("form", FORMS)
def test_weights_sharing_memory_with_out_are_refused(rng, form):
    x, t = _form_inputs(rng, form, n=5, c=4)
    out = np.full(x.shape, 0.5, np.float32)
    before = out.copy()
    with pytest.raises(ValueError, match=r"out: shares memory with input 'sample_weight'"):
        _call(form, x, t, out.reshape(-1)[:5], out)
    assert out.tobytes() == before.tobytes()


F32 = np.finfo(np.float32)
GOOD_EDGES = [0.0, -0.0, float(F32.smallest_subnormal), float(F32.tiny), float(F32.max)]
BAD_EDGES = [(-float(F32.smallest_subnormal), "negative"), (-float(F32.max), "negative"), (-np.inf, "not finite"),
             (np.inf, "not finite"), (np.nan, "not finite"), (-np.nan, "not finite")]


@pytest.mark.parametrize("form", FORMS)
def test_weight_check_edges(rng, form):
    # The check reads the bits: every finite value >= 0 (-0 and subnormals included)
    # passes, anything with the sign bit set but -0, and every Inf/NaN, does not.
    n = 9
    x, t = _form_inputs(rng, form, n=n, c=3)
    w = np.zeros(n, np.float32)
    w[: len(GOOD_EDGES)] = GOOD_EDGES
    _, g = _call(form, x, t, w, None)  # accepted
    assert (g[:2] == 0).all() and (g[len(GOOD_EDGES):] == 0).all()
    for v, what in BAD_EDGES:
        bad = w.copy()
        bad[7] = v
        with pytest.raises(ValueError, match=rf"sample_weight: weight \S+ at index 7 is {what}"):
            _call(form, x, t, bad, None)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_a_zero_dimensional_prediction_has_no_samples_to_weigh(name):
    x = np.array(0.5, np.float32)
    with pytest.raises(ValueError, match=r"sample_weight: .* is a 0-D array"):
        getattr(K, name)(x, x.copy(), sample_weight=np.ones(1, np.float32))
    assert getattr(K, name)(x, x.copy())[0] >= 0.0  # unweighted, it is one element


def test_weights_are_refused_for_the_right_batch_axis(rng):
    x, t = elem_inputs(rng, "mse", (4, 6))
    with pytest.raises(ValueError, match=r"sample_weight: expected shape\[0\] == 4 \(N = pred.shape\[0\]\)"):
        K.mse(x, t, sample_weight=np.ones(24, np.float32))
    logits = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape\[0\] == 4 \(N = logits.shape\[0\]\)"):
        ce(logits, np.zeros(4, np.int64), w=np.ones(6, np.float32))


# ---------------------------------------------------------------- the Loss objects


@pytest.mark.parametrize("spec", ["softmax_cross_entropy", {"name": "softmax_cross_entropy", "label_smoothing": 0.2},
                                  "mse", "binary_cross_entropy"], ids=str)
def test_loss_objects_pass_sample_weight_to_the_kernel(rng, spec):
    loss_obj = L.get(spec).bind(get_backend("cpu"))
    n, c = 6, 5
    x = rng.standard_normal((n, c)).astype(np.float32)
    if loss_obj.name == "softmax_cross_entropy":
        t = rng.integers(0, c, n)
        kw = {"label_smoothing": loss_obj.label_smoothing}
    else:
        t = rng.random((n, c)).astype(np.float32)
        kw = {}
    w = make_weights(rng, "mixed", n)
    kernel = getattr(K, loss_obj.kernel_name)
    want_loss, want_g = kernel(x, t, sample_weight=w, **kw)
    out = np.empty_like(x)
    got_loss, got_g = loss_obj(x, t, out=out, sample_weight=w)
    assert got_loss == want_loss and got_g is out
    np.testing.assert_array_equal(out, want_g)
    plain = loss_obj(x, t)
    assert plain[0] == kernel(x, t, **kw)[0]
