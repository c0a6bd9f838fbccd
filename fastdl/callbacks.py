"""Callbacks for ``Sequential.fit`` (Keras' protocol and semantics).

Hooks: on_train_begin, on_epoch_begin(epoch), on_train_batch_end(batch, logs),
on_epoch_end(epoch, logs), on_train_end. ``logs`` at epoch end holds loss, the metrics,
val_* when validating, lr and time (seconds). A callback stops training by setting
``self.model.stop_training = True``.
"""

import csv
import math
import os
import sys
import time

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau",
           "CSVLogger", "ProgressBar", "CallbackList"]


class Callback:
    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class History(Callback):
    """``history.history`` maps each logged quantity (loss, accuracy, val_loss, lr, time
    ...) to one value per epoch; ``history.epoch`` lists the epochs run."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _monitored(logs, monitor, who):
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

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
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

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring the weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (``model.save``, atomic) at the end of every epoch, or only when
    `monitor` improved with save_best_only=True. `filepath` may contain format fields:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.fdl"`` (epoch counted from 1)."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto", verbose=0):
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, monitor)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
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
    the start of each epoch, per="step" before each step. A ReduceLROnPlateau schedule
    is fed the monitored value at each epoch's end instead."""

    def __init__(self, schedule, per="epoch", verbose=0):
        if per not in ("epoch", "step"):
            raise ValueError(f"per: expected 'epoch' or 'step', got {per!r}")
        if not callable(schedule) and not hasattr(schedule, "update"):
            raise TypeError("schedule: expected a fastdl.schedules schedule or a function (epoch, lr) -> lr")
        self.schedule = schedule
        self.per = per
        self.verbose = verbose

    def _value(self, t, lr):
        from fastdl import schedules

        if isinstance(self.schedule, schedules.Schedule):
            return self.schedule(t)
        return self.schedule(t, lr)

    def on_train_begin(self, logs=None):
        from fastdl import schedules

        self._plateau = isinstance(self.schedule, schedules.ReduceLROnPlateau)
        if isinstance(self.schedule, schedules.Schedule):
            self.schedule.start(self.model.optimizer.lr)
        self._t = self.model._step

    def on_epoch_begin(self, epoch, logs=None):
        if self._plateau or self.per != "epoch":
            return
        self._set(self._value(epoch, self.model.optimizer.lr), epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.per == "step" and not self._plateau:
            self._t += 1
            self.model.optimizer.lr = self._value(self._t, self.model.optimizer.lr)

    def _set(self, lr, epoch):
        lr = float(lr)
        if self.verbose and lr != self.model.optimizer.lr:
            print(f"Epoch {epoch + 1}: learning rate set to {lr:.6g}")
        self.model.optimizer.lr = lr

    def on_epoch_end(self, epoch, logs=None):
        if self._plateau:
            value = _monitored(logs or {}, self.schedule.monitor, "ReduceLROnPlateau")
            self._set(self.schedule.update(value, self.model.optimizer.lr), epoch)


def ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                      cooldown=0, min_lr=0.0, mode="min", verbose=0):
    """The callback form of fastdl.schedules.ReduceLROnPlateau (PyTorch's defaults)."""
    from fastdl import schedules

    sched = schedules.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience, threshold=threshold,
                                        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, mode=mode)
    return LearningRateScheduler(sched, verbose=verbose)


class CSVLogger(Callback):
    """Writes one row per epoch (epoch, then the logged quantities) to a CSV file."""

    def __init__(self, filename, separator=",", append=False):
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._keys = None
        self._file = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._keys = None
        self._header_done = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._header_done:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(_fmt(logs.get(k, "")) for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return v


def _bar_glyphs(stream):
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
    bar is drawn with ``=`` and ``.``."""

    BAR = 20

    def __init__(self, verbose=1, stream=None, epochs=None, steps=None, interval=0.1):
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.bar = verbose == 1 and self.tty
        self.full, self.empty = _bar_glyphs(self.stream)
        self.epochs, self.steps, self.interval = epochs, steps, interval

    def on_train_begin(self, logs=None):
        self._samples = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._epoch = epoch
        self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
        if not self.tty:
            self.stream.flush()

    def _metrics(self, logs):
        return "".join(f" - {k}: {v:.4f}" for k, v in logs.items() if k not in ("lr", "time"))

    def on_train_batch_end(self, batch, logs=None):
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
        self.stream.write(f"\r{done}/{self.steps} {bar} {elapsed:.0f}s {per_step * 1e3:.0f}ms/step"
                          f"{self._metrics(logs or {})}\x1b[K")
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = logs.get("time", time.perf_counter() - self._t0)
        steps = self.steps or 1
        n = getattr(self.model, "_epoch_samples", None)
        rate = f" - {n / elapsed:,.0f} samples/s" if n and elapsed > 0 else ""
        line = (f"{steps}/{steps} {self.full * self.BAR} {elapsed:.1f}s {elapsed / steps * 1e3:.1f}ms/step{rate}"
                f"{self._metrics(logs)}")
        if self.bar:
            self.stream.write("\r" + line + "\x1b[K\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class CallbackList:
    """The callbacks of one fit: the History, the progress output, then the user's."""

    def __init__(self, callbacks, model, verbose, epochs, steps, history, stream=None):
        stream = stream if stream is not None else sys.stdout
        if verbose == "auto":
            isatty = getattr(stream, "isatty", None)
            verbose = 1 if (isatty and isatty()) else 2
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1, 2 or 'auto', got {verbose!r}")
        user = list(callbacks or [])
        for c in user:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks: expected fastdl.callbacks.Callback instances, got {type(c).__name__}")
        self.callbacks = [history]
        if verbose:
            self.callbacks.append(ProgressBar(verbose, stream, epochs, steps))
        self.callbacks += user
        for c in self.callbacks:
            c.set_model(model)

    def on_train_begin(self):
        for c in self.callbacks:
            c.on_train_begin({})

    def on_epoch_begin(self, epoch):
        for c in self.callbacks:
            c.on_epoch_begin(epoch, {})

    def on_train_batch_end(self, batch, logs):
        for c in self.callbacks:
            c.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs):
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)

    def on_train_end(self):
        for c in self.callbacks:
            c.on_train_end({})



from fastdl.monitoring import GradientMonitor  # noqa: E402  (lives with gradient_norms; a callback like these)
