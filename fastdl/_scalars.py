"""Scalar arguments of the Python layer (optimizers, layers, losses, schedules, the GPU
kernels): one set of rules, the same as the C++ bindings' (csrc/bindings/checks.h).

- A bool is not a number: ``lr=True`` is a TypeError.
- numpy scalars (np.float32, np.int64) and 0-d arrays are numbers, as are Python ints
  and floats; strings, None, complex numbers and arrays of more than one element are a
  TypeError.
- A value that does not fit (``10**400``, a step of ``2**63``) or is outside the
  argument's range is a ValueError, and hyperparameters are finite (``alpha=inf`` is a
  ValueError).

Every message starts with the argument's name and says what came and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["real", "integer"]


def _type_name(value):
    return type(value).__name__


def _is_bool(value):
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.dtype == np.bool_)


def _scalar(value):
    """value unwrapped from a 0-d array; None where it is not a scalar at all."""
    if isinstance(value, np.ndarray):
        return value[()] if value.ndim == 0 else None
    return value


def _short(value):
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _in_range(name, v, lo, hi, lo_open, hi_open, shown, noun="a value"):
    low_ok = lo is None or (v > lo if lo_open else v >= lo)
    high_ok = hi is None or (v < hi if hi_open else v <= hi)
    if low_ok and high_ok:
        return
    if hi is None:
        rule = f"{noun} {'>' if lo_open else '>='} {lo}"
    elif lo is None:
        rule = f"{noun} {'<' if hi_open else '<='} {hi}"
    else:
        rule = f"{noun} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    raise ValueError(f"{name}: expected {rule}, got {shown}")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def real(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
         hi_open: bool = False, finite: bool = True, float32: bool = False) -> float:
    """value as a Python float, checked: a real number (not a bool), finite unless
    ``finite=False``, within [lo, hi] (``lo_open``/``hi_open`` exclude an end) and, with
    ``float32=True``, within float32's range (a kernel computing in float32 would make
    1e300 an inf)."""
    v = _scalar(value)
    if _is_bool(value) or v is None or _is_bool(v) or not isinstance(v, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {_type_name(value)}")
    try:
        f = float(v)
    except OverflowError:
        raise ValueError(f"{name}: {_short(v)} does not fit a float") from None
    if finite and not math.isfinite(f):
        raise ValueError(f"{name}: expected a finite number, got {_short(v)}")
    if math.isnan(f):
        return f
    if float32 and abs(f) > FLOAT32_MAX and math.isfinite(f):
        raise ValueError(f"{name}: {_short(v)} is beyond float32's range (the kernels compute in float32)")
    _in_range(name, f, lo, hi, lo_open, hi_open, _short(v))
    return f


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """value as a Python int, checked: an integer (a Python or numpy int, or a 0-d
    integer array; not a bool, not a float) within [lo, hi]."""
    v = _scalar(value)
    if _is_bool(value) or v is None or _is_bool(v) or not isinstance(v, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an int, got {_type_name(value)}")
    i = int(v)
    _in_range(name, i, lo, hi, False, False, _short(i), "an integer")
    return i
