"""fit on device="cuda" (the simulator in CI) refuses NaN-loss steps as on the CPU:
GPU activations propagate NaN (a relu written as max(z, 0) would hide it), and the
batch-norm running statistics on the device are put back."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS] + [
    pytest.mark.filterwarnings("ignore::RuntimeWarning")]  # the simulator computes NaN with numpy scalars

import fastdl  # noqa: E402
from fastdl import _device  # noqa: E402


def test_nan_step_skipped_or_refused_on_the_gpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    x[40] = np.nan
    m = fastdl.Sequential([fastdl.Dense(6, 8, activation="relu"), fastdl.BatchNorm(8), fastdl.Dense(8, 3)],
                          device="cuda", seed=0)
    m.compile(optimizer="adam")
    h = m.fit(x, y, epochs=2, batch_size=16, verbose=0, on_nonfinite_loss="skip")
    assert h.history["skipped_steps"] == [1, 1]
    assert np.isfinite(_device.to_host(m.flat_params)).all()
    bn = m._graph.bn_stages[0]
    assert np.isfinite(_device.to_host(bn.running_mean)).all() and np.isfinite(_device.to_host(bn.running_var)).all()
    before = _device.to_host(m.flat_params).copy()
    with pytest.raises(fastdl.NonFiniteLossError, match="epoch 1, step 3"):
        m.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    after = _device.to_host(m.flat_params)
    assert np.isfinite(after).all() and not np.array_equal(after, before)  # steps 1-2 applied, 3 refused
