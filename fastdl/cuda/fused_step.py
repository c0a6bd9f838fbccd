"""A training step's forward, loss and backward for a narrow network of Dense layers on
the GPU, through the fused small-MLP kernels (:mod:`fastdl.cuda.fused_mlp`), over the
network's own flat parameter and gradient buffers. This is what a network's step calls
instead of the per-layer kernels when :meth:`FusedMLPStep.supports` says it qualifies.

    ok = FusedMLPStep.supports(784, (64, 64, 64, 64, 10), "relu", loss="softmax_cross_entropy")
    if not ok:
        print(ok.reason)                    # why not, in one sentence
    step = FusedMLPStep(784, (64, 64, 64, 64, 10), "relu", params=flat_params,
                        grads=flat_grads, loss="softmax_cross_entropy")
    loss = step.train(x, y)                 # fills flat_grads, returns the mean loss
    logits = step.last_output               # (N, 10), until the next train()
    optimizer.step(flat_params, flat_grads) # one launch over the flat buffers, as before

The network description:
- ``input_dim``: the width of x; ``widths``: every Dense layer's out_features, the last
  one the network's output (``(64, 64, 64, 64, 10)`` for 784-64x4-10).
- ``activation``: the hidden layers' activation (one for all of them); the last layer
  must be linear (``last_linear=True``): the kernels write its z as the output.
- ``loss``: ``"softmax_cross_entropy"`` (``label_smoothing`` as in PyTorch), ``"mse"`` or
  ``"binary_cross_entropy"``; the target is what that loss kernel takes (int labels (N,)
  or float32 (N, C) for the cross-entropy, float32 (N, C) for the others).
- ``alpha``: the slope of leaky_relu / elu (their defaults when None).

Qualifies (``supports``): every width <= 128 (fused_mlp.MAX_WIDTH), an activation other
than prelu (its slopes are parameters the fused kernels do not hold), a bias in every
layer, no Dropout, BatchNorm or Maxout, one of the three losses. Anything else runs the
per-layer kernels, which are also this class's test oracle.

Buffers: ``params`` and ``grads`` are float32 1-D device arrays of the network's flat
layout, layer by layer ``w`` (in, out) row-major then ``b`` -- exactly what
``Sequential`` allocates for such a network and what :class:`FusedMLP` uses. They are
checked once here; ``train`` writes every element of ``grads``. The step keeps its own
activations and loss-gradient buffer for the largest batch it has seen (allocated when a
batch is larger than any before, never otherwise).

Per ``train``: 5 kernel launches (forward, the loss's two, the backward chain, the weight
gradients; 4 for a single layer), one more for integer labels (their check runs before
the loss writes anything), and one copy to the host (the loss), which waits for the step
to finish. ``train(..., backward_if_nonfinite=False)`` returns a NaN or infinite
loss before the backward pass and leaves ``grads`` untouched (``fit``'s check).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from fastdl.cuda import activations as A
from fastdl.cuda import fused_mlp
from fastdl.cuda import losses
from fastdl.cuda.arrays import checked_f32, empty, expect_dim, overlaps

if TYPE_CHECKING:
    from fastdl._typing import DeviceArray

LOSSES = ("softmax_cross_entropy", "mse", "binary_cross_entropy")


class Support(NamedTuple):
    """Whether a network qualifies for the fused step (truthy when it does) and, when
    it does not, why."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _loss_kernel(loss: str, label_smoothing: float) -> Callable[[Any, Any, Any], Any]:
    if loss == "softmax_cross_entropy":
        return lambda out, target, grad: losses.softmax_cross_entropy(
            out, target, label_smoothing=label_smoothing, out=grad)
    kernel = losses.mse if loss == "mse" else losses.binary_cross_entropy
    return lambda out, target, grad: kernel(out, target, out=grad)


