"""Where the C++ package of an installed fastdl lives, like ``pybind11.get_include()``.

A fastdl wheel ships the CPU kernels for C++ programs next to the Python package::

    fastdl/include/fastdl/*.h           the public headers (namespace fastdl)
    fastdl/lib/libfastdl_kernels.a      the static library (-fPIC, OpenMP)
    fastdl/share/cmake/fastdl/          fastdlConfig.cmake: find_package(fastdl CONFIG)

From a shell: ``python -m fastdl --cmake-dir`` / ``--include-dir`` (see print_paths).
These directories exist only in an installed fastdl (``pip install .``, or a wheel).
A source checkout, or an in-place/editable build, has no installed C++ package: the
functions then raise FileNotFoundError saying so, rather than point at a half-built tree
(C++ builds from a checkout use ``cmake --install`` or ``add_subdirectory`` instead; see
docs/cpp.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["get_include", "get_cmake_dir", "get_library_dir", "print_paths"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _installed(relative: str, marker: str) -> str:
    path = _PACKAGE_DIR / relative
    if not (path / marker).is_file():
        raise FileNotFoundError(
            f"fastdl's C++ package is not installed with this fastdl ({_PACKAGE_DIR}): "
            f"{path / marker} does not exist. The headers, library and CMake package ship "
            "in an installed fastdl (pip install <fastdl checkout or wheel>); from a source "
            "checkout, run `cmake -S . -B build && cmake --install build --prefix <dir>` "
            "and use CMAKE_PREFIX_PATH=<dir>, or add_subdirectory() the checkout.")
    return str(path)


def get_include() -> str:
    """The directory to put on the include path: it holds ``fastdl/dense.h`` etc."""
    return _installed("include", "fastdl/dense.h")


def get_cmake_dir() -> str:
    """The directory holding ``fastdlConfig.cmake``: pass it as ``-Dfastdl_DIR=...``."""
    return _installed("share/cmake/fastdl", "fastdlConfig.cmake")


def get_library_dir() -> str:
    """The directory holding the static library ``libfastdl_kernels.a``."""
    return _installed("lib", "libfastdl_kernels.a")


_FLAGS = {"--include-dir": get_include, "--cmake-dir": get_cmake_dir, "--lib-dir": get_library_dir}


def print_paths(argv: Sequence[str]) -> bool:
    """Handles ``python -m fastdl --cmake-dir|--include-dir|--lib-dir``.

    argv: the arguments after the program name (``sys.argv[1:]``). Prints the path for
    each flag it knows, one a line, and returns True; returns False (printing nothing)
    when argv holds none of these flags, so the caller goes on with its own handling.
    A missing C++ package raises FileNotFoundError (see the module docstring).
    """
    flags = [a for a in argv if a in _FLAGS]
    if not flags:
        return False
    for flag in flags:
        print(_FLAGS[flag]())
    return True
