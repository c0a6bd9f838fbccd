"""Array interop for the GPU kernels: zero-copy views of foreign device arrays, argument
checks that name the argument (like the CPU bindings), output allocation and launch
configurations built once."""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np

from fastdl.cuda import require

cuda = require()

_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.uint8): "uint8",
                np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_device(a: Any, name: str = "array") -> Any:
    """A Numba device array viewing `a` (anything exposing __cuda_array_interface__),
    without a copy. Numba device arrays are returned as they are; converting a foreign
    array (CuPy, torch) costs time, so do it once outside hot loops."""
    if cuda.devicearray.is_cuda_ndarray(a):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    if isinstance(a, np.ndarray):
        raise TypeError(f"{name}: got a numpy.ndarray; the GPU kernels need a device array "
                        "(numba.cuda.to_device(a) once, a CuPy array or a torch CUDA tensor); "
                        "numpy arrays run the CPU kernels through fastdl.kernels")
    raise TypeError(f"{name}: expected a GPU array exposing __cuda_array_interface__, "
                    f"got {type(a).__name__}")


def checked(a, name, ndim, what="", dtype=np.float32):
    """`a` as a device array after checking dtype, rank and C-contiguity."""
    d = as_device(a, name)
    dt = np.dtype(dtype)
    if d.dtype != dt:
        dn = _DTYPE_NAMES.get(dt, str(dt))
        raise TypeError(f"{name}: expected dtype {dn}, got {d.dtype} (convert with .astype({dn}))")
    if d.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {what}, got shape {_shape_str(d.shape)}")
    if not d.is_c_contiguous():
        raise ValueError(f"{name}: expected a C-contiguous array, got a strided view of shape "
                         f"{_shape_str(d.shape)} (fastdl never copies silently)")
    return d


def checked_f32(a, name, ndim, what=""):
    return checked(a, name, ndim, what, np.float32)


def expect_dim(d, name, axis, expected, why):
    if d.shape[axis] != expected:
        raise ValueError(f"{name}: expected shape[{axis}] == {expected} ({why}), "
                         f"got shape {_shape_str(d.shape)}")


def _span(d):
    ptr = d.__cuda_array_interface__["data"][0] if hasattr(d, "__cuda_array_interface__") else None
    if ptr is None:  # the simulator's arrays: compare the host buffers they wrap
        base = np.asarray(d._ary) if hasattr(d, "_ary") else None
        if base is None:
            return None
        ptr = base.__array_interface__["data"][0]
    return ptr, ptr + d.size * d.dtype.itemsize


def overlaps(a, b):
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None or a.size == 0 or b.size == 0:
        return False
    return sa[0] < sb[1] and sb[0] < sa[1]


def checked_out(out, name, shape, inputs, dtype=np.float32):
    """An out= argument: float32 (or `dtype`), C-contiguous, exactly `shape`, sharing
    memory with no input."""
    d = checked(out, name, len(shape), "", dtype)
    for axis, s in enumerate(shape):
        expect_dim(d, name, axis, s, "the result's shape")
    for in_name, arr in inputs:
        if arr is not None and overlaps(d, arr):
            raise ValueError(f"{name}: shares memory with input '{in_name}'; the kernels do not run in place")
    return d


def given_outputs(out, specs, inputs):
    """The arrays given in a multi-result out= (a tuple or list with one entry per spec
    (name, shape[, dtype]), each a device array or None), checked as on the CPU: entry i
    is named "out[i] (name)"; none may share memory with an input or another entry.
    None where an entry (or out itself) is None."""
    got = [None] * len(specs)
    if out is None:
        return got
    names = ", ".join(spec[0] for spec in specs)
    if not isinstance(out, (tuple, list)):
        raise TypeError(f"out: expected a tuple ({names}) of arrays or None, got {type(out).__name__}")
    if len(out) != len(specs):
        raise ValueError(f"out: expected {len(specs)} entries ({names}), got {len(out)}")
    for i, (spec, entry) in enumerate(zip(specs, out)):
        if entry is None:
            continue
        name = f"out[{i}] ({spec[0]})"
        a = checked_out(entry, name, spec[1], inputs, _spec_dtype(spec))
        if any(g is not None and overlaps(a, g) for g in got):
            raise ValueError(f"{name}: shares memory with another entry of out")
        got[i] = a
    return got


