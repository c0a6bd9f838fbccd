"""model.save_weights / load_weights: the state_dict in the safetensors format, readable
by PyTorch without fastdl; atomic writes; clear errors for foreign files."""

import json
import os

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout

st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed (pip install fastdl[safetensors])")


def model(seed=0):
    return fastdl.Sequential([Dense(6, 8, activation="gelu"), BatchNorm(8), Maxout(8, 4, pieces=3), Dropout(0.2),
                              Dense(4, 5), fastdl.PReLU(), Dense(5, 3)], seed=seed)


def trained():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    m = model().compile("adam")
    m.fit(x, rng.integers(0, 3, 64), epochs=2, batch_size=16, verbose=0)
    return m, x


def test_round_trip_under_the_state_dict_names(tmp_path):
    m, x = trained()
    path = tmp_path / "w.safetensors"
    m.save_weights(path)
    tensors = st.load_file(str(path))
    assert sorted(tensors) == sorted(m.state_dict())
    for k, v in m.state_dict().items():
        assert tensors[k].dtype == np.float32
        np.testing.assert_array_equal(tensors[k], v)
    other = model(seed=9)
    assert other.load_weights(path) == ([], [])
    np.testing.assert_array_equal(other.predict(x), m.predict(x))


def test_the_file_holds_the_architecture_in_its_metadata(tmp_path):
    m, _ = trained()
    path = tmp_path / "w.safetensors"
    m.save_weights(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert json.loads(header["__metadata__"]["fastdl.config"]) == m.get_config()


def test_pytorch_opens_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    m, x = trained()
    path = tmp_path / "w.safetensors"
    m.save_weights(path)
    t = load_file(str(path))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in t.values())
    lin = torch.nn.Linear(4, 5)
    with torch.no_grad():
        lin.weight.copy_(t["dense_1.w"].T)  # fastdl stores (in, out)
        lin.bias.copy_(t["dense_1.b"])
    h = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    ref = h @ m.state_dict()["dense_1.w"] + m.state_dict()["dense_1.b"]
    np.testing.assert_allclose(lin(torch.from_numpy(h)).detach().numpy(), ref, rtol=1e-6, atol=1e-6)


def test_other_float_dtypes_are_converted(tmp_path):
    m, x = trained()
    path = tmp_path / "w64.safetensors"
    st.save_file({k: v.astype(np.float64) for k, v in m.state_dict().items()}, str(path))
    other = model(seed=3)
    other.load_weights(path)
    np.testing.assert_array_equal(other.flat_params, m.flat_params)


def test_strict_and_partial_loads(tmp_path):
    m, _ = trained()
    path = tmp_path / "part.safetensors"
    sd = m.state_dict(copy=True)
    st.save_file({"dense_0.w": sd["dense_0.w"], "extra.w": np.zeros(3, np.float32)}, str(path))
    other = model(seed=4)
    before = other.get_flat_weights()[0]
    with pytest.raises(ValueError, match=r"missing keys \[.*'dense_0.b'.*\]; unexpected keys \['extra.w'\]"):
        other.load_weights(path)
    np.testing.assert_array_equal(other.get_flat_weights()[0], before)
    missing, unexpected = other.load_weights(path, strict=False)
    assert "dense_0.b" in missing and unexpected == ["extra.w"]
    np.testing.assert_array_equal(other.state_dict()["dense_0.w"], sd["dense_0.w"])


def test_foreign_files_are_clear_errors(tmp_path):
    m = model()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3 + b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        m.load_weights(junk)
    ints = tmp_path / "ints.safetensors"
    st.save_file({"dense_0.w": np.zeros((6, 8), np.int32)}, str(ints))
    with pytest.raises(ValueError, match="'dense_0.w' is int32; expected floating-point weights"):
        m.load_weights(ints)
    with pytest.raises(FileNotFoundError, match="no file"):
        m.load_weights(tmp_path / "absent.safetensors")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        m.load_weights(tmp_path)


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    m, _ = trained()
    path = tmp_path / "w.safetensors"
    m.save_weights(path)
    good = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        model(seed=5).save_weights(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temporary file left behind
