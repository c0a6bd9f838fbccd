"""Bad input at every public kernel boundary, table-driven from kernel_specs.SPECS.

Every kernel in fastdl.kernels._KERNELS must have an entry. For each one this sweeps
wrong dtypes, wrong ranks, mismatched shapes, zero-sized dimensions, non-contiguous and
negatively strided views, read-only buffers, aliasing between an in-place/out= buffer
and any other array, arrays that claim to live on a GPU, NaN/Inf (propagated, or refused
where the array is finite_only: sample weights), and the kernel's own scalar rules
(labels, p, lr, activation names, ...). A refused call must raise the
stated exception type with a message that starts with the argument's name, and leave
every array it was given byte-for-byte unchanged; an accepted call must never write
its inputs.
"""

import re

import numpy as np
import pytest

from fastdl import kernels as K

import kernel_specs as ks
from kernel_specs import SPECS, Arr

BAD_DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.bool_), np.dtype(object),
              np.dtype(np.float16), np.dtype(">f4"), np.dtype(np.int64), np.dtype(np.uint8)]


def test_every_kernel_has_a_spec():
    missing = [k for k in K._KERNELS if k not in ks.BY_KERNEL]
    assert not missing, f"kernels without an entry in tests/kernel_specs.py: {missing}"
    stale = [k for k in ks.BY_KERNEL if k not in K._KERNELS]
    assert not stale, f"entries for kernels fastdl.kernels does not export: {stale}"


# ----------------------------------------------------------------------------- helpers
def _names_with(spec, symbol):
    names = {n for n, a in spec.arrays.items()
             if any(symbol == d or (isinstance(d, tuple) and symbol in d) for d in a.dims)}
    return names | set(spec.also.get(symbol, ()))


def _partners(spec, name):
    a = spec.arrays[name]
    out = {name}
    for d in a.dims:
        for s in (d if isinstance(d, tuple) else (d,)):
            if isinstance(s, str):
                out |= _names_with(spec, s)
    return out


def _names_argument(msg, names):
    first = msg.split(":", 1)[0].strip()
    if first in names:
        return True
    # pybind11's own conversion error lists the signature ("activation: str"); accept it
    # for scalars of the wrong Python type, where it does name the argument.
    return "incompatible function arguments" in msg and any(f"{n}: " in msg for n in names)


def _snapshot(args):
    return {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray) and v.dtype != object}


def _assert_unchanged(spec, args, snaps, what):
    for k, s in snaps.items():
        assert args[k].tobytes() == s.tobytes(), f"{spec.id}: {what} changed argument '{k}'"


def _call(spec, args):
    return spec.call(getattr(K, spec.kernel), args)


def _refused(spec, args, exc, names, what):
    snaps = _snapshot(args)
    with pytest.raises(Exception) as ei:
        _call(spec, args)
    assert type(ei.value) is exc, f"{spec.id}: {what} raised {type(ei.value).__name__} ({ei.value}), expected {exc.__name__}"
    msg = str(ei.value)
    assert _names_argument(msg, set(names)), f"{spec.id}: {what}: message does not name {sorted(names)}: {msg!r}"
    _assert_unchanged(spec, args, snaps, f"the refused call ({what})")
    return msg


def _inputs_untouched(spec, args, snaps, what):
    _assert_unchanged(spec, {k: v for k, v in args.items() if spec.arrays.get(k, Arr(())).role == "in"},
                      {k: v for k, v in snaps.items() if spec.arrays.get(k, Arr(())).role == "in"}, what)


def _base(spec):
    return ks.build(spec, np.random.default_rng(7))


def _resize(a, dims_new, dtype):
    rng = np.random.default_rng(3)
    if np.issubdtype(dtype, np.integer):
        return np.zeros(dims_new, dtype)
    return rng.standard_normal(dims_new).astype(dtype)


