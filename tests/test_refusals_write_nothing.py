"""A refused call writes nothing: for every kernel of tests/kernel_specs.py, each of its
refusal cases (its own rules -- labels, argmax entries, p, alpha, pieces, ... -- and
wrong dtypes, views and GPU arrays among its inputs) is made again with every result
given an ``out=`` buffer, and those buffers must be bit-identical afterwards.
(test_bad_input.py holds the in-place buffers to the same rule; this adds out=.)

maxout_backward once wrote dz and then found an argmax entry out of range.
"""

import numpy as np
import pytest

from fastdl import kernels as K

import kernel_specs as ks

SENTINEL = 0xA5  # every byte of every out= buffer before the call


def _results(spec):
    """The arrays a good call returns, in out= order, and whether out= is a tuple."""
    args = ks.build(spec, np.random.default_rng(7))
    r = spec.call(getattr(K, spec.kernel), args)
    if r is None:  # an in-place kernel (optimizer steps, max_norm_): no out=
        return None, False
    res = r if isinstance(r, tuple) else (r,)
    arrays = [a for a in res if isinstance(a, np.ndarray)]
    return arrays, len(arrays) > 1


def _with_out(spec, args, arrays, as_tuple):
    outs = []
    for a in arrays:
        o = np.empty(a.shape, a.dtype)
        o.view(np.uint8)[...] = SENTINEL
        outs.append(o)
    return {**args, "out": tuple(outs) if as_tuple else outs[0]}, outs


def _shape_changed(good, bad):
    return any(isinstance(bad.get(k), np.ndarray) and bad[k].shape != v.shape
               for k, v in good.items() if isinstance(v, np.ndarray) and k != "out")


def _cases():
    cases = []
    for spec in ks.SPECS:
        arrays, as_tuple = _results(spec)
        if arrays is None:
            continue
        for cid, mutate, exc, name in spec.extra_bad:
            cases.append((spec, cid, mutate, exc, name))
        for name, arr in spec.arrays.items():
            if arr.role != "in":
                continue
            wrong = np.float64 if arr.dtype[0] != np.dtype(np.float64) else np.float32
            cases.append((spec, f"dtype-{name}", lambda a, n=name, w=wrong: {**a, n: a[n].astype(w)}, TypeError,
                          name))
            cases.append((spec, f"reversed-{name}", lambda a, n=name: {**a, n: a[n][::-1]}, ValueError, name))
            cases.append((spec, f"list-{name}", lambda a, n=name: {**a, n: a[n].tolist()}, TypeError, name))
    return cases


CASES = _cases()


def test_every_kernel_with_results_has_refusal_cases():
    covered = {c[0].kernel for c in CASES}
    with_out = {s.kernel for s in ks.SPECS if _results(s)[0] is not None}
    assert covered == with_out and "maxout_backward" in covered


@pytest.mark.parametrize("spec,cid", [(c[0], c[1]) for c in CASES], ids=[f"{c[0].id}-{c[1]}" for c in CASES])
def test_a_refused_call_leaves_out_bit_identical(spec, cid):
    _, _, mutate, exc, name = next(c for c in CASES if c[0] is spec and c[1] == cid)
    good = ks.build(spec, np.random.default_rng(7))
    bad = mutate(ks.copy_args(good))
    if cid.startswith("dtype-") and spec.kernel == "softmax_cross_entropy" and name == "target":
        exc = (TypeError, ValueError)  # a float target is the probabilities form: a rank error
    arrays, as_tuple = _results(spec)
    if _shape_changed(good, bad):
        pytest.skip("the case changes a shape, so out= would be refused first (test_out_arrays.py)")
    bad, outs = _with_out(spec, bad, arrays, as_tuple)
    before = [o.tobytes() for o in outs]
    with pytest.raises(exc) as err:
        spec.call(getattr(K, spec.kernel), bad)
    msg = str(err.value)
    assert msg.startswith(name) or "incompatible function arguments" in msg, msg
    for i, (o, b) in enumerate(zip(outs, before)):
        assert o.tobytes() == b, f"{spec.id}: the refused call ({cid}: {msg}) wrote out[{i}]"
