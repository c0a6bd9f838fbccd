"""fastdl: fused CPU (C++) and GPU (Numba CUDA) kernels for training feed-forward networks.

The kernels live in :mod:`fastdl.kernels`; the thread count and the instruction-set
path are set here. The network API: :class:`Sequential` with the layers below,
:mod:`fastdl.optim`, :mod:`fastdl.schedules`, :mod:`fastdl.callbacks`,
:mod:`fastdl.augment`, :mod:`fastdl.datasets`, :func:`load` (docs/network.md).
"""

def _import_extension():
    """fastdl._C, or an ImportError that says what to do when Python found fastdl's
    source tree (the current directory of a checkout) instead of an installed fastdl."""
    try:
        from fastdl import _C
    except ImportError as e:
        import glob
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(here)
        built = glob.glob(os.path.join(here, "_C.*")) + glob.glob(os.path.join(here, "_C*.so"))
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
from fastdl._C import cpu_supports, get_isa, get_num_threads, max_num_threads, set_isa, set_num_threads
from fastdl import kernels
from fastdl._paths import get_cmake_dir, get_include
from fastdl import augment, callbacks, datasets, initializers, losses, optim, schedules
from fastdl.layers import (
    ELU, GELU, SiLU, Activation, BatchNorm, Dense, Dropout, HardTanh, LeakyReLU, Maxout, PReLU, ReLU, Sigmoid,
    Softplus, Tanh,
)
from fastdl.network import NonFiniteLossError, Sequential
from fastdl.serialization import ModelFileError, load

__version__ = "0.1.0"

__all__ = [
    "kernels",
    "set_num_threads",
    "get_num_threads",
    "max_num_threads",
    "get_isa",
    "set_isa",
    "cpu_supports",
    "get_include",
    "get_cmake_dir",
    "__version__",
    "Sequential",
    "Dense",
    "Maxout",
    "Dropout",
    "BatchNorm",
    "Activation",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "SiLU",
    "GELU",
    "Softplus",
    "HardTanh",
    "load",
    "ModelFileError",
    "NonFiniteLossError",
    "optim",
    "schedules",
    "callbacks",
    "losses",
    "initializers",
    "augment",
    "datasets",
]