# ----------------------------------------------------------------------------- cases
def _cases():
    cases = []
    for spec in SPECS:
        first = next(iter(spec.arrays))
        for name, arr in spec.arrays.items():
            for dt in BAD_DTYPES:
                if dt in arr.dtype:
                    continue
                cases.append((spec, f"dtype-{name}-{dt.str if dt.byteorder == '>' else dt.name}", ("dtype", name, dt)))
            cases.append((spec, f"list-{name}", ("list", name)))
            cases.append((spec, f"rank-up-{name}", ("rank", name, +1)))
            cases.append((spec, f"rank-down-{name}", ("rank", name, -1)))
            for d, sym in enumerate(arr.dims):
                if sym in spec.free:
                    continue
                cases.append((spec, f"shape-{name}-dim{d}", ("shape", name, d)))
            cases.append((spec, f"strided-{name}", ("strided", name)))
            cases.append((spec, f"reversed-{name}", ("reversed", name)))
            if len(arr.dims) == 2:
                cases.append((spec, f"fortran-{name}", ("fortran", name)))
            if name != first:
                cases.append((spec, f"gpu-{name}", ("gpu", name)))
            if arr.role in ("inplace", "out"):
                cases.append((spec, f"readonly-{name}", ("readonly", name)))
                for other, oarr in spec.arrays.items():
                    if other != name and oarr.dtype[0] == ks.F32:
                        if tuple(oarr.dims) == tuple(arr.dims):
                            cases.append((spec, f"alias-{name}-is-{other}", ("alias", name, other, "same")))
                        cases.append((spec, f"alias-{name}-overlaps-{other}", ("alias", name, other, "partial")))
            if arr.dtype[0] == ks.F32 and arr.role != "out":
                for v in ("nan", "inf", "-inf"):
                    for pos in ("mid", "last"):
                        cases.append((spec, f"{v}-in-{name}-{pos}", ("nonfinite", name, float(v), pos)))
            if arr.role == "out":
                cases.append((spec, f"nan-prefilled-{name}", ("prefilled", name)))
        for sym in ks.symbols(spec):
            cases.append((spec, f"zero-{sym}", ("zero", sym)))
        cases.append((spec, "readonly-inputs", ("readonly-inputs",)))
        for cid, mutate, exc, argname in spec.extra_bad:
            cases.append((spec, cid, ("extra", mutate, exc, argname)))
    return cases


CASES = _cases()


@pytest.mark.parametrize("spec,case", [(s, c) for s, cid, c in CASES],
                         ids=[f"{s.id}-{cid}" for s, cid, c in CASES])
