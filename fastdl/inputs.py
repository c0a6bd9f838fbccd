"""Turning what users pass into what the kernels take, once, with errors that say what
was wrong: inputs, per-sample weights and Keras's class weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from fastdl._C import check_sample_weight

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._typing import FloatArray

__all__ = ["prepare_inputs", "as_sample_weight", "class_weight_to_sample_weight"]


def prepare_inputs(x: npt.ArrayLike, input_dim: int | None, argname: str = "x") -> FloatArray:
    """x as float32 (N, input_dim), C-contiguous: a copy only when it is not one already.
    Anything numpy reads (lists, CPU tensors) is accepted; images (N, 28, 28) are
    flattened; bool is read as 0/1. Complex or non-numeric data is a TypeError."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{argname}: expected numeric data (an array of shape (N, {input_dim})), got "
                        f"{type(x).__name__}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{argname}: expected an array of shape (N, {input_dim}), got {type(x).__name__} ({e})") \
            from None
    if np.iscomplexobj(a):
        raise TypeError(f"{argname}: expected real numbers, got complex dtype {a.dtype} (take .real or abs() "
                        "first: fastdl does not drop imaginary parts silently)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{argname}: expected numeric data, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != input_dim:
        if a.ndim >= 2 and int(np.prod(a.shape[1:])) == input_dim:
            a = a.reshape(a.shape[0], -1)
        else:
            raise ValueError(f"{argname}: expected an array of shape (N, {input_dim}), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def as_sample_weight(w: npt.ArrayLike, n: int, argname: str = "sample_weight") -> FloatArray:
    """Per-sample weights as float32 (n,): finite and >= 0 (Keras scales each sample's
    loss by its weight, then divides by the batch size). The rule is the loss kernels'
    (fastdl._C.check_sample_weight), applied here to the whole set once."""
    a = _as_weight_array(w, n, argname)
    try:
        check_sample_weight(a)
    except ValueError as e:
        raise ValueError(f"{argname}: {str(e).removeprefix('sample_weight: ')}") from None
    return a


def _as_weight_array(w: Any, n: int, argname: str) -> FloatArray:
    if isinstance(w, np.ndarray) and w.dtype == np.float32 and w.shape == (n,) and w.flags.c_contiguous:
        return w
    try:
        a = np.asarray(w)
    except (TypeError, ValueError):
        raise TypeError(f"{argname}: expected an array of {n} weights, got {type(w).__name__}") from None
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{argname}: expected real weights, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (n,):
        raise ValueError(f"{argname}: expected {n} weights (one per sample), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def class_weight_to_sample_weight(y: npt.ArrayLike, class_weight: Mapping[int, float], num_classes: int,
                                  argname: str = "class_weight") -> FloatArray:
    """Keras's class_weight: {class index: weight} -> one weight per sample of y (labels
    (N,) or one-hot / probability rows (N, C), read by their argmax); classes left out
    weigh 1."""
    if not hasattr(class_weight, "items"):
        raise TypeError(f"{argname}: expected a dict {{class index: weight}}, got {type(class_weight).__name__}")
    table: npt.NDArray[np.float64] = np.ones(num_classes, np.float64)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise ValueError(f"{argname}: keys are class indices (integers), got {key!r}")
        if not 0 <= int(key) < num_classes:
            raise ValueError(f"{argname}: class {key} is outside [0, {num_classes}) (the network has "
                             f"{num_classes} outputs)")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value < 0:
            raise ValueError(f"{argname}: the weight of class {key} must be a finite number >= 0, got {value!r}")
        table[int(key)] = float(value)
    y = np.asarray(y)
    labels = y if y.ndim == 1 else (y.argmax(axis=1) if y.shape[1] > 1 else np.round(y[:, 0]))
    return np.ascontiguousarray(table[labels.astype(np.int64)], dtype=np.float32)
