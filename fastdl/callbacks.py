"""Callbacks for ``Sequential.fit``, ``evaluate`` and ``predict`` (Keras 3's protocol).

A callback overrides any of the hooks below; the trainer (``fastdl.training``) calls
each at the point Keras calls it:

- ``on_train_begin(logs)`` / ``on_train_end(logs)``: once per ``fit``; ``on_train_end``
  gets the last epoch's logs.
- ``on_epoch_begin(epoch, logs)`` / ``on_epoch_end(epoch, logs)``: ``logs`` at epoch end
  holds loss, the metrics, val_* when validating, lr and time (seconds).
- ``on_train_batch_begin(batch, logs)`` / ``on_train_batch_end(batch, logs)``: around
  every training step (their defaults call ``on_batch_begin`` / ``on_batch_end``, as in
  Keras); ``logs`` at batch end holds the epoch's running loss and metrics.
- ``on_test_begin`` / ``on_test_end`` and ``on_test_batch_begin`` / ``on_test_batch_end``:
  ``evaluate``, and the validation pass inside ``fit``.
- ``on_predict_begin`` / ``on_predict_end`` and ``on_predict_batch_begin`` /
  ``on_predict_batch_end`` (whose logs hold the batch's ``outputs``): ``predict``.

``self.model`` is the model (``set_model``), ``self.params`` the run's parameters
(``set_params``: verbose, epochs, steps, samples). A callback stops training by setting
``self.model.stop_training = True``; fit checks it after every batch and every epoch.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO, cast

import numpy as np

from fastdl import _device, schedules
from fastdl.monitoring import layer_norms, layer_slices

if TYPE_CHECKING:
    from fastdl._typing import FloatArray, Logs, PathLike
    from fastdl.model import Sequential
    from fastdl.optim import Optimizer

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau",
           "CSVLogger", "ProgressBar", "TerminateOnNaN", "LambdaCallback", "GradientMonitor", "CallbackList"]

#: every hook, in the order of Keras's Callback
HOOKS = ("on_batch_begin", "on_batch_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
         "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
         "on_predict_batch_end", "on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
         "on_predict_begin", "on_predict_end")


class Callback:
    """Base class: every hook does nothing (the batch ones forward to on_batch_*)."""

    #: the model fit, evaluate or predict runs (set_model; None until then)
    model: Sequential = None  # type: ignore[assignment]
    #: the run's parameters: verbose, epochs, steps, samples (set_params; None until then)
    params: dict[str, Any] | None = None

    def set_model(self, model: Sequential) -> None:
        """Called by fit, evaluate and predict with the model before any hook."""
        self.model = model

    def __getstate__(self) -> dict[str, Any]:
        # A pickled or deep-copied callback leaves its model behind: fit gives it one.
        state = dict(self.__dict__)
        state.pop("model", None)
        return state

    def set_params(self, params: dict[str, Any]) -> None:
        """Called with the run's parameters (verbose, epochs, steps, samples) before any hook."""
        self.params = params

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before a training step (what on_train_batch_begin calls by default)."""
        pass

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After a training step (what on_train_batch_end calls by default); logs: the
        epoch's running loss and metrics."""
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """At the start of an epoch (0-based)."""
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """At the end of an epoch: logs holds loss, the metrics, val_* when validating, lr and time."""
        pass

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before a training step; calls on_batch_begin."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After a training step; calls on_batch_end."""
        self.on_batch_end(batch, logs)

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before an evaluation batch (evaluate, or fit's validation)."""
        pass

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After an evaluation batch; logs: the running loss and metrics."""
        pass

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before a predict batch."""
        pass

    def on_predict_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After a predict batch; logs holds the batch's outputs."""
        pass

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Once, when fit starts."""
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Once, when fit ends; logs: the last epoch's."""
        pass

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """When evaluate (or fit's validation pass) starts."""
        pass

    def on_test_end(self, logs: Logs | None = None) -> None:
        """When evaluate (or fit's validation pass) ends; logs: its loss and metrics."""
        pass

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """When predict starts."""
        pass

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """When predict ends."""
        pass


class History(Callback):
    """``history.history`` maps each logged quantity (loss, accuracy, val_loss, lr, time
    ...) to one value per epoch; ``history.epoch`` lists the epochs run."""

    def __init__(self) -> None:
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _monitored(logs: Logs, monitor: str, who: str) -> float:
    if monitor not in logs:
        raise KeyError(f"{who}: monitor={monitor!r} is not in the epoch logs (available: {sorted(logs)}); "
                       "val_* quantities need validation_data or validation_split")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved for `patience` epochs (Goodfellow et
    al., Algorithm 7.1, with Keras 3's semantics).

    Improvement: current < best - |min_delta| (mode "min"; the mirror for "max"; "auto"
    picks max for accuracies). Epochs before `start_from_epoch` are not monitored. With
    restore_best_weights=True the best weights seen are restored at the end of training
    — also when stopping never fired — so the model you get is the best one evaluated.
    `baseline`: training stops if the monitor does not beat it within `patience` epochs.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta = abs(float(min_delta))
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience: expected a non-negative integer, got {patience!r}")
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights: list[FloatArray] | None = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_flat_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_flat_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring the weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_flat_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (``model.save``, atomic) at the end of every epoch, or only when
    `monitor` improved with save_best_only=True. `filepath` may contain format fields:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.fdl"`` (epoch counted from 1)."""

    def __init__(self, filepath: PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", verbose: int = 0) -> None:
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, monitor)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving the model to {path}")
            self.best = current
        self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate from a schedule.

    schedule: a fastdl.schedules schedule (``schedule(t)``, t = epoch or step, from 0),
    or a function ``f(epoch, lr) -> lr`` (Keras' form). per="epoch" (default) sets it at
    the start of each epoch; per="step" sets ``schedule(t)`` before step t, counting the
    model's steps (``model.global_step``: a resumed run goes on where it stopped), the
    first step included -- after the last step the optimizer holds the next step's rate,
    as after PyTorch's ``scheduler.step()``. A ReduceLROnPlateau schedule is fed the
    monitored value at each epoch's end instead."""

    def __init__(self, schedule: schedules.Schedule | Callable[[int, float], float], per: str = "epoch",
                 verbose: int = 0) -> None:
        if per not in ("epoch", "step"):
            raise ValueError(f"per: expected 'epoch' or 'step', got {per!r}")
        if not callable(schedule) and not hasattr(schedule, "update"):
            raise TypeError("schedule: expected a fastdl.schedules schedule or a function (epoch, lr) -> lr")
        self.schedule = schedule
        self.per = per
        self.verbose = verbose

    def _value(self, t: int, lr: float) -> float:
        if isinstance(self.schedule, schedules.Schedule):
            return self.schedule(t)
        return self.schedule(t, lr)

    @property
    def _optimizer(self) -> Optimizer:
        return cast("Optimizer", self.model.optimizer)  # fit runs a compiled model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._plateau = isinstance(self.schedule, schedules.ReduceLROnPlateau)
        if isinstance(self.schedule, schedules.Schedule):
            self.schedule.start(self._optimizer.lr)
        self._t = self.model.global_step
        if self.per == "step" and not self._plateau:
            self._optimizer.lr = self._value(self._t, self._optimizer.lr)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        if self._plateau or self.per != "epoch":
            return
        self._set(self._value(epoch, self._optimizer.lr), epoch)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.per == "step" and not self._plateau:
            self._t += 1
            self._optimizer.lr = self._value(self._t, self._optimizer.lr)

    def _set(self, lr: float, epoch: int) -> None:
        lr = float(lr)
        if self.verbose and lr != self._optimizer.lr:
            print(f"Epoch {epoch + 1}: learning rate set to {lr:.6g}")
        self._optimizer.lr = lr

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self._plateau:
            schedule = cast(schedules.ReduceLROnPlateau, self.schedule)
            value = _monitored(logs or {}, schedule.monitor, "ReduceLROnPlateau")
            self._set(schedule.update(value, self._optimizer.lr), epoch)


def ReduceLROnPlateau(monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                      threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0, mode: str = "min",
                      verbose: int = 0) -> LearningRateScheduler:
    """The callback form of fastdl.schedules.ReduceLROnPlateau (PyTorch's defaults)."""
    sched = schedules.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience, threshold=threshold,
                                        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, mode=mode)
    return LearningRateScheduler(sched, verbose=verbose)


class CSVLogger(Callback):
    """Writes one row per epoch (epoch, then the logged quantities) to a CSV file."""

    def __init__(self, filename: PathLike, separator: str = ",", append: bool = False) -> None:
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._keys: list[str] | None = None
        self._file: TextIO | None = None
        self._writer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(_file=None, _writer=None)  # an open file does not travel; on_train_begin opens it again
        return state

    def on_train_begin(self, logs: Logs | None = None) -> None:
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._keys = None
        self._header_done = exists

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)  # type: ignore[arg-type]  # opened
            if not self._header_done:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(_fmt(logs.get(k, "")) for k in self._keys)])
        self._file.flush()  # type: ignore[union-attr]  # on_train_begin opened it

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return v


