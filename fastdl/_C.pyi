"""Types of fastdl's compiled CPU kernels (csrc/bindings/*.cpp); use them through
:mod:`fastdl.kernels`. Every array is a numpy array: float32 and C-contiguous unless
said otherwise (a mismatch is a TypeError or ValueError naming the argument; nothing is
converted). ``out=`` takes preallocated results: one array, or a tuple with one entry
(an array or None, "allocate it") per result."""

from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import TypeAlias

_F32: TypeAlias = npt.NDArray[np.float32]
#: dropout masks (one bit per element) and maxout's argmax (the winning piece per unit)
_U8: TypeAlias = npt.NDArray[np.uint8]
#: class labels (N,), int32 or int64
_Labels: TypeAlias = npt.NDArray[np.int32] | npt.NDArray[np.int64]
#: the [start, stop) rows a step applies to (int64, shape (S, 2), sorted, disjoint)
_Segments: TypeAlias = npt.NDArray[np.int64]
#: out= of a kernel with several results
_Outs: TypeAlias = tuple[_F32 | None, ...] | list[_F32 | None]
#: a backward kernel's gradients: (dx, dw, db), plus dalpha for prelu; dx is None when
#: need_dx=False and dw None when update= takes it and out= gives it no buffer
_Grads: TypeAlias = tuple[Any, ...]

#: the activation names, in the order of their codes
ACTIVATIONS: tuple[str, ...]
#: one dict per activation: name, code, needs_z, alpha ("none", "scalar", "learned"), default_alpha
ACTIVATION_TABLE: tuple[dict[str, Any], ...]

class OptimizerStep:
    """One optimizer step, prepared by a step kernel called with grads=None, applied in
    pieces (made by the step kernels only)."""

    def apply(self, grads: _F32, *, segments: _Segments | None = None) -> None:
        """Applies the step to the [start, stop) rows of segments (None: the whole
        buffer), reading their gradients from grads."""
    @property
    def size(self) -> int:
        """The number of parameters the step updates."""

class DenseStack:
    """Forward, loss and backward of a stack of dense layers in one call."""

    def __init__(self, layers: list[dict[str, Any]], *, loss: str, dout: _F32, label_smoothing: float = 0.0,
                 precision: str = "fp32") -> None: ...
    def train(self, x: _F32, target: _F32 | _Labels, sample_weight: _F32 | None = None, *,
              update: OptimizerStep | None = None, backward_if_nonfinite: bool = True,
              step: OptimizerStep | None = None) -> float:
        """Runs the step on one batch and returns the mean loss."""
    @property
    def batch_size(self) -> int:
        """The batch size the stack's buffers were made for."""
    @property
    def precision(self) -> str:
        """The GEMMs' precision: "fp32" or "bf16"."""
    def __len__(self) -> int: ...

# --- runtime: threads and instruction-set paths

def set_num_threads(n: int) -> None:
    """Sets the number of threads every kernel uses, at most max_num_threads()."""
def get_num_threads() -> int:
    """The number of threads the kernels use."""
def max_num_threads() -> int:
    """The most threads set_num_threads accepts."""
def get_isa() -> str:
    """The kernel path in use: 'amx', 'avx512_bf16', 'avx512', 'avx2' or 'generic'."""
def set_isa(name: str) -> None:
    """Forces a kernel path (also: environment variable FASTDL_ISA)."""
def cpu_supports(name: str) -> bool:
    """Whether this CPU can run the kernel path `name`."""
def last_level_cache_bytes() -> int:
    """The CPU's last-level cache in bytes; 0 where it cannot say."""

# --- dense layer and GEMM

def matmul(a: _F32, b: _F32, *, out: _F32 | None = None, precision: str = "fp32") -> _F32:
    """a @ b."""
def dense_forward(x: _F32, w: _F32, b: _F32 | None, activation: str = "linear", *, alpha: float | _F32 | None = None,
                  out: _F32 | _Outs | None = None, precision: str = "fp32") -> Any:
    """y = f(x @ w + b), or (y, z) for the activations whose backward needs z."""
def dense_backward(dy: _F32, x: _F32, w: _F32, activation: str, *, y: _F32 | None = None, z: _F32 | None = None,
                   alpha: float | _F32 | None = None, need_dx: bool = True, out: _Outs | None = None,
                   update: OptimizerStep | None = None, precision: str = "fp32") -> _Grads:
    """(dx, dw, db), plus dalpha for prelu."""

# --- dropout

def philox4x32(counter: tuple[int, int, int, int] | list[int],
               key: tuple[int, int] | list[int]) -> tuple[int, int, int, int]:
    """Philox-4x32-10 of a 4-word counter and 2-word key: the 4 output words."""
def dropout_forward(x: _F32, p: float, seed: int, step: int, stream: int = 0, *, scale: bool = True,
                    out: _F32 | _Outs | None = None, offset: int = 0) -> tuple[_F32, _U8]:
    """(y, mask): x with each element dropped with probability p."""
def dropout_backward(dy: _F32, mask: _U8, p: float, *, scale: bool = True, out: _F32 | None = None) -> _F32:
    """dx: dy through the forward pass's mask."""
def dense_dropout_forward(x: _F32, w: _F32, b: _F32 | None, activation: str, p: float, seed: int, step: int,
                          stream: int = 0, *, alpha: float | _F32 | None = None, scale: bool = True,
                          offset: int = 0, out: _Outs | None = None, precision: str = "fp32") -> tuple[Any, ...]:
    """(y, mask), or (y, mask, z) for the activations whose backward needs z."""
