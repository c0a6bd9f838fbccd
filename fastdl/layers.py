"""Layers: what a network is described with.

A layer here is a description — sizes, activation, initializers — plus, once the network
is built, views into the network's flat parameter buffer. The network fuses adjacent
layers into kernel calls: a Dense layer takes the activation that follows it (and a
Dropout after that) into one fused kernel, so ``[Dense(784, 256), "relu", Dropout(0.5)]``
is one ``dense_dropout_forward`` call per step.

Activations are given as strings (``Dense(..., activation="relu")`` or ``"relu"`` in the
layer list) or as layers (``ReLU()``, ``PReLU()``...). The kernels apply an activation
inside the dense layer's epilogue, so an activation must follow a Dense layer (not a
BatchNorm or Maxout layer): write ``Dense(..., activation="relu"), BatchNorm(n)``.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np

from fastdl import activations, initializers
from fastdl._scalars import integer, real

if TYPE_CHECKING:
    from fastdl._typing import Config, InitFunction, InitializerLike

__all__ = [
    "Layer", "Dense", "Maxout", "Dropout", "BatchNorm", "Activation", "ReLU", "Sigmoid", "Tanh", "LeakyReLU",
    "PReLU", "ELU", "SiLU", "GELU", "Softplus", "HardTanh", "Linear", "ACTIVATIONS", "from_config", "get",
]

#: the kernels' activations (docs/kernels.md; the C++ registry, fastdl.activations)
ACTIVATIONS = activations.NAMES
_ACT_ALIASES = {None: "linear", "identity": "linear", "none": "linear", "swish": "silu", "hardtanh": "hard_tanh"}
#: activations that take a scalar alpha -> its default
_SCALAR_ALPHA = activations.SCALAR_ALPHA
PRELU_INIT = 0.25


#: activations the network applies to its outputs, not in a kernel: only on the last layer
OUTPUT_ACTIVATIONS = ("softmax",)


def _activation_name(activation: str | Activation | None, argname: str = "activation") -> str:
    if isinstance(activation, Activation):
        return activation.name_
    key = activation.lower() if isinstance(activation, str) else activation
    key = _ACT_ALIASES.get(key, key)
    if key not in ACTIVATIONS and key not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"{argname}: unknown activation {activation!r}; expected one of "
                         f"{list(ACTIVATIONS) + list(OUTPUT_ACTIVATIONS)}")
    return cast(str, key)


def _positive_int(name: str, value: Any) -> int:
    return integer(name, value, 1)


class ParamSpec:
    """One parameter array of a layer: its name, shape, initializer and whether weight
    decay applies to it."""

    __slots__ = ("name", "shape", "init", "decay")

    def __init__(self, name: str, shape: Sequence[int], init: initializers.Initializer | InitFunction,
                 decay: bool) -> None:
        self.name, self.shape, self.init, self.decay = name, tuple(shape), init, decay

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)  # Python ints: np.prod would wrap past 2**63


def _check_fits(layer: Layer, specs: list[ParamSpec]) -> list[ParamSpec]:
    """Refuses parameters larger than this machine's memory and swap, naming the layer
    and the bytes asked for, before the network allocates them (the allocation itself
    would fail with an OSError, or the initialisation end in the out-of-memory killer)."""
    from fastdl import _device

    nbytes = 4 * sum(spec.size for spec in specs)
    available = _device.memory_bytes()
    if available is not None and nbytes > available:
        sizes = ", ".join(f"{k}={v}" for k, v in layer.get_config().items() if k.endswith(("features", "pieces")))
        raise MemoryError(f"{layer.name or type(layer).__name__} ({type(layer).__name__}({sizes})): its parameters "
                          f"need {nbytes} bytes ({_device.human_bytes(nbytes)}), more than this machine's "
                          f"{_device.human_bytes(available)} of memory and swap")
    return specs


class Layer:
    """Base class of every layer."""

    #: set by the network: name unique within it, e.g. "dense_1"
    name: str | None = None

    def param_specs(self) -> list[ParamSpec]:
        """The layer's parameter arrays (none for a layer without parameters)."""
        return []

    def output_dim(self, input_dim: int) -> int:
        """The width of the layer's output for an input of width ``input_dim``."""
        return input_dim

    def get_config(self) -> Config:
        """The layer as plain data: {"class": ..., and its arguments} (from_config() takes it back)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        # what differs from the defaults, as a user would have written it
        params = inspect.signature(type(self).__init__).parameters
        cfg = {k: v for k, v in self.get_config().items()
               if k != "class" and not (k in params and params[k].default is not inspect.Parameter.empty
                                        and params[k].default == v)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class Activation(Layer):
    """An activation by name; ``alpha`` for leaky_relu (slope, default 0.01) and elu
    (default 1.0). PReLU's alpha is a learned parameter (one slope per unit, starting at
    ``init`` = 0.25, never weight-decayed)."""

    def __init__(self, activation: str | Activation | None, alpha: float | None = None) -> None:
        self.name_ = _activation_name(activation)
        if alpha is not None:
            if self.name_ not in _SCALAR_ALPHA and self.name_ not in activations.LEARNED_ALPHA:
                raise ValueError(f"alpha: only leaky_relu, elu and prelu take alpha, not {self.name_!r}")
            alpha = real("alpha", alpha, 0.0)
        self.alpha = alpha

    @property
    def activation(self) -> str:
        """The activation's name, e.g. "relu"."""
        return self.name_

    def get_config(self) -> Config:
        return {"class": "Activation", "activation": self.name_, "alpha": self.alpha}


