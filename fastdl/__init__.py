"""fastdl: fused CPU (C++) and GPU (Numba CUDA) kernels for training feed-forward networks.

The kernels live in :mod:`fastdl.kernels`; the thread count and the instruction-set
path are set here. The network API: :class:`Sequential` with the layers below,
:mod:`fastdl.optim`, :mod:`fastdl.schedules`, :mod:`fastdl.callbacks`,
:mod:`fastdl.augment`, :mod:`fastdl.datasets`, :func:`load` (docs/network.md). Models
that travel (docs/interop.md): :mod:`fastdl.sklearn` (scikit-learn estimators),
:mod:`fastdl.interop` (PyTorch), :mod:`fastdl.onnx` (ONNX export); models pickle.

Submodules and the network API load on first use, so ``import fastdl.kernels`` loads
the kernels and nothing of the network or the trainer.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


def _import_extension() -> ModuleType:
    """fastdl._C, or an ImportError that says what to do when Python found fastdl's
    source tree (the current directory of a checkout) instead of an installed fastdl."""
    try:
        from fastdl import _C
    except ImportError as e:
        import glob
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(here)
        built = [p for p in glob.glob(os.path.join(here, "_C.*")) + glob.glob(os.path.join(here, "_C*.so"))
                 if not p.endswith(".pyi")]  # the stub is no build
        if built or not os.path.isfile(os.path.join(root, "CMakeLists.txt")) or not os.path.isdir(
                os.path.join(root, "csrc")):
            raise
        raise ImportError(
            f"fastdl: Python found fastdl's source tree ({here}) before an installed fastdl, and this "
            "tree has no built extension (fastdl/_C*.so). Run Python from another folder to use the "
            "installed fastdl (the current folder comes first on sys.path), or build the extension "
            "in place here: `tools/dev-build.sh`, or an editable install: `pip install "
            "--no-build-isolation -e .`.") from e
    return _C


_C = _import_extension()
from fastdl._C import cpu_supports, get_isa, get_num_threads, max_num_threads, set_isa, set_num_threads  # noqa: E402
from fastdl._paths import get_cmake_dir, get_include  # noqa: E402

__version__ = "0.1.0"

if TYPE_CHECKING:
    # What __getattr__ loads on first use, as type checkers see it.
    from fastdl import (augment, callbacks, datasets, initializers, interop, kernels, layers, losses, metrics, model,
                        monitoring, network, onnx, optim, schedules, serialization, sklearn, step_plan, training)
    from fastdl.layers import (ELU, GELU, Activation, BatchNorm, Dense, Dropout, HardTanh, LeakyReLU, Maxout, PReLU,
                               ReLU, Sigmoid, SiLU, Softplus, Tanh)
    from fastdl.model import Sequential, load
    from fastdl.serialization import ModelFileError
    from fastdl.training import NonFiniteLossError

# name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "Sequential": "fastdl.model", "load": "fastdl.model",
    "Dense": "fastdl.layers", "Maxout": "fastdl.layers", "Dropout": "fastdl.layers",
    "BatchNorm": "fastdl.layers", "Activation": "fastdl.layers", "ReLU": "fastdl.layers",
    "Sigmoid": "fastdl.layers", "Tanh": "fastdl.layers", "LeakyReLU": "fastdl.layers", "PReLU": "fastdl.layers",
    "ELU": "fastdl.layers", "SiLU": "fastdl.layers", "GELU": "fastdl.layers", "Softplus": "fastdl.layers",
    "HardTanh": "fastdl.layers",
    "ModelFileError": "fastdl.serialization",
    "NonFiniteLossError": "fastdl.training",
}
_SUBMODULES = ("kernels", "optim", "schedules", "callbacks", "losses", "initializers", "augment", "datasets",
               "layers", "training", "network", "model", "serialization", "monitoring", "metrics", "step_plan",
               "sklearn", "onnx", "interop")

__all__ = ["kernels", "set_num_threads", "get_num_threads", "max_num_threads", "get_isa", "set_isa", "cpu_supports",
           "get_include",
           "get_cmake_dir", "__version__", "Sequential", "Dense", "Maxout", "Dropout", "BatchNorm", "Activation",
           "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "PReLU", "ELU", "SiLU", "GELU", "Softplus", "HardTanh", "load",
           "ModelFileError", "NonFiniteLossError", "optim", "schedules", "callbacks", "losses", "initializers",
           "augment", "datasets", "training"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"fastdl.{name}")
    else:
        raise AttributeError(f"module 'fastdl' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
