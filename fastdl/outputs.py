"""Keras's output activations: what a network applies to its outputs outside the
kernels. ``softmax`` on the last Dense layer (or a last ``"softmax"`` layer) says the
network outputs class probabilities: training fuses it into the softmax cross-entropy
(the kernel takes logits), ``predict`` returns the probabilities. ``sigmoid`` on the last
layer with the binary cross-entropy is fused into that loss the same way; with any other
loss it stays the kernel's activation."""

import numpy as np

from fastdl import losses as losses_mod
from fastdl._stages import DenseStage

__all__ = ["fuse_into_loss", "apply"]


def fuse_into_loss(graph, loss):
    """The output activation the network applies for `loss` ("softmax", "sigmoid" or
    None); sets the last stage's kernel activation accordingly (compile calls it)."""
    last = graph.stages[-1]
    if graph.output_activation == "softmax":
        if not isinstance(loss, losses_mod.SoftmaxCrossEntropy):
            raise ValueError(f"loss: the last layer's softmax is fused into softmax_cross_entropy (Keras's "
                             f"categorical cross-entropy); with {loss.name!r} give the last layer another activation")
        return "softmax"
    if isinstance(last, DenseStage) and last.layer.activation == "sigmoid" and not last.p:
        fused = isinstance(loss, losses_mod.BinaryCrossEntropy)
        last.act = "linear" if fused else "sigmoid"
        return "sigmoid" if fused else None
    return None


def apply(out, activation):
    """Softmax or sigmoid of host outputs (float64 inside, float32 out); out itself for None."""
    if activation is None:
        return out
    z = out.astype(np.float64)
    if activation == "softmax":
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    else:
        z = 1.0 / (1.0 + np.exp(-z))
    return z.astype(np.float32)
