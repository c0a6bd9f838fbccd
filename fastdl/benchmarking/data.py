"""Data for the whole-fit comparison: the MNIST test set (t10k IDX files), else digits.

MNIST is looked for in, in order: the ``--mnist`` folder, ``$FASTDL_MNIST``, and
``shared/data/mnist`` in a folder above the source tree or the working directory
(``../shared/data/mnist`` of a checkout, also from a git worktree). When none holds the files, scikit-learn's 8x8 digits (shipped with scikit-learn) stand in.
"""

import gzip
import os
from pathlib import Path

import numpy as np

FILES = {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"}


def read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        p = Path(folder) / name
        if p.is_file():
            return p
    return None


def mnist_folders(explicit=None):
    out = []
    if explicit:
        out.append(Path(explicit))
    if os.environ.get("FASTDL_MNIST"):
        out.append(Path(os.environ["FASTDL_MNIST"]))
    repo = Path(__file__).resolve().parents[2]
    for start in (repo, Path.cwd().resolve()):
        for above in list(start.parents)[:3]:
            out.append(above / "shared" / "data" / "mnist")
    return list(dict.fromkeys(out))


def load_mnist(explicit=None):
    """(x float32 (N, 784) in [0, 1], y int64 (N,), description), or None when not found.

    A folder given explicitly that lacks the files is an error, not a silent fallback."""
    for folder in mnist_folders(explicit):
        images, labels = _find(folder, FILES["images"]), _find(folder, FILES["labels"])
        if images and labels:
            x = read_idx(images).reshape(-1, 28 * 28).astype(np.float32) / 255.0
            y = read_idx(labels).astype(np.int64)
            return x, y, f"MNIST t10k ({folder})"
        if explicit and folder == Path(explicit):
            raise FileNotFoundError(f"--mnist {explicit}: no {FILES['images']}[.gz] and "
                                    f"{FILES['labels']}[.gz] there")
    return None


def load_digits():
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), "scikit-learn digits 8x8"


def fit_data(n_train, n_test, mnist=None):
    """Train/test split for the whole-fit case: the first n_train and the last n_test."""
    found = load_mnist(mnist)
    if found is None:
        try:
            found = load_digits()
        except ImportError:
            return None
    x, y, what = found
    n_train = min(n_train, len(x) - min(n_test, len(x) // 4))
    n_test = min(n_test, len(x) - n_train)
    return (np.ascontiguousarray(x[:n_train]), y[:n_train],
            np.ascontiguousarray(x[len(x) - n_test:]), y[len(x) - n_test:], what)