def dense_dropout_backward(dy: _F32, x: _F32, w: _F32, activation: str, mask: _U8, p: float, *,
                           y: _F32 | None = None, z: _F32 | None = None, alpha: float | _F32 | None = None,
                           scale: bool = True, need_dx: bool = True, out: _Outs | None = None,
                           update: OptimizerStep | None = None, precision: str = "fp32") -> _Grads:
    """(dx, dw, db), plus dalpha for prelu."""
def _dropout_keep_bits_at(c: int, p: float, seed: int, step: int, stream: int) -> tuple[int, int]: ...

# --- maxout

def maxout_forward(z: _F32, pieces: int, *, out: _Outs | None = None) -> tuple[_F32, _U8]:
    """(y, argmax): each unit the max of its pieces."""
def maxout_backward(dy: _F32, argmax: _U8, pieces: int, *, out: _F32 | None = None) -> _F32:
    """dz: dy routed to each unit's winning piece."""
def dense_maxout_forward(x: _F32, w: _F32, b: _F32 | None, pieces: int, *, out: _Outs | None = None,
                         precision: str = "fp32") -> tuple[_F32, _U8]:
    """(y, argmax) of maxout(x @ w + b)."""
def dense_maxout_backward(dy: _F32, x: _F32, w: _F32, argmax: _U8, pieces: int, *, need_dx: bool = True,
                          out: _Outs | None = None, update: OptimizerStep | None = None,
                          precision: str = "fp32") -> _Grads:
    """(dx, dw, db)."""

# --- batch normalization

def batchnorm_forward_train(x: _F32, gamma: _F32 | None, beta: _F32 | None, running_mean: _F32 | None,
                            running_var: _F32 | None, *, momentum: float = 0.1, eps: float = 1e-5,
                            out: _Outs | None = None) -> tuple[_F32, _F32, _F32]:
    """(y, save_mean, save_invstd); updates running_mean/var in place (None: not kept);
    gamma/beta None: 1 and 0."""
def batchnorm_forward_eval(x: _F32, gamma: _F32 | None, beta: _F32 | None, running_mean: _F32, running_var: _F32,
                           *, eps: float = 1e-5, out: _F32 | None = None) -> _F32:
    """y normalised with the running statistics."""
def batchnorm_backward(dy: _F32, x: _F32, gamma: _F32 | None, save_mean: _F32, save_invstd: _F32, *,
                       out: _Outs | None = None) -> tuple[_F32, _F32, _F32]:
    """(dx, dgamma, dbeta)."""

# --- losses: (loss, gradient)

def softmax_cross_entropy(logits: _F32, target: _F32 | _Labels, *, label_smoothing: float = 0.0,
                          sample_weight: _F32 | None = None, out: _F32 | None = None) -> tuple[float, _F32]:
    """(loss, dlogits): mean softmax cross-entropy over the batch and its gradient."""
def mse(pred: _F32, target: _F32, *, sample_weight: _F32 | None = None,
        out: _F32 | None = None) -> tuple[float, _F32]:
    """(loss, dpred): mean squared error over all elements."""
def binary_cross_entropy(logits: _F32, target: _F32, *, sample_weight: _F32 | None = None,
                         out: _F32 | None = None) -> tuple[float, _F32]:
    """(loss, dlogits): mean binary cross-entropy of sigmoid(logits)."""
def check_labels(labels: npt.NDArray[np.int64], classes: int) -> None:
    """Raises ValueError naming the first label outside [0, classes) and its index."""
def check_sample_weight(sample_weight: _F32) -> None:
    """Raises ValueError naming the first weight that is negative or not finite."""
def _round_to_bf16(x: _F32) -> _F32: ...

# --- optimizer steps: in place (returning None), or prepared (grads=None) and returned

def check_optimizer_options(kind: str, **kwargs: Any) -> None:
    """Raises ValueError/TypeError where optimizer `kind`'s hyperparameters break the step kernels' rules."""
def sgd_step(params: _F32, grads: _F32 | None, momentum_buf: _F32 | None, *, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, first_step: bool = False,
             classic: bool = False, l1: float = 0.0,
             decay_segments: _Segments | None = None) -> OptimizerStep | None:
    """SGD step in place (torch.optim.SGD); grads=None: the step prepared, not applied."""
def adagrad_step(params: _F32, grads: _F32 | None, sum_sq: _F32, *, lr: float, step: int, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, eps: float = 1e-10, l1: float = 0.0,
                 decay_segments: _Segments | None = None) -> OptimizerStep | None:
    """Adagrad step in place (torch.optim.Adagrad); grads=None: the step prepared, not applied."""
def rmsprop_step(params: _F32, grads: _F32 | None, square_avg: _F32, *, lr: float, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 momentum_buf: _F32 | None = None, grad_avg: _F32 | None = None, l1: float = 0.0,
                 decay_segments: _Segments | None = None) -> OptimizerStep | None:
    """RMSprop step in place (torch.optim.RMSprop); grads=None: the step prepared, not applied."""
def adadelta_step(params: _F32, grads: _F32 | None, square_avg: _F32, acc_delta: _F32, *, lr: float = 1.0,
                  rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0, l1: float = 0.0,
                  decay_segments: _Segments | None = None) -> OptimizerStep | None:
    """Adadelta step in place (torch.optim.Adadelta); grads=None: the step prepared, not applied."""
def adam_step(params: _F32, grads: _F32 | None, exp_avg: _F32, exp_avg_sq: _F32, *, lr: float, step: int,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              decoupled: bool = False, l1: float = 0.0,
              decay_segments: _Segments | None = None) -> OptimizerStep | None:
    """Adam step in place (torch.optim.Adam; decoupled=True: AdamW); grads=None: the step prepared, not applied."""
def max_norm_(w: _F32, max_norm: float) -> None:
    """Rescales each column of w (K, M) to L2 norm <= max_norm in place."""
