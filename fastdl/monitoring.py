"""Seeing inside training: per-layer gradient norms and update sizes.

``gradient_norms(model, x, y)`` gives the per-layer gradient norms of one batch without
training (e.g. at initialization, where vanishing gradients show first). During ``fit``,
the ``fastdl.callbacks.GradientMonitor`` callback records them step by step::

    mon = fastdl.callbacks.GradientMonitor()
    history = model.fit(x, y, epochs=10, callbacks=[mon])
    history.history["grad_norm/dense_0"]      # one value per epoch
    history.history["update_ratio/dense_0"]   # ||W_after - W_before|| / ||W_before||
    mon.steps["grad_norm/dense_0"]            # one value per recorded step

A layer's gradient norm is the L2 norm of its weight matrix's gradient (``w``) by
default; ``weights_only=False`` also counts biases, PReLU slopes and BatchNorm's gamma
and beta. The update ratio is the norm of the change the optimizer step (and max-norm)
actually made to those parameters, over their norm before the step: a rule of thumb
puts a healthy value near 1e-3; far below, the layer barely learns; near 1, it thrashes.
"""

import math

import numpy as np

from fastdl import _device

__all__ = ["gradient_norms", "layer_slices", "layer_norms"]


def layer_slices(model, weights_only=True):
    """{layer name: [(start, stop), ...]} ranges of the model's flat buffers, in layer order.
    weights_only: only each layer's weight matrix ``w`` (layers without one, such as
    BatchNorm, are left out); False: every parameter of the layer."""
    out: dict = {}
    for slot in model.param_layout:
        layer, param = slot.name.rsplit(".", 1)
        if weights_only and param != "w":
            continue
        out.setdefault(layer, []).append((slot.offset, slot.offset + slot.size))
    return out


def layer_norms(flat, slices):
    """{layer: L2 norm of flat over the layer's ranges} (float64 accumulation)."""
    res = {}
    for layer, ranges in slices.items():
        # a float64 sum of squares, not np.dot: numpy's BLAS dot may fan out to threads,
        # which on a busy machine costs milliseconds per call waiting for them
        res[layer] = math.sqrt(sum(float(np.square(flat[a:b], dtype=np.float64).sum()) for a, b in ranges))
    return res


def gradient_norms(model, x, y, weights_only=True):
    """Per-layer gradient norms of the mean loss over (x, y), one forward/backward in
    training mode (dropout active, batch statistics), without updating anything: the
    parameters, the BatchNorm running statistics and the step counter (which seeds the
    dropout masks) are left as they were. The model must be compiled (for its loss).
    Returns {layer name: norm} in layer order."""
    model.compute_gradients(x, y, keep_state=True)
    return layer_norms(_device.to_host(model.flat_grads), layer_slices(model, weights_only))
