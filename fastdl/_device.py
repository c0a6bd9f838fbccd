"""Where the network's arrays live: every device-specific operation of the Python layer.

A backend bundles the kernel namespace for the device (``fastdl._C`` on the CPU, called
directly so the hot loop skips the per-call dispatch of :mod:`fastdl.kernels`;
``fastdl.cuda.kernels`` on the GPU) with the few array operations the network needs
outside the kernels: allocate, copy host <-> device, copy device -> device.
"""

import errno
import functools
import math
import mmap
import os

from typing import TYPE_CHECKING

import numpy as np

__all__ = ["get_backend", "is_device_array", "to_host", "DEVICES"]

DEVICES = ("cpu", "cuda")

CUDA_HINT = "install the GPU extra with pip install 'fastdl[cuda]' (numba-cuda) on a machine with an NVIDIA GPU"


def is_device_array(a):
    return type(a) is not np.ndarray and (
        hasattr(a, "__cuda_array_interface__") or getattr(a, "__cuda_ndarray__", False))


def to_host(a):
    """A numpy array with a's contents (a itself when it already is one)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.asarray(a)


# Byte alignment of the CPU arrays fastdl allocates: a cache line, and one AVX-512 vector.
# numpy's allocator gives 16 bytes, so a vector kernel's loads straddle two lines and the
# optimizer steps applied tile by tile in a backward kernel (rows of 32 or 64 floats)
# would start every row with a partial vector.
ALIGN = 64

# From this size on, an array gets pages of its own (an anonymous mapping): the flat
# parameters, gradients and optimizer state. glibc maps blocks this large itself only
# until the process frees one (importing torch does); after that they come from the
# heap, packed against each other and against Python's objects, and the optimizer pass
# over them slowed (docs/benchmarks.md, "Measurement history"). Each mapping's array
# starts at a different line of its page (STAGGER bytes further than the last), so the
# buffers an optimizer walks side by side (parameters, gradients, state: element i of
# each) do not share the address bits below 4 KiB, which the core uses to match loads
# against pending stores.
OWN_PAGES_MIN = 128 * 1024
HUGE_PAGES_MIN = 4 * 1024 * 1024  # numpy's threshold for asking for transparent huge pages
STAGGER = 17 * ALIGN
_PAGE = 4096
_staggered = 0


@functools.lru_cache(maxsize=None)
def memory_bytes():
    """This machine's memory and swap in bytes (what any allocation must fit in), or
    None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal") if k in fields) or None
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def human_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def aligned_empty(shape, dtype=np.float32):
    """np.empty whose data starts on an ALIGN-byte boundary (a view into a slightly
    larger buffer; from OWN_PAGES_MIN bytes, into pages of its own). A size the system
    cannot give is a MemoryError saying how many bytes were asked for (the mapping's
    own error is an OSError, ENOMEM)."""
    dtype = np.dtype(dtype)
    count = math.prod(int(d) for d in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = count * dtype.itemsize
    try:
        return _aligned_empty(shape, dtype, nbytes)
    except (MemoryError, OverflowError, OSError) as e:
        if isinstance(e, OSError) and e.errno not in (errno.ENOMEM, errno.EOVERFLOW, errno.EINVAL):
            raise
        raise MemoryError(f"cannot allocate {nbytes} bytes ({human_bytes(nbytes)}) for an array of shape "
                          f"{shape} {dtype}") from None


def _aligned_empty(shape, dtype, nbytes):
    global _staggered
    if nbytes >= OWN_PAGES_MIN:
        _staggered += 1
        start = _staggered * STAGGER % _PAGE
        # Private, as malloc's memory is: after a fork each process writes its own copy
        # (mmap's default for anonymous memory is shared between parent and child).
        private: dict = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
        pages = mmap.mmap(-1, start + nbytes, **private)
        if nbytes >= HUGE_PAGES_MIN and hasattr(pages, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            pages.madvise(mmap.MADV_HUGEPAGE)  # as numpy asks for its own large arrays
        # The array keeps the mapping alive (its base); unmapped when the last view goes.
        raw = np.frombuffer(pages, np.uint8)
    else:
        raw = np.empty(nbytes + ALIGN, np.uint8)
        start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class CPUBackend:
    name = "cpu"

    def __init__(self):
        from fastdl import _C

        self.kernels = _C

    @staticmethod
    def zeros(shape):
        a = aligned_empty(shape)
        a.fill(0)
        return a

    empty = staticmethod(aligned_empty)

    @staticmethod
    def from_host(a):
        return a

    @staticmethod
    def to_host(a):
        return a

    @staticmethod
    def copy_from_host(dst, src):
        np.copyto(dst, src)

    # np.copyto itself, not a wrapper: the backward pass calls it once per parameter
    copy = staticmethod(np.copyto)

    @staticmethod
    def scale_(a, s):
        a *= np.float32(s)


class CUDABackend:
    """Numba device arrays. Views (reshape/slices of the flat buffer) share its memory,
    like numpy's."""

    name = "cuda"

    def __init__(self):
        # What is missing decides the type, as docs/gpu.md says: software not installed
        # (the `cuda` extra) is an ImportError, no usable GPU a RuntimeError.
        try:
            from fastdl import cuda as fcuda
        except ImportError as e:  # fastdl built without its GPU package
            raise ImportError(f"device='cuda' needs fastdl's GPU kernels: {CUDA_HINT}") from e
        try:
            self.cuda = fcuda.require()
        except ImportError as e:
            raise ImportError(f"device='cuda' needs numba-cuda: {e}") from e
        except RuntimeError as e:
            raise RuntimeError(f"device='cuda' is not available: {e}") from e
        self.kernels = fcuda.kernels
        from fastdl.cuda import dropout

        # Only the scale_at_test dropout's inference pass needs this elementwise op.
        self.scale_ = dropout.scale_

    def zeros(self, shape):
        return self.cuda.to_device(np.zeros(shape, np.float32))

    def empty(self, shape, dtype=np.float32):
        return self.cuda.device_array(shape, dtype)

    def from_host(self, a):
        return self.cuda.to_device(np.ascontiguousarray(a))

    @staticmethod
    def to_host(a):
        return a.copy_to_host()

    @staticmethod
    def copy_from_host(dst, src):
        dst.copy_to_device(np.ascontiguousarray(src))

    @staticmethod
    def copy(dst, src):
        dst.copy_to_device(src)


if TYPE_CHECKING:
    from typing import Union

    #: what get_backend returns
    Backend = Union[CPUBackend, CUDABackend]

_BACKENDS: dict = {}


def get_backend(device: str) -> "Backend":
    """The backend for "cpu" or "cuda" (one instance per device)."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    device = device.lower()
    if device not in _BACKENDS:
        _BACKENDS[device] = CPUBackend() if device == "cpu" else CUDABackend()
    return _BACKENDS[device]
