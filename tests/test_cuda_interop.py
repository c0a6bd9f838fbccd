"""Models on device="cuda" (the simulator in CI) travel as CPU models do: named weights
come back as host copies, pickles rebuild on the GPU, and the exporters read the device
arrays."""

import copy
import pickle

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import BatchNorm, Dense, Dropout, _device  # noqa: E402


def model(device, seed=0):
    return fastdl.Sequential([Dense(6, 8, activation="prelu"), BatchNorm(8), Dropout(0.25), Dense(8, 3)],
                             device=device, seed=seed)


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 6)).astype(np.float32), rng.integers(0, 3, 32)


def test_state_dict_and_weights_on_the_gpu():
    x, y = data()
    g, c = model("cuda"), model("cpu")
    assert list(g.state_dict()) == list(c.state_dict())
    assert all(_device.is_device_array(v) for v in g.state_dict().values())
    host = g.state_dict(copy=True)
    for (k, v), (_, w) in zip(host.items(), c.state_dict().items()):
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, w, err_msg=k)
    other = model("cuda", seed=5)
    other.load_state_dict(g.state_dict())  # device arrays load too
    np.testing.assert_array_equal(_device.to_host(other.flat_params), _device.to_host(g.flat_params))
    other.set_weights(c.get_weights())
    np.testing.assert_allclose(other.predict(x), c.predict(x), rtol=1e-5, atol=1e-6)


def test_pickle_rebuilds_on_the_gpu_and_trains_on_identically():
    x, y = data()
    m = model("cuda").compile("adam")
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for r in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert r.device == "cuda" and _device.is_device_array(r.flat_params)
        np.testing.assert_array_equal(r.predict(x), m.predict(x))
        r.fit(x, y, epochs=1, batch_size=16, verbose=0)
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(_device.to_host(r.flat_params), _device.to_host(m.flat_params))


def test_torch_export_reads_the_device_arrays():
    torch = pytest.importorskip("torch")
    from fastdl import interop

    x, y = data()
    m = model("cuda").compile("adam")
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    net = interop.to_torch(m)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, m.predict(x), rtol=1e-5, atol=1e-5)
    back = interop.from_torch(net, device="cuda")
    np.testing.assert_allclose(back.predict(x), m.predict(x), rtol=1e-5, atol=1e-5)
