"""A float64 numpy reference of a fastdl.Sequential's training forward pass and loss,
read from the model's own parameters: the oracle for whole-network gradient tests."""

import numpy as np

import reference as R
import reference_losses as RL
from fastdl._stages import BatchNormStage, DenseStage, DropoutStage, MaxoutStage


def stage_params(model):
    """{stage index: {param name: (offset, shape)}} in buffer order."""
    names = {}
    for name, off, shape, _, _ in model.param_layout:
        layer, pname = name.split(".")
        names.setdefault(layer, {})[pname] = (off, shape)
    return [names.get(s.layer.name, {}) for s in model._graph.stages]


def forward_loss(model, flat, x, y, loss="softmax_cross_entropy"):
    """Loss of `model`'s architecture with parameters `flat` (float64) on (x, y), with
    training behaviour but no dropout (the tests use none)."""
    h = x.astype(np.float64)
    for stage, params in zip(model._graph.stages, stage_params(model)):
        p = {k: flat[o:o + int(np.prod(s))].reshape(s) for k, (o, s) in params.items()}
        if isinstance(stage, DenseStage):
            assert stage.p == 0
            alpha = p["alpha"] if stage.prelu else stage.scalar_alpha
            h, _ = R.dense_forward(h, p["w"], p.get("b"), stage.act, alpha)
        elif isinstance(stage, MaxoutStage):
            z = h @ p["w"] + p["b"]
            h = z.reshape(z.shape[0], -1, stage.pieces).max(axis=2)
        elif isinstance(stage, BatchNormStage):
            mean = h.mean(axis=0)
            var = h.var(axis=0)
            h = p["gamma"] * (h - mean) / np.sqrt(var + stage.eps) + p["beta"]
        elif isinstance(stage, DropoutStage):
            assert stage.p == 0
        else:
            raise AssertionError(stage)
    if loss == "softmax_cross_entropy":
        return RL.softmax_cross_entropy(h, y)[0]
    if loss == "mse":
        return RL.mse(h, y)[0]
    return RL.binary_cross_entropy(h, y)[0]


def finite_difference_grads(model, x, y, loss="softmax_cross_entropy", eps=1e-6):
    flat = np.asarray(model.flat_params, dtype=np.float64).copy()
    grads = np.empty_like(flat)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = forward_loss(model, flat, x, y, loss)
        flat[i] = old - eps
        down = forward_loss(model, flat, x, y, loss)
        flat[i] = old
        grads[i] = (up - down) / (2 * eps)
    return grads