def _bar_glyphs(stream: TextIO) -> tuple[str, str]:
    """The bar's filled and empty cells: box-drawing lines where the stream's encoding has
    them, else ``=`` and ``.`` (an ASCII or cp1252 stream would raise UnicodeEncodeError
    in the middle of fit)."""
    encoding = getattr(stream, "encoding", None)  # None: a text buffer (io.StringIO) holds any
    try:
        if encoding is not None:
            "━─".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "=", "."
    return "━", "─"


class ProgressBar(Callback):
    """Keras-style progress: ``Epoch 3/20`` then, on a terminal (verbose=1), a bar redrawn
    in place ``120/469 ━━━━━━──────── 1s 4ms/step - 32000 samples/s - loss: 0.3012``; else
    (verbose=2, or any stream that is not a terminal) one line per epoch. Never writes a
    carriage return to a file or pipe. On a stream that cannot encode the bar's lines the
    bar is drawn with ``=`` and ``.``. epochs, steps and samples come from ``params``
    when not given."""

    BAR = 20

    def __init__(self, verbose: int = 1, stream: TextIO | None = None, epochs: int | None = None,
                 steps: int | None = None, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.bar = verbose == 1 and self.tty
        self.full, self.empty = _bar_glyphs(self.stream)
        self.epochs, self.steps, self.interval = epochs, steps, interval

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for name in ("stdout", "stderr"):  # a console stream travels by name
            if state.get("stream") is getattr(sys, name) or state.get("stream") is getattr(sys, f"__{name}__"):
                state["stream"] = f"<{name}>"
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.stream in ("<stdout>", "<stderr>"):
            self.stream = getattr(sys, self.stream[1:-1])

    def on_train_begin(self, logs: Logs | None = None) -> None:
        params = self.params or {}
        if self.epochs is None:
            self.epochs = params.get("epochs")
        if self.steps is None:
            self.steps = params.get("steps")
        self._samples = params.get("samples")

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._epoch = epoch
        self._done = 0
        self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
        if not self.tty:
            self.stream.flush()

    def _metrics(self, logs: Logs) -> str:
        return "".join(f" - {k}: {v:.4f}" for k, v in logs.items() if k not in ("lr", "time")
                       and isinstance(v, (int, float)))

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._done = batch + 1
        if not self.bar:
            return
        now = time.perf_counter()
        done = batch + 1
        if done != self.steps and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._t0
        filled = int(self.BAR * done / self.steps) if self.steps else self.BAR
        bar = self.full * filled + self.empty * (self.BAR - filled)
        per_step = elapsed / done
        total = self.steps if self.steps else "?"
        self.stream.write(f"\r{done}/{total} {bar} {elapsed:.0f}s {per_step * 1e3:.0f}ms/step"
                          f"{self._metrics(logs or {})}\x1b[K")
        self.stream.flush()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        elapsed = logs.get("time", time.perf_counter() - self._t0)
        steps = self.steps or self._done or 1
        n = self._samples
        rate = f" - {n / elapsed:,.0f} samples/s" if n and elapsed > 0 else ""
        line = (f"{steps}/{steps} {self.full * self.BAR} {elapsed:.1f}s {elapsed / steps * 1e3:.1f}ms/step{rate}"
                f"{self._metrics(logs)}")
        if self.bar:
            self.stream.write("\r" + line + "\x1b[K\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite (Keras's
    TerminateOnNaN). fastdl never applies such a step (fit's ``on_nonfinite_loss``), so
    with this callback fit ends normally, keeping the parameters of the last finite step,
    instead of raising NonFiniteLossError."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions (Keras's LambdaCallback): ``on_epoch_begin`` and
    ``on_epoch_end`` take (epoch, logs), the batch hooks (batch, logs), the begin/end
    hooks (logs). Any hook named in ``HOOKS`` may be given as a keyword."""

    def __init__(self, on_epoch_begin: Callable[[int, Logs], Any] | None = None,
                 on_epoch_end: Callable[[int, Logs], Any] | None = None,
                 on_train_begin: Callable[[Logs], Any] | None = None, on_train_end: Callable[[Logs], Any] | None = None,
                 on_train_batch_begin: Callable[[int, Logs], Any] | None = None,
                 on_train_batch_end: Callable[[int, Logs], Any] | None = None,
                 **kwargs: Callable[..., Any] | None) -> None:
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in given.items():
            if name not in HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; expected one of {list(HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")
            setattr(self, name, fn)


class GradientMonitor(Callback):
    """Records each layer's gradient norm and update ratio during ``fit``.

    every: "epoch" (default) or a positive integer N: the norms are computed after every
    N-th training step. Each epoch's mean over its recorded steps goes into the epoch
    logs and so into ``model.fit``'s History (``grad_norm/<layer>``,
    ``update_ratio/<layer>``); every recorded step is kept in ``self.steps`` (a dict of
    lists, with the global step numbers under "step" and the epochs under "epoch").
    "epoch" records every step too (N = 1) and is the same as every=1.
    update_ratio: also record ||ΔW|| / ||W|| of each step (keeps a host copy of the
    parameters from the step before; costs one copy of the parameters per recorded step).
    weights_only: see ``fastdl.monitoring.layer_slices``. A step refused for a non-finite
    loss is not recorded.

    Cost: one host copy of the flat gradients (and parameters) per recorded step and a
    norm per layer, about as much memory traffic as one optimizer step; use every=N to
    thin it out on large networks or on the GPU, where each copy leaves the device.
    """

    #: fit keeps the separate optimizer step (flat_grads filled every batch) while it runs
    reads_gradients = True

    def __init__(self, every: str | int = "epoch", update_ratio: bool = True, weights_only: bool = True) -> None:
        if every == "epoch":
            every = 1
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every: expected 'epoch' or a positive integer, got {every!r}")
        self.every = int(every)
        self.update_ratio = bool(update_ratio)
        self.weights_only = bool(weights_only)
        self.steps: dict[str, list[Any]] = {}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._slices = layer_slices(self.model, self.weights_only)
        self.layers = list(self._slices)
        self.steps = {"step": [], "epoch": []}
        for layer in self.layers:
            self.steps[f"grad_norm/{layer}"] = []
            if self.update_ratio:
                self.steps[f"update_ratio/{layer}"] = []
        self._count = 0
        self._prev: FloatArray | None = None
        if self.update_ratio and self.every == 1:
            self._prev = _device.to_host(self.model.flat_params).copy()

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch
        self._sums = {k: 0.0 for k in self.steps if "/" in k}
        self._n = 0

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if logs is not None and not math.isfinite(logs.get("loss", 0.0)):
            return  # a refused step: nothing was applied
        self._count += 1
        record = self._count % self.every == 0
        if record:
            grads = _device.to_host(self.model.flat_grads)
            gn = layer_norms(grads, self._slices)
            self.steps["step"].append(self.model.global_step)
            self.steps["epoch"].append(self._epoch)
            for layer, v in gn.items():
                key = f"grad_norm/{layer}"
                self.steps[key].append(v)
                self._sums[key] += v
            if self.update_ratio:
                params = _device.to_host(self.model.flat_params)
                if self._prev is not None:
                    delta = layer_norms(params - self._prev, self._slices)
                    before = layer_norms(self._prev, self._slices)
                    for layer in self.layers:
                        key = f"update_ratio/{layer}"
                        r = delta[layer] / before[layer] if before[layer] > 0 else math.inf
                        self.steps[key].append(r)
                        self._sums[key] += r
                else:  # no snapshot of the step before (cannot happen with the schedule below)
                    for layer in self.layers:
                        self.steps[f"update_ratio/{layer}"].append(math.nan)
                        self._sums[f"update_ratio/{layer}"] = math.nan
            self._n += 1
        if self.update_ratio:
            if self.every == 1:
                self._prev = _device.to_host(self.model.flat_params).copy()
            elif (self._count + 1) % self.every == 0:  # the next step is recorded: keep W before it
                self._prev = _device.to_host(self.model.flat_params).copy()
            else:
                self._prev = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self._n == 0:  # every > steps per epoch and none fell in this epoch
            return
        values = {k: s / self._n for k, s in self._sums.items()}
        if logs is not None:
            logs.update(values)
        # History runs before the user's callbacks and has already stored this epoch's logs
        history = getattr(self.model, "history", None)
        if history is not None and hasattr(history, "history"):
            n_epochs = len(history.epoch)
            for k, v in values.items():
                col = history.history.setdefault(k, [])
                if len(col) < n_epochs:
                    col.extend([math.nan] * (n_epochs - 1 - len(col)))
                    col.append(v)


def _overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` does something in `hook` (the base class's batch hooks forward to
    on_batch_*, so those count too): the batch loop calls only the callbacks that do."""
    cls = type(callback)
    if hook in vars(callback):  # set on the instance (LambdaCallback)
        return True
    own = getattr(cls, hook, None)
    if own is not getattr(Callback, hook):
        return True
    alias = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}.get(hook)
    return alias is not None and _overrides(callback, alias)