def ReLU() -> Activation:
    """max(x, 0)."""
    return Activation("relu")


def Sigmoid() -> Activation:
    """1 / (1 + exp(-x))."""
    return Activation("sigmoid")


def Tanh() -> Activation:
    """tanh(x)."""
    return Activation("tanh")


def Linear() -> Activation:
    """The identity (no activation)."""
    return Activation("linear")


def LeakyReLU(alpha: float = 0.01) -> Activation:
    """x for x > 0, else alpha * x (PyTorch's negative_slope 0.01)."""
    return Activation("leaky_relu", alpha)


def PReLU(init: float = PRELU_INIT) -> Activation:
    """Parametric ReLU: the negative slope is learned per unit (starts at ``init``)."""
    return Activation("prelu", init)


def ELU(alpha: float = 1.0) -> Activation:
    """x for x > 0, else alpha * (exp(x) - 1)."""
    return Activation("elu", alpha)


def SiLU() -> Activation:
    """x * sigmoid(x) (also called swish)."""
    return Activation("silu")


def GELU() -> Activation:
    """x * Phi(x), the exact (erf) form, as PyTorch's default."""
    return Activation("gelu")


def Softplus() -> Activation:
    """log(1 + exp(x)), linear above x = 20 (PyTorch's beta=1, threshold=20)."""
    return Activation("softplus")


def HardTanh() -> Activation:
    """x clipped to [-1, 1]."""
    return Activation("hard_tanh")


def _one_of(name: str, value: Any, keras_name: str, keras_value: Any, default: Any = None) -> Any:
    """fastdl's argument or its Keras spelling, not both."""
    if keras_value is None:
        return value
    if value is not default and value != default:
        raise TypeError(f"{keras_name}: the Keras spelling of {name}; give one of the two, not both")
    return keras_value


