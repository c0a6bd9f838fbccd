"""How the training loop spreads over processes: a Strategy is the set of hooks the one
epoch loop (fastdl.training.trainer) calls at fixed points, as Keras's distribution
API and Lightning's strategies are. ``Strategy`` itself is one process;
``fastdl.distributed.MPIStrategy`` is data-parallel over MPI ranks.

Per training batch the loop asks ``shard(m)`` which rows of the m-row global batch this
process computes, then ``train_batch`` for the step (returning the local loss and
whether the step was applied everywhere). Per epoch it sums the metric totals with
``sum_scalars`` and calls ``end_epoch`` (replica upkeep) before the callbacks, and
``agree_stop`` after them. ``is_writer`` says whether this process runs the callbacks
that write files or print.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from fastdl.callbacks import Callback
    from fastdl.network import Network
    from fastdl.training.data import ArrayData, Batch, IterableData

__all__ = ["Strategy"]


class Strategy:
    """Training in this process alone."""

    name = "local"
    #: this process prints progress and runs callbacks that write files
    is_writer = True
    #: a stop asked for by a callback after a batch takes effect at once (all replicas
    #: must agree on it otherwise, which only happens at epoch boundaries)
    stops_mid_epoch = True
    #: steps take the gradients through flat_grads (an all-reduce between backward and
    #: update), so the step plan's in-kernel update cannot be used
    needs_gradients = False

    def shard(self, m: int) -> tuple[int, int]:
        """Rows [lo, hi) of an m-row global batch that this process computes."""
        return 0, m

    def begin_fit(self, model: Network, data: ArrayData | IterableData, validation: Any,
                  arguments: tuple[Any, ...]) -> None:
        """Before the first epoch: checks and synchronisation. arguments: the fit
        arguments every replica must agree on."""

    def callbacks(self, callbacks: Sequence[Callback]) -> Sequence[Callback]:
        """The user's callbacks this process runs."""
        return callbacks

    def train_batch(self, model: Network, batch: Batch, fill_gradients: bool) -> tuple[float, bool]:
        """One training step on this process's rows of `batch`; returns (loss, applied).
        A step whose loss is not finite is not applied."""
        loss = model.step_if_finite(batch.x, batch.y, batch.w,  # type: ignore[arg-type]  # one process: every row
                                    fill_gradients=fill_gradients)
        return loss, math.isfinite(loss)

    def sum_scalars(self, values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The sums of `values` over the processes (float64)."""
        return np.array(values, np.float64)

    def end_epoch(self, model: Network, epoch: int) -> None:
        """After an epoch's last step, before validation and the callbacks."""

    def agree_stop(self, stop: bool) -> bool:
        """Whether training stops, the same answer everywhere."""
        return bool(stop)

    def eval_shard(self, n: int) -> tuple[int, int]:
        """Rows [lo, hi) of an n-sample evaluation set that this process evaluates."""
        return 0, n

    def failed(self, error: BaseException) -> None:
        """fit is raising `error` (before end_fit)."""

    def end_fit(self, model: Network) -> None:
        """After training, even when it failed."""
