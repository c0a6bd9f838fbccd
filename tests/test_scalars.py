"""Scalars everywhere -- kernels, optimizers, layers, losses, schedules -- follow one set
of rules (csrc/bindings/checks.h on the C++ side, fastdl/_scalars.py on the Python side):

- a bool is not a number: TypeError naming the argument;
- numpy scalars (np.float32, np.int64) and 0-d arrays are numbers, accepted and giving
  what the Python number gives;
- a value that does not fit (10**400, a step of 2**63) is a ValueError naming the
  argument, never pybind11's RuntimeError or its signature dump;
- hyperparameters are finite (elu alpha=inf is a ValueError).
(The kernels' refusals are also in tests/kernel_specs.py, swept by test_bad_input.py.)
"""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K
from fastdl import losses, optim, schedules
from fastdl._scalars import integer, real


def _raises(exc, name, fn):
    with pytest.raises(exc) as e:
        fn()
    assert type(e.value) is exc, (type(e.value), e.value)
    msg = str(e.value)
    assert msg.startswith(f"{name}:"), msg
    assert "incompatible function arguments" not in msg
    return msg


@pytest.fixture
def dense():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 5), dtype=np.float32), rng.standard_normal((5, 3), dtype=np.float32),
            np.zeros(3, np.float32))


@pytest.fixture
def adam():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(10, dtype=np.float32)
    return p, rng.standard_normal(10, dtype=np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32)


# -- the rules, as the examples -------------------------------------------------------
def test_bools_are_not_numbers(dense, adam):
    x, w, b = dense
    p, g, m, v = adam
    _raises(TypeError, "alpha", lambda: K.dense_forward(x, w, b, "leaky_relu", alpha=True))
    _raises(TypeError, "lr", lambda: K.adam_step(p, g, m, v, lr=True, step=1))
    _raises(TypeError, "step", lambda: K.adam_step(p, g, m, v, lr=0.1, step=True))
    _raises(TypeError, "label_smoothing",
            lambda: K.softmax_cross_entropy(x, np.zeros(4, np.int64), label_smoothing=True))
    _raises(TypeError, "lr", lambda: optim.SGD(lr=True))
    _raises(TypeError, "lr", lambda: setattr(optim.Adam(), "lr", np.True_))
    _raises(TypeError, "betas", lambda: optim.Adam(betas=(True, 0.9)))
    _raises(TypeError, "momentum", lambda: optim.SGD(momentum=False))
    _raises(TypeError, "label_smoothing", lambda: losses.SoftmaxCrossEntropy(label_smoothing=True))
    _raises(TypeError, "alpha", lambda: fastdl.LeakyReLU(alpha=True))
    _raises(TypeError, "p", lambda: fastdl.Dropout(True))
    _raises(TypeError, "momentum", lambda: fastdl.BatchNorm(4, momentum=True))
    _raises(TypeError, "out_features", lambda: fastdl.Dense(4, True))
    _raises(TypeError, "gamma", lambda: schedules.ExponentialDecay(True))
    _raises(TypeError, "step_size", lambda: schedules.StepDecay(True))
    _raises(TypeError, "t", lambda: schedules.ExponentialDecay(0.9, initial_lr=0.1)(True))


def test_numpy_scalars_and_0d_arrays_are_numbers(dense, adam):
    x, w, b = dense
    want = K.dense_forward(x, w, b, "leaky_relu", alpha=0.25)
    for alpha in (np.float32(0.25), np.float64(0.25), np.array(0.25), np.array(0.25, np.float32)):
        np.testing.assert_array_equal(K.dense_forward(x, w, b, "leaky_relu", alpha=alpha), want)
    p, g, m, v = adam
    ref = [a.copy() for a in adam]
    K.adam_step(*ref, lr=0.01, step=3, beta1=0.8)
    K.adam_step(p, g, m, v, lr=np.float32(0.01), step=np.int64(3), beta1=np.array(0.8))
    for a, r in zip((p, m, v), (ref[0], ref[2], ref[3])):
        np.testing.assert_array_equal(a, r)
    y = np.zeros(4, np.int64)
    assert K.softmax_cross_entropy(x[:, :3].copy(), y, label_smoothing=np.float32(0.5))[0] == \
        K.softmax_cross_entropy(x[:, :3].copy(), y, label_smoothing=float(np.float32(0.5)))[0]
    assert optim.Adam(lr=np.float32(0.5)).lr == 0.5 and optim.SGD(momentum=np.array(0.5)).momentum == 0.5
    assert fastdl.Dense(np.int64(4), np.array(3)).out_features == 3
    assert fastdl.Dropout(np.float32(0.5)).p == 0.5
    assert fastdl.LeakyReLU(np.float32(0.25)).alpha == 0.25
    assert losses.SoftmaxCrossEntropy(np.float64(0.1)).label_smoothing == 0.1
    s = schedules.StepDecay(np.int64(2), np.float32(0.5), initial_lr=np.float32(1.0))
    assert s(np.int64(4)) == 0.25
    assert schedules.CosineDecay(np.int64(10), initial_lr=1.0)(np.array(10)) == 0.0


