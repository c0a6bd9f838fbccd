"""What fit, evaluate and predict read their batches from.

- ``ArrayData``: arrays (anything numpy reads), converted once; each epoch's batches
  are gathered in the shuffled order into buffers kept per batch size (no allocation
  per step), optionally only a slice of each batch (a data-parallel rank's rows).
- ``IterableData``: any iterable of ``(x, y)`` or ``(x, y, sample_weight)`` batches -- a
  generator, a list, a ``torch.utils.data.DataLoader`` (CPU tensors are read through
  numpy) -- each batch converted as it comes.

A network with BatchNorm cannot train on a batch of one sample (its variance is
undefined, PyTorch refuses it): both merge a one-sample last batch into the batch before
it, so no sample is dropped and no epoch fails half-way.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fastdl.inputs import as_sample_weight, class_weight_to_sample_weight

if TYPE_CHECKING:
    from fastdl._typing import AnyArray, Arrays, FloatArray, Shard, Transform
    from fastdl.network import Network

__all__ = ["ArrayData", "IterableData", "Batch", "is_batch_iterable", "split_validation"]


class Batch:
    """One batch: its index in the epoch, the rows of the epoch's order it covers
    ([first, last], None for iterables), the global batch size, and the host arrays of
    the rows this process computes (x, y, sample weights or None)."""

    __slots__ = ("index", "first", "last", "size", "x", "y", "w")

    def __init__(self, index: int, first: int | None, last: int | None, size: int, x: FloatArray | None,
                 y: AnyArray | None, w: FloatArray | None) -> None:
        self.index, self.first, self.last, self.size, self.x, self.y, self.w = index, first, last, size, x, y, w


def is_batch_iterable(x: Any) -> bool:
    """Whether fit's x is an iterable of batches rather than an array-like: a generator,
    an iterator, a DataLoader-like object, or a list of (x, y[, w]) tuples."""
    if isinstance(x, list) and x and isinstance(x[0], tuple) and len(x[0]) in (2, 3) and np.ndim(x[0][0]) >= 1:
        return True
    if x is None or isinstance(x, (np.ndarray, list, tuple, str, bytes)):
        return False
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__") or hasattr(x, "__cuda_array_interface__"):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def split_validation(x: FloatArray, y: AnyArray, w: FloatArray | None,
                     fraction: float) -> tuple[Arrays, Arrays | None]:
    """Keras's validation_split: the *last* fraction of the samples, before shuffling."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"validation_split: expected a fraction (a number in [0, 1)), got "
                        f"{type(fraction).__name__} {fraction!r}")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"validation_split: expected a fraction in [0, 1), got {fraction}")
    if not fraction:
        return (x, y, w), None
    n = x.shape[0]
    split_at = int(np.floor(n * (1.0 - float(fraction))))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split: {fraction} of {n} samples leaves no training or no validation data")
    val = (x[split_at:], y[split_at:], None if w is None else w[split_at:])
    return (x[:split_at], y[:split_at], None if w is None else w[:split_at]), val


