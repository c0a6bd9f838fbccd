"""DenseStack: forward, loss and backward of a stack of dense layers in one call.

It must give bit for bit what the per-layer kernels give one by one (it runs the same
kernels in the same order), with and without an optimizer step inside the backward;
with the whole step inside the call (step=), the bits of one separate step, whichever
thread updates which parameter. A network of plain Dense layers trains through it, and
must train exactly as the stage-by-stage path does. Bad input is refused before anything is written.
"""

import math

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import reference as ref
from conftest import ISAS

WIDTHS = (13, 33, 17, 5)  # odd sizes: ragged panels everywhere
N = 7


def _alpha(act, m, rng):
    if act == "prelu":
        return rng.uniform(-0.5, 0.5, m).astype(np.float32)
    return {"leaky_relu": 0.1, "elu": 0.7}.get(act)


def _params(rng, acts, widths=WIDTHS, with_bias=True, alpha_in_flat=False, scale=0.3):
    """One flat parameter buffer (so an OptimizerStep can cover it) with w, b views, and
    with alpha_in_flat prelu's slopes after each layer's b in it too."""
    sizes = [(widths[i], widths[i + 1]) for i in range(len(widths) - 1)]
    total = sum(k * m + (m if with_bias else 0) + (m if alpha_in_flat and act == "prelu" else 0)
                for (k, m), act in zip(sizes, acts))
    flat = (rng.standard_normal(total) * scale).astype(np.float32)
    layers, off = [], 0
    for (k, m), act in zip(sizes, acts):
        w = flat[off:off + k * m].reshape(k, m)
        off += k * m
        b = None
        if with_bias:
            b = flat[off:off + m]
            off += m
        alpha = _alpha(act, m, rng)
        if alpha_in_flat and act == "prelu":
            flat[off:off + m] = alpha
            alpha = flat[off:off + m]
            off += m
        layers.append((w, b, act, alpha))
    return flat, layers


def _same_views(layers, flat, other):
    """The layers with each array that is a view into `flat` replaced by the same view
    of `other` (a buffer of flat's layout); the rest as they are."""
    def moved(a):
        if not isinstance(a, np.ndarray) or not np.shares_memory(a, flat):
            return a
        off = (a.ctypes.data - flat.ctypes.data) // flat.itemsize
        return other[off:off + a.size].reshape(a.shape)
    return [(moved(w), moved(b), act, moved(alpha)) for w, b, act, alpha in layers]


def _buffers(n, layers):
    """The dicts DenseStack takes, with fresh output buffers."""
    out = []
    for i, (w, b, act, alpha) in enumerate(layers):
        k, m = w.shape
        out.append({"w": w, "b": b, "activation": act, "alpha": alpha,
                    "y": np.full((n, m), np.nan, np.float32),
                    "z": np.full((n, m), np.nan, np.float32) if act in K.NEEDS_Z else None,
                    "dx": np.full((n, k), np.nan, np.float32) if i > 0 else None,
                    "dw": np.full((k, m), np.nan, np.float32),
                    "db": np.full(m, np.nan, np.float32) if b is not None else None,
                    "dalpha": np.full(m, np.nan, np.float32) if act == "prelu" else None})
    return out


def _loss_call(loss, logits, target, smoothing, sample_weight=None):
    if loss == "softmax_cross_entropy":
        return K.softmax_cross_entropy(logits, target, label_smoothing=smoothing, sample_weight=sample_weight)
    return getattr(K, loss)(logits, target, sample_weight=sample_weight)


def _one_by_one(x, target, layers, loss, smoothing=0.0, update=None, sample_weight=None):
    """The same step through the per-layer kernels: (loss, [y, z, dx, dw, db, dalpha] per layer, dout)."""
    h, saved = x, []
    for w, b, act, alpha in layers:
        r = K.dense_forward(h, w, b, act, alpha=alpha)
        y, z = r if act in K.NEEDS_Z else (r, None)
        saved.append((h, y, z))
        h = y
    value, dout = _loss_call(loss, h, target, smoothing, sample_weight)
    grads = [None] * len(layers)
    d = dout
    for i in range(len(layers) - 1, -1, -1):
        w, b, act, alpha = layers[i]
        xin, y, z = saved[i]
        kw = {"z": z} if act in K.NEEDS_Z else ({"y": y} if act != "linear" else {})
        k, m = w.shape
        out = (np.empty((N, k), np.float32) if i > 0 else None,
               np.empty((k, m), np.float32) if update is None else None,
               np.empty(m, np.float32)) + ((np.empty(m, np.float32),) if act == "prelu" else ())
        r = K.dense_backward(d, xin, w, act, alpha=alpha, need_dx=i > 0, out=out, update=update, **kw)
        grads[i] = (y, z) + tuple(r)
        d = r[0]
    return value, grads, dout


