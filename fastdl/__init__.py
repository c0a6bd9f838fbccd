"""fastdl: fused CPU (C++) and GPU (Numba CUDA) kernels for training feed-forward networks.

The kernels live in :mod:`fastdl.kernels`; the thread count and the instruction-set
path are set here.
"""

from fastdl import _C
from fastdl._C import cpu_supports, get_isa, get_num_threads, set_isa, set_num_threads
from fastdl import kernels
from fastdl._paths import get_cmake_dir, get_include

__version__ = "0.1.0"

__all__ = [
    "kernels",
    "set_num_threads",
    "get_num_threads",
    "get_isa",
    "set_isa",
    "cpu_supports",
    "get_include",
    "get_cmake_dir",
    "__version__",
]
