"""fastdl.optim: PyTorch defaults, state_dict round trips, decay segments, bad arguments.
(Step-by-step parity with torch.optim through a network is in test_network_torch.py.)"""

import numpy as np
import pytest

import fastdl
from fastdl import optim


def test_pytorch_defaults():
    assert optim.SGD().hyperparameters() == {"lr": 1e-3, "weight_decay": 0.0, "l1": 0.0, "decay_biases": False,
                                             "momentum": 0.0, "dampening": 0.0, "nesterov": False, "classic": False}
    a = optim.Adam()
    assert (a.lr, a.betas, a.eps, a.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert optim.AdamW().weight_decay == 1e-2 and optim.AdamW.decoupled
    g = optim.Adagrad()
    assert (g.lr, g.lr_decay, g.initial_accumulator_value, g.eps) == (1e-2, 0.0, 0.0, 1e-10)
    r = optim.RMSProp()
    assert (r.lr, r.alpha, r.eps, r.momentum, r.centered) == (1e-2, 0.99, 1e-8, 0.0, False)
    d = optim.Adadelta()
    assert (d.lr, d.rho, d.eps) == (1.0, 0.9, 1e-6)
    assert optim.RMSprop is optim.RMSProp
    assert isinstance(optim.get("adamw", lr=0.1), optim.AdamW) and optim.get("adamw", lr=0.1).lr == 0.1


def test_standalone_step_on_flat_buffers():
    p = np.ones(5, np.float32)
    g = np.full(5, 0.5, np.float32)
    opt = optim.SGD(lr=0.1, momentum=0.9)
    opt.step(p, g)
    np.testing.assert_allclose(p, 1 - 0.1 * 0.5)
    opt.step(p, g)  # b = 0.9 * 0.5 + 0.5
    np.testing.assert_allclose(p, 1 - 0.05 - 0.1 * 0.95, rtol=1e-6)
    assert opt.step_count == 2 and set(opt.state) == {"momentum_buf"}


def test_weight_decay_skips_biases_unless_asked():
    m = fastdl.Sequential([fastdl.Dense(3, 2)], seed=0)
    m.compile(optimizer=optim.SGD(lr=0.5, weight_decay=0.1))
    before = m.flat_params.copy()
    m.flat_grads[:] = 0
    m.apply_gradients()
    w, b = slice(0, 6), slice(6, 8)
    np.testing.assert_allclose(m.flat_params[w], before[w] * (1 - 0.05), rtol=1e-6)
    np.testing.assert_array_equal(m.flat_params[b], before[b])
    m2 = fastdl.Sequential([fastdl.Dense(3, 2, bias_init=1.0)], seed=0)
    m2.compile(optimizer=optim.SGD(lr=0.5, weight_decay=0.1, decay_biases=True))
    m2.flat_grads[:] = 0
    m2.apply_gradients()
    np.testing.assert_allclose(m2.flat_params[b], 0.95, rtol=1e-6)


def test_l1_regularization_pulls_weights_towards_zero():
    m = fastdl.Sequential([fastdl.Dense(3, 2, init=1.0, bias_init=1.0)], seed=0)
    m.compile(optimizer=optim.SGD(lr=0.1, l1=0.5))
    m.flat_grads[:] = 0
    m.apply_gradients()
    np.testing.assert_allclose(m.flat_params[:6], 1 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(m.flat_params[6:], 1.0)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "rmsprop", "adadelta"])
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    kwargs = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
    grads = [rng.standard_normal(50).astype(np.float32) for _ in range(6)]
    p1 = rng.standard_normal(50).astype(np.float32)
    p2 = p1.copy()
    a = optim.get(name, **kwargs)
    for g in grads[:3]:
        a.step(p1, g)
    sd = a.state_dict()
    assert sd["state"]["step"] == 3 and len(sd["param_groups"]) == 1
    b = optim.get(name, **kwargs)
    b.bind(50)
    b.load_state_dict(sd)
    for arr_name, arr in sd["state"].items():
        if arr_name != "step":
            np.testing.assert_array_equal(b.state[arr_name], arr)
    p2[:] = p1
    for g in grads[3:]:
        a.step(p1, g)
        b.step(p2, g)
    np.testing.assert_array_equal(p1, p2)
    # state_dict() hands out copies
    sd2 = a.state_dict()
    key = next(k for k in sd2["state"] if k != "step")
    sd2["state"][key][:] = 123
    assert not np.any(a.state[key] == 123)


def test_load_state_dict_rejects_mismatches():
    a = optim.Adam().bind(10)
    with pytest.raises(ValueError, match="state_dict"):
        a.load_state_dict({"state": {}})
    sd = optim.Adam().bind(12).state_dict()
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        a.load_state_dict(sd)
    with pytest.raises(ValueError, match="state buffers"):
        a.load_state_dict(optim.Adagrad().bind(10).state_dict() | {"param_groups": [{"lr": 1e-3}]})
    with pytest.raises(ValueError, match="do not belong"):
        a.load_state_dict({"state": {"step": 1}, "param_groups": [{"momentum": 0.9}]})


def test_bad_hyperparameters_name_the_argument():
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam(lr=-1)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam(lr=float("nan"))
    with pytest.raises(TypeError, match="lr"):
        optim.Adam(lr="fast")
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        optim.Adam(betas=0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(weight_decay=-0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.get("lbfgs")
    with pytest.raises(TypeError, match="optimizer"):
        optim.get(3)
    opt = optim.Adam()
    opt.lr = 0.5
    assert opt.lr == 0.5
