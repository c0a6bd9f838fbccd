"""Metrics: what compile's ``metrics=`` and ``weighted_metrics=`` accept, and the sums
an epoch accumulates (Keras's semantics: the loss and unweighted metrics are means over
samples; a weighted metric is sum(w * value) / sum(w))."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from fastdl import losses as losses_mod

if TYPE_CHECKING:
    from fastdl._typing import AnyArray

__all__ = ["get_metrics", "correct_counts", "METRIC_NAMES"]

#: the names compile accepts, all computing classification accuracy
METRIC_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


def get_metrics(spec: Iterable[str] | None, argname: str, loss: losses_mod.Loss) -> list[str]:
    """["accuracy"] or [] from compile's metrics= / weighted_metrics= argument."""
    if spec is None:
        return []
    if isinstance(spec, str) or not hasattr(spec, "__iter__"):
        raise TypeError(f"{argname}: expected a list of metric names, e.g. ['accuracy'], got {spec!r}")
    names = list(spec)
    for m in names:
        if m not in METRIC_NAMES:
            raise ValueError(f"{argname}: unknown metric {m!r}; fastdl knows {list(METRIC_NAMES)}")
        if isinstance(loss, losses_mod.MSE):
            raise ValueError(f"{argname}: 'accuracy' needs a classification loss (softmax_cross_entropy or "
                             "binary_cross_entropy), not mse")
    return ["accuracy" for _ in names[:1]]


def correct_counts(loss: losses_mod.Loss, out: AnyArray, y: AnyArray,
                   w: AnyArray | None = None) -> tuple[float, float | None]:
    """(correct, weighted correct) predictions of one batch of host outputs: the argmax
    against labels (or the argmax of one-hot / probability rows); for the binary
    cross-entropy, each output against its target at 0.5, averaged over the outputs.
    Without weights the second is None."""
    if isinstance(loss, losses_mod.BinaryCrossEntropy):
        hits = (out > 0) == (y > 0.5)
        correct = float(np.count_nonzero(hits)) / out.shape[1]
        per_row = hits.mean(axis=1) if w is not None else None
    else:
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        per_row = out.argmax(axis=1) == labels
        correct = float(np.count_nonzero(per_row))
    if w is None or per_row is None:
        return correct, None
    # A float64 sum, not np.dot: numpy's BLAS dot may wake its own thread pool, whose
    # threads then spin on the cores the kernels' threads need.
    return correct, float(np.sum(w, dtype=np.float64, where=per_row))
