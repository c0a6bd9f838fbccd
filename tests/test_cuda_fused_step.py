"""FusedMLPStep (forward, loss and backward of a narrow MLP through the fused kernels,
over a network's flat buffers) against the per-layer kernels and the loss kernels as the
oracle, against a Sequential's own gradients, and its qualification rules."""

import re

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import Dense, Sequential  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402
from fastdl.cuda.fused_step import FusedMLPStep  # noqa: E402

to_dev, host = cref.to_dev, cref.host


def flat_layout(sizes):
    """[(w offset, b offset)] of the flat buffer: w (in, out) row-major, then b, per layer."""
    out, o = [], 0
    for din, dout in zip(sizes[:-1], sizes[1:]):
        out.append((o, o + din * dout))
        o += din * dout + dout
    return out, o


def per_layer_step(sizes, act, alpha, params, x, target, loss, smoothing):
    """The oracle: loss and flat gradients from dense_forward/dense_backward and the
    loss kernels, each layer on views of the flat buffer."""
    layout, total = flat_layout(sizes)
    h, saved = x, []
    for i, (wo, bo) in enumerate(layout):
        din, dout = sizes[i], sizes[i + 1]
        w, b = params[wo:bo].reshape(din, dout), params[bo:bo + dout]
        a = act if i < len(layout) - 1 else "linear"
        out = G.dense_forward(h, w, b, a, alpha=alpha if a in ("leaky_relu", "elu") else None)
        y, z = out if a in G.NEEDS_Z else (out, None)
        saved.append((h, w, y, z, a))
        h = y
    if loss == "softmax_cross_entropy":
        value, d = G.softmax_cross_entropy(h, target, label_smoothing=smoothing)
    elif loss == "mse":
        value, d = G.mse(h, target)
    else:
        value, d = G.binary_cross_entropy(h, target)
    grads = np.zeros(total, np.float32)
    for i in range(len(saved) - 1, -1, -1):
        hin, w, y, z, a = saved[i]
        kw = {"z": z} if a in G.NEEDS_Z else ({"y": y} if a != "linear" else {})
        if a in ("leaky_relu", "elu"):
            kw["alpha"] = alpha
        dx, dw, db = G.dense_backward(d, hin, w, a, need_dx=i > 0, **kw)
        wo, bo = layout[i]
        grads[wo:bo] = host(dw).ravel()
        grads[bo:bo + sizes[i + 1]] = host(db)
        d = dx
    return value, grads, host(h)


def make(rng, sizes, n, loss, target_kind="labels"):
    _, total = flat_layout(sizes)
    params = rng.uniform(-0.5, 0.5, total).astype(np.float32)
    x = rng.standard_normal((n, sizes[0])).astype(np.float32)
    c = sizes[-1]
    if loss == "softmax_cross_entropy" and target_kind == "labels":
        target = rng.integers(0, c, n).astype(np.int64)
    elif loss == "softmax_cross_entropy":
        target = rng.dirichlet(np.ones(c), n).astype(np.float32)
    else:
        target = rng.uniform(0, 1, (n, c)).astype(np.float32)
    return params, x, target


CASES = [
    ((20, 33, 17, 5), "relu", None, "softmax_cross_entropy", 0.0, "labels", 37),
    ((7, 128, 3), "gelu", None, "softmax_cross_entropy", 0.1, "probs", 5),
    ((9, 16, 16, 16, 4), "leaky_relu", 0.2, "mse", 0.0, None, 12),
    ((6, 12, 12, 1), "tanh", None, "binary_cross_entropy", 0.0, None, 9),
    ((5, 3), "relu", None, "softmax_cross_entropy", 0.0, "labels", 4),  # one layer: no hidden
    ((8, 10, 2), "silu", None, "mse", 0.0, None, 1),
]