def _targets(loss, rng, c):
    if loss == "softmax_cross_entropy":
        return rng.integers(0, c, N)
    if loss == "softmax_probs":
        p = rng.random((N, c)).astype(np.float32)
        return p / p.sum(axis=1, keepdims=True)
    if loss == "binary_cross_entropy":
        return (rng.random((N, c)) > 0.5).astype(np.float32)
    return rng.standard_normal((N, c)).astype(np.float32)


def _assert_same(bufs, grads, with_update):
    for i, (buf, g) in enumerate(zip(bufs, grads)):
        y, z, dx, dw, db = g[:5]
        np.testing.assert_array_equal(buf["y"], y, err_msg=f"layer {i} y")
        if z is not None:
            np.testing.assert_array_equal(buf["z"], z, err_msg=f"layer {i} z")
        if dx is not None:
            np.testing.assert_array_equal(buf["dx"], dx, err_msg=f"layer {i} dx")
        if not with_update:
            np.testing.assert_array_equal(buf["dw"], dw, err_msg=f"layer {i} dw")
        else:
            assert np.isnan(buf["dw"]).all(), "with an update, dw is not written"
        if buf["db"] is not None:
            np.testing.assert_array_equal(buf["db"], db, err_msg=f"layer {i} db")
        if buf["dalpha"] is not None:
            np.testing.assert_array_equal(buf["dalpha"], g[5], err_msg=f"layer {i} dalpha")


ACT_SETS = [("relu", "relu", "linear"), ("gelu", "prelu", "linear"), ("leaky_relu", "tanh", "sigmoid"),
            ("elu", "silu", "softplus")]


@pytest.mark.parametrize("acts", ACT_SETS)
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "softmax_probs", "mse", "binary_cross_entropy"])
def test_stack_matches_the_per_layer_kernels_bit_for_bit(isa, rng, acts, loss):
    flat, layers = _params(rng, acts)
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    target = _targets(loss, rng, WIDTHS[-1])
    kernel_loss = "softmax_cross_entropy" if loss == "softmax_probs" else loss
    smoothing = 0.1 if kernel_loss == "softmax_cross_entropy" else 0.0
    bufs = _buffers(N, layers)
    dout = np.full((N, WIDTHS[-1]), np.nan, np.float32)
    stack = K.DenseStack(bufs, loss=kernel_loss, dout=dout, label_smoothing=smoothing)
    assert len(stack) == len(layers) and stack.batch_size == N
    value = stack.train(x, target)
    ref_value, grads, ref_dout = _one_by_one(x, target, layers, kernel_loss, smoothing)
    assert value == ref_value
    np.testing.assert_array_equal(dout, ref_dout)
    _assert_same(bufs, grads, with_update=False)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "softmax_probs", "mse", "binary_cross_entropy"])
def test_stack_with_sample_weight_matches_the_per_layer_kernels_bit_for_bit(isa, rng, loss):
    flat, layers = _params(rng, ACT_SETS[1])
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    target = _targets(loss, rng, WIDTHS[-1])
    kernel_loss = "softmax_cross_entropy" if loss == "softmax_probs" else loss
    smoothing = 0.1 if kernel_loss == "softmax_cross_entropy" else 0.0
    bufs = _buffers(N, layers)
    dout = np.full((N, WIDTHS[-1]), np.nan, np.float32)
    stack = K.DenseStack(bufs, loss=kernel_loss, dout=dout, label_smoothing=smoothing)
    unweighted = stack.train(x, target)
    for w in (rng.uniform(0, 3, N).astype(np.float32), np.array([0, 1, 0, 2.5, 0, 0, 7], np.float32)):
        value = stack.train(x, target, w)
        ref_value, grads, ref_dout = _one_by_one(x, target, layers, kernel_loss, smoothing, sample_weight=w)
        assert value == ref_value
        np.testing.assert_array_equal(dout, ref_dout)
        _assert_same(bufs, grads, with_update=False)
        assert (dout[w == 0] == 0).all()
    ones = np.ones(N, np.float32)
    assert stack.train(x, target, sample_weight=ones) == pytest.approx(unweighted, rel=1e-6)
    assert stack.train(x, target, sample_weight=None) == unweighted