def test_bad_input(spec, case):
    kind = case[0]
    args = _base(spec)
    if kind == "dtype":
        _, name, dt = case
        a = args[name]
        args[name] = a.astype(dt) if dt != object else a.astype(object)
        exc = TypeError
        if name == "target" and spec.kernel == "softmax_cross_entropy" and dt.isnative and (
                dt in (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64))):
            exc = ValueError  # the dtype picks the other target form (labels/probabilities): a rank error
        _refused(spec, args, exc, {name}, f"dtype {dt}")
    elif kind == "list":
        name = case[1]
        args[name] = args[name].tolist()
        _refused(spec, args, TypeError, {name}, "a list")
    elif kind == "rank":
        _, name, delta = case
        a = args[name]
        args[name] = a[None] if delta > 0 else _resize(a, a.shape[:-1], a.dtype)
        if name in spec.rank_free:
            pytest.skip("this array may have any rank")
        if spec.arrays[name].any_rank:
            partners = _partners(spec, name)
            if partners == {name}:
                pytest.skip("any rank, nothing to mismatch")
            _refused(spec, args, ValueError, partners, "a rank mismatch")
        else:
            _refused(spec, args, ValueError, {name}, f"rank {a.ndim + delta}")
    elif kind == "shape":
        _, name, d = case
        arr = spec.arrays[name]
        sym = arr.dims[d]
        a = args[name]
        new = list(a.shape)
        new[d] += 1
        args[name] = _resize(a, tuple(new), a.dtype)
        names = {name}
        for s_ in (sym if isinstance(sym, tuple) else (sym,)):
            if isinstance(s_, str):
                names |= _names_with(spec, s_)
        _refused(spec, args, ValueError, names, f"shape {tuple(new)}")
    elif kind in ("strided", "reversed", "fortran"):
        name = case[1]
        a = args[name]
        if kind == "strided":
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            big[..., ::2] = a
            v = big[..., ::2]
        elif kind == "reversed":
            v = a[::-1]
        else:
            v = np.asfortranarray(a)
        assert not v.flags.c_contiguous
        args[name] = v
        _refused(spec, args, ValueError, {name}, f"a {kind} view")
    elif kind == "gpu":
        name = case[1]

        class FakeDeviceArray:
            __cuda_array_interface__ = {"shape": args[name].shape, "typestr": "<f4", "data": (0, False),
                                        "version": 3}

        args[name] = FakeDeviceArray()
        msg = _refused(spec, args, TypeError, {name}, "a GPU array among CPU arrays")
        assert "GPU array" in msg
    elif kind == "readonly":
        name = case[1]
        args[name].flags.writeable = False
        msg = _refused(spec, args, ValueError, {name}, "a read-only buffer")
        assert "read-only" in msg
    elif kind == "alias":
        _, name, other, how = case
        a, o = args[name], args[other]
        if how == "same":
            args[name] = o
        else:
            base = np.empty(o.size + a.size - 1, np.float32)
            av = base[o.size - 1:].reshape(a.shape)
            ov = base[: o.size].reshape(o.shape)
            av[...] = a
            ov[...] = o
            args[name], args[other] = av, ov
        _refused(spec, args, ValueError, {name, other}, f"'{name}' sharing memory with '{other}'")
    elif kind == "nonfinite":
        _, name, v, pos = case
        a = args[name]
        a.flat[a.size // 2 if pos == "mid" else a.size - 1] = v
        if spec.arrays[name].finite_only:
            _refused(spec, args, ValueError, {name}, f"{v} in '{name}'")
            return
        exp = ks.expected(spec, args)
        snaps = _snapshot(args)
        got = spec.outputs(_call(spec, args), args)
        _inputs_untouched(spec, args, snaps, "a call with NaN/Inf input")
        nonfinite_ref = 0
        for i, (g, e) in enumerate(zip(got, exp)):
            if e is None:
                continue
            g, e = np.asarray(g, np.float64), np.asarray(e, np.float64)
            assert g.shape == e.shape
            nf = ~np.isfinite(e)
            nonfinite_ref += int(nf.sum())
            # Documented behaviour: NaN and Inf propagate; nothing is silently "fixed".
            lost = nf & np.isfinite(g)
            assert not lost.any(), (f"{spec.id}: {v} in '{name}': output {i} is finite at "
                                    f"{tuple(np.argwhere(lost)[0])} where the reference is {e[lost][0]}")
        if np.isnan(v):
            assert nonfinite_ref > 0, "the reference should propagate the NaN"
    elif kind == "prefilled":
        name = case[1]
        clean = spec.outputs(_call(spec, ks.copy_args(args)), args)
        args[name][...] = np.nan
        got = spec.outputs(_call(spec, args), args)
        for g, c in zip(got, clean):
            if c is not None:
                assert np.asarray(g).tobytes() == np.asarray(c).tobytes(), f"{spec.id}: the kernel read '{name}'"
    elif kind == "zero":
        sym = case[1]
        args = ks.build(spec, np.random.default_rng(7), {sym: 0})
        if sym in spec.zero_raises:
            _refused(spec, args, ValueError, _names_with(spec, sym) | set(spec.arrays), f"{sym} = 0")
        else:
            exp = ks.expected(spec, args)
            snaps = _snapshot(args)
            got = spec.outputs(_call(spec, args), args)
            _inputs_untouched(spec, args, snaps, f"a call with {sym} = 0")
            ks.check_close(spec, got, exp, spec.tol(args, exp), f" with {sym} = 0")
    elif kind == "readonly-inputs":
        rw = ks.copy_args(args)
        want = spec.outputs(_call(spec, rw), rw)
        ro = ks.copy_args(args)
        for n, arr in spec.arrays.items():
            if arr.role == "in" and isinstance(ro.get(n), np.ndarray):
                ro[n].flags.writeable = False
        got = spec.outputs(_call(spec, ro), ro)
        for g, w in zip(got, want):
            if w is not None:
                assert np.asarray(g).tobytes() == np.asarray(w).tobytes()
        exp = ks.expected(spec, args)
        ks.check_close(spec, got, exp, spec.tol(args, exp))
    elif kind == "extra":
        _, mutate, exc, argname = case
        _refused(spec, mutate(args), exc, {argname}, "its own rule")
    else:  # pragma: no cover
        raise AssertionError(kind)


def test_case_count():
    """The sweep is as wide as the table says (guards against a generator bug that
    silently drops categories)."""
    kinds = {c[0] for _, _, c in CASES}
    assert kinds >= {"dtype", "list", "rank", "shape", "strided", "reversed", "fortran", "gpu", "readonly",
                     "alias", "nonfinite", "prefilled", "zero", "readonly-inputs", "extra"}
    assert len(CASES) > 500


def test_numpy_scalars_are_accepted_where_numbers_are_meant():
    """np.int64 pieces/seed/step and np.float32/0-d p are numbers, not refusals (a config
    read from an array hands these over)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, 12), dtype=np.float32)
    y, am = K.maxout_forward(z, np.int64(3))
    y2, am2 = K.maxout_forward(z, 3)
    assert y.tobytes() == y2.tobytes() and am.tobytes() == am2.tobytes()
    a = K.dropout_forward(z, np.float32(0.25), np.uint64(5), np.int32(2), np.int8(1))
    b = K.dropout_forward(z, float(np.float32(0.25)), 5, 2, 1)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    c = K.dropout_forward(z, np.array(0.25, np.float32), 5, 2, 1)
    assert c[1].tobytes() == b[1].tobytes()
