"""model.save / fastdl.load: round trips (architecture, weights, BatchNorm statistics,
optimizer state, training counters), atomicity, and clear errors for foreign files."""

import os
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout


def trained(tmp_path=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    m = fastdl.Sequential([Dropout(0.1), Dense(6, 8), fastdl.PReLU(), BatchNorm(8), Maxout(8, 4, pieces=2),
                           Dropout(0.2), Dense(4, 5, activation="leaky_relu", alpha=0.1, max_norm=2.0),
                           Dropout(0.3, scale_at_test=True), Dense(5, 3, init="he_normal", bias_init=0.1)], seed=3)
    m.compile(optimizer=fastdl.optim.AdamW(lr=3e-3, betas=(0.8, 0.9)), loss="softmax_cross_entropy",
              metrics=["accuracy"])
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return m, x, y


def test_round_trip_restores_everything_and_training_continues_identically(tmp_path):
    m, x, y = trained()
    path = tmp_path / "model.fdl"
    m.save(path)
    r = fastdl.load(path)
    assert r.get_config() == m.get_config()
    np.testing.assert_array_equal(r.flat_params, m.flat_params)
    for a, b in zip(r.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(r.predict(x), m.predict(x))
    assert isinstance(r.optimizer, fastdl.optim.AdamW) and r.optimizer.betas == (0.8, 0.9)
    assert r.optimizer.step_count == m.optimizer.step_count == 8
    for k in m.optimizer.state:
        np.testing.assert_array_equal(r.optimizer.state[k], m.optimizer.state[k])
    assert r.metrics == ["accuracy"] and r._step == m._step
    # same dropout masks, same shuffling, same updates from here on
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    r.fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(r.flat_params, m.flat_params)


def test_uncompiled_model_round_trip(tmp_path):
    m = fastdl.Sequential([Dense(3, 2, activation="gelu")], seed=1)
    m.save(tmp_path / "m.fdl")
    r = fastdl.load(tmp_path / "m.fdl")
    assert r.optimizer is None
    np.testing.assert_array_equal(r.flat_params, m.flat_params)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    m, _, _ = trained()
    path = tmp_path / "model.fdl"
    m.save(path)
    original = path.read_bytes()
    m.flat_params[:] = 0

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.fdl"]  # no temporary left behind
    monkeypatch.undo()
    np.testing.assert_array_equal(fastdl.load(path).flat_params != 0, True)


def test_save_interrupted_before_rename_keeps_the_old_file(tmp_path, monkeypatch):
    m, _, _ = trained()
    path = tmp_path / "model.fdl"
    m.save(path)
    original = path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        m.save(path)
    assert path.read_bytes() == original
    assert len(list(tmp_path.iterdir())) == 1


def test_corrupt_truncated_and_foreign_files_are_clear_errors(tmp_path):
    m, _, _ = trained()
    good = tmp_path / "good.fdl"
    m.save(good)
    data = good.read_bytes()
    cases = {
        "truncated.fdl": data[: len(data) // 2],
        "text.fdl": b"hello, I am not a model\n",
        "empty.fdl": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "fake.zip", "w") as z:
        z.writestr("fastdl.json", "not numpy")
    for name in [*cases, "plain.npz", "fake.zip"]:
        with pytest.raises(fastdl.ModelFileError, match="fastdl model"):
            fastdl.load(tmp_path / name)
    assert issubclass(fastdl.ModelFileError, ValueError)
    with pytest.raises(FileNotFoundError):
        fastdl.load(tmp_path / "missing.fdl")
    with pytest.raises(fastdl.ModelFileError, match="folder"):
        fastdl.load(tmp_path)