def test_values_that_do_not_fit_are_value_errors_naming_the_argument(dense, adam):
    x, w, b = dense
    p, g, m, v = adam
    _raises(ValueError, "alpha", lambda: K.dense_forward(x, w, b, "leaky_relu", alpha=10 ** 400))
    _raises(ValueError, "step", lambda: K.adam_step(p, g, m, v, lr=0.1, step=2 ** 63))
    _raises(ValueError, "step", lambda: K.adagrad_step(p, g, m, lr=0.1, step=2 ** 64))
    _raises(ValueError, "lr", lambda: K.sgd_step(p, g, None, lr=10 ** 400))
    _raises(ValueError, "eps", lambda: K.batchnorm_forward_eval(x, None, None, np.zeros(5, np.float32),
                                                                np.ones(5, np.float32), eps=10 ** 400))
    _raises(ValueError, "lr", lambda: optim.Adam(lr=10 ** 400))
    _raises(ValueError, "lr", lambda: optim.SGD(lr=1e300))  # the kernels would refuse it at the first step
    _raises(ValueError, "weight_decay", lambda: optim.AdamW(weight_decay=1e39))
    _raises(ValueError, "gamma", lambda: schedules.ExponentialDecay(10 ** 400))
    _raises(ValueError, "alpha", lambda: fastdl.ELU(alpha=10 ** 400))


def test_non_finite_hyperparameters_are_refused(dense):
    x, w, b = dense
    _raises(ValueError, "alpha", lambda: K.dense_forward(x, w, b, "elu", alpha=float("inf")))
    _raises(ValueError, "alpha", lambda: fastdl.ELU(alpha=float("inf")))
    _raises(ValueError, "alpha", lambda: fastdl.Dense(3, 2, activation="elu", alpha=float("nan")))
    _raises(ValueError, "eps", lambda: optim.Adam(eps=float("inf")))
    _raises(ValueError, "dampening", lambda: optim.SGD(dampening=float("nan")))
    _raises(ValueError, "weight_decay", lambda: optim.AdamW(weight_decay=float("inf")))
    _raises(ValueError, "min_lr", lambda: schedules.CosineDecay(10, min_lr=float("inf")))
    _raises(ValueError, "max_norm", lambda: fastdl.Dense(3, 2, max_norm=float("inf")))
    _raises(ValueError, "eps", lambda: fastdl.BatchNorm(3, eps=float("nan")))


def test_load_state_dict_checks_the_step_before_changing_anything():
    opt = optim.Adam(lr=0.1)
    opt.bind(4)
    for bad, exc in ((-3, ValueError), (2 ** 63, ValueError), (1.5, TypeError), (True, TypeError)):
        _raises(exc, "step", lambda: opt.load_state_dict({"state": {"step": bad}, "param_groups": [{"lr": 0.5}]}))
        assert opt.lr == 0.1 and opt.step_count == 0


# -- the helper itself ----------------------------------------------------------------------
@pytest.mark.parametrize("value,exc", [("1", TypeError), (None, TypeError), (1j, TypeError), ([1.0], TypeError),
                                       (np.array([1.0]), TypeError), (np.bool_(True), TypeError),
                                       (np.array(True), TypeError), (10 ** 400, ValueError),
                                       (float("nan"), ValueError), (-float("inf"), ValueError)])
def test_real_refuses(value, exc):
    _raises(exc, "x", lambda: real("x", value))


def test_real_ranges_and_float32():
    assert real("x", 3) == 3.0 and isinstance(real("x", np.int8(3)), float)
    _raises(ValueError, "x", lambda: real("x", 0.0, 0.0, lo_open=True))
    _raises(ValueError, "x", lambda: real("x", 1.0, 0.0, 1.0, hi_open=True))
    assert real("x", 1.0, 0.0, 1.0) == 1.0
    _raises(ValueError, "x", lambda: real("x", 1e300, float32=True))
    assert real("x", float("nan"), finite=False) != real("x", float("nan"), finite=False)


@pytest.mark.parametrize("value,exc", [(1.0, TypeError), (True, TypeError), ("3", TypeError), (np.float32(3), TypeError),
                                       (np.array([3]), TypeError), (-1, ValueError), (2 ** 64, ValueError)])
def test_integer_refuses(value, exc):
    _raises(exc, "n", lambda: integer("n", value, 0, 2 ** 63 - 1))


def test_integer_accepts_numpy_ints():
    assert integer("n", np.uint64(2 ** 63), 0) == 2 ** 63
    assert integer("n", np.array(5)) == 5
