"""out= on every kernel a training step calls (besides dense_backward's, in
test_gradient_outputs.py): results written into the caller's arrays, equal to the
allocating call bit for bit; every bad out= refused, naming the entry, before anything
is written. The network passes buffers it keeps per batch size here, so a training step
allocates no arrays (test_network_allocations.py checks that end to end)."""

import numpy as np
import pytest

from fastdl import kernels as K

N, KIN, M, PIECES = 6, 5, 4, 3
F32, U8 = np.dtype(np.float32), np.dtype(np.uint8)


def _rng():
    return np.random.default_rng(3)


def _dense_inputs(m=M):
    r = _rng()
    return {"x": r.standard_normal((N, KIN), dtype=np.float32), "w": r.standard_normal((KIN, m), dtype=np.float32),
            "b": r.standard_normal(m, dtype=np.float32)}


def _bn_inputs():
    r = _rng()
    return {"x": r.standard_normal((N, M), dtype=np.float32), "gamma": r.uniform(0.5, 2, M).astype(np.float32),
            "beta": r.standard_normal(M, dtype=np.float32), "running_mean": np.zeros(M, np.float32),
            "running_var": np.ones(M, np.float32)}


def _bn_saved():
    a = _bn_inputs()
    _, mean, invstd = K.batchnorm_forward_train(**a)
    r = _rng()
    return {"dy": r.standard_normal((N, M), dtype=np.float32), "x": a["x"], "gamma": a["gamma"],
            "save_mean": mean, "save_invstd": invstd}


def _maxout_saved():
    a = _dense_inputs(M * PIECES)
    _, argmax = K.dense_maxout_forward(a["x"], a["w"], a["b"], PIECES)
    a["argmax"] = argmax
    a["dy"] = _rng().standard_normal((N, M), dtype=np.float32)
    return a


def _dropout_saved():
    x = _rng().standard_normal((N, M), dtype=np.float32)
    _, mask = K.dropout_forward(x, 0.4, 9, 2)
    return {"dy": x * 2, "mask": mask}


def _loss_inputs(kind):
    r = _rng()
    a = {"logits": r.standard_normal((N, M), dtype=np.float32)}
    a["target"] = (r.integers(0, M, N) if kind == "labels" else r.uniform(0, 1, (N, M)).astype(np.float32))
    return a


