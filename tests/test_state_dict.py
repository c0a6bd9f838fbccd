"""Named weights: state_dict / load_state_dict (views into the flat buffer, PyTorch's
error contract), Keras's per-layer get_weights / set_weights, and the flat form."""

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout


def model(seed=0):
    return fastdl.Sequential([Dense(5, 4, activation="relu"), Dropout(0.5), Dense(4, 6), fastdl.PReLU(),
                              BatchNorm(6), Maxout(6, 3, pieces=2), Dense(3, 2, use_bias=False)], seed=seed)


def data(n=32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 2, n)


EXPECTED = [("dense_0.w", (5, 4)), ("dense_0.b", (4,)), ("dense_1.w", (4, 6)), ("dense_1.b", (6,)),
            ("dense_1.alpha", (6,)), ("batchnorm_0.gamma", (6,)), ("batchnorm_0.beta", (6,)),
            ("batchnorm_0.running_mean", (6,)), ("batchnorm_0.running_var", (6,)), ("maxout_0.w", (6, 6)),
            ("maxout_0.b", (6,)), ("dense_2.w", (3, 2))]


def test_names_order_and_shapes():
    sd = model().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == EXPECTED
    assert all(v.dtype == np.float32 for v in sd.values())
    np.testing.assert_array_equal(sd["dense_1.alpha"], 0.25)
    np.testing.assert_array_equal(sd["batchnorm_0.running_var"], 1.0)


def test_parameters_are_views_into_the_flat_buffer_unless_copied():
    m = model()
    sd = m.state_dict()
    for name, offset, shape, size, _ in m.param_layout:
        assert np.shares_memory(sd[name], m.flat_params)
        np.testing.assert_array_equal(sd[name].reshape(-1), m.flat_params[offset:offset + size])
    sd["dense_0.w"][0, 0] = 42.0
    assert m.flat_params[0] == 42.0
    assert sd["batchnorm_0.running_mean"] is m.batchnorm_statistics()[0][0]
    copied = m.state_dict(copy=True)
    copied["dense_0.b"][:] = 7.0
    assert not np.any(m.state_dict()["dense_0.b"] == 7.0)
    assert not any(np.shares_memory(v, m.flat_params) for v in copied.values())


