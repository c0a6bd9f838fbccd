"""Learning-rate schedules. ``schedule(t)`` is the learning rate at epoch (or step) t,
counted from 0; use them with ``fastdl.callbacks.LearningRateScheduler``.

``initial_lr=None`` takes the optimizer's learning rate when training starts.

- StepDecay(step_size, gamma=0.1): lr0 * gamma ** (t // step_size) — "reduce by a
  factor every few epochs" (PyTorch's StepLR).
- InverseSqrtDecay(): lr0 / sqrt(t + 1).
- ExponentialDecay(gamma): lr0 * gamma ** t.
- CosineDecay(total, min_lr=0): min_lr + (lr0 - min_lr) * (1 + cos(pi * t / total)) / 2,
  held at min_lr after `total`.
- ReduceLROnPlateau(...): multiplies lr by `factor` when the monitored quantity has not
  improved for `patience` epochs (PyTorch's defaults and threshold rules); it is fed
  values with ``update(value, lr)`` rather than called with t.
"""

import math

from fastdl._scalars import integer, real

__all__ = ["Schedule", "StepDecay", "InverseSqrtDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]


def _positive(name, value, whole=False):
    return integer(name, value, 1) if whole else real(name, value, 0.0, lo_open=True)


class Schedule:
    def __init__(self, initial_lr=None):
        self.initial_lr = None if initial_lr is None else _positive("initial_lr", initial_lr)
        self._lr0 = self.initial_lr

    def start(self, optimizer_lr):
        """Called when training starts: fixes lr0 (the optimizer's lr unless initial_lr)."""
        self._lr0 = self.initial_lr if self.initial_lr is not None else float(optimizer_lr)

    def __call__(self, t):
        if self._lr0 is None:
            raise RuntimeError(f"{type(self).__name__}: give initial_lr, or use it through "
                               "LearningRateScheduler (which takes the optimizer's lr)")
        return self.value(self._lr0, integer("t", t, 0))

    def value(self, lr0, t):
        raise NotImplementedError


class StepDecay(Schedule):
    def __init__(self, step_size, gamma=0.1, initial_lr=None):
        super().__init__(initial_lr)
        self.step_size = _positive("step_size", step_size, whole=True)
        self.gamma = _positive("gamma", gamma)

    def value(self, lr0, t):
        return lr0 * self.gamma ** (t // self.step_size)


class InverseSqrtDecay(Schedule):
    def value(self, lr0, t):
        return lr0 / math.sqrt(t + 1)


class ExponentialDecay(Schedule):
    def __init__(self, gamma, initial_lr=None):
        super().__init__(initial_lr)
        self.gamma = _positive("gamma", gamma)

    def value(self, lr0, t):
        return lr0 * self.gamma ** t


class CosineDecay(Schedule):
    def __init__(self, total, min_lr=0.0, initial_lr=None):
        super().__init__(initial_lr)
        self.total = _positive("total", total, whole=True)
        self.min_lr = real("min_lr", min_lr, 0.0)

    def value(self, lr0, t):
        t = min(t, self.total)
        return self.min_lr + (lr0 - self.min_lr) * (1 + math.cos(math.pi * t / self.total)) / 2


class ReduceLROnPlateau(Schedule):
    """PyTorch's ReduceLROnPlateau: mode 'min', factor 0.1, patience 10, threshold 1e-4
    ('rel': better means value < best * (1 - threshold); 'abs': value < best - threshold),
    cooldown 0, min_lr 0; a reduction smaller than eps (1e-8) is skipped."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, mode="min", eps=1e-8):
        super().__init__(None)
        self.eps = real("eps", eps, 0.0)
        factor = real("factor", factor, 0.0, 1.0, lo_open=True, hi_open=True)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        patience, cooldown = integer("patience", patience, 0), integer("cooldown", cooldown, 0)
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.threshold, self.threshold_mode = real("threshold", threshold, 0.0), threshold_mode
        self.cooldown, self.min_lr, self.mode = cooldown, real("min_lr", min_lr, 0.0), mode
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def start(self, optimizer_lr):
        self.reset()

    def _better(self, a, best):
        if self.mode == "min":
            ref = best * (1 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            return a < ref
        ref = best * (1 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold
        return a > ref

    def update(self, value, lr):
        """Feeds one epoch's monitored value; returns the learning rate to use next."""
        value = float(value)
        if self._better(value, self.best):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self.eps:  # PyTorch ignores changes smaller than eps
                lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return lr

    def __call__(self, t):
        raise TypeError("ReduceLROnPlateau depends on the monitored value, not on t: call update(value, lr), "
                        "or pass it to LearningRateScheduler")
