"""The batch sizes a network keeps buffers for, and the device copies of host batches.

Every stage keeps its buffers per batch size (no allocation per step). A run that sees
many sizes (predicting on ragged batches, a data loader with a varying last batch) would
otherwise keep a set for each forever, so only the ``limit`` most recently used sizes
keep theirs; the least recently used one's buffers go first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np

__all__ = ["BatchSizes"]


class BatchSizes:
    """Tracks the batch sizes in use; ``release(rows)`` is called for an evicted size."""

    def __init__(self, limit: int, release: Callable[[int], Any]) -> None:
        self.limit = limit
        self._release = release
        self._rows: OrderedDict[int, bool] = OrderedDict()  # least recently used first
        self._last: int | None = None  # the most recently used size (most steps repeat it)
        self._device: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}  # (rows, shapes...) -> device buffers

    def use(self, n: int) -> None:
        if n == self._last:
            return
        self._last = n
        rows = self._rows
        if n in rows:
            if next(reversed(rows)) != n:
                rows.move_to_end(n)
            return
        rows[n] = True
        while len(rows) > self.limit:
            old, _ = rows.popitem(last=False)
            self._release(old)
            for key in [k for k in self._device if k[0] == old]:
                del self._device[key]

    def clear(self) -> None:
        self._last = None
        self._rows.clear()
        self._device.clear()

    def to_device(self, backend: Any, x: Any, y: Any, w: Any) -> tuple[Any, Any, Any]:
        """Copies a numpy batch into device buffers kept per shape (GPU models)."""
        if not isinstance(x, np.ndarray):
            return x, y, w
        key = (x.shape[0], x.shape, y.shape, y.dtype, w is None)
        bufs = self._device.get(key)
        if bufs is None:
            bufs = self._device[key] = (backend.empty(x.shape), backend.empty(y.shape, y.dtype),
                                        None if w is None else backend.empty(w.shape))
        dx, dy, dw = bufs
        dx.copy_to_device(x)
        dy.copy_to_device(np.ascontiguousarray(y))
        if w is not None:
            dw.copy_to_device(w)
        return dx, dy, dw
