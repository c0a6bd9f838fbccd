"""Seeing inside training: per-layer gradient norms and update sizes.

``GradientMonitor`` is a callback (also ``fastdl.callbacks.GradientMonitor``)::

    mon = GradientMonitor()
    history = model.fit(x, y, epochs=10, callbacks=[mon])
    history.history["grad_norm/dense_0"]      # one value per epoch
    history.history["update_ratio/dense_0"]   # ||W_after - W_before|| / ||W_before||
    mon.steps["grad_norm/dense_0"]            # one value per recorded step

``gradient_norms(model, x, y)`` gives the per-layer gradient norms of one batch without
training (e.g. at initialization, where vanishing gradients show first).

A layer's gradient norm is the L2 norm of its weight matrix's gradient (``w``) by
default; ``weights_only=False`` also counts biases, PReLU slopes and BatchNorm's gamma
and beta. The update ratio is the norm of the change the optimizer step (and max-norm)
actually made to those parameters, over their norm before the step: a rule of thumb
puts a healthy value near 1e-3; far below, the layer barely learns; near 1, it thrashes.
"""

import math

import numpy as np

from fastdl import _device
from fastdl.callbacks import Callback

__all__ = ["GradientMonitor", "gradient_norms", "layer_slices"]


def layer_slices(model, weights_only=True):
    """{layer name: [(start, stop), ...]} ranges of the model's flat buffers, in layer order.
    weights_only: only each layer's weight matrix ``w`` (layers without one, such as
    BatchNorm, are left out); False: every parameter of the layer."""
    out = {}
    for name, offset, shape, _ in model._param_index:
        layer, param = name.rsplit(".", 1)
        if weights_only and param != "w":
            continue
        size = int(np.prod(shape))
        out.setdefault(layer, []).append((offset, offset + size))
    return out


def _norms(flat, slices):
    """{layer: L2 norm of flat over the layer's ranges} (float64 accumulation)."""
    res = {}
    for layer, ranges in slices.items():
        # a float64 sum of squares, not np.dot: numpy's BLAS dot may fan out to threads, which
        # on a busy machine costs milliseconds per call waiting for them (measured 18 ms vs 0.09)
        res[layer] = math.sqrt(sum(float(np.square(flat[a:b], dtype=np.float64).sum()) for a, b in ranges))
    return res


def gradient_norms(model, x, y, weights_only=True):
    """Per-layer gradient norms of the mean loss over (x, y), one forward/backward in
    training mode (dropout active, batch statistics), without updating anything: the
    parameters, the BatchNorm running statistics and the step counter (which seeds the
    dropout masks) are left as they were. The model must be compiled (for its loss).
    Returns {layer name: norm} in layer order."""
    model._require_compiled("gradient_norms")
    x = model._prepare_x(x)
    y = model.loss.prepare_targets(y, model.output_dim)
    saved = model.get_weights()
    step = model._step
    try:
        model.compute_gradients(x, y)
        grads = _device.to_host(model.flat_grads)
    finally:
        model.set_weights(saved)
        model._step = step
    return _norms(grads, layer_slices(model, weights_only))


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
    weights_only: see ``layer_slices``.

    Cost: one host copy of the flat gradients (and parameters) per recorded step and a
    norm per layer, about as much memory traffic as one optimizer step; use every=N to
    thin it out on large networks or on the GPU, where each copy leaves the device.
    """

    #: fit keeps the separate optimizer step (flat_grads filled every batch) while it runs
    reads_gradients = True

    def __init__(self, every="epoch", update_ratio=True, weights_only=True):
        if every == "epoch":
            every = 1
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every: expected 'epoch' or a positive integer, got {every!r}")
        self.every = int(every)
        self.update_ratio = bool(update_ratio)
        self.weights_only = bool(weights_only)
        self.steps = {}

    def on_train_begin(self, logs=None):
        self._slices = layer_slices(self.model, self.weights_only)
        self.layers = list(self._slices)
        self.steps = {"step": [], "epoch": []}
        for layer in self.layers:
            self.steps[f"grad_norm/{layer}"] = []
            if self.update_ratio:
                self.steps[f"update_ratio/{layer}"] = []
        self._count = 0
        self._prev = None
        if self.update_ratio and self.every == 1:
            self._prev = _device.to_host(self.model.flat_params).copy()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._sums = {k: 0.0 for k in self.steps if "/" in k}
        self._n = 0

    def on_train_batch_end(self, batch, logs=None):
        self._count += 1
        record = self._count % self.every == 0
        if record:
            grads = _device.to_host(self.model.flat_grads)
            gn = _norms(grads, self._slices)
            self.steps["step"].append(self.model._step)
            self.steps["epoch"].append(self._epoch)
            for layer, v in gn.items():
                key = f"grad_norm/{layer}"
                self.steps[key].append(v)
                self._sums[key] += v
            if self.update_ratio:
                params = _device.to_host(self.model.flat_params)
                if self._prev is not None:
                    delta = _norms(params - self._prev, self._slices)
                    before = _norms(self._prev, self._slices)
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

    def on_epoch_end(self, epoch, logs=None):
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