def test_stack_with_sample_weight_and_step_matches_the_separate_path(rng):
    # Weighting touches only the loss: the optimizer step inside the call sees the
    # weighted gradients exactly as a separate step after the per-layer kernels does.
    flat, layers = _params(rng, ACT_SETS[0])
    flat_b = flat.copy()
    layers_b = _same_views(layers, flat, flat_b)
    state_a = [np.zeros_like(flat), np.zeros_like(flat)]
    state_b = [np.zeros_like(flat), np.zeros_like(flat)]
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], N)
    w = rng.uniform(0, 2, N).astype(np.float32)
    bufs = _buffers(N, layers)
    stack = K.DenseStack(bufs, loss="softmax_cross_entropy", dout=np.empty((N, WIDTHS[-1]), np.float32))
    for step in (1, 2):
        value = stack.train(x, y, w, update=_adam_step(flat, state_a, step))
        ref_value, grads, _ = _one_by_one(x, y, layers_b, "softmax_cross_entropy", sample_weight=w,
                                          update=_adam_step(flat_b, state_b, step))
        assert value == ref_value
        _assert_same(bufs, grads, with_update=True)
        np.testing.assert_array_equal(flat, flat_b)


def test_stack_refuses_bad_sample_weights_before_anything_runs(rng):
    stack, bufs, _ = _stack(rng)
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], N)
    w = np.ones(N, np.float32)
    bad = w.copy()
    bad[5] = -0.5
    with pytest.raises(ValueError, match=r"sample_weight: weight -0.5 at index 5 is negative"):
        stack.train(x, y, bad)
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"sample_weight: weight nan at index 5 is not finite"):
        stack.train(x, y, sample_weight=bad)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape\[0\] == 7 \(N, the batch size\)"):
        stack.train(x, y, np.ones(N + 1, np.float32))
    with pytest.raises(TypeError, match="sample_weight: expected dtype float32, got float64"):
        stack.train(x, y, w.astype(np.float64))
    with pytest.raises(ValueError, match="sample_weight: expected a C-contiguous"):
        stack.train(x, y, np.ones(2 * N, np.float32)[::2])
    with pytest.raises(ValueError, match=r"sample_weight: shares memory with the stack's buffer layers\[0\].dw"):
        stack.train(x, y, bufs[0]["dw"].reshape(-1)[:N])
    for b in bufs:  # nothing ran
        assert np.isnan(b["y"]).all() and np.isnan(b["dw"]).all()


def test_stack_matches_float64_reference(rng):
    # Independent of the kernels it reuses: the loss and dw of a two-layer stack
    # against float64 numpy.
    flat, layers = _params(rng, ("tanh", "linear"), widths=(9, 12, 4))
    x = rng.standard_normal((N, 9)).astype(np.float32)
    t = rng.standard_normal((N, 4)).astype(np.float32)
    bufs = _buffers(N, layers)
    dout = np.empty((N, 4), np.float32)
    value = K.DenseStack(bufs, loss="mse", dout=dout).train(x, t)
    (w1, b1, _, _), (w2, b2, _, _) = layers
    y1, z1 = ref.dense_forward(x, w1, b1, "tanh")
    y2, _ = ref.dense_forward(y1, w2, b2, "linear")
    assert value == pytest.approx(np.mean((y2 - t) ** 2), rel=1e-5)
    d2 = 2 * (y2 - t) / y2.size
    dx2, dw2, db2, _ = ref.dense_backward(d2, y1, w2, y2, "linear")
    _, dw1, db1, _ = ref.dense_backward(dx2, x, w1, z1, "tanh")
    np.testing.assert_allclose(bufs[1]["dw"], dw2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bufs[0]["dw"], dw1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bufs[0]["db"], db1, rtol=1e-4, atol=1e-5)


def _adam_step(flat, state, step):
    return K.adam_step(flat, None, *state, lr=1e-2, step=step, beta1=0.9, beta2=0.999, eps=1e-8,
                       weight_decay=0.0, decoupled=False, l1=0.0, decay_segments=None)


