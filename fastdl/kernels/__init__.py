"""The public kernel API: what other code embeds and what the benchmarks call.

CPU arrays are numpy float32, C-contiguous; a mismatch is a TypeError/ValueError that
names the argument (nothing is silently converted or copied).

Dense layer, y = f(x @ w + b) with x (N, K), w (K, M) stored in-by-out like Keras:

- ``dense_forward(x, w, b, activation="linear", *, alpha=None, out=None)`` returns y,
  or ``(y, z)`` for the activations whose backward needs the pre-activation z:
  ``prelu``, ``silu`` and ``gelu`` (see ``NEEDS_Z``). ``b`` may be None.
- ``dense_backward(dy, x, w, activation, *, y=None, z=None, alpha=None, need_dx=True)``
  returns ``(dx, dw, db)``, plus ``dalpha`` for prelu; pass ``z`` for the NEEDS_Z
  activations and ``y`` for the others (linear needs neither). ``dx`` is None when
  ``need_dx=False`` (the first layer of a network).
- ``alpha``: a float >= 0 for ``leaky_relu`` (default 0.01) and ``elu`` (default 1.0);
  a float32 array (M,) of learned slopes for ``prelu``; None for the rest.
- ``matmul(a, b, *, out=None)``: the plain GEMM behind them.
"""

from fastdl._C import ACTIVATIONS, dense_backward, dense_forward, matmul

#: Activations for which dense_forward returns (y, z) and dense_backward needs z.
NEEDS_Z = ("prelu", "silu", "gelu")

__all__ = ["ACTIVATIONS", "NEEDS_Z", "dense_forward", "dense_backward", "matmul"]