class CallbackList:
    """The callbacks of one run: the History, the progress output, then the user's.

    ``CallbackList(callbacks, model, verbose, epochs, steps, history, stream=None,
    **params)``: ``verbose`` 0, 1, 2 or "auto" (1 on a terminal, 2 otherwise) adds a
    ProgressBar; ``history`` (a History or None) goes first. Every callback gets
    ``set_model(model)`` and ``set_params({"verbose", "epochs", "steps", ...params})``.
    Each hook calls the callbacks that override it, in order."""

    def __init__(self, callbacks: Sequence[Callback] | None = None, model: Any = None, verbose: int | str = 0,
                 epochs: int | None = None, steps: int | None = None, history: History | None = None,
                 stream: TextIO | None = None, **params: Any) -> None:
        stream = stream if stream is not None else sys.stdout
        if verbose == "auto":
            isatty = getattr(stream, "isatty", None)
            verbose = 1 if (isatty and isatty()) else 2
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1, 2 or 'auto', got {verbose!r}")
        if callbacks is not None and (isinstance(callbacks, Callback) or not hasattr(callbacks, "__iter__")):
            raise TypeError(f"callbacks: expected a list of fastdl.callbacks.Callback instances, got "
                            f"{type(callbacks).__name__}")
        user = list(callbacks or [])
        for c in user:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks: expected fastdl.callbacks.Callback instances, got {type(c).__name__}")
        self.callbacks: list[Callback] = [] if history is None else [history]
        if verbose:
            self.callbacks.append(ProgressBar(verbose, stream, epochs, steps))
        self.callbacks += user
        self.params = {"verbose": verbose, "epochs": epochs, "steps": steps, **params}
        self.model = model
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(self.params)
        self._batch = {hook: [getattr(c, hook) for c in self.callbacks if _overrides(c, hook)]
                       for hook in ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                                    "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")}

    def reads_gradients(self) -> bool:
        """Whether a callback reads ``flat_grads`` after each step (GradientMonitor)."""
        return any(getattr(c, "reads_gradients", False) for c in self.callbacks)

    def calls(self, hook: str) -> bool:
        """Whether any callback does something in a batch hook (else the loop skips it)."""
        return bool(self._batch[hook])

    def _each(self, hook: str, *args: Any) -> None:
        for c in self.callbacks:
            getattr(c, hook)(*args)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Calls on_train_begin of every callback."""
        self._each("on_train_begin", logs if logs is not None else {})

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Calls on_train_end of every callback."""
        self._each("on_train_end", logs if logs is not None else {})

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Calls on_epoch_begin of every callback."""
        self._each("on_epoch_begin", epoch, logs if logs is not None else {})

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Calls on_epoch_end of every callback."""
        self._each("on_epoch_end", epoch, logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        """Calls on_test_begin of every callback."""
        self._each("on_test_begin", logs if logs is not None else {})

    def on_test_end(self, logs: Logs | None = None) -> None:
        """Calls on_test_end of every callback."""
        self._each("on_test_end", logs if logs is not None else {})

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        """Calls on_predict_begin of every callback."""
        self._each("on_predict_begin", logs if logs is not None else {})

    def on_predict_end(self, logs: Logs | None = None) -> None:
        """Calls on_predict_end of every callback."""
        self._each("on_predict_end", logs if logs is not None else {})

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Calls on_train_batch_begin of the callbacks that override it."""
        for f in self._batch["on_train_batch_begin"]:
            f(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        """Calls on_train_batch_end of the callbacks that override it."""
        for f in self._batch["on_train_batch_end"]:
            f(batch, logs)

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Calls on_test_batch_begin of the callbacks that override it."""
        for f in self._batch["on_test_batch_begin"]:
            f(batch, logs)

    def on_test_batch_end(self, batch: int, logs: Logs) -> None:
        """Calls on_test_batch_end of the callbacks that override it."""
        for f in self._batch["on_test_batch_end"]:
            f(batch, logs)

    def on_predict_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Calls on_predict_batch_begin of the callbacks that override it."""
        for f in self._batch["on_predict_batch_begin"]:
            f(batch, logs)

    def on_predict_batch_end(self, batch: int, logs: Logs) -> None:
        """Calls on_predict_batch_end of the callbacks that override it."""
        for f in self._batch["on_predict_batch_end"]:
            f(batch, logs)
