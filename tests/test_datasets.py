"""fastdl.datasets: IDX files (gzipped or not) the tests write, the real MNIST test set in
../shared/data/mnist, and scikit-learn's digits. No test touches the network."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from fastdl import datasets

# ../shared beside the repository (a git worktree one level deeper also finds it)
SHARED_MNIST = next((p / "shared" / "data" / "mnist" for p in Path(__file__).resolve().parents[2:4]
                     if (p / "shared" / "data" / "mnist").is_dir()),
                    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def write_mnist(folder, n_train=7, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        if n is None:
            continue
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        stem_i, stem_l = datasets.MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        datasets.write_idx(folder / (stem_i + suffix), images)
        datasets.write_idx(folder / (stem_l + suffix), labels)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path, gz):
    raw = write_mnist(tmp_path, gz=gz)
    (xtr, ytr), (xte, yte) = datasets.mnist(tmp_path)
    assert xtr.shape == (7, 784) and xtr.dtype == np.float32 and ytr.dtype == np.int64
    np.testing.assert_allclose(xtr, raw["train"][0].reshape(7, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ytr, raw["train"][1])
    np.testing.assert_array_equal(yte, raw["test"][1])
    assert 0.0 <= xte.min() and xte.max() <= 1.0
    x, y = datasets.mnist(tmp_path, split="test")
    np.testing.assert_array_equal(x, xte)


def test_mnist_with_only_the_test_files(tmp_path):
    """One behaviour with `fastdl train --mnist`: the t10k files' first 80% train, the
    rest test; asking for the train split alone is still an error."""
    write_mnist(tmp_path, n_train=None, n_test=10)
    assert datasets.mnist_splits(tmp_path) == ("test",)
    x, y = datasets.mnist(tmp_path, split="test")
    assert x.shape == (10, 784)
    (xtr, ytr), (xte, yte) = datasets.mnist(tmp_path)
    np.testing.assert_array_equal(xtr, x[:8])
    np.testing.assert_array_equal(ytr, y[:8])
    np.testing.assert_array_equal(xte, x[8:])
    np.testing.assert_array_equal(yte, y[8:])
    with pytest.raises(FileNotFoundError, match="the MNIST train split"):
        datasets.mnist(tmp_path, split="train")
    write_mnist(tmp_path, n_train=7, n_test=10)
    assert datasets.mnist_splits(tmp_path) == ("train", "test")


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04abcd")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="announces shape"):
        datasets.read_idx(short)
    notgz = tmp_path / "x.gz"
    notgz.write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="cannot read"):
        datasets.read_idx(notgz)
    with pytest.raises(ValueError, match="split"):
        datasets.mnist(tmp_path, split="validation")
    with pytest.raises(FileNotFoundError, match="path"):
        datasets.mnist(tmp_path / "nowhere")


def test_read_idx_other_dtypes(tmp_path):
    p = tmp_path / "f.idx"
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    p.write_bytes(bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + a.tobytes())
    r = datasets.read_idx(p)
    np.testing.assert_array_equal(r, np.arange(6).reshape(2, 3))
    assert r.dtype.byteorder in ("=", "<", "|")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not there")
def test_real_mnist_test_set():
    x, y = datasets.mnist(SHARED_MNIST, split="test")
    assert x.shape == (10000, 784) and y.shape == (10000,)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert x.min() == 0.0 and x.max() == 1.0
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert datasets._sha256(SHARED_MNIST / name) == datasets.MNIST_SHA256[name]


def test_download_checks_sha256_and_is_atomic(tmp_path, monkeypatch):
    """The download path, with urlopen replaced: a bad checksum leaves nothing behind,
    a good one lands the file; the first mirror failing falls through to the next."""
    name = "t10k-labels-idx1-ubyte.gz"
    payload = gzip.compress(b"not the real labels")
    calls = []

    class Resp:
        def __init__(self, data):
            self.data = data

        def read(self, n=-1):
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout):
        calls.append(url)
        if "first" in url:
            raise OSError("mirror down")
        return Resp(payload)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(RuntimeError, match="SHA-256 mismatch"):
        datasets._download(tmp_path, name, mirrors=("https://first/", "https://second/"))
    assert calls == ["https://first/" + name, "https://second/" + name]
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(datasets.MNIST_SHA256, name, datasets.hashlib.sha256(payload).hexdigest())
    path = datasets._download(tmp_path, name, mirrors=("https://second/",))
    assert path.read_bytes() == payload and list(tmp_path.iterdir()) == [path]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path))
    assert datasets.default_cache_dir() == tmp_path
    monkeypatch.delenv("FASTDL_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert datasets.default_cache_dir() == tmp_path / "c" / "fastdl"


def test_digits():
    pytest.importorskip("sklearn")
    (xtr, ytr), (xte, yte) = datasets.digits()
    assert xtr.shape[1] == 64 and len(xtr) + len(xte) == 1797 and len(xte) == 359
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1.0
    assert set(np.unique(ytr)) == set(range(10))
    x, y = datasets.digits(split="all")
    assert x.shape == (1797, 64)
    (a, _), _ = datasets.digits(seed=1)
    assert not np.array_equal(a, xtr)
