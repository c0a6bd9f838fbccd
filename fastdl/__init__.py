"""fastdl: fused CPU (C++) and GPU (Numba CUDA) kernels for training feed-forward networks.

The kernels live in :mod:`fastdl.kernels`; the thread count and the instruction-set
path are set here. The network API: :class:`Sequential` with the layers below,
:mod:`fastdl.optim`, :mod:`fastdl.schedules`, :mod:`fastdl.callbacks`,
:mod:`fastdl.augment`, :mod:`fastdl.datasets`, :func:`load` (docs/network.md).
"""

from fastdl import _C
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