def batch_bounds(n: int, batch_size: int, merge_single: bool) -> list[tuple[int, int]]:
    """[(start, stop)] of an epoch's batches; with merge_single a one-sample last batch
    joins the one before."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if merge_single and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def whole_shard(m: int) -> tuple[int, int]:
    """All of an m-row batch: (0, m) (training in one process)."""
    return 0, m


class ArrayData:
    """Prepared arrays x (N, D) float32, y (the loss's targets), w (N,) or None."""

    def __init__(self, x: FloatArray, y: AnyArray, w: FloatArray | None, batch_size: int, shuffle: bool,
                 rng: np.random.Generator, merge_single: bool = False, augment: Sequence[Transform] = ()) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} targets (one per sample of x), got {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError("x: no samples")
        if merge_single and x.shape[0] == 1:
            raise ValueError("x: one sample cannot train a network with BatchNorm (its batch variance is undefined)")
        self.x, self.y, self.w = x, y, w
        self.n = x.shape[0]
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.rng = rng
        self.augment = list(augment)
        self.bounds = batch_bounds(self.n, batch_size, merge_single)
        self.steps = len(self.bounds)
        self._bufs: dict[int, tuple[Any, Any, Any]] = {}

    def _buffers(self, rows: int) -> tuple[Any, Any, Any]:
        bufs = self._bufs.get(rows)
        if bufs is None:
            x, y, w = self.x, self.y, self.w
            bufs = self._bufs[rows] = (np.empty((rows,) + x.shape[1:], x.dtype), np.empty((rows,) + y.shape[1:], y.dtype),
                                       None if w is None else np.empty(rows, w.dtype))
        return bufs

    def batches(self, shard: Shard = whole_shard) -> Iterator[Batch]:
        """This epoch's batches (reshuffled each epoch when shuffle is on); shard(m) ->
        (lo, hi) picks the rows of an m-row batch this process computes."""
        order = self.rng.permutation(self.n) if self.shuffle else None
        copy = order is not None or self.augment
        for b, (s, e) in enumerate(self.bounds):
            m = e - s
            lo, hi = shard(m)
            rows = hi - lo
            if rows == 0:
                yield Batch(b, s, e - 1, m, None, None, None)
                continue
            if not copy:
                xb, yb = self.x[s + lo:s + hi], self.y[s + lo:s + hi]
                wb = None if self.w is None else self.w[s + lo:s + hi]
            else:
                xb, yb, wb = self._buffers(rows)
                if order is None:
                    np.copyto(xb, self.x[s + lo:s + hi])
                    np.copyto(yb, self.y[s + lo:s + hi])
                    if wb is not None:
                        np.copyto(wb, self.w[s + lo:s + hi])  # type: ignore[index]  # wb only with w
                else:
                    idx = order[s + lo:s + hi]
                    np.take(self.x, idx, axis=0, out=xb)
                    np.take(self.y, idx, axis=0, out=yb)
                    if wb is not None:
                        np.take(self.w, idx, axis=0, out=wb)  # type: ignore[arg-type]  # wb only with w
                for t in self.augment:
                    t(xb, self.rng)
            yield Batch(b, s, e - 1, m, xb, yb, wb)

    def shard_sizes(self, shard: Shard) -> list[int]:
        """The rows each batch gives this process (for checks before training)."""
        return [shard(e - s)[1] - shard(e - s)[0] for s, e in self.bounds]


class IterableData:
    """Batches from an iterable of (x, y[, sample_weight]) tuples, converted by the
    model as they come. steps: batches per epoch (None: one pass of the iterable).
    A one-shot iterator (a generator) goes on where the last epoch stopped; running
    out of batches before ``steps`` ends training with a warning, as in Keras."""

    def __init__(self, source: Iterable[Any], model: Network, steps: int | None = None,
                 class_weight: Mapping[int, float] | None = None, merge_single: bool | None = None,
                 augment: Sequence[Transform] = (), argname: str = "x") -> None:
        self.source = source
        self.model = model
        self.steps = steps
        self.class_weight = class_weight
        self.merge_single = merge_single
        self.augment = list(augment)
        self.argname = argname
        self.one_shot = iter(source) is source if hasattr(source, "__iter__") else True
        self._it: Iterator[Any] | None = None
        self.ran_out = False
        if steps is None and hasattr(source, "__len__") and not self.one_shot:
            self.steps = len(source)  # type: ignore[arg-type]  # it has __len__

    def _convert(self, item: Any, b: int) -> Arrays:
        where = f"{self.argname}: batch {b}"
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"{where}: expected a tuple (x, y) or (x, y, sample_weight), got {type(item).__name__}")
        x = self.model.prepare_inputs(item[0], f"{where} x")
        if self.augment and np.shares_memory(x, np.asarray(item[0])):
            x = x.copy()  # augmentation works in place: never on the user's arrays
        y = self.model.prepare_targets(item[1], f"{where} y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{where}: x has {x.shape[0]} samples, y {y.shape[0]}")
        w = None
        if len(item) == 3 and item[2] is not None:
            if self.class_weight is not None:
                raise ValueError("class_weight: cannot be combined with batches that carry sample weights")
            w = as_sample_weight(item[2], x.shape[0], f"{where} sample_weight")
        elif self.class_weight is not None:
            w = class_weight_to_sample_weight(y, self.class_weight, self.model.output_dim)  # type: ignore[arg-type]
        for t in self.augment:
            t(x, self.model.shuffle_rng)
        return x, y, w

    def _items(self) -> Iterator[Any]:
        """The raw batches of this epoch; sets ran_out when the input ended early."""
        self.ran_out = False
        if self.steps is None:
            if not self.one_shot or self._it is None:
                self._it = iter(self.source)
            count = 0
            for item in self._it:
                count += 1
                yield item
            self.ran_out = count == 0
            return
        taken = 0
        fresh = False
        while taken < self.steps:
            if self._it is None:
                self._it = iter(self.source)
                fresh = True
            try:
                item = next(self._it)
            except StopIteration:
                if self.one_shot or fresh:  # nothing left, or a new pass gave nothing
                    self.ran_out = True
                    return
                self._it = None
                continue
            fresh = False
            taken += 1
            yield item

    def batches(self, shard: Shard = whole_shard) -> Iterator[Batch]:
        """This epoch's batches, converted as they come (every row in this process:
        iterables are not sharded)."""
        pending: Arrays | None = None
        b = 0
        for k, item in enumerate(self._items()):
            x, y, w = self._convert(item, k)
            if self.merge_single is None:  # the first batch has built the model
                self.merge_single = bool(self.model.batchnorm_statistics())
            if self.merge_single and pending is not None and x.shape[0] == 1:
                px, py, pw = pending
                x, y = np.concatenate([px, x]), np.concatenate([py, y])
                w = None if pw is None and w is None else np.concatenate([
                    pw if pw is not None else np.ones(px.shape[0], np.float32),
                    w if w is not None else np.ones(1, np.float32)])
                pending = None
            if pending is not None:
                yield Batch(b, None, None, pending[0].shape[0], *pending)
                b += 1
            pending = (x, y, w)
        if pending is not None:
            if self.merge_single and pending[0].shape[0] == 1:
                raise ValueError(f"{self.argname}: a batch of one sample cannot train a network with BatchNorm "
                                 "(its batch variance is undefined)")
            yield Batch(b, None, None, pending[0].shape[0], *pending)

    def warn_ran_out(self) -> None:
        """A Keras-style warning that the input ran out of batches (fit then stops)."""
        warnings.warn("fit: the input ran out of data; training stops. Give steps_per_epoch and an input that "
                      "yields at least steps_per_epoch * epochs batches, or a re-iterable (a list, a DataLoader) "
                      "that fit passes over once per epoch", UserWarning, stacklevel=3)