@pytest.mark.parametrize("acts", ACT_SETS[:2])
def test_stack_with_update_matches_per_layer_update(isa, rng, acts):
    flat, layers = _params(rng, acts)
    flat_b = flat.copy()
    layers_b = _same_views(layers, flat, flat_b)  # the same layers as views into flat_b
    state_a = [np.zeros_like(flat), np.zeros_like(flat)]
    state_b = [np.zeros_like(flat), np.zeros_like(flat)]
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], N)
    bufs = _buffers(N, layers)
    dout = np.empty((N, WIDTHS[-1]), np.float32)
    stack = K.DenseStack(bufs, loss="softmax_cross_entropy", dout=dout)
    for step in (1, 2, 3):
        value = stack.train(x, y, update=_adam_step(flat, state_a, step))
        ref_value, grads, _ = _one_by_one(x, y, layers_b, "softmax_cross_entropy",
                                          update=_adam_step(flat_b, state_b, step))
        assert value == ref_value
        _assert_same(bufs, grads, with_update=True)
        np.testing.assert_array_equal(flat, flat_b)  # the weights (biases are the caller's)
        for a, b in zip(state_a, state_b):
            np.testing.assert_array_equal(a, b)


def test_nonfinite_loss_can_stop_before_the_backward(rng):
    flat, layers = _params(rng, ("relu", "relu", "linear"))
    before = flat.copy()
    state = [np.zeros_like(flat), np.zeros_like(flat)]
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    x[0, 0] = np.inf
    bufs = _buffers(N, layers)
    stack = K.DenseStack(bufs, loss="softmax_cross_entropy", dout=np.empty((N, WIDTHS[-1]), np.float32))
    value = stack.train(x, rng.integers(0, WIDTHS[-1], N), update=_adam_step(flat, state, 1),
                        backward_if_nonfinite=False)
    assert not math.isfinite(value)
    np.testing.assert_array_equal(flat, before)
    assert np.isnan(bufs[1]["dx"]).all(), "the backward pass did not run"


# -- step=: the whole optimizer step inside the call, after the backward ------------------
# Each element is updated by the thread that read it in the forward pass; whatever the
# partition, every element must be updated exactly once, from its own gradient, with the
# bits of one separate step over the whole buffer.

def _flat_layers(rng, widths, acts):
    """w, b and prelu's alpha all inside one flat buffer (in that order per layer), and
    a function that gathers the gradients of DenseStack buffers in the same layout."""
    flat, layers = _params(rng, acts, widths, alpha_in_flat=True, scale=0.1)

    def gather(bufs):
        parts = []
        for buf in bufs:
            parts.append(buf["dw"].reshape(-1))
            if buf["db"] is not None:
                parts.append(buf["db"])
            if buf["dalpha"] is not None:
                parts.append(buf["dalpha"])
        return np.concatenate(parts)
    return flat, layers, gather