def _spec_dtype(spec):
    return spec[2] if len(spec) > 2 else np.float32


def output_arrays(out, specs, inputs):
    """Every result of a multi-result out=: the given array, or a fresh one for None."""
    got = given_outputs(out, specs, inputs)
    return [g if g is not None else empty(spec[1], _spec_dtype(spec)) for g, spec in zip(got, specs)]


def output_arrays_or_first(out, specs, inputs):
    """out= of a kernel that took its first result alone before it took the tuple
    (dense_forward, dropout_forward), as on the CPU: a tuple lists every result;
    anything else is the first result alone ("out", the others allocated)."""
    if isinstance(out, tuple):
        return output_arrays(out, specs, inputs)
    first = specs[0]
    return ([empty(first[1], _spec_dtype(first)) if out is None
             else checked_out(out, "out", first[1], inputs, _spec_dtype(first))]
            + [empty(spec[1], _spec_dtype(spec)) for spec in specs[1:]])


def output_array(out, shape, inputs):
    """A single-result out=: the given array (checked as above) or a fresh float32 one."""
    return empty(shape) if out is None else checked_out(out, "out", shape, inputs)


def no_update(update):
    """The dense backward kernels' update= (an optimizer step applied inside the dw GEMM)
    exists on the CPU only."""
    if update is not None:
        raise TypeError("update: the optimizer step inside the backward kernel is CPU only; "
                        "on the GPU call the step kernel after the backward")


def empty(shape, dtype=np.float32):
    return cuda.device_array(shape, dtype=dtype)


_scratch = threading.local()
_SCRATCH_MAX = 64  # kept intermediates per thread; a network needs a few per layer


def scratch(name, shape, dtype=np.float32, fill=None):
    """A device array for a kernel's internal intermediate (dz, partial sums), kept per
    (name, shape, dtype) and Python thread and handed to the next call that asks: the
    kernels run in order on the default stream, so that call's launches start after this
    one's are done with it. Numba allocates and frees device memory per array
    (cuMemAlloc, and cuMemFree synchronizes the device), which a training step would
    pay for every intermediate. Never return a scratch array to the caller.
    fill: the value a new array starts with (copied once, when it is created); the
    kernels that use such an array put that value back before they finish."""
    cache = getattr(_scratch, "arrays", None)
    if cache is None:
        cache = _scratch.arrays = {}
    key = (name, tuple(shape), np.dtype(dtype))
    d = cache.get(key)
    if d is None:
        if len(cache) >= _SCRATCH_MAX:  # many shapes (a sweep of sizes): start over
            cache.clear()
        d = cache[key] = (empty(shape, dtype) if fill is None
                          else cuda.to_device(np.full(shape, fill, dtype)))
    return d


@functools.lru_cache(maxsize=None)
def dummy(dtype=np.float32):
    """A one-element device array standing in for an absent optional argument (b=None)."""
    return cuda.to_device(np.zeros(1, dtype=dtype))


def blocks(n, per_block):
    return max(1, math.ceil(n / per_block))


@functools.lru_cache(maxsize=4096)
def _configured(kernel, grid, block, shared):
    return kernel[grid, block, 0, shared]


from fastdl.cuda import is_simulator

_SIMULATOR = is_simulator()


def launcher(kernel, grid, block, shared=0):
    """kernel[grid, block] built once per configuration (rebuilding it costs launch time).
    The simulator's kernel[...] configures the kernel object itself and returns it, so
    there nothing can be cached."""
    if _SIMULATOR:
        return kernel[grid, block, 0, shared]
    return _configured(kernel, grid, block, shared)