# name -> (make fresh inputs, call(inputs, out), [(entry, shape, dtype)], tuple form?)
# A kernel with a single result takes out= as one array; one with several as a tuple,
# and those in Y_ALONE also take y alone (an array), their out= from before the tuple.
Y_ALONE = ("dense_forward", "dropout_forward")
KERNELS = {
    "dense_forward[gelu]": (_dense_inputs, lambda a, **o: K.dense_forward(a["x"], a["w"], a["b"], "gelu", **o),
                            [("y", (N, M), F32), ("z", (N, M), F32)], True),
    "dense_forward[relu]": (_dense_inputs, lambda a, **o: K.dense_forward(a["x"], a["w"], a["b"], "relu", **o),
                            [("y", (N, M), F32)], True),
    "dense_dropout_forward[relu]": (
        _dense_inputs, lambda a, **o: K.dense_dropout_forward(a["x"], a["w"], a["b"], "relu", 0.3, 5, 1, **o),
        [("y", (N, M), F32), ("mask", ((N * M + 7) // 8,), U8)], True),
    "dense_dropout_forward[silu]": (
        _dense_inputs, lambda a, **o: K.dense_dropout_forward(a["x"], a["w"], a["b"], "silu", 0.3, 5, 1, **o),
        [("y", (N, M), F32), ("mask", ((N * M + 7) // 8,), U8), ("z", (N, M), F32)], True),
    "dropout_forward": (lambda: {"x": _rng().standard_normal((N, M), dtype=np.float32)},
                        lambda a, **o: K.dropout_forward(a["x"], 0.4, 9, 2, **o),
                        [("y", (N, M), F32), ("mask", ((N * M + 7) // 8,), U8)], True),
    "dropout_backward": (_dropout_saved, lambda a, **o: K.dropout_backward(a["dy"], a["mask"], 0.4, **o),
                         [("dx", (N, M), F32)], False),
    "maxout_forward": (lambda: {"z": _rng().standard_normal((N, M * PIECES), dtype=np.float32)},
                       lambda a, **o: K.maxout_forward(a["z"], PIECES, **o),
                       [("y", (N, M), F32), ("argmax", (N, M), U8)], True),
    "maxout_backward": (_maxout_saved, lambda a, **o: K.maxout_backward(a["dy"], a["argmax"], PIECES, **o),
                        [("dz", (N, M * PIECES), F32)], False),
    "dense_maxout_forward": (lambda: _dense_inputs(M * PIECES),
                             lambda a, **o: K.dense_maxout_forward(a["x"], a["w"], a["b"], PIECES, **o),
                             [("y", (N, M), F32), ("argmax", (N, M), U8)], True),
    "dense_maxout_backward": (
        _maxout_saved, lambda a, **o: K.dense_maxout_backward(a["dy"], a["x"], a["w"], a["argmax"], PIECES, **o),
        [("dx", (N, KIN), F32), ("dw", (KIN, M * PIECES), F32), ("db", (M * PIECES,), F32)], True),
    "batchnorm_forward_train": (_bn_inputs, lambda a, **o: K.batchnorm_forward_train(**a, **o),
                                [("y", (N, M), F32), ("save_mean", (M,), F32), ("save_invstd", (M,), F32)], True),
    "batchnorm_forward_eval": (_bn_inputs, lambda a, **o: K.batchnorm_forward_eval(**a, **o),
                               [("y", (N, M), F32)], False),
    "batchnorm_backward": (_bn_saved, lambda a, **o: K.batchnorm_backward(**a, **o),
                           [("dx", (N, M), F32), ("dgamma", (M,), F32), ("dbeta", (M,), F32)], True),
    "softmax_cross_entropy[labels]": (lambda: _loss_inputs("labels"),
                                      lambda a, **o: K.softmax_cross_entropy(a["logits"], a["target"], **o),
                                      [("dlogits", (N, M), F32)], False),
    "softmax_cross_entropy[probs]": (lambda: _loss_inputs("probs"),
                                     lambda a, **o: K.softmax_cross_entropy(a["logits"], a["target"], **o),
                                     [("dlogits", (N, M), F32)], False),
    "mse": (lambda: _loss_inputs("probs"), lambda a, **o: K.mse(a["logits"], a["target"], **o),
            [("dpred", (N, M), F32)], False),
    "binary_cross_entropy": (lambda: _loss_inputs("probs"),
                             lambda a, **o: K.binary_cross_entropy(a["logits"], a["target"], **o),
                             [("dlogits", (N, M), F32)], False),
}


def _results(r, entries):
    """The array results of a call, in out= order (losses return (loss, grad))."""
    if not isinstance(r, tuple):
        return [r]
    arrays = [v for v in r if isinstance(v, np.ndarray)]
    return arrays[:len(entries)]


def _filled(entries):
    return [np.full(shape, 0xAB if dt == U8 else np.nan, dt) for _, shape, dt in entries]


def _as_out(arrays, tuple_form):
    return tuple(arrays) if tuple_form else arrays[0]


@pytest.mark.parametrize("name", KERNELS)
def test_out_equals_the_allocating_call_and_is_returned(name):
    make, call, entries, tuple_form = KERNELS[name]
    ref = call(make())
    outs = _filled(entries)
    got = call(make(), out=_as_out(outs, tuple_form))
    if isinstance(ref, tuple) and not isinstance(ref[0], np.ndarray):  # a loss: (value, grad)
        assert got[0] == ref[0]
    for g, o, r in zip(_results(got, entries), outs, _results(ref, entries)):
        assert g is o
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("name", [n for n in KERNELS if KERNELS[n][3] and len(KERNELS[n][2]) > 1])
def test_none_entries_are_allocated(name):
    make, call, entries, _ = KERNELS[name]
    ref = _results(call(make()), entries)
    last = _filled(entries)[-1]
    got = _results(call(make(), out=(None,) * (len(entries) - 1) + (last,)), entries)
    assert got[-1] is last
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def _bad_cases(name):
    """(case id, build(inputs, good outs) -> out, exception, message prefix)."""
    make, _, entries, tuple_form = KERNELS[name]
    cases = []

    def entry(i, make_bad):
        def build(a, good):
            outs = list(good)
            outs[i] = make_bad(a, good)
            return _as_out(outs, tuple_form)
        return build

    for i, (ename, shape, dt) in enumerate(entries):
        label = f"out[{i}] ({ename})" if tuple_form else "out"
        wrong = np.float64 if dt == F32 else np.int8
        cases += [
            (f"{ename}-dtype", entry(i, lambda a, g, s=shape, w=wrong: np.zeros(s, w)), TypeError, label),
            (f"{ename}-shape", entry(i, lambda a, g, s=shape, d=dt: np.zeros((s[0] + 1,) + s[1:], d)), ValueError,
             label),
            (f"{ename}-read-only", entry(i, lambda a, g, s=shape, d=dt: _read_only(s, d)), ValueError, label),
            (f"{ename}-strided", entry(i, lambda a, g, s=shape, d=dt: np.zeros(s[:-1] + (2 * s[-1],), d)[..., ::2]),
             ValueError, label),
        ]
        if _largest_input(make()).nbytes >= np.prod(shape) * np.dtype(dt).itemsize:
            cases.append((f"{ename}-in-an-input", entry(i, lambda a, g, s=shape, d=dt: _inside(_largest_input(a), s, d)),
                          ValueError, label))
        if i > 0 and np.prod(entries[0][1]) * entries[0][2].itemsize >= np.prod(shape) * np.dtype(dt).itemsize:
            cases.append((f"{ename}-overlaps-{entries[0][0]}",
                          entry(i, lambda a, g, s=shape, d=dt: _inside(g[0], s, d)), ValueError, label))
    if tuple_form:
        cases += [
            ("too-long", lambda a, g: tuple(g) + (None,), ValueError, "out"),
            ("too-short", lambda a, g: tuple(g)[:-1], ValueError, "out"),
        ]
        if not name.startswith(Y_ALONE):
            cases.append(("not-a-tuple", lambda a, g: g[0], TypeError, "out"))
    return cases


def _read_only(shape, dt):
    a = np.zeros(shape, dt)
    a.flags.writeable = False
    return a


def _largest_input(a):
    return max((v for v in a.values() if isinstance(v, np.ndarray)), key=lambda v: v.nbytes)


def _inside(base, shape, dt):
    """An array of `shape` and `dt` over the start of `base`'s memory."""
    need = int(np.prod(shape)) * np.dtype(dt).itemsize
    return base.reshape(-1).view(np.uint8)[:need].view(dt).reshape(shape)


BAD = [(n, c[0]) for n in KERNELS for c in _bad_cases(n)]


@pytest.mark.parametrize("name,case", BAD, ids=[f"{n}-{c}" for n, c in BAD])
def test_bad_out_is_refused_naming_the_entry_and_nothing_is_written(name, case):
    make, call, entries, _ = KERNELS[name]
    _, build, exc, prefix = next(c for c in _bad_cases(name) if c[0] == case)
    a = make()
    good = _filled(entries)
    out = build(a, good)
    given = [o for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, np.ndarray)]
    before = [o.copy() for o in given] + [v.copy() for v in a.values() if isinstance(v, np.ndarray)]
    with pytest.raises(exc) as err:
        call(a, out=out)
    assert str(err.value).startswith(prefix), str(err.value)
    after = given + [v for v in a.values() if isinstance(v, np.ndarray)]
    for b, v in zip(before, after):
        np.testing.assert_array_equal(v, b)
