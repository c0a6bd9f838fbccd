"""Datasets: MNIST from its IDX files, and scikit-learn's 8x8 digits.

Both return float32 images flattened to rows and scaled to [0, 1], with int64 labels.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence, Tuple, overload

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import TypeAlias

    from fastdl._typing import AnyArray, FloatArray, PathLike

    #: images (N, features) float32 in [0, 1] and int64 labels (N,)
    XY: TypeAlias = Tuple[FloatArray, npt.NDArray[np.int64]]

__all__ = ["mnist", "digits", "read_idx", "write_idx", "MNIST_FILES", "MNIST_MIRRORS", "default_cache_dir"]

#: the four files: split -> (images, labels) stems
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: SHA-256 of the official gzipped files (as served by the mirrors below)
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: tried in order (yann.lecun.com no longer serves the files reliably)
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")

_IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def default_cache_dir() -> Path:
    """$FASTDL_DATA, else $XDG_CACHE_HOME/fastdl, else ~/.cache/fastdl."""
    if os.environ.get("FASTDL_DATA"):
        return Path(os.environ["FASTDL_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastdl"


def read_idx(path: PathLike) -> AnyArray:
    """Reads an IDX file (gzipped when the name ends in .gz) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read IDX data ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = np.dtype(_IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file holds "
                         f"{len(data) - header} bytes of data")
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: PathLike, array: npt.ArrayLike) -> None:
    """Writes a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener: Any = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    return None


def _sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(folder: Path, name: str, mirrors: Sequence[str] = MNIST_MIRRORS) -> Path:
    """Downloads one file into folder, checking its SHA-256; atomic (temp file + rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in mirrors:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base + name, timeout=60) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
            digest = _sha256(tmp)
            if digest != MNIST_SHA256[name]:
                raise ValueError(f"SHA-256 mismatch: got {digest}, expected {MNIST_SHA256[name]}")
            os.replace(tmp, folder / name)
            return folder / name
        except Exception as e:  # try the next mirror
            errors.append(f"{base}{name}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("could not download MNIST:\n  " + "\n  ".join(errors))


def _load_split(folder: Path, split: str, download: bool) -> XY:
    images_stem, labels_stem = MNIST_FILES[split]
    paths = []
    for stem in (images_stem, labels_stem):
        p = _find(folder, stem)
        if p is None:
            if not download:
                raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz (the MNIST {split} split)")
            p = _download(folder, stem + ".gz")
        paths.append(p)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3:
        raise ValueError(f"{paths[0]}: expected 3-D image data (N, rows, cols), got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{paths[1]}: {labels.shape} labels for {images.shape[0]} images")
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x, labels.astype(np.int64)


#: With only the t10k files in a folder, split="both" trains on this first fraction of them.
T10K_TRAIN_FRACTION = 0.8


def mnist_splits(path: PathLike) -> tuple[str, ...]:
    """The MNIST splits ("train", "test") whose two IDX files (gzipped or not) are in
    folder `path`."""
    folder = Path(path)
    return tuple(split for split, stems in MNIST_FILES.items() if all(_find(folder, s) for s in stems))


@overload
def mnist(path: PathLike | None = None, split: Literal["both"] = "both", download: bool = True) -> tuple[XY, XY]: ...
@overload
def mnist(path: PathLike | None, split: Literal["train", "test"], download: bool = True) -> XY: ...
@overload
def mnist(*, split: Literal["train", "test"], download: bool = True) -> XY: ...


def mnist(path: PathLike | None = None, split: str = "both", download: bool = True) -> tuple[XY, XY] | XY:
    """MNIST as float32 rows of 784 pixels in [0, 1] and int64 labels.

    path: a folder with the IDX files (``train-images-idx3-ubyte[.gz]`` ...), gzipped or
    not. None: the cache folder (``default_cache_dir() / "mnist"``), where missing files
    are downloaded from MNIST_MIRRORS and checked against their SHA-256.
    split: "both" -> ((x_train, y_train), (x_test, y_test)); "train" or "test" -> (x, y).
    Only the files of the requested split need to exist. A folder holding only the t10k
    files gives, for "both", their first 80% (T10K_TRAIN_FRACTION) as the training split
    and the rest as the test split, as ``fastdl train --mnist`` does (mnist_splits says
    which splits a folder holds)."""
    if split not in ("both", "train", "test"):
        raise ValueError(f"split: expected 'both', 'train' or 'test', got {split!r}")
    if path is None:
        folder = default_cache_dir() / "mnist"
    else:
        folder = Path(path)
        download = False
        if not folder.is_dir():
            raise FileNotFoundError(f"path: {folder} is not a folder (expected the folder holding the MNIST IDX files)")
    if split == "both":
        if not download and mnist_splits(folder) == ("test",):
            x, y = _load_split(folder, "test", download)
            cut = int(len(x) * T10K_TRAIN_FRACTION)
            return (x[:cut], y[:cut]), (x[cut:], y[cut:])
        return _load_split(folder, "train", download), _load_split(folder, "test", download)
    return _load_split(folder, split, download)


@overload
def digits(split: Literal["both"] = "both", test_size: float = 0.2, seed: int = 0) -> tuple[XY, XY]: ...
@overload
def digits(split: Literal["all"], test_size: float = 0.2, seed: int = 0) -> XY: ...


def digits(split: str = "both", test_size: float = 0.2, seed: int = 0) -> tuple[XY, XY] | XY:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 64 pixels in [0, 1]).

    Needs scikit-learn (``pip install fastdl[examples]``). split: "both" ->
    ((x_train, y_train), (x_test, y_test)), a stratification-free shuffled split with
    `test_size` of the data held out (fixed by `seed`); "all" -> (x, y)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("fastdl.datasets.digits needs scikit-learn: pip install 'fastdl[examples]'") from None
    if split not in ("both", "all"):
        raise ValueError(f"split: expected 'both' or 'all', got {split!r}")
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    if split == "all":
        return x, y
    test_size = float(test_size)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size: expected a fraction in (0, 1), got {test_size}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_size))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])