OPTIMIZERS = {
    # weight decay and momentum: an element whose gradient is 0 (a dead ReLU unit) still
    # moves, so one never updated, or updated twice, cannot pass unnoticed.
    "adam": lambda p, g, s, t: K.adam_step(p, g, s[0], s[1], lr=1e-2, step=t, weight_decay=1e-2,
                                          decay_segments=np.array([[0, p.size // 2]], np.int64)),
    "sgd_nesterov": lambda p, g, s, t: K.sgd_step(p, g, s[0], lr=0.1, momentum=0.9, nesterov=True,
                                                 weight_decay=1e-3, first_step=t == 1),
    "rmsprop_centered": lambda p, g, s, t: K.rmsprop_step(p, g, s[0], lr=1e-3, momentum=0.5, centered=True,
                                                         momentum_buf=s[1], grad_avg=s[2], weight_decay=1e-3),
}

# (widths, batch): how each layer's forward GEMM shares w among the threads decides who
# updates it (AVX-512's partition; the other paths' differ) -- one thread (64 x 64 at
# batch 32), K split in two (784 x 64 at batch 32), columns (300 x 256 at batch 16), the
# rows of C, so every thread reads all of w (500 x 80 at batch 512). The last network's
# buffer is under 2**15 elements: its step runs on one thread.
STEP_SHAPES = [((784, 64, 64, 10), 32), ((300, 256, 10), 16), ((500, 80, 10), 512),
               ((13, 33, 17, 5), 7)]


def _stack_over(flat, layers, n, pad=0):
    """A DenseStack whose parameters are views into a copy of `flat` that starts `pad`
    elements into a bigger buffer: (stack, its buffers, the copy, the whole buffer)."""
    whole = np.zeros(pad + flat.size, np.float32)
    f = whole[pad:]
    f[...] = flat
    bufs = _buffers(n, _same_views(layers, flat, f))
    dout = np.empty((n, layers[-1][0].shape[1]), np.float32)
    return K.DenseStack(bufs, loss="softmax_cross_entropy", dout=dout), bufs, f, whole


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", STEP_SHAPES, ids=lambda s: "x".join(map(str, s[0])) + f"-b{s[1]}")
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_stack_with_step_matches_one_separate_step(rng, shape, opt, threads):
    widths, n = shape
    acts = ["relu"] * (len(widths) - 2) + ["linear"]
    acts[0] = "prelu" if opt == "adam" else acts[0]  # a learned alpha in the buffer too
    flat, layers, gather = _flat_layers(rng, widths, acts)
    a, a_bufs, a_flat, _ = _stack_over(flat, layers, n)
    b, b_bufs, b_flat, _ = _stack_over(flat, layers, n)
    state_a = [np.zeros_like(flat) for _ in range(3)]
    state_b = [np.zeros_like(flat) for _ in range(3)]
    kernel = OPTIMIZERS[opt]
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(threads)
        for t in (1, 2, 3):
            x = rng.standard_normal((n, widths[0])).astype(np.float32)
            y = rng.integers(0, widths[-1], n)
            va = a.train(x, y, step=kernel(a_flat, None, state_a, t))
            vb = b.train(x, y)
            kernel(b_flat, gather(b_bufs), state_b, t)
            assert va == vb
            np.testing.assert_array_equal(a_flat, b_flat, err_msg=f"step {t}")
            for sa, sb in zip(state_a, state_b):
                np.testing.assert_array_equal(sa, sb, err_msg=f"step {t}: optimizer state")
            # the gradients are still written, as without the step
            np.testing.assert_array_equal(gather(a_bufs), gather(b_bufs))
    finally:
        fastdl.set_num_threads(before)


def test_stack_with_step_follows_thread_count_and_isa_changes(rng):
    # The partition is planned once and kept while nothing it depends on changes: the
    # same stack and buffers stepped under 2, 1, 3, 2 threads and every ISA path must
    # still match a separate step each time.
    flat, layers, gather = _flat_layers(rng, (784, 64, 64, 10), ["relu", "relu", "linear"])
    a, _, a_flat, _ = _stack_over(flat, layers, 32)
    b, b_bufs, b_flat, _ = _stack_over(flat, layers, 32)
    sa = [np.zeros_like(flat), np.zeros_like(flat)]
    sb = [np.zeros_like(flat), np.zeros_like(flat)]
    threads, isa = fastdl.get_num_threads(), fastdl.get_isa()
    runs = [(t, i) for t in (2, 1, 3, 2) for i in ISAS]
    try:
        for step, (t, i) in enumerate(runs, start=1):
            fastdl.set_num_threads(t)
            fastdl.set_isa(i)
            x = rng.standard_normal((32, 784)).astype(np.float32)
            y = rng.integers(0, 10, 32)
            a.train(x, y, step=_adam_step(a_flat, sa, step))
            b.train(x, y)
            K.adam_step(b_flat, gather(b_bufs), *sb, lr=1e-2, step=step)
            np.testing.assert_array_equal(a_flat, b_flat, err_msg=f"{t} threads, {i}")
    finally:
        fastdl.set_num_threads(threads)
        fastdl.set_isa(isa)


def test_stack_with_step_on_every_isa(isa, rng):
    flat, layers, gather = _flat_layers(rng, (784, 64, 10), ["relu", "linear"])
    a, _, a_flat, _ = _stack_over(flat, layers, 32)
    b, b_bufs, b_flat, _ = _stack_over(flat, layers, 32)
    sa = [np.zeros_like(flat), np.zeros_like(flat)]
    sb = [np.zeros_like(flat), np.zeros_like(flat)]
    x = rng.standard_normal((32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    a.train(x, y, step=_adam_step(a_flat, sa, 1))
    b.train(x, y)
    K.adam_step(b_flat, gather(b_bufs), *sb, lr=1e-2, step=1)
    np.testing.assert_array_equal(a_flat, b_flat)


def test_stack_with_step_stops_at_a_nonfinite_loss_and_refuses_bad_buffers(rng):
    flat, layers, _ = _flat_layers(rng, WIDTHS, ["relu", "relu", "linear"])
    stack, bufs, f, whole = _stack_over(flat, layers, N, pad=16)
    zeros = lambda a: [np.zeros_like(a), np.zeros_like(a)]  # noqa: E731
    state = zeros(f)
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], N)
    bad_x = x.copy()
    bad_x[0, 0] = np.inf
    value = stack.train(bad_x, y, step=_adam_step(f, state, 1), backward_if_nonfinite=False)
    assert not math.isfinite(value)
    np.testing.assert_array_equal(f, flat)
    assert np.isnan(bufs[1]["dx"]).all(), "the backward pass did not run"
    for b in bufs:
        b["y"][...] = np.nan
    other = flat.copy()
    with pytest.raises(ValueError, match=r"layers\[0\].w: not inside the step's parameter buffer"):
        stack.train(x, y, step=_adam_step(other, zeros(other), 1))
    with pytest.raises(ValueError, match=r"step: elements \[0, 16\) of its buffer are no layer's"):
        stack.train(x, y, step=_adam_step(whole, zeros(whole), 1))
    short = f[:-1]  # the last layer's bias reaches past it
    with pytest.raises(ValueError, match=r"layers\[2\].b: not inside the step's parameter buffer"):
        stack.train(x, y, step=_adam_step(short, zeros(short), 1))
    with pytest.raises(ValueError, match="update= steps each w in its backward kernel and step="):
        stack.train(x, y, update=_adam_step(f, state, 1), step=_adam_step(f, state, 1))
    with pytest.raises(TypeError, match="step: expected an OptimizerStep"):
        stack.train(x, y, step="adam")
    with pytest.raises(ValueError, match=r"x: shares memory with the step's 'exp_avg'"):
        stack.train(state[0][:N * WIDTHS[0]].reshape(N, WIDTHS[0]), y, step=_adam_step(f, state, 1))
    for b in bufs:  # nothing ran
        assert np.isnan(b["y"]).all()
    np.testing.assert_array_equal(f, flat)


# -- bad input: a clear error naming the argument, nothing written -----------------------

def _stack(rng, acts=("relu", "relu", "linear"), loss="softmax_cross_entropy"):
    flat, layers = _params(rng, acts)
    bufs = _buffers(N, layers)
    dout = np.empty((N, WIDTHS[-1]), np.float32)
    return K.DenseStack(bufs, loss=loss, dout=dout), bufs, flat


def test_bad_batches_are_refused_before_anything_runs(rng):
    stack, bufs, _ = _stack(rng)
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], N)
    with pytest.raises(ValueError, match=r"x: expected shape\[1\] == 13"):
        stack.train(np.zeros((N, 12), np.float32), y)
    with pytest.raises(ValueError, match=r"x: expected shape\[0\] == 7 \(the batch size"):
        stack.train(np.zeros((N + 1, 13), np.float32), y)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        stack.train(x.astype(np.float64), y)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        stack.train(np.asfortranarray(x), y)
    bad = y.copy()
    bad[3] = WIDTHS[-1]
    with pytest.raises(ValueError, match=r"target: label 5 at index 3 is outside \[0, 5\)"):
        stack.train(x, bad)
    with pytest.raises(TypeError, match="target: expected int32 or int64 class labels"):
        stack.train(x, y.astype(np.uint8))
    with pytest.raises(ValueError, match=r"target: expected shape\[1\] == 5"):
        stack.train(x, np.zeros((N, 4), np.float32))
    with pytest.raises(ValueError, match=r"x: shares memory with the stack's buffer layers\[0\].dw"):
        stack.train(bufs[0]["dw"].reshape(-1)[:N * 13].reshape(N, 13), y)
    for b in bufs:  # nothing ran
        assert np.isnan(b["y"]).all()
    mse, _, _ = _stack(rng, loss="mse")
    with pytest.raises(TypeError, match="target: expected dtype float32"):
        mse.train(x, y)


def test_bad_layers_are_refused_when_the_stack_is_built(rng):
    flat, layers = _params(rng, ("gelu", "prelu", "linear"))
    dout = np.empty((N, WIDTHS[-1]), np.float32)

    def build(edit, loss="softmax_cross_entropy", **kw):
        bufs = _buffers(N, layers)
        edit(bufs)
        return K.DenseStack(bufs, loss=loss, dout=dout, **kw)

    with pytest.raises(ValueError, match=r"layers\[0\].z: expected a float32 array of shape \(N, M\), got None"):
        build(lambda b: b[0].update(z=None))
    with pytest.raises(ValueError, match=r"layers\[1\].dx: expected a float32 array of shape \(N, K\), got None"):
        build(lambda b: b[1].update(dx=None))
    with pytest.raises(ValueError, match=r"layers\[1\].dalpha: expected a float32 array"):
        build(lambda b: b[1].update(dalpha=None))
    with pytest.raises(ValueError, match=r"layers\[1\].alpha: prelu needs its learned slopes"):
        build(lambda b: b[1].update(alpha=None))
    with pytest.raises(ValueError, match=r"layers\[2\].w: expected shape\[0\] == 17 \(the previous layer's outputs\)"):
        build(lambda b: b[2].update(w=np.zeros((16, 5), np.float32), dw=np.zeros((16, 5), np.float32)))
    with pytest.raises(ValueError, match=r"layers\[0\].bias: unknown key"):
        build(lambda b: b[0].update(bias=None))
    with pytest.raises(TypeError, match=r"layers\[2\].activation: expected a string"):
        build(lambda b: b[2].update(activation=3))
    with pytest.raises(ValueError, match=r"layers\[1\].dw: shares memory with layers\[2\].dw; every buffer"):
        build(lambda b: b[2].update(dw=b[1]["dw"].reshape(-1)[:85].reshape(17, 5)))
    with pytest.raises(ValueError, match=r"layers\[0\].y: shares memory with layers\[1\].w"):
        build(lambda b: b[0].update(y=layers[1][0].reshape(-1)[:N * 33].reshape(N, 33)))
    with pytest.raises(ValueError, match=r"layers\[0\].y: the array is read-only"):
        def read_only(b):
            b[0]["y"].flags.writeable = False
        build(read_only)
    with pytest.raises(ValueError, match="loss: expected 'softmax_cross_entropy', 'mse' or"):
        build(lambda b: None, loss="hinge")
    with pytest.raises(ValueError, match="label_smoothing: only softmax_cross_entropy takes it"):
        build(lambda b: None, loss="mse", label_smoothing=0.1)
    with pytest.raises(ValueError, match="layers: expected at least one layer"):
        K.DenseStack([], loss="mse", dout=dout)


def test_update_must_cover_the_weights(rng):
    stack, bufs, flat = _stack(rng)
    other = np.zeros_like(flat)
    state = [np.zeros_like(flat), np.zeros_like(flat)]
    x = rng.standard_normal((N, WIDTHS[0])).astype(np.float32)
    with pytest.raises(ValueError, match="w: with update=, w must be a view into the step's params"):
        stack.train(x, rng.integers(0, 5, N), update=_adam_step(other, state, 1))
    with pytest.raises(TypeError, match="update: expected an OptimizerStep"):
        stack.train(x, rng.integers(0, 5, N), update=3)


# -- the network trains through it -----------------------------------------------------

# sib: False, a separate step after the call; True, each w stepped in its backward kernel;
# "auto" (below 2**20 weights), the whole step inside the call (step=).
OPTIMIZER_STEP = {False: "separate", True: "in_backward", "auto": "auto"}

def _model(widths, act="relu", sib=False, stack=True, loss="softmax_cross_entropy", **layer_kw):
    layers = [fastdl.Dense(widths[i], widths[i + 1], activation=act, **layer_kw) for i in range(len(widths) - 2)]
    layers.append(fastdl.Dense(widths[-2], widths[-1]))
    m = fastdl.Sequential(layers, seed=3)
    m.compile(optimizer=fastdl.optim.Adam(lr=1e-2), loss=loss, optimizer_step=OPTIMIZER_STEP[sib])
    if not stack:
        m._stepper._stacks = None  # the stage-by-stage path
    return m


@pytest.mark.parametrize("sib", [False, True, "auto"])
@pytest.mark.parametrize("act", ["relu", "prelu", "gelu"])
def test_network_trains_the_same_through_the_stack(rng, sib, act):
    widths = (20, 16, 12, 3)
    a, b = _model(widths, act, sib), _model(widths, act, sib, stack=False)
    assert a.step_plan.execution == "dense_stack"
    assert (a.step_plan.optimizer_step == "in_stack") == (sib == "auto")
    for n in (8, 8, 5, 8):  # a second batch size gets its own stack
        x = rng.standard_normal((n, 20)).astype(np.float32)
        y = rng.integers(0, 3, n)
        assert a.train_step(x, y) == b.train_step(x, y)
        np.testing.assert_array_equal(a.flat_params, b.flat_params)
        np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert sorted(a._stepper._stacks) == [5, 8]


@pytest.mark.parametrize("sib", [True, "auto"])
def test_fit_through_the_stack_matches_and_skips_nonfinite_steps(rng, sib):
    widths = (10, 8, 2)
    x = rng.standard_normal((64, 10)).astype(np.float32)
    x[7, 3] = np.nan  # one poisoned sample: its batch's loss is NaN
    y = rng.integers(0, 2, 64)
    runs = []
    for stack in (True, False):
        m = _model(widths, sib=sib, stack=stack)
        h = m.fit(x, y, epochs=2, batch_size=16, verbose=0, on_nonfinite_loss="skip")
        runs.append((m, h))
    (a, ha), (b, hb) = runs
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert a.optimizer.step_count == b.optimizer.step_count == 6  # 2 epochs x 3 good batches
    assert ha.history["loss"] == hb.history["loss"]


@pytest.mark.parametrize("sib", [True, "auto"])
def test_bad_labels_leave_the_model_untouched(rng, sib):
    m = _model((6, 5, 3), sib=sib)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    m.train_step(x, np.array([0, 1, 2, 0]))
    params, count = m.flat_params.copy(), m.optimizer.step_count
    with pytest.raises(ValueError, match=r"label 3 at index 2 is outside \[0, 3\)"):
        m.train_step(x, np.array([0, 1, 3, 0]))
    np.testing.assert_array_equal(m.flat_params, params)
    assert m.optimizer.step_count == count


def test_a_small_network_takes_its_step_in_the_stack_on_any_thread_count(rng):
    # 784-64-64-10 at batch 32: the first layer's forward splits K over two threads, so
    # its w is updated by two threads; the rest by the calling thread. The parameters
    # must come out as with a separate step, whatever the thread count.
    widths = (784, 64, 64, 10)
    x = rng.random((32, 784), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    results = []
    before = fastdl.get_num_threads()
    try:
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            for sib in ("auto", False):
                m = _model(widths, sib=sib)
                assert (m.step_plan.optimizer_step == "in_stack") == (sib == "auto")
                losses = [m.train_step(x, y) for _ in range(3)]
                results.append((losses, m.flat_params.copy(), m.flat_grads.copy()))
    finally:
        fastdl.set_num_threads(before)
    for losses, params, grads in results[1:]:
        assert losses == results[0][0]
        np.testing.assert_array_equal(params, results[0][1])
        np.testing.assert_array_equal(grads, results[0][2])


class _NumpySGD(fastdl.optim.Optimizer):
    """A user's optimizer in numpy: it overrides _kernel_step and cannot prepare a step."""
    name = "numpy_sgd"

    def bind(self, size, device="cpu", decay_segments=None):
        self._size, self.state, self.step_count = int(size), {}, 0
        return self

    def _kernel_step(self, params, grads):
        params -= np.float32(self.lr) * grads


def test_an_optimizer_that_cannot_prepare_a_step_is_stepped_separately(rng):
    m = _model((20, 16, 3), sib="auto")
    m.compile(optimizer=_NumpySGD(0.1), loss="softmax_cross_entropy")
    assert m.step_plan.execution == "dense_stack" and m.step_plan.optimizer_step != "in_stack"
    assert not m.optimizer.can_prepare_step() and fastdl.optim.AdamW().can_prepare_step()
    x = rng.standard_normal((8, 20)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    before = m.flat_params.copy()
    m.train_step(x, y)
    np.testing.assert_allclose(m.flat_params, before - np.float32(0.1) * m.flat_grads, rtol=1e-6)
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="optimizer_step='in_backward': _NumpySGD overrides _kernel_step"):
        m.compile(optimizer=_NumpySGD(0.1), loss="softmax_cross_entropy", optimizer_step="in_backward")
    with pytest.raises(TypeError, match="prepare_step: _NumpySGD overrides _kernel_step"):
        _NumpySGD(0.1).prepare_step(m.flat_params)


def test_networks_the_stack_does_not_cover_keep_the_stage_path():
    assert _model((6, 5, 3)).step_plan.execution == "dense_stack"
    with_dropout = fastdl.Sequential([fastdl.Dense(6, 5, activation="relu"), fastdl.Dropout(0.5),
                                      fastdl.Dense(5, 3)], seed=0)
    with_dropout.compile(optimizer="adam", loss="softmax_cross_entropy")
    assert with_dropout.step_plan.execution != "dense_stack"
    with_bn = fastdl.Sequential([fastdl.Dense(6, 5), fastdl.BatchNorm(5), fastdl.Dense(5, 3)], seed=0)
    with_bn.compile(optimizer="adam", loss="softmax_cross_entropy")
    assert with_bn.step_plan.execution != "dense_stack"
