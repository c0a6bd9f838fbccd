"""What one training step on device="cuda" asks of the device, counted by wrapping
numba's launch and copy calls (on the simulator in CI, on a GPU as well): the kernel
launches the design promises (a Dense layer's forward is one launch; its backward three,
two for the first layer, which needs no dx; a loss two, three for labels, whose check
runs first so that a refused call writes nothing; the optimizer one over the flat
buffer), one copy to the host (the loss train_step returns, which waits for the step to
finish) and none to the device when the batch is already there. Every launch costs the
host tens of microseconds and every copy waits for the device, so a step that grew one
would slow every small network."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import Dense, Sequential  # noqa: E402

LOSS_LAUNCHES = 2  # the gradient with per-row (or per-block) partials, then their sum
LABEL_CHECK_LAUNCHES = {"softmax_cross_entropy": 1}  # the labels, checked before anything is written
OPTIMIZER_LAUNCHES = 1


def _batch(loss, n, classes, rng):
    x = rng.standard_normal((n, 8)).astype(np.float32)
    if loss == "softmax_cross_entropy":
        return x, rng.integers(0, classes, n).astype(np.int64)
    return x, rng.uniform(0, 1, (n, classes)).astype(np.float32)


def _dense_model(loss):
    model = Sequential([Dense(8, 16, activation="relu"), Dense(16, 16, activation="gelu"), Dense(16, 4)],
                       seed=0, device="cuda")
    model.compile(optimizer=fastdl.optim.Adam(1e-3), loss=loss)
    return model


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse", "binary_cross_entropy"])
def test_a_dense_step_launches_what_the_design_says_and_copies_only_the_loss(loss, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = _batch(loss, 8, 4, rng)
    model = _dense_model(loss)
    xd, yd = cuda.to_device(x), cuda.to_device(y)
    model.train_step(xd, yd)  # the first step allocates its buffers
    counts = cref.count_device_traffic(monkeypatch)
    loss_value = model.train_step(xd, yd)
    assert isinstance(loss_value, float)
    layers = 3
    launches = layers + LOSS_LAUNCHES + LABEL_CHECK_LAUNCHES.get(loss, 0) + (3 * layers - 1) + OPTIMIZER_LAUNCHES
    assert dict(counts) == {"launch": launches, "to_host": 1}


def test_a_host_batch_is_copied_once_each_way_in(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = _batch("softmax_cross_entropy", 8, 4, rng)
    model = _dense_model("softmax_cross_entropy")
    model.train_step(x, y)
    counts = cref.count_device_traffic(monkeypatch)
    model.train_step(x, y)
    assert counts["to_device"] == 2 and counts["to_host"] == 1


def test_a_bad_label_is_still_reported_and_the_next_call_is_clean():
    # The first-bad-label slot is put back by the kernel that reads it: a refused call
    # must not leave it set for the next one.
    from fastdl.cuda import kernels as G

    logits = cuda.to_device(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"target: label 7 at index 2 is outside \[0, 3\)"):
        G.softmax_cross_entropy(logits, cuda.to_device(np.array([0, 1, 7], np.int64)))
    loss, _ = G.softmax_cross_entropy(logits, cuda.to_device(np.array([0, 1, 2], np.int64)))
    assert loss == pytest.approx(np.log(3.0), rel=1e-6)
    with pytest.raises(ValueError, match=r"label -1 at index 0"):
        G.softmax_cross_entropy(logits, cuda.to_device(np.array([-1, 1, 9], np.int32)))
