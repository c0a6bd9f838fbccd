"""The public kernel API: what other code embeds and what the benchmarks call.

One name per kernel, whatever the device: numpy arrays run the C++ CPU kernels;
arrays exposing ``__cuda_array_interface__`` (Numba device arrays, CuPy, PyTorch CUDA
tensors) run the Numba CUDA kernels in :mod:`fastdl.cuda` (the ``cuda`` extra).

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
- ``precision="fp32"`` (keyword; ``matmul``, the dense, dense-dropout and dense-maxout
  kernels and ``DenseStack``): ``"bf16"`` rounds both GEMM operands to bfloat16 as they
  are packed (round to nearest even) and multiplies them on the CPU's bf16 units (AMX,
  AVX512-BF16; elsewhere the same arithmetic on the fp32 units), accumulating in fp32;
  the bias, activation, dropout, maxout, db and any ``update=`` step stay fp32, as do
  every input and output (docs/kernels.md, "Precision"). CPU only; never the default.

Losses, each fused with its gradient and returning ``(loss, gradient)``:
``softmax_cross_entropy(logits, target, *, label_smoothing=0.0, sample_weight=None,
out=None)`` (target int32/int64 labels (N,) or float32 probabilities (N, C)),
``mse(pred, target, *, sample_weight=None, out=None)`` and
``binary_cross_entropy(logits, target, *, sample_weight=None, out=None)`` (from logits).
Without weights the loss is the mean (PyTorch's reduction="mean"). ``sample_weight``, a
float32 array (N,) of finite weights >= 0, weighs sample i (row i; for mse and
binary_cross_entropy the slice along the first axis, whose loss is the mean of its
elements) as Keras 3's "sum_over_batch_size" does: loss = sum_i w_i loss_i / N, divided
by N, not by sum(w), and sample i's gradient is scaled by w_i. The weighting happens
inside the kernel's reduction; a negative or non-finite weight is a ValueError naming
it and its index, raised before anything is written.

Optimizer steps (``sgd_step``, ``adagrad_step``, ``rmsprop_step``, ``adadelta_step``,
``adam_step``) update a flat parameter buffer and its state in place. Called with
``grads=None`` (CPU) they apply nothing and return an ``OptimizerStep``, the step
prepared for applying in pieces: ``dense_backward(..., update=step)`` (and
``dense_dropout_backward``, ``dense_maxout_backward``) steps ``w``, which must be a
view into the step's params, inside the dw GEMM while each gradient tile is in
registers (dx is computed first, from the old w; dw is written only where ``out=``
gives it a buffer, else returned as None), and ``step.apply(grads, segments=...)``
steps the [start, stop) ranges left. Each element stepped once gives bit for bit what
the one-call step gives.

``DenseStack(layers, *, loss, dout, label_smoothing=0.0, precision="fp32")`` (CPU) runs the forward, loss
and backward of a stack of dense layers in one call: ``layers`` is a list of dicts with
the arrays one layer's ``dense_forward``/``dense_backward`` take and fill (``w``, ``b``,
``activation``, ``alpha``, ``y``, ``z`` for NEEDS_Z, ``dx`` (None for the first layer),
``dw``, ``db``, ``dalpha`` for prelu), ``loss`` one of ``"softmax_cross_entropy"``,
``"mse"``, ``"binary_cross_entropy"`` and ``dout`` the loss gradient's buffer. It checks
them once; ``stack.train(x, target, sample_weight=None)`` checks only the batch, runs
the same kernels as the per-layer calls (bit-identical results, weighted as the loss
kernels are) and returns the loss. A network of plain Dense layers trains through one.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fastdl import _C, activations

if TYPE_CHECKING:
    # What the loop below defines, as type checkers see it: the CPU kernels' signatures
    # (fastdl/_C.pyi). Each also takes GPU arrays (and returns Numba device arrays).
    from fastdl._C import (adadelta_step, adagrad_step, adam_step, batchnorm_backward, batchnorm_forward_eval,
                           batchnorm_forward_train, binary_cross_entropy, dense_backward, dense_dropout_backward,
                           dense_dropout_forward, dense_forward, dense_maxout_backward, dense_maxout_forward,
                           dropout_backward, dropout_forward, matmul, max_norm_, maxout_backward, maxout_forward,
                           mse, rmsprop_step, sgd_step, softmax_cross_entropy)

#: Activation names the kernels accept.
ACTIVATIONS = activations.NAMES
#: Activations for which dense_forward returns (y, z) and dense_backward needs z.
NEEDS_Z = activations.NEEDS_Z
#: A prepared optimizer step (a step kernel called with grads=None; CPU).
OptimizerStep = _C.OptimizerStep
#: Forward, loss and backward of a stack of dense layers in one call (CPU).
DenseStack = _C.DenseStack

# Every kernel exported here: the CPU function is fastdl._C.<name>, the GPU one
# fastdl.cuda.kernels.<name>. Add a kernel by adding its name.
_KERNELS = (
    "dense_forward",
    "dense_backward",
    "matmul",
    "softmax_cross_entropy",
    "mse",
    "binary_cross_entropy",
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward",
    "maxout_forward",
    "maxout_backward",
    "dense_maxout_forward",
    "dense_maxout_backward",
    "dropout_forward",
    "dropout_backward",
    "dense_dropout_forward",
    "dense_dropout_backward",
    "sgd_step",
    "adagrad_step",
    "rmsprop_step",
    "adadelta_step",
    "adam_step",
    "max_norm_",
)


def _on_gpu(a: Any) -> bool:
    # Numba device arrays (also the CUDA simulator's, which lack the interface) or any
    # __cuda_array_interface__ object.
    return type(a) is not np.ndarray and (
        hasattr(a, "__cuda_array_interface__") or getattr(a, "__cuda_ndarray__", False))


#: The kernels that take ``precision=`` (their GEMMs can run in bf16 on the CPU).
PRECISION_KERNELS = ("matmul", "dense_forward", "dense_backward", "dense_dropout_forward",
                     "dense_dropout_backward", "dense_maxout_forward", "dense_maxout_backward")


def _gpu_precision(name: str, kwargs: dict[str, Any]) -> None:
    # The GPU kernels compute in fp32 only: precision="fp32" is dropped, anything else
    # refused rather than silently ignored.
    precision = kwargs.pop("precision", "fp32")
    if precision != "fp32":
        raise ValueError(f"precision: {name} on a GPU array runs in 'fp32' only, got {precision!r} "
                         "(bf16 is a CPU path)")


def _device_dispatch(name: str) -> Callable[..., Any]:
    cpu = getattr(_C, name)

    @functools.wraps(cpu)
    def kernel(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else next(iter(kwargs.values()), None)
        if _on_gpu(first):
            from fastdl.cuda import kernels as gpu  # imported on first GPU use only

            if name in PRECISION_KERNELS:
                _gpu_precision(name, kwargs)
            return getattr(gpu, name)(*args, **kwargs)
        return cpu(*args, **kwargs)

    kernel.__name__ = name
    return kernel


for _name in _KERNELS:
    globals()[_name] = _device_dispatch(_name)
del _name

__all__ = ["ACTIVATIONS", "NEEDS_Z", "PRECISION_KERNELS", "OptimizerStep", *_KERNELS]
