"""Losses: each is one fused kernel returning (mean loss, gradient w.r.t. the network output).

- ``"softmax_cross_entropy"`` (alias ``"cross_entropy"``): the network outputs logits
  (the last Dense layer is linear); targets are integer labels (N,) or float32
  probabilities / one-hot rows (N, C). ``label_smoothing`` as in PyTorch.
- ``"mse"``: mean over all elements (PyTorch's reduction="mean").
- ``"binary_cross_entropy"`` (alias ``"bce"``): from logits (the stable form), targets in
  [0, 1] of the output's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from fastdl._C import check_labels
from fastdl._scalars import real

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._device import Backend
    from fastdl._typing import AnyArray, Config, DeviceArray

__all__ = ["Loss", "SoftmaxCrossEntropy", "MSE", "BinaryCrossEntropy", "get"]


class Loss:
    """Base class of the losses: a fused kernel that returns the mean loss and its
    gradient w.r.t. the network's output."""

    name = "loss"
    #: the kernel's name in the backend's kernel namespace (fastdl._C, fastdl.cuda.kernels)
    kernel_name: ClassVar[str | None] = None

    def bind(self, backend: Backend) -> Loss:
        """Takes the loss kernel of the device's backend; returns self."""
        self._kernel = getattr(backend.kernels, cast(str, self.kernel_name))
        return self

    def __call__(self, output: DeviceArray, target: DeviceArray, out: DeviceArray | None = None,
                 sample_weight: DeviceArray | None = None) -> tuple[float, DeviceArray]:
        """(mean loss, gradient w.r.t. output); the gradient goes into `out` when given
        (an array of output's shape: the network passes one it keeps). sample_weight:
        float32 (N,) weights, finite and >= 0, one per sample (row of output): the loss
        is sum_i w_i loss_i / N, as Keras's "sum_over_batch_size" reduction (divided by
        N, not by sum(w)), weighed inside the loss kernel."""
        return self._kernel(output, target, sample_weight=sample_weight, out=out)

    def is_prepared(self, y: Any, output_dim: int) -> bool:
        """Whether y already is what the kernel takes (so a step uses it as it is)."""
        return (type(y) is np.ndarray and y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == output_dim
                and y.flags.c_contiguous)

    def prepare_targets(self, y: npt.ArrayLike, output_dim: int, argname: str = "y") -> AnyArray:
        """Converts user targets once (before training) to the dtype/shape the kernel takes."""
        y = np.asarray(y)
        if y.ndim == 1 and output_dim == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != output_dim:
            raise ValueError(f"{argname}: expected targets of shape (N, {output_dim}) for loss {self.name!r}, "
                             f"got shape {y.shape}")
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
            raise TypeError(f"{argname}: expected numeric targets, got dtype {y.dtype}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def get_config(self) -> Config:
        """The loss as plain data: {"name": ..., and its arguments} (get() takes it back)."""
        return {"name": self.name}


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits (PyTorch's cross_entropy): targets are integer
    labels (N,) or probabilities (N, C); ``label_smoothing`` as in PyTorch."""

    name = "softmax_cross_entropy"
    kernel_name = "softmax_cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = real("label_smoothing", label_smoothing, 0.0, 1.0)

    def __call__(self, output: DeviceArray, target: DeviceArray, out: DeviceArray | None = None,
                 sample_weight: DeviceArray | None = None) -> tuple[float, DeviceArray]:
        return self._kernel(output, target, label_smoothing=self.label_smoothing,
                            sample_weight=sample_weight, out=out)

    def is_prepared(self, y: Any, output_dim: int) -> bool:
        return type(y) is np.ndarray and y.flags.c_contiguous and (
            (y.dtype == np.int64 and y.ndim == 1) or (y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == output_dim))

    def prepare_targets(self, y: npt.ArrayLike, output_dim: int, argname: str = "y") -> AnyArray:
        y = np.asarray(y)
        if y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
                    y = y.astype(np.int64)
                else:
                    raise TypeError(f"{argname}: expected integer class labels (N,) or probabilities (N, C) for "
                                    f"softmax_cross_entropy, got dtype {y.dtype}")
            y = np.ascontiguousarray(y, dtype=np.int64)
            try:  # the kernel's own rule, applied to the whole set once
                check_labels(y, output_dim)
            except ValueError as e:
                raise ValueError(f"{argname}: {str(e).removeprefix('target: ')} (the network's outputs)") from None
            return y
        if y.ndim == 2 and y.shape[1] == output_dim:
            return np.ascontiguousarray(y, dtype=np.float32)
        raise ValueError(f"{argname}: expected labels (N,) or probabilities (N, {output_dim}), got shape {y.shape}")

    def get_config(self) -> Config:
        return {"name": self.name, "label_smoothing": self.label_smoothing}


class MSE(Loss):
    """Mean squared error over all elements (PyTorch's reduction="mean")."""

    name = "mse"
    kernel_name = "mse"


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits (the stable form); targets in [0, 1] of the
    output's shape."""

    name = "binary_cross_entropy"
    kernel_name = "binary_cross_entropy"


_BY_NAME: dict[str, type[Loss]] = {"softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
            "categorical_crossentropy": SoftmaxCrossEntropy, "sparse_categorical_crossentropy": SoftmaxCrossEntropy,
            "mse": MSE, "mean_squared_error": MSE, "binary_cross_entropy": BinaryCrossEntropy,
            "bce": BinaryCrossEntropy, "binary_crossentropy": BinaryCrossEntropy}


def get(spec: str | Config | Loss) -> Loss:
    """A Loss from a Loss, a name ("mse", "softmax_cross_entropy"...) or a config dict."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, dict):
        cfg = dict(spec)
        cls = _BY_NAME.get(cfg.pop("name", None))
        if cls is None:
            raise ValueError(f"loss: unknown loss config {spec!r}")
        return cls(**cfg)
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    raise ValueError(f"loss: unknown loss {spec!r}; expected one of {sorted(set(c.name for c in _BY_NAME.values()))}")
