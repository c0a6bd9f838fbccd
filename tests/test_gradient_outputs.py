"""dense_backward / dense_dropout_backward with out=(dx, dw, db[, dalpha]): results written
into the caller's arrays (the network passes views of its flat gradient buffer), equal
to the allocating call bit for bit; every bad out= is refused before anything is written."""

import numpy as np
import pytest

from fastdl import kernels as K

ACTS = ["relu", "prelu", "linear", "gelu"]


def setup(act, dropout, n=6, k=5, m=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = rng.standard_normal((k, m), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    alpha = rng.uniform(0.1, 0.3, m).astype(np.float32) if act == "prelu" else None
    dy = rng.standard_normal((n, m), dtype=np.float32)
    if dropout:
        r = K.dense_dropout_forward(x, w, b, act, 0.3, 7, 1, 0, alpha=alpha)
        y, mask = r[0], r[1]
        z = r[2] if len(r) == 3 else None

        def call(**kw):
            return K.dense_dropout_backward(dy, x, w, act, mask, 0.3, y=y, z=z, alpha=alpha, **kw)
    else:
        r = K.dense_forward(x, w, b, act, alpha=alpha)
        y, z = (r if isinstance(r, tuple) else (r, None))

        def call(**kw):
            return K.dense_backward(dy, x, w, act, y=y, z=z, alpha=alpha, **kw)
    return call, dict(x=x, w=w, dy=dy, y=y, alpha=alpha)


def nan_outputs(n, k, m, prelu, need_dx=True):
    shapes = [(n, k), (k, m), (m,)] + ([(m,)] if prelu else [])
    outs = [np.full(s, np.nan, np.float32) for s in shapes]
    if not need_dx:
        outs[0] = None
    return outs


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("need_dx", [True, False])
def test_out_equals_the_allocating_call(act, dropout, need_dx):
    call, _ = setup(act, dropout)
    ref = call(need_dx=need_dx)
    outs = nan_outputs(6, 5, 7, act == "prelu", need_dx)
    got = call(need_dx=need_dx, out=tuple(outs))
    assert len(got) == len(ref)
    for g, o, r in zip(got, outs, ref):
        if r is None:
            assert g is None
            continue
        assert g is o  # the very array passed in
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("dropout", [False, True])
def test_some_entries_none_and_a_list(dropout):
    call, _ = setup("relu", dropout)
    ref = call()
    db = np.full(7, np.nan, np.float32)
    got = call(out=[None, None, db])
    assert got[2] is db
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def _bad_cases(a):
    n, k, m = 6, 5, 7
    good = nan_outputs(n, k, m, False)
    ro = np.zeros((k, m), np.float32)
    ro.flags.writeable = False
    shared = np.zeros(k * m + m, np.float32)
    return [
        ("not-a-tuple", good[1], TypeError, "out"),
        ("too-short", (None, good[1]), ValueError, "out"),
        ("too-long", (None, good[1], good[2], good[2]), ValueError, "out"),
        ("dx-shape", (np.zeros((n, k + 1), np.float32), None, None), ValueError, "out[0] (dx)"),
        ("dw-transposed", (None, np.zeros((m, k), np.float32), None), ValueError, "out[1] (dw)"),
        ("dw-float64", (None, np.zeros((k, m)), None), TypeError, "out[1] (dw)"),
        ("dw-strided", (None, np.zeros((k, 2 * m), np.float32)[:, ::2], None), ValueError, "out[1] (dw)"),
        ("dw-read-only", (None, ro, None), ValueError, "out[1] (dw)"),
        ("dw-is-w", (None, a["w"], None), ValueError, "out[1] (dw)"),
        ("dx-is-x", (a["x"], None, None), ValueError, "out[0] (dx)"),
        ("db-in-dy", (None, None, a["dy"][0]), ValueError, "out[2] (db)"),
        ("db-overlaps-dw", (None, shared[:k * m].reshape(k, m), shared[k * m - 1:k * m - 1 + m]), ValueError,
         "out[2] (db)"),
        ("dx-without-need-dx", (good[0], None, None), ValueError, "out[0] (dx)"),
    ]


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("case", [c[0] for c in _bad_cases({"w": None, "x": None, "dy": np.zeros((1, 7))})])
def test_bad_out_is_refused_and_nothing_is_written(case, dropout):
    call, a = setup("relu", dropout)
    cases = {c[0]: c for c in _bad_cases(a)}
    _, out, exc, name = cases[case]
    entries = [o for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, np.ndarray)]
    before = [o.copy() for o in entries]
    inputs_before = {k: v.copy() for k, v in a.items() if v is not None}
    with pytest.raises(exc) as err:
        call(out=out, need_dx=case != "dx-without-need-dx")
    assert str(err.value).startswith(name), str(err.value)
    for o, bfr in zip(entries, before):
        np.testing.assert_array_equal(o, bfr)
    for k, v in inputs_before.items():
        np.testing.assert_array_equal(a[k], v)


def test_prelu_needs_four_entries():
    call, _ = setup("prelu", False)
    with pytest.raises(ValueError, match=r"out: expected 4 entries \(dx, dw, db, dalpha\), got 3"):
        call(out=(None, None, None))
