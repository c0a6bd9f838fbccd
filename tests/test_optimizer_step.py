"""The prepared optimizer step (a step kernel called with grads=None) applied in pieces:
by .apply over ranges, and by the dense kernels' update= inside the dw GEMM. Each
element stepped once must give bit for bit what the one-call step gives, on every ISA."""

import numpy as np
import pytest

from fastdl import kernels as K
from test_optim import CASES, _case_id, _kernel, _positional, make_state, run_kernel


def prepare(name, p, state, kw, segments=None):
    pos = [state.get(b) for b in _positional(name)]
    extra = {b: state[b] for b in state if b not in _positional(name)}
    return _kernel(name)(p, None, *pos, decay_segments=segments, **kw, **extra)


def copies(p, state):
    return p.copy(), {k: v.copy() for k, v in state.items()}


def assert_same(p, state, p_ref, state_ref):
    np.testing.assert_array_equal(p, p_ref)
    for k in state:
        np.testing.assert_array_equal(state[k], state_ref[k], err_msg=k)


# ---------------------------------------------------------------- apply in ranges


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("n", [1, 33, 8193, 100_003])
def test_apply_in_ranges_equals_the_one_call_step(isa, rng, case, n):
    name, buffers, kw, _ = case
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    state = make_state(rng, name, buffers, n)
    decay = np.array([[0, n // 3], [n // 2, n]], np.int64)
    p_ref, s_ref = copies(p, state)
    run_kernel(name, p_ref, g, s_ref, kw, decay)

    step = prepare(name, p, state, kw, decay)
    assert isinstance(step, K.OptimizerStep) and step.size == n
    np.testing.assert_array_equal(p, p_ref if n == 0 else p)  # preparing applies nothing
    cuts = sorted({0, n, n // 5, n // 3 + 1, n // 2, (3 * n) // 4})
    pieces = np.array(list(zip(cuts[:-1], cuts[1:])), np.int64)
    step.apply(g, segments=pieces[::2].copy())
    step.apply(g, segments=pieces[1::2].copy())
    assert_same(p, state, p_ref, s_ref)


def test_preparing_changes_nothing_and_apply_without_segments_is_the_whole_step(rng):
    n = 1000
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    state = make_state(rng, "adam", ["exp_avg", "exp_avg_sq"], n)
    p0, s0 = copies(p, state)
    step = K.adam_step(p, None, state["exp_avg"], state["exp_avg_sq"], lr=1e-3, step=3)
    assert_same(p, state, p0, s0)
    K.adam_step(p0, g, s0["exp_avg"], s0["exp_avg_sq"], lr=1e-3, step=3)
    step.apply(g)
    assert_same(p, state, p0, s0)
    assert "1000 parameters" in repr(step)


def test_apply_refuses_bad_segments_and_grads(rng):
    n = 100
    p = np.zeros(n, np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    step = K.adam_step(p, None, m, v, lr=1e-3, step=1)
    g = np.zeros(n, np.float32)
    for bad in ([[10, 20], [15, 30]], [[20, 30], [0, 10]], [[0, 101]], [[-1, 5]], [[5, 4]]):
        with pytest.raises(ValueError, match="segments"):
            step.apply(g, segments=np.array(bad, np.int64))
    with pytest.raises(TypeError, match="segments"):
        step.apply(g, segments=np.array([[0, 10]], np.int32))
    with pytest.raises(ValueError, match="grads"):
        step.apply(np.zeros(n + 1, np.float32))
    with pytest.raises(ValueError, match="grads: shares memory with 'exp_avg'"):
        step.apply(m)
    with pytest.raises(TypeError, match="grads"):
        step.apply(np.zeros(n, np.float64))


# ---------------------------------------------------------------- update= in the dense kernels


def flat_layer(rng, k, m, extra=37):
    """A flat buffer holding w (k, m) at an offset off the vector widths, with room after."""
    n = 5 + k * m + extra
    params = (0.1 * rng.standard_normal(n)).astype(np.float32)
    w = params[5:5 + k * m].reshape(k, m)
    return params, w


def adam_state(rng, n):
    return {"exp_avg": (0.01 * rng.standard_normal(n)).astype(np.float32),
            "exp_avg_sq": rng.uniform(0.0, 1e-3, n).astype(np.float32)}


ADAM_KW = dict(lr=1e-2, step=4, weight_decay=0.01)
# (n, k, m): edge tiles, one row, and n > 512 (the dw GEMM's K in several blocks, so C
# carries partial sums between them).
SHAPES = [(1, 1, 1), (7, 17, 33), (3, 100, 129), (64, 33, 64), (600, 40, 70)]


@pytest.mark.parametrize("n,k,m", SHAPES)
@pytest.mark.parametrize("activation", ["relu", "prelu", "gelu", "linear"])
@pytest.mark.parametrize("keep_dw", [True, False])
def test_dense_backward_update_equals_backward_then_step(isa, rng, n, k, m, activation, keep_dw):
    params, w = flat_layer(rng, k, m)
    state = adam_state(rng, params.size)
    x = rng.standard_normal((n, k)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    alpha = rng.uniform(0, 0.3, m).astype(np.float32) if activation == "prelu" else None
    fwd = K.dense_forward(x, w, b, activation, alpha=alpha)
    saved = dict(z=fwd[1]) if activation in K.NEEDS_Z else dict(y=fwd) if activation != "linear" else {}
    decay = np.array([[5, 5 + k * m]], np.int64)

    # Reference: the plain backward, then the one-call step over w's range (the rest of
    # the buffer gets a zero gradient in both runs).
    p_ref, s_ref = copies(params, state)
    w_ref = p_ref[5:5 + k * m].reshape(k, m)
    ref = K.dense_backward(dy, x, w_ref, activation, alpha=alpha, **saved)
    grads = np.zeros_like(params)
    grads[5:5 + k * m] = ref[1].reshape(-1)
    K.adam_step(p_ref, grads, s_ref["exp_avg"], s_ref["exp_avg_sq"], decay_segments=decay, **ADAM_KW)

    step = K.adam_step(params, None, state["exp_avg"], state["exp_avg_sq"], decay_segments=decay, **ADAM_KW)
    out = (None, np.empty((k, m), np.float32) if keep_dw else None, None) + ((None,) if alpha is not None else ())
    got = K.dense_backward(dy, x, w, activation, alpha=alpha, out=out, update=step, **saved)
    zero = np.zeros_like(params)
    step.apply(zero, segments=np.array([[0, 5], [5 + k * m, params.size]], np.int64))

    np.testing.assert_array_equal(got[0], ref[0])  # dx from the old w
    np.testing.assert_array_equal(got[2], ref[2])
    if alpha is not None:
        np.testing.assert_array_equal(got[3], ref[3])
    if keep_dw:
        np.testing.assert_array_equal(got[1], ref[1])
    else:
        assert got[1] is None
    assert_same(params, state, p_ref, s_ref)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_optimizer_steps_inside_the_backward(rng, case):
    name, buffers, kw, _ = case
    n, k, m = 9, 20, 35
    params, w = flat_layer(rng, k, m, extra=0)
    state = make_state(rng, name, buffers, params.size)
    x = rng.standard_normal((n, k)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    y = np.maximum(x @ w, 0).astype(np.float32)
    p_ref, s_ref = copies(params, state)
    dx, dw, db = K.dense_backward(dy, x, p_ref[5:].reshape(k, m), "relu", y=y)
    grads = np.zeros_like(params)
    grads[5:] = dw.reshape(-1)
    run_kernel(name, p_ref, grads, s_ref, kw)
    step = prepare(name, params, state, kw)
    K.dense_backward(dy, x, w, "relu", y=y, update=step)
    step.apply(grads, segments=np.array([[0, 5]], np.int64))
    assert_same(params, state, p_ref, s_ref)


def test_dropout_and_maxout_backward_take_the_update(isa, rng):
    n, k, m, pieces = 13, 24, 10, 3
    for kind in ("dropout", "maxout"):
        cols = m * pieces if kind == "maxout" else m
        params, w = flat_layer(rng, k, cols)
        state = adam_state(rng, params.size)
        x = rng.standard_normal((n, k)).astype(np.float32)
        b = np.zeros(cols, np.float32)
        p_ref, s_ref = copies(params, state)
        w_ref = p_ref[5:5 + k * cols].reshape(k, cols)
        if kind == "dropout":
            y, mask = K.dense_dropout_forward(x, w, b, "tanh", 0.3, 7, 2)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            ref = K.dense_dropout_backward(dy, x, w_ref, "tanh", mask, 0.3, y=y)
            run = lambda step: K.dense_dropout_backward(dy, x, w, "tanh", mask, 0.3, y=y, update=step)  # noqa: E731
        else:
            y, arg = K.dense_maxout_forward(x, w, b, pieces)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            ref = K.dense_maxout_backward(dy, x, w_ref, arg, pieces)
            run = lambda step: K.dense_maxout_backward(dy, x, w, arg, pieces, update=step)  # noqa: E731
        grads = np.zeros_like(params)
        grads[5:5 + k * cols] = ref[1].reshape(-1)
        K.adam_step(p_ref, grads, s_ref["exp_avg"], s_ref["exp_avg_sq"], **ADAM_KW)
        step = K.adam_step(params, None, state["exp_avg"], state["exp_avg_sq"], **ADAM_KW)
        got = run(step)
        assert got[1] is None
        np.testing.assert_array_equal(got[0], ref[0])
        step.apply(grads, segments=np.array([[0, 5], [5 + k * cols, params.size]], np.int64))
        assert_same(params, state, p_ref, s_ref)


def test_update_refuses_what_it_cannot_do_safely(rng):
    n, k, m = 4, 6, 8
    params, w = flat_layer(rng, k, m)
    state = adam_state(rng, params.size)
    x = rng.standard_normal((n, k)).astype(np.float32)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    step = K.adam_step(params, None, state["exp_avg"], state["exp_avg_sq"], lr=1e-3, step=1)
    before = params.copy()
    with pytest.raises(TypeError, match="update: expected an OptimizerStep"):
        K.dense_backward(dy, x, w, "linear", update="adam")
    with pytest.raises(ValueError, match="w: with update=, w must be a view into the step's params"):
        K.dense_backward(dy, x, w.copy(), "linear", update=step)
    # An output on w's part of a state buffer: the update would overwrite it.
    dw_on_state = state["exp_avg"][5:5 + k * m].reshape(k, m)
    with pytest.raises(ValueError, match="dw: shares memory with w's part of the update's 'exp_avg'"):
        K.dense_backward(dy, x, w, "linear", out=(None, dw_on_state, None), update=step)
    # An input inside w's range of params.
    x_on_w = params[5:5 + n * k].reshape(n, k)
    with pytest.raises(ValueError, match="x: shares memory with w's part of the update's 'params'"):
        K.dense_backward(dy, x_on_w, w, "linear", update=step)
    np.testing.assert_array_equal(params, before)  # refused before anything ran
    # PReLU slopes may live in params beside w (a network keeps them there).
    alpha = params[5 + k * m:5 + k * m + m]
    z = (x @ w).astype(np.float32)
    K.dense_backward(dy, x, w, "prelu", z=z, alpha=alpha, update=step)
    assert not np.array_equal(params[5:5 + k * m], before[5:5 + k * m])
