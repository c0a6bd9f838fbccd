"""Parity with PyTorch: the same architecture and initial weights, trained for several
steps with each optimizer, give the same parameters (float32 tolerances)."""

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense

torch = pytest.importorskip("torch")


def torch_twin(model):
    """A torch.nn.Sequential with model's architecture and current weights, plus the
    torch parameters that correspond to model.named_parameters(), in the same order."""
    mods, params = [], []
    named = dict(model.named_parameters())
    for stage in model._graph.stages:
        name = stage.layer.name
        if name.startswith("dense"):
            w = named[f"{name}.w"]
            lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=f"{name}.b" in named)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                if lin.bias is not None:
                    lin.bias.copy_(torch.from_numpy(named[f"{name}.b"]))
            mods.append(lin)
            params += [lin.weight] + ([lin.bias] if lin.bias is not None else [])
            act = {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(), "linear": None, "gelu": torch.nn.GELU(),
                   "sigmoid": torch.nn.Sigmoid(), "elu": torch.nn.ELU(), "silu": torch.nn.SiLU()}
            if stage.act == "prelu":
                pr = torch.nn.PReLU(w.shape[1])
                with torch.no_grad():
                    pr.weight.copy_(torch.from_numpy(named[f"{name}.alpha"]))
                mods.append(pr)
                params.append(pr.weight)
            elif act[stage.act] is not None:
                mods.append(act[stage.act])
        elif name.startswith("batchnorm"):
            bn = torch.nn.BatchNorm1d(stage.layer.num_features, eps=stage.eps, momentum=stage.momentum)
            mods.append(bn)
            params += [bn.weight, bn.bias]
        else:
            raise AssertionError(name)
    return torch.nn.Sequential(*mods), params


def as_fastdl_order(tparams):
    return np.concatenate([(p.detach().numpy().T if p.ndim == 2 else p.detach().numpy()).reshape(-1)
                           for p in tparams])


OPTIMIZERS = {
    "sgd": (lambda: fastdl.optim.SGD(lr=0.1), lambda g: torch.optim.SGD(g, lr=0.1)),
    "sgd-momentum-nesterov-wd": (
        lambda: fastdl.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
        lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "sgd-dampening": (lambda: fastdl.optim.SGD(lr=0.05, momentum=0.8, dampening=0.3),
                      lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.8, dampening=0.3)),
    "adam": (lambda: fastdl.optim.Adam(lr=1e-2), lambda g: torch.optim.Adam(g, lr=1e-2)),
    "adam-l2": (lambda: fastdl.optim.Adam(lr=1e-2, weight_decay=0.1),
                lambda g: torch.optim.Adam(g, lr=1e-2, weight_decay=0.1)),
    "adamw": (lambda: fastdl.optim.AdamW(lr=1e-2, betas=(0.8, 0.99)),
              lambda g: torch.optim.AdamW(g, lr=1e-2, betas=(0.8, 0.99))),
    "adagrad": (lambda: fastdl.optim.Adagrad(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
                lambda g: torch.optim.Adagrad(g, lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1)),
    "rmsprop-centered-momentum": (
        lambda: fastdl.optim.RMSProp(lr=1e-2, momentum=0.5, centered=True, weight_decay=1e-3),
        lambda g: torch.optim.RMSprop(g, lr=1e-2, momentum=0.5, centered=True, weight_decay=1e-3)),
    "adadelta": (lambda: fastdl.optim.Adadelta(lr=1.0, weight_decay=1e-2),
                 lambda g: torch.optim.Adadelta(g, lr=1.0, weight_decay=1e-2)),
}


def groups(model, tparams, tmodel):
    """Weight decay on the weight matrices only, as fastdl's decay_segments do."""
    decay = [p for p in tparams if p.ndim == 2]
    rest = [p for p in tparams if p.ndim != 2]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_training_steps_match_pytorch(opt):
    make_fastdl, make_torch = OPTIMIZERS[opt]
    rng = np.random.default_rng(0)
    model = fastdl.Sequential([Dense(12, 16, activation="relu"), Dense(16, 8, activation="tanh"), Dense(8, 4)],
                              seed=1)
    model.compile(optimizer=make_fastdl(), loss="softmax_cross_entropy")
    tmodel, tparams = torch_twin(model)
    topt = make_torch(groups(model, tparams, tmodel))
    np.testing.assert_allclose(as_fastdl_order(tparams), model.flat_params, rtol=0, atol=0)
    for step in range(6):
        x = rng.standard_normal((16, 12)).astype(np.float32)
        y = rng.integers(0, 4, 16)
        loss = model.train_step(x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-4, abs=1e-5)
        np.testing.assert_allclose(model.flat_params, as_fastdl_order(tparams), rtol=2e-4, atol=2e-5,
                                   err_msg=f"after step {step + 1}")


def test_prelu_and_batchnorm_network_matches_pytorch():
    rng = np.random.default_rng(1)
    model = fastdl.Sequential([Dense(10, 12), fastdl.PReLU(), BatchNorm(12), Dense(12, 3)], seed=2)
    model.compile(optimizer=fastdl.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-2))
    tmodel, tparams = torch_twin(model)
    topt = torch.optim.SGD(groups(model, tparams, tmodel), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for step in range(5):
        x = rng.standard_normal((20, 10)).astype(np.float32)
        y = rng.integers(0, 3, 20)
        model.train_step(x, y)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
        np.testing.assert_allclose(model.flat_params, as_fastdl_order(tparams), rtol=2e-4, atol=2e-5)
    bn, tbn = model._graph.stages[1], tmodel[2]
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-4, atol=1e-6)
    tmodel.eval()
    x = rng.standard_normal((7, 10)).astype(np.float32)
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-5)


def test_mse_regression_matches_pytorch():
    rng = np.random.default_rng(3)
    model = fastdl.Sequential([Dense(6, 8, activation="gelu"), Dense(8, 2)], seed=0)
    model.compile(optimizer=fastdl.optim.Adam(lr=1e-2), loss="mse")
    tmodel, tparams = torch_twin(model)
    topt = torch.optim.Adam(tparams, lr=1e-2)
    for _ in range(5):
        x = rng.standard_normal((9, 6)).astype(np.float32)
        y = rng.standard_normal((9, 2)).astype(np.float32)
        loss = model.train_step(x, y)
        topt.zero_grad()
        tl = torch.nn.functional.mse_loss(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        topt.step()
        assert loss == pytest.approx(tl.item(), rel=1e-5)
    np.testing.assert_allclose(model.flat_params, as_fastdl_order(tparams), rtol=2e-4, atol=2e-5)
