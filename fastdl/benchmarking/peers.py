"""The peers fastdl is compared with, each optional: PyTorch, numpy, scikit-learn.

A peer that is not installed is skipped with a note, never an error.
"""

from __future__ import annotations

import importlib

_cache: dict = {}


def optional(module):
    """The imported module, or None when it is not installed."""
    if module not in _cache:
        try:
            _cache[module] = importlib.import_module(module)
        except ImportError:
            _cache[module] = None
    return _cache[module]


def torch():
    return optional("torch")


def sklearn_available():
    return optional("sklearn") is not None


def set_threads(n):
    """Pins fastdl, PyTorch and (through threadpoolctl, when installed) numpy's BLAS to n
    threads. Returns a note on what could not be pinned, or None."""
    import fastdl

    fastdl.set_num_threads(n)
    t = torch()
    if t is not None:
        t.set_num_threads(n)
    tp = optional("threadpoolctl")
    if tp is None:
        return ("numpy's BLAS threads not pinned (threadpoolctl not installed): set "
                "OMP_NUM_THREADS/OPENBLAS_NUM_THREADS before starting to pin them")
    _cache["_limits"] = tp.threadpool_limits(limits=n)  # kept alive for the whole run
    return None


def versions():
    """The versions of fastdl, Python and the peers (None: not installed). numba and
    matplotlib are read from their installed metadata, not imported: a CPU run never
    loads numba (it is the GPU extra's), and importing it takes seconds."""
    import sys
    from importlib import metadata

    import numpy as np

    import fastdl

    out: dict[str, str | None] = {"python": sys.version.split()[0], "fastdl": fastdl.__version__,
                                  "numpy": np.__version__}
    for name, module in (("torch", "torch"), ("scikit-learn", "sklearn")):
        m = optional(module)
        out[name] = getattr(m, "__version__", "?") if m is not None else None
    for name in ("numba", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
