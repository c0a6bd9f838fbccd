"""Property-based fuzzing of every kernel in fastdl.kernels against the float64
references (table in kernel_specs.py), on every ISA path this CPU runs.

Hypothesis draws the sizes (zero included where the kernel accepts it), a seed for the
values, a magnitude regime per array (unit, tiny down to 1e-20, huge up to 1e4, exact
zeros and signed zeros, subnormals, ties) and, in a fraction of the examples, a wrong
memory layout or dtype for one argument, which must be refused with the argument's
name and no array changed. Results must lie within the float32 rounding bound the spec
computes (a dot product of length k within ~2(k+2) eps * sum|terms|, and so on), and
inputs must never be written.

Reproducible: derandomize=True (examples derived from the test's name, no database), so
CI runs the same examples every time. FASTDL_FUZZ_EXAMPLES scales the example count.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
from fastdl import kernels as K

import kernel_specs as ks
from conftest import ISAS
from kernel_specs import SPECS

EXAMPLES = int(os.environ.get("FASTDL_FUZZ_EXAMPLES", "60"))
REGIMES = ("unit", "tiny", "huge", "zeros", "specials", "ties")


def _scalable(spec, name, a):
    arr = spec.arrays[name]
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.size == 0:
        return False
    # statistics and probabilities keep their meaning under a positive scale only
    return arr.role != "out"


def _apply_regime(rng, a, regime, name):
    if regime == "unit":
        return a
    if regime == "tiny":
        return (a * np.float32(10.0 ** -rng.integers(6, 21))).astype(np.float32)
    if regime == "huge":
        return (a * np.float32(10.0 ** rng.integers(2, 5))).astype(np.float32)
    if regime == "zeros":
        b = a.copy()
        b.flat[rng.random(b.size) < 0.5] = 0.0
        b.flat[rng.random(b.size) < 0.2] = -0.0
        return b
    if regime == "specials":
        b = a.copy()
        specials = np.array([0.0, -0.0, 1e-40, -1e-40, 1e-38, 1e4, -1e4, 1.0, -1.0], np.float32)
        pick = rng.random(b.size) < 0.3
        b.flat[pick] = rng.choice(specials, int(pick.sum()))
        return b
    if regime == "ties":
        b = a.copy()
        b.flat[:] = np.round(b.flat[:] * 2) / 2  # few distinct values: ties everywhere
        return b
    raise AssertionError(regime)


def _keep_valid(spec, args):
    # Arguments whose meaning needs a sign: variances, inverse stds, sample weights.
    for n in ("running_var", "save_invstd", "sum_sq", "square_avg", "acc_delta", "exp_avg_sq", "sample_weight"):
        if n in args and isinstance(args[n], np.ndarray):
            args[n] = np.abs(args[n])
    return args


def _snapshot(args):
    return {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}


def _check_inputs_untouched(spec, args, snaps):
    for k, s in snaps.items():
        if spec.arrays.get(k) is not None and spec.arrays[k].role == "in":
            assert args[k].tobytes() == s.tobytes(), f"{spec.id} wrote its input '{k}'"


@pytest.fixture(params=ISAS)
def each_isa(request):
    previous = fastdl.get_isa()
    fastdl.set_isa(request.param)
    yield request.param
    fastdl.set_isa(previous)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_fuzz_against_reference(spec, each_isa):
    fn = getattr(K, spec.kernel)
    arrays = list(spec.arrays)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        sizes = {s: data.draw(st.integers(lo, hi), label=s) for s, (lo, hi) in spec.fuzz_sizes.items()}
        seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
        rng = np.random.default_rng(seed)
        args = ks.build(spec, rng, sizes)
        mode = data.draw(st.sampled_from(["values"] * 6 + ["layout", "dtype"]), label="mode")
        if mode == "values":
            for name in arrays:
                if name in args and _scalable(spec, name, args[name]):
                    regime = data.draw(st.sampled_from(REGIMES), label=f"regime {name}")
                    args[name] = _apply_regime(rng, args[name], regime, name)
            args = _keep_valid(spec, args)
            exp = ks.expected(spec, args)
            snaps = _snapshot(args)
            got = spec.outputs(fn(**args), args)
            _check_inputs_untouched(spec, args, snaps)
            ks.check_close(spec, got, exp, spec.tol(args, exp), f" on {each_isa} with sizes {sizes}")
            return
        name = data.draw(st.sampled_from([n for n in arrays if n in args]), label="argument")
        a = args[name]
        if mode == "layout":
            if a.ndim == 0 or a.size < 2:
                return  # an empty or one-element view is contiguous whatever its strides
            axis = data.draw(st.sampled_from([d for d in range(a.ndim) if a.shape[d] > 1]), label="axis")
            step = data.draw(st.sampled_from([2, 3, -1, -2]), label="step")
            big_shape = list(a.shape)
            big_shape[axis] *= abs(step)
            big = np.zeros(big_shape, a.dtype)
            sl = [slice(None)] * a.ndim
            sl[axis] = slice(None, None, step)
            view = big[tuple(sl)]
            view[...] = a
            assert not view.flags.c_contiguous
            args[name] = view
            exc = ValueError
        else:
            dt = data.draw(st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_,
                                            np.complex64]), label="dtype")
            if np.dtype(dt) in spec.arrays[name].dtype:
                return
            args[name] = a.astype(dt)
            exc = TypeError
            if spec.kernel == "softmax_cross_entropy" and name == "target" and np.dtype(dt) in (
                    np.dtype(np.int32), np.dtype(np.int64)):
                exc = ValueError  # the labels form, with a probabilities shape
        snaps = _snapshot(args)
        with pytest.raises(exc) as ei:
            fn(**args)
        assert str(ei.value).startswith(f"{name}:"), str(ei.value)
        for k, s in snaps.items():
            assert args[k].tobytes() == s.tobytes(), f"{spec.id}: refused call changed '{k}'"

    run()
