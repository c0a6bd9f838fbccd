"""Sequential(device="cuda") trains a narrow network through the fused small-MLP kernels
by default (step_plan.execution == "fused_mlp"), with the per-layer kernels as its
oracle; wider networks, dropout or PReLU keep the per-layer path and say why."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import Dense, Dropout  # noqa: E402


def _model(layers, loss="softmax_cross_entropy", seed=0):
    m = fastdl.Sequential(layers, device="cuda", seed=seed)
    m.compile(optimizer=fastdl.optim.Adam(lr=1e-2), loss=loss, metrics=["accuracy"])
    return m


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_a_narrow_network_takes_the_fused_step_and_matches_the_layers(act):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 12)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    layers = lambda: [Dense(12, 16, activation=act), Dense(16, 16, activation=act), Dense(16, 4)]  # noqa: E731
    fused, oracle = _model(layers()), _model(layers())
    assert fused.step_plan.execution == "fused_mlp"
    oracle._stepper._fused = None  # the per-layer kernels
    for _ in range(3):
        la, lb = fused.train_step(x, y), oracle.train_step(x, y)
        assert la == pytest.approx(lb, rel=1e-5)
    np.testing.assert_allclose(fused.flat_params.copy_to_host(), oracle.flat_params.copy_to_host(),
                               rtol=1e-4, atol=1e-5)
    h = fused.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(h.history["loss"]).all() and "accuracy" in h.history


def test_networks_the_fused_mlp_cannot_run_say_why():
    wide = _model([Dense(8, 256, activation="relu"), Dense(256, 3)])
    assert wide.step_plan.execution == "layers" and "width 256" in wide.step_plan.reason
    drop = _model([Dense(8, 16, activation="relu"), Dropout(0.5), Dense(16, 3)])
    assert drop.step_plan.execution == "layers" and "Dropout" in drop.step_plan.reason
    prelu = _model([Dense(8, 16, activation="prelu"), Dense(16, 3)])
    assert prelu.step_plan.execution == "layers" and "prelu" in prelu.step_plan.reason


def test_the_fused_step_launches_seven_kernels_and_copies_only_the_loss(monkeypatch):
    rng = np.random.default_rng(1)
    model = _model([Dense(8, 16, activation="relu"), Dense(16, 16, activation="relu"), Dense(16, 4)])
    xd = cuda.to_device(rng.standard_normal((8, 8)).astype(np.float32))
    yd = cuda.to_device(rng.integers(0, 4, 8).astype(np.int64))
    model.train_step(xd, yd)  # the first step allocates its buffers
    counts = cref.count_device_traffic(monkeypatch)
    assert isinstance(model.train_step(xd, yd), float)
    # forward, the labels' check and the loss's two, the backward chain, the weight
    # gradients; then Adam
    assert dict(counts) == {"launch": 7, "to_host": 1}