@pytest.mark.parametrize("sizes,act,alpha,loss,smoothing,target_kind,n", CASES)
def test_matches_the_per_layer_kernels(rng, sizes, act, alpha, loss, smoothing, target_kind, n):
    params_h, x_h, target_h = make(rng, sizes, n, loss, target_kind)
    params, x, target = to_dev(params_h), to_dev(x_h), to_dev(target_h)
    grads = cuda.to_device(np.full(params_h.size, np.nan, np.float32))  # every element written
    step = FusedMLPStep(sizes[0], sizes[1:], act, params=params, grads=grads, loss=loss,
                        label_smoothing=smoothing, alpha=alpha)
    value = step.train(x, target)
    want_value, want_grads, want_out = per_layer_step(sizes, act, alpha, params, x, target, loss, smoothing)
    assert isinstance(value, float)
    assert value == pytest.approx(want_value, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(host(grads), want_grads, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(host(step.last_output), want_out, rtol=1e-5, atol=1e-5)
    if loss == "softmax_cross_entropy":  # and the loss against float64
        ref_loss, _ = cref.softmax_cross_entropy(host(step.last_output), target_h, smoothing)
        assert value == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)


def test_trains_a_sequential_over_its_own_buffers(rng):
    # The network's flat buffers as they are: the fused step's gradients equal the
    # network's own (per-layer) compute_gradients, and stepping with them lowers the loss.
    model = Sequential([Dense(10, 16, activation="relu"), Dense(16, 16, activation="relu"), Dense(16, 3)],
                       seed=3, device="cuda")
    model.compile(optimizer=fastdl.optim.Adam(0.05), loss="softmax_cross_entropy")
    xs = rng.standard_normal((16, 10)).astype(np.float32)
    labels = ((xs[:, 0] > 0).astype(np.int64) + (xs[:, 1] > 0)).astype(np.int64)
    x, t = to_dev(xs), to_dev(labels)
    want_loss = model.compute_gradients(x, t)
    want = host(model.flat_grads)
    step = FusedMLPStep(10, (16, 16, 3), "relu", params=model.flat_params, grads=model.flat_grads)
    first = step.train(x, t)
    assert first == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(host(model.flat_grads), want, rtol=1e-4, atol=1e-6)
    for _ in range(3):
        model.apply_gradients()
        loss = step.train(x, t)
    assert loss < first


def test_batches_of_every_size_and_the_buffers_grow_only(rng, monkeypatch):
    sizes = (6, 16, 16, 3)
    params_h, _, _ = make(rng, sizes, 1, "softmax_cross_entropy")
    params = to_dev(params_h)
    grads = cuda.device_array(params_h.size, np.float32)
    step = FusedMLPStep(6, (16, 16, 3), "elu", params=params, grads=grads)
    for n in (5, 24, 3):
        _, xs, ts = make(rng, sizes, n, "softmax_cross_entropy")
        x, t = to_dev(xs), to_dev(ts)
        value = step.train(x, t)
        want_value, want_grads, _ = per_layer_step(sizes, "elu", None, params, x, t, "softmax_cross_entropy", 0.0)
        assert value == pytest.approx(want_value, rel=1e-5)
        np.testing.assert_allclose(host(grads), want_grads, rtol=1e-4, atol=1e-5)
    # A smaller batch reuses the largest one's buffers; after a batch size's first step
    # (the loss kernel keeps its partial sums per size) a step allocates nothing, and it
    # launches 6 kernels (5, and the labels' check before the loss writes anything) and
    # copies one value (the loss) to the host.
    kept = step._mlp
    _, xs, ts = make(rng, sizes, 7, "softmax_cross_entropy")
    x7, t7 = to_dev(xs), to_dev(ts)
    step.train(x7, t7)
    assert step._mlp is kept
    allocations = []
    for name in ("device_array", "to_device"):
        original = getattr(cuda, name)
        monkeypatch.setattr(cuda, name, lambda *a, _o=original, _n=name, **k: (allocations.append(_n), _o(*a, **k))[1])
    counts = cref.count_device_traffic(monkeypatch)
    step.train(x7, t7)
    assert not allocations
    assert dict(counts) == {"launch": 6, "to_host": 1}


def test_a_nonfinite_loss_can_stop_before_the_backward(rng):
    sizes = (4, 8, 2)
    params_h, xs, ts = make(rng, sizes, 6, "softmax_cross_entropy")
    xs[2, 1] = np.nan
    grads = to_dev(np.full(params_h.size, 7.0, np.float32))
    step = FusedMLPStep(4, (8, 2), "relu", params=to_dev(params_h), grads=grads)
    assert np.isnan(step.train(to_dev(xs), to_dev(ts), backward_if_nonfinite=False))
    assert (host(grads) == 7.0).all()
    assert np.isnan(step.train(to_dev(xs), to_dev(ts)))
    assert not (host(grads) == 7.0).all()


@pytest.mark.parametrize("kwargs,reason", [
    ({"widths": (64, 512, 10)}, "width 512 is not supported by the fused MLP; use width <= 128 or the "
                                "layer-by-layer path"),
    ({"activation": "prelu"}, "prelu is not supported by the fused MLP"),
    ({"activation": "swish"}, "unknown activation 'swish'"),
    ({"activation": "relu", "alpha": 0.1}, "alpha: only leaky_relu, elu and prelu take alpha"),
    ({"dropout": True}, "the fused MLP has no Dropout"),
    ({"batchnorm": True}, "the fused MLP has no BatchNorm"),
    ({"maxout": True}, "the fused MLP has no Maxout"),
    ({"biases": False}, "needs a bias in every layer"),
    ({"last_linear": False}, "last layer is linear"),
    ({"loss": "hinge"}, "loss 'hinge' is not one the fused step computes"),
    ({"loss": "mse", "label_smoothing": 0.1}, "label_smoothing applies to softmax_cross_entropy only"),
    ({"label_smoothing": 1.5}, r"label_smoothing: expected a value in \[0, 1\]"),
    ({"widths": ()}, "must be >= 1"),
])
def test_supports_says_why_not(kwargs, reason):
    args = {"input_dim": 784, "widths": (64, 64, 10), "activation": "relu"}
    args.update(kwargs)
    ok = FusedMLPStep.supports(args.pop("input_dim"), args.pop("widths"), args.pop("activation"), **args)
    assert not ok
    assert re.search(reason, ok.reason), ok.reason


def test_supports_the_goal_networks():
    assert FusedMLPStep.supports(784, (64, 64, 64, 64, 10), "relu")
    assert FusedMLPStep.supports(784, (128, 128, 10), "gelu", loss="softmax_cross_entropy", label_smoothing=0.1)
    assert FusedMLPStep.supports(784, (10,), "prelu")  # one layer: no hidden activation applies
    assert not FusedMLPStep.supports(784, (1024, 1024, 10), "relu")


def test_construction_checks_the_buffers(rng):
    params = to_dev(np.zeros(4 * 8 + 8 + 8 * 2 + 2, np.float32))
    grads = cuda.device_array(params.shape[0], np.float32)
    with pytest.raises(ValueError, match="FusedMLPStep: width 200 is not supported"):
        FusedMLPStep(4, (200, 2), params=params, grads=grads)
    with pytest.raises(ValueError, match=r"params: expected shape\[0\] == 58"):
        FusedMLPStep(4, (8, 2), params=params[:50], grads=grads)
    with pytest.raises(ValueError, match="grads: shares memory with params"):
        FusedMLPStep(4, (8, 2), params=params, grads=params)
    step = FusedMLPStep(4, (8, 2), params=params, grads=grads)
    with pytest.raises(ValueError, match=r"x: expected shape\[1\] == 4"):
        step.train(to_dev(np.zeros((3, 5), np.float32)), to_dev(np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="x: expected at least one row"):
        step.train(to_dev(np.zeros((0, 4), np.float32)), to_dev(np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match=r"target: label 9 at index 0 is outside \[0, 2\)"):
        step.train(to_dev(np.zeros((2, 4), np.float32)), to_dev(np.array([9, 0], np.int64)))
