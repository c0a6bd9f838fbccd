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

from __future__ import annotations

import math

from fastdl._scalars import integer, real

__all__ = ["Schedule", "StepDecay", "InverseSqrtDecay", "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau"]


def _positive(name: str, value: float) -> float:
    return real(name, value, 0.0, lo_open=True)


class Schedule:
    """Base class: ``schedule(t)`` is the learning rate at epoch (or step) t, from lr0
    (``initial_lr``, else the optimizer's lr when training starts)."""

    def __init__(self, initial_lr: float | None = None) -> None:
        self.initial_lr = None if initial_lr is None else _positive("initial_lr", initial_lr)
        self._lr0 = self.initial_lr

    def start(self, optimizer_lr: float) -> None:
        """Called when training starts: fixes lr0 (the optimizer's lr unless initial_lr)."""
        self._lr0 = self.initial_lr if self.initial_lr is not None else float(optimizer_lr)

    def __call__(self, t: int) -> float:
        if self._lr0 is None:
            raise RuntimeError(f"{type(self).__name__}: give initial_lr, or use it through "
                               "LearningRateScheduler (which takes the optimizer's lr)")
        return self.value(self._lr0, integer("t", t, 0))

    def value(self, lr0: float, t: int) -> float:
        """The learning rate at t from lr0 (what a subclass defines)."""
        raise NotImplementedError


class StepDecay(Schedule):
    """lr0 * gamma ** (t // step_size): reduce by a factor every few epochs (PyTorch's StepLR)."""

    def __init__(self, step_size: int, gamma: float = 0.1, initial_lr: float | None = None) -> None:
        super().__init__(initial_lr)
        self.step_size = integer("step_size", step_size, 1)
        self.gamma = _positive("gamma", gamma)

    def value(self, lr0: float, t: int) -> float:
        return lr0 * self.gamma ** (t // self.step_size)


class InverseSqrtDecay(Schedule):
    """lr0 / sqrt(t + 1)."""

    def value(self, lr0: float, t: int) -> float:
        return lr0 / math.sqrt(t + 1)


class ExponentialDecay(Schedule):
    """lr0 * gamma ** t (PyTorch's ExponentialLR)."""

    def __init__(self, gamma: float, initial_lr: float | None = None) -> None:
        super().__init__(initial_lr)
        self.gamma = _positive("gamma", gamma)

    def value(self, lr0: float, t: int) -> float:
        return lr0 * self.gamma ** t


class CosineDecay(Schedule):
    """min_lr + (lr0 - min_lr) * (1 + cos(pi * t / total)) / 2, held at min_lr after
    ``total`` (as Keras' CosineDecay; PyTorch's CosineAnnealingLR turns back up instead)."""

    def __init__(self, total: int, min_lr: float = 0.0, initial_lr: float | None = None) -> None:
        super().__init__(initial_lr)
        self.total = integer("total", total, 1)
        self.min_lr = real("min_lr", min_lr, 0.0)

    def value(self, lr0: float, t: int) -> float:
        t = min(t, self.total)
        return self.min_lr + (lr0 - self.min_lr) * (1 + math.cos(math.pi * t / self.total)) / 2


class ReduceLROnPlateau(Schedule):
    """PyTorch's ReduceLROnPlateau: mode 'min', factor 0.1, patience 10, threshold 1e-4
    ('rel': better means value < best * (1 - threshold); 'abs': value < best - threshold),
    cooldown 0, min_lr 0; a reduction smaller than eps (1e-8) is skipped."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0, mode: str = "min",
                 eps: float = 1e-8) -> None:
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

    def reset(self) -> None:
        """Forgets the best value seen and the epochs counted since (training starts anew)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def start(self, optimizer_lr: float) -> None:
        self.reset()

    def _better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            ref = best * (1 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold
            return a < ref
        ref = best * (1 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold
        return a > ref

    def update(self, value: float, lr: float) -> float:
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

    def __call__(self, t: int) -> float:
        raise TypeError("ReduceLROnPlateau depends on the monitored value, not on t: call update(value, lr), "
                        "or pass it to LearningRateScheduler")
