"""out= on the GPU kernels a training step calls, as on the CPU (test_out_arrays.py, whose
table drives this file): results written into the caller's device arrays, equal to the
allocating call; a bad entry refused, named as on the CPU, before anything is written."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import test_out_arrays as T  # noqa: E402

to_dev, host = cref.to_dev, cref.host


def _dev(a):
    return {k: (to_dev(v) if isinstance(v, np.ndarray) else v) for k, v in a.items()}


def _device_results(r, count):
    r = r if isinstance(r, tuple) else (r,)
    return [v for v in r if hasattr(v, "copy_to_host")][:count]


@pytest.mark.parametrize("name", T.KERNELS)
def test_out_equals_the_allocating_call_and_is_returned(name):
    make, call, entries, tuple_form = T.KERNELS[name]
    ref = call(_dev(make()))
    outs = [to_dev(o) for o in T._filled(entries)]
    got = call(_dev(make()), out=T._as_out(outs, tuple_form))
    for g, o, r in zip(_device_results(got, len(entries)), outs, _device_results(ref, len(entries))):
        assert g is o
        np.testing.assert_array_equal(host(g), host(r))


def _bad(name):
    """(case id, build(device inputs, device outs) -> out, exception, message prefix)."""
    _, _, entries, tuple_form = T.KERNELS[name]
    cases = []
    for i, (ename, shape, dt) in enumerate(entries):
        label = f"out[{i}] ({ename})" if tuple_form else "out"

        def replace(i, make_bad):
            def build(a, good):
                outs = list(good)
                outs[i] = make_bad(a, good)
                return T._as_out(outs, tuple_form)
            return build

        wrong = np.float64 if dt == T.F32 else np.int8
        cases.append((f"{ename}-dtype", replace(i, lambda a, g, s=shape, w=wrong: to_dev(np.zeros(s, w))),
                      TypeError, label))
        cases.append((f"{ename}-shape", replace(i, lambda a, g, s=shape, d=dt: to_dev(np.zeros((s[0] + 1,) + s[1:], d))),
                      ValueError, label))
        if dt == T.F32:
            cases.append((f"{ename}-in-an-input", replace(i, lambda a, g, s=shape: _inside_f32_input(a, s)),
                          ValueError, label))
        if i > 0 and dt == entries[0][2] and np.prod(shape) <= np.prod(entries[0][1]):
            cases.append((f"{ename}-overlaps-{entries[0][0]}",
                          replace(i, lambda a, g, s=shape: g[0].reshape(g[0].size)[:int(np.prod(s))].reshape(s)),
                          ValueError, label))
    if tuple_form:
        cases.append(("too-long", lambda a, g: tuple(g) + (None,), ValueError, "out"))
    return cases


def _inside_f32_input(a, shape):
    count = int(np.prod(shape))
    d = max((v for v in a.values() if hasattr(v, "copy_to_host") and v.dtype == np.float32), key=lambda v: v.size)
    if d.size < count:
        pytest.skip("no float32 input large enough to overlap")
    return d.reshape(d.size)[:count].reshape(shape)


BAD = [(n, c[0]) for n in T.KERNELS for c in _bad(n)]


@pytest.mark.parametrize("name,case", BAD, ids=[f"{n}-{c}" for n, c in BAD])
def test_bad_out_is_refused_naming_the_entry_and_nothing_is_written(name, case):
    make, call, entries, _ = T.KERNELS[name]
    _, build, exc, prefix = next(c for c in _bad(name) if c[0] == case)
    a = _dev(make())
    good = [to_dev(o) for o in T._filled(entries)]
    out = build(a, good)
    watched = good + [v for v in a.values() if hasattr(v, "copy_to_host")]
    before = [host(v) for v in watched]
    with pytest.raises(exc) as err:
        call(a, out=out)
    assert str(err.value).startswith(prefix), str(err.value)
    for v, b in zip(watched, before):
        np.testing.assert_array_equal(host(v), b)