class Dense(Layer):
    """Fully connected layer y = f(x @ w + b), w stored (in_features, out_features).

    ``Dense(in, out)`` or ``Dense(out)`` (in taken from the previous layer). ``init``:
    the weight initializer (default: He uniform for relu-like activations, Glorot uniform
    otherwise); ``bias_init``: default zeros (``Constant(0.1)`` keeps ReLU units active at
    the start). ``max_norm``: after every update, each unit's incoming weight vector is
    rescaled to L2 norm <= max_norm. ``alpha``: slope for leaky_relu / elu, initial slope
    for prelu. Keras's spellings work too: ``Dense(units=64, activation="relu",
    kernel_initializer=..., bias_initializer=..., input_dim=784)``; ``activation="softmax"``
    on the last layer makes the network output probabilities (fused into the
    cross-entropy in training)."""

    def __init__(self, in_features: int | None = None, out_features: int | None = None,
                 activation: str | Activation | None = "linear", init: InitializerLike | None = None,
                 bias_init: InitializerLike = "zeros", use_bias: bool = True, max_norm: float | None = None,
                 alpha: float | None = None, *, units: int | None = None,
                 kernel_initializer: InitializerLike | None = None, bias_initializer: InitializerLike | None = None,
                 input_dim: int | None = None) -> None:
        if units is not None:
            if out_features is not None:
                raise TypeError("units: the Keras spelling of out_features; give one of the two, not both")
            out_features = units
        elif out_features is None:
            in_features, out_features = None, in_features
        in_features = _one_of("in_features", in_features, "input_dim", input_dim)
        if out_features is None:
            raise TypeError("Dense: expected the number of units: Dense(out), Dense(in, out) or Dense(units=out)")
        init = _one_of("init", init, "kernel_initializer", kernel_initializer)
        bias_init = _one_of("bias_init", bias_init, "bias_initializer", bias_initializer, default="zeros")
        self.in_features = None if in_features is None else _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        act = Activation(activation, alpha) if not isinstance(activation, Activation) else activation
        self.activation = act.name_
        self.alpha = act.alpha
        self.init = init
        self._init = initializers.get(init, "init") if init is not None else None
        self.bias_init = bias_init
        self._bias_init = initializers.get(bias_init, "bias_init")
        self.use_bias = bool(use_bias)
        self.max_norm = None if max_norm is None else real("max_norm", max_norm, 0.0, lo_open=True)
        if self.in_features is not None:
            self.param_specs()  # sizes the machine cannot hold are refused here, naming the layer

    def weight_init(self) -> initializers.Initializer | InitFunction:
        """The weight initializer: ``init``, else the activation's default (He or Glorot uniform)."""
        return self._init if self._init is not None else initializers.default_weight_init(self.activation)

    def param_specs(self) -> list[ParamSpec]:
        specs = [ParamSpec("w", (cast(int, self.in_features), self.out_features), self.weight_init(), True)]
        if self.use_bias:
            specs.append(ParamSpec("b", (self.out_features,), self._bias_init, False))
        if self.activation == "prelu":
            a0 = PRELU_INIT if self.alpha is None else self.alpha
            specs.append(ParamSpec("alpha", (self.out_features,), initializers.Constant(a0), False))
        return _check_fits(self, specs)

    def output_dim(self, input_dim: int) -> int:
        return self.out_features

    def get_config(self) -> Config:
        return {"class": "Dense", "in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "init": _init_config(self.init),
                "bias_init": _init_config(self.bias_init), "use_bias": self.use_bias, "max_norm": self.max_norm,
                "alpha": self.alpha}