class FusedMLPStep:
    """Forward, loss and backward of a narrow MLP in 5 or 6 launches, over the network's flat
    buffers. See the module docstring for the interface."""

    @staticmethod
    def supports(input_dim: int, widths: Sequence[int], activation: str = "relu", *,
                 loss: str = "softmax_cross_entropy", label_smoothing: float = 0.0, last_linear: bool = True,
                 alpha: float | None = None, biases: bool = True, dropout: bool = False, batchnorm: bool = False,
                 maxout: bool = False) -> Support:
        """Support(ok, reason): whether a network of this description can take the fused step."""
        try:
            widths = tuple(int(w) for w in widths)
            input_dim = int(input_dim)
        except (TypeError, ValueError):
            return Support(False, f"widths: expected a sequence of layer widths, got {widths!r}")
        if not widths or input_dim < 1 or min(widths) < 1:
            return Support(False, f"the network's input width and layer widths must be >= 1, got "
                                  f"{input_dim} and {widths}")
        for what, present in (("Dropout", dropout), ("BatchNorm", batchnorm), ("Maxout", maxout)):
            if present:
                return Support(False, f"the fused MLP has no {what}; the network has one")
        if not biases:
            return Support(False, "the fused MLP needs a bias in every layer (use_bias=True); "
                                  "a layer without one takes the per-layer path")
        if not last_linear:
            return Support(False, "the fused MLP's last layer is linear (it writes the output z); "
                                  "the network's last layer has an activation")
        wide = [w for w in widths if w > fused_mlp.MAX_WIDTH]
        if wide:
            return Support(False, f"width {wide[0]} is not supported by the fused MLP; use width <= "
                                  f"{fused_mlp.MAX_WIDTH} or the layer-by-layer path")
        if len(widths) > 1:
            if activation not in A.CODES:
                return Support(False, f"activation: unknown activation {activation!r}")
            if activation == "prelu":
                return Support(False, "prelu is not supported by the fused MLP (its slopes are "
                                      "per-layer parameters)")
            try:
                A.parse_alpha(activation, alpha, 0, None)
            except (TypeError, ValueError) as e:
                return Support(False, str(e))
        if loss not in LOSSES:
            return Support(False, f"loss {loss!r} is not one the fused step computes ({', '.join(LOSSES)})")
        smoothing = float(label_smoothing)
        if loss == "softmax_cross_entropy":
            if not 0.0 <= smoothing <= 1.0:
                return Support(False, f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
        elif smoothing != 0.0:
            return Support(False, f"label_smoothing applies to softmax_cross_entropy only, not {loss!r}")
        return Support(True)

    def __init__(self, input_dim: int, widths: Sequence[int], activation: str = "relu", *, params: DeviceArray,
                 grads: DeviceArray, loss: str = "softmax_cross_entropy", label_smoothing: float = 0.0,
                 last_linear: bool = True, alpha: float | None = None) -> None:
        ok = self.supports(input_dim, widths, activation, loss=loss, label_smoothing=label_smoothing,
                           last_linear=last_linear, alpha=alpha)
        if not ok:
            raise ValueError(f"FusedMLPStep: {ok.reason}")
        self.sizes = (int(input_dim),) + tuple(int(w) for w in widths)
        self.activation = activation if len(self.sizes) > 2 else "linear"
        self.alpha = alpha if len(self.sizes) > 2 else None
        self.loss = loss
        self.label_smoothing = float(label_smoothing)
        self._loss = _loss_kernel(loss, self.label_smoothing)
        self._mlp: Any = None
        self._capacity = 0
        self._dout: Any = None
        self.last_output: DeviceArray | None = None
        self.n_params = sum(din * dout + dout for din, dout in zip(self.sizes[:-1], self.sizes[1:]))
        self.params = checked_f32(params, "params", 1, "(the network's flat parameter buffer)")
        expect_dim(self.params, "params", 0, self.n_params, "the parameters of these layers, w then b each")
        self.grads = checked_f32(grads, "grads", 1, "(the network's flat gradient buffer)")
        expect_dim(self.grads, "grads", 0, self.n_params, "len(params)")
        if overlaps(self.params, self.grads):
            raise ValueError("grads: shares memory with params; the gradients need a buffer of their own")

    def _buffers_for(self, n: int) -> tuple[Any, Any]:
        """The fused kernels' buffers for n rows: the ones kept, or larger ones when n
        exceeds every batch so far."""
        if n > self._capacity:
            self._mlp = fused_mlp.FusedMLP(self.sizes, self.activation, batch=n, alpha=self.alpha)
            self._dout = empty((n, self.sizes[-1]))
            self._capacity = n
        return self._mlp, self._dout[:n]

    def train(self, x: DeviceArray, target: DeviceArray, *, backward_if_nonfinite: bool = True) -> float:
        """Forward, loss and backward for the batch x: writes d(loss)/d(params) into the
        grads buffer and returns the mean loss (a Python float)."""
        x = checked_f32(x, "x", 2, f"of shape (N, {self.sizes[0]})")
        expect_dim(x, "x", 1, self.sizes[0], "the network's input width")
        n = x.shape[0]
        if n == 0:
            raise ValueError(f"x: expected at least one row, got shape (0, {self.sizes[0]})")
        mlp, dout = self._buffers_for(n)
        out = mlp.forward_checked(x, self.params)
        self.last_output = out
        loss, _ = self._loss(out, target, dout)
        if not backward_if_nonfinite and not math.isfinite(loss):
            return loss
        mlp.backward_checked(dout, x, self.params, self.grads)
        return loss


__all__ = ["FusedMLPStep", "Support", "LOSSES"]
