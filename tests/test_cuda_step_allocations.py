"""A training step on device="cuda" allocates no device memory after a batch size's first
step: the stages pass their kept buffers as out=, and the kernels' internal intermediates
(dz, partial sums, the decay-segment table) are kept per shape (fastdl.cuda.arrays.scratch).
Numba allocates and frees device memory per array (cuMemFree synchronizes), so a step
that allocated would pay for it every time. Counted by wrapping numba.cuda's allocators."""

import collections

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import BatchNorm, Dense, Dropout, Maxout, Sequential  # noqa: E402


@pytest.fixture
def allocations(monkeypatch):
    """Counts calls of numba.cuda's device allocators (by name) while the test runs."""
    counts = collections.Counter()
    for name in ("device_array", "device_array_like", "to_device", "pinned_array", "mapped_array"):
        original = getattr(cuda, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(cuda, name, counted)
    return counts


def _model(loss):
    model = Sequential([Dropout(0.2), Dense(8, 16, activation="relu"), Dropout(0.5),
                        Dense(16, 16, activation="gelu"), BatchNorm(16), Maxout(16, 8, pieces=2),
                        Dense(8, 16, activation="prelu"), Dense(16, 4)], seed=0, device="cuda")
    model.compile(optimizer=fastdl.optim.AdamW(1e-3), loss=loss)  # weight decay: the segment table
    return model


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_a_cuda_training_step_allocates_no_device_memory_after_the_first(loss, allocations):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8)).astype(np.float32)
    y = (rng.integers(0, 4, 8).astype(np.int64) if loss == "softmax_cross_entropy"
         else rng.uniform(0, 1, (8, 4)).astype(np.float32))
    model = _model(loss)
    model.train_step(x, y)
    model.train_step(x[:5], y[:5])  # a second batch size gets its own buffers
    assert sum(allocations.values()) > 0  # the counting sees the first steps' buffers
    allocations.clear()
    model.train_step(x, y)
    model.train_step(x[:5], y[:5])
    assert not allocations, f"device allocations per step: {dict(allocations)}"