class Maxout(Layer):
    """Maxout units (Goodfellow et al. 2013): ``out`` units, each the max of ``pieces``
    linear pieces. Weights (in, out*pieces), adjacent columns form one unit. Default
    init Glorot uniform over (in, out*pieces)."""

    def __init__(self, in_features: int | None, out_features: int | None = None, pieces: int = 2,
                 init: InitializerLike | None = None, bias_init: InitializerLike = "zeros",
                 max_norm: float | None = None) -> None:
        if out_features is None:
            in_features, out_features = None, in_features
        self.in_features = None if in_features is None else _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.pieces = _positive_int("pieces", pieces)
        if self.pieces > 255:
            raise ValueError(f"pieces: at most 255 pieces per unit, got {pieces}")
        self.init = init
        self._init = initializers.get(init, "init") if init is not None else initializers.GlorotUniform()
        self.bias_init = bias_init
        self._bias_init = initializers.get(bias_init, "bias_init")
        self.max_norm = None if max_norm is None else real("max_norm", max_norm, 0.0, lo_open=True)
        if self.in_features is not None:
            self.param_specs()

    def param_specs(self) -> list[ParamSpec]:
        cols = self.out_features * self.pieces
        return _check_fits(self, [ParamSpec("w", (cast(int, self.in_features), cols), self._init, True),
                                  ParamSpec("b", (cols,), self._bias_init, False)])

    def output_dim(self, input_dim: int) -> int:
        return self.out_features

    def get_config(self) -> Config:
        return {"class": "Maxout", "in_features": self.in_features, "out_features": self.out_features,
                "pieces": self.pieces, "init": _init_config(self.init), "bias_init": _init_config(self.bias_init),
                "max_norm": self.max_norm}


class Dropout(Layer):
    """Dropout with drop probability ``p`` (fresh mask every mini-batch, none at inference).

    Inverted by default (kept units scaled by 1/(1-p) in training; identity at test, as
    PyTorch and Keras do). ``scale_at_test=True`` is the original formulation: no
    scaling in training, outputs multiplied by 1-p at test (the same as multiplying the
    next layer's weights by 1-p). ``rate=`` is Keras's name for p."""

    def __init__(self, p: float = 0.5, scale_at_test: bool = False, *, rate: float | None = None) -> None:
        self.p = real("p", _one_of("p", p, "rate", rate, default=0.5), 0.0, 1.0, hi_open=True)
        self.scale_at_test = bool(scale_at_test)

    def get_config(self) -> Config:
        return {"class": "Dropout", "p": self.p, "scale_at_test": self.scale_at_test}


class BatchNorm(Layer):
    """Batch normalization over the batch, per feature (PyTorch's BatchNorm1d: eps 1e-5,
    running = (1 - momentum) * running + momentum * batch, momentum 0.1). gamma starts
    at 1, beta at 0; neither is weight-decayed."""

    def __init__(self, num_features: int | None = None, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.num_features = None if num_features is None else _positive_int("num_features", num_features)
        self.momentum = real("momentum", momentum, 0.0, 1.0)
        self.eps = real("eps", eps, 0.0, lo_open=True)
        if self.num_features is not None:
            self.param_specs()

    def param_specs(self) -> list[ParamSpec]:
        n = cast(int, self.num_features)
        return _check_fits(self, [ParamSpec("gamma", (n,), initializers.Constant(1.0), False),
                                  ParamSpec("beta", (n,), initializers.Zeros(), False)])

    def get_config(self) -> Config:
        return {"class": "BatchNorm", "num_features": self.num_features, "momentum": self.momentum,
                "eps": self.eps}


def _init_config(init: InitializerLike | None) -> Any:
    if init is None or isinstance(init, (str, int, float)):
        return init
    if isinstance(init, initializers.Initializer):
        return init.config()
    return None  # a plain callable: not serialisable; the saved weights are what matter


_CLASSES: dict[str | None, type[Layer]] = {"Dense": Dense, "Maxout": Maxout, "Dropout": Dropout, "BatchNorm": BatchNorm,
                                           "Activation": Activation}


def from_config(cfg: Config) -> Layer:
    """A layer from its get_config()."""
    cfg = dict(cfg)
    cls = _CLASSES.get(cfg.pop("class", None))
    if cls is None:
        raise ValueError(f"unknown layer config {cfg!r}")
    return cls(**cfg)


def get(spec: Layer | str, index: int = 0) -> Layer:
    """A Layer from a Layer or an activation name."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, str):
        return Activation(spec)
    raise TypeError(f"layers[{index}]: expected a fastdl layer or an activation name, got {type(spec).__name__}")