def test_load_state_dict_makes_the_same_function():
    x, y = data()
    a = model(0).compile("adam")
    a.fit(x, y, epochs=2, batch_size=8, verbose=0)  # BatchNorm statistics move too
    b = model(1)
    assert not np.array_equal(a.predict(x), b.predict(x))
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    # lists, float64 and ints are converted
    c = model(2)
    c.load_state_dict({k: v.astype(np.float64).tolist() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(c.flat_params, a.flat_params)


def test_strict_errors_name_missing_and_unexpected_keys_and_change_nothing():
    m = model()
    before = m.get_flat_weights()
    sd = m.state_dict(copy=True)
    for v in sd.values():
        v += 1
    partial = dict(sd)
    del partial["dense_0.b"]
    partial["dense_9.w"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"missing keys \['dense_0.b'\]; unexpected keys \['dense_9.w'\]"):
        m.load_state_dict(partial)
    for a, b in zip(before, m.get_flat_weights()):
        np.testing.assert_array_equal(a, b)
    res = m.load_state_dict(partial, strict=False)
    assert res == (["dense_0.b"], ["dense_9.w"])
    np.testing.assert_array_equal(m.state_dict()["dense_0.w"], sd["dense_0.w"])
    np.testing.assert_array_equal(m.state_dict()["dense_0.b"], before[0][20:24])


def test_shape_and_type_errors_name_the_key():
    m = model()
    before = m.get_flat_weights()
    sd = m.state_dict(copy=True)
    sd["batchnorm_0.gamma"] = np.ones(7)
    sd["dense_0.w"] += 1
    with pytest.raises(ValueError, match=r"state_dict\['batchnorm_0.gamma'\]: expected shape \(6,\), got \(7,\)"):
        m.load_state_dict(sd)
    np.testing.assert_array_equal(m.get_flat_weights()[0], before[0])  # nothing written
    with pytest.raises(ValueError, match=r"expected shape \(5, 4\), got \(4, 5\)"):
        m.load_state_dict({"dense_0.w": np.zeros((4, 5))}, strict=False)
    with pytest.raises(TypeError, match=r"state_dict\['dense_0.b'\]: expected a numeric array"):
        m.load_state_dict({"dense_0.b": np.array(["a", "b", "c", "d"])}, strict=False)
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        m.load_state_dict([np.zeros(3)])


def test_torch_tensors_load_directly():
    torch = pytest.importorskip("torch")
    m = model()
    sd = {k: torch.from_numpy(v).requires_grad_(True) for k, v in model(5).state_dict(copy=True).items()}
    m.load_state_dict(sd)
    np.testing.assert_array_equal(m.flat_params, model(5).flat_params)


def test_get_weights_is_keras_per_layer_list():
    m = model()
    w = m.get_weights()
    assert [a.shape for a in w] == [s for _, s in EXPECTED]
    # copies, in state_dict's order: Dense kernel, bias (PReLU slopes); BatchNorm gamma,
    # beta, moving mean, moving variance
    for a, (k, v) in zip(w, m.state_dict().items()):
        np.testing.assert_array_equal(a, v)
        assert not np.shares_memory(a, v)


def test_set_weights_round_trip_and_errors():
    x, _ = data()
    a, b = model(0), model(1)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    with pytest.raises(ValueError, match=r"weights: expected 12 arrays \(dense_0.w, dense_0.b, .*\), got 2"):
        b.set_weights(a.get_weights()[:2])
    with pytest.raises(ValueError, match="looks like the flat buffer: use set_flat_weights"):
        b.set_weights(a.get_flat_weights())
    bad = a.get_weights()
    bad[3] = np.zeros(5)
    before = b.get_flat_weights()[0]
    with pytest.raises(ValueError, match=r"weights\[3\] \(dense_1.b\): expected shape \(6,\), got \(5,\)"):
        b.set_weights(bad)
    np.testing.assert_array_equal(b.get_flat_weights()[0], before)  # nothing written
    with pytest.raises(TypeError, match="weights: expected a list of arrays"):
        b.set_weights(None)


def test_flat_weights_are_the_buffer_and_the_statistics():
    x, y = data()
    a = model(0).compile("sgd")
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    flat = a.get_flat_weights()
    assert len(flat) == 3 and flat[0].shape == (a.num_params,)
    np.testing.assert_array_equal(flat[0], a.flat_params)
    assert not np.shares_memory(flat[0], a.flat_params)
    b = model(1)
    b.set_flat_weights(flat)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    with pytest.raises(ValueError, match="expected 3 arrays"):
        b.set_flat_weights(flat[:1])
    with pytest.raises(ValueError, match=r"weights\[0\]: expected shape"):
        b.set_flat_weights([flat[0][:-1]] + flat[1:])


def test_unbuilt_models_say_so():
    m = fastdl.Sequential([Dense(3), Dense(2)])
    for call in (m.state_dict, m.get_weights, m.get_flat_weights):
        with pytest.raises(fastdl.network.NotBuiltError, match="not built yet"):
            call()


def test_early_stopping_restores_the_best_weights_with_batchnorm_statistics():
    x, y = data(64)
    m = model(0).compile("adam")
    seen = []
    stop = fastdl.callbacks.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    keep = fastdl.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((logs["loss"],
                                                                                     m.get_weights())))
    m.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[stop, keep])
    best = min(range(len(seen)), key=lambda k: seen[k][0])
    for a, b in zip(m.get_weights(), seen[best][1]):
        np.testing.assert_array_equal(a, b)
