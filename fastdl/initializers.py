"""Weight initializers: each fills a float32 array in place from a numpy Generator.

Weights are stored (fan_in, fan_out), like Keras and the kernels. Defaults used by the
layers (see docs/network.md): Glorot/Xavier uniform weights and zero biases, as Keras
does, except for relu-like activations (relu, leaky_relu, prelu, elu), which get He
(Kaiming) uniform: Glorot keeps the variance of a linear or tanh unit's output equal to
its input's, but a ReLU zeroes half of its inputs, so its weights need twice the
variance (He et al. 2015) or the signal shrinks layer by layer.

An initializer is given by name (``"glorot_uniform"``), by an instance
(``Constant(0.1)``) or by any callable ``f(shape, rng) -> array``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fastdl._typing import Config, FloatArray, InitFunction, InitializerLike, Shape

__all__ = [
    "Initializer", "Zeros", "Constant", "Uniform", "LeCunUniform", "GlorotUniform", "GlorotNormal",
    "HeUniform", "HeNormal", "get", "default_weight_init", "RELU_LIKE",
]

#: Activations for which He initialization is the default.
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu")


class Initializer:
    """Base class: ``init(shape, rng)`` returns a new float32 array of that shape."""

    name = "initializer"

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        raise NotImplementedError

    def config(self) -> Config:
        """The initializer as plain data: {"name": ..., and its arguments} (get() takes it back)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _fans(shape: Shape) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


class Zeros(Initializer):
    """Every element = 0 (the default bias initializer)."""

    name = "zeros"

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        return np.zeros(shape, np.float32)


class Constant(Initializer):
    """Every element = value (e.g. ``Constant(0.1)`` for ReLU biases, so units start active)."""

    name = "constant"

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        return np.full(shape, self.value, np.float32)

    def config(self) -> Config:
        return {"name": self.name, "value": self.value}


class Uniform(Initializer):
    """U(-limit, limit); with no limit, limit = 1/sqrt(fan_in) (PyTorch's nn.Linear rule)."""

    name = "uniform"

    def __init__(self, limit: float | None = None) -> None:
        self.limit = None if limit is None else float(limit)

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        limit = self.limit if self.limit is not None else 1.0 / math.sqrt(_fans(shape)[0])
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)

    def config(self) -> Config:
        return {"name": self.name, "limit": self.limit}


class LeCunUniform(Uniform):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) — the uniform rule of the lectures and nn.Linear."""

    name = "lecun_uniform"

    def __init__(self) -> None:
        super().__init__(None)

    def config(self) -> Config:
        return {"name": self.name}


class _Scaled(Initializer):
    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def config(self) -> Config:
        return {"name": self.name, "gain": self.gain}


class GlorotUniform(_Scaled):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (torch.nn.init.xavier_uniform_)."""

    name = "glorot_uniform"

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        fan_in, fan_out = _fans(shape)
        limit = self.gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)


class GlorotNormal(_Scaled):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) (xavier_normal_)."""

    name = "glorot_normal"

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        fan_in, fan_out = _fans(shape)
        std = self.gain * math.sqrt(2.0 / (fan_in + fan_out))
        return (rng.standard_normal(shape) * std).astype(np.float32)


class HeUniform(_Scaled):
    """U(-b, b), b = gain * sqrt(3 / fan_in), gain sqrt(2) for ReLU (kaiming_uniform_)."""

    name = "he_uniform"

    def __init__(self, gain: float = math.sqrt(2.0)) -> None:
        super().__init__(gain)

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        limit = self.gain * math.sqrt(3.0 / _fans(shape)[0])
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)


class HeNormal(_Scaled):
    """N(0, std^2), std = gain / sqrt(fan_in), gain sqrt(2) for ReLU (kaiming_normal_)."""

    name = "he_normal"

    def __init__(self, gain: float = math.sqrt(2.0)) -> None:
        super().__init__(gain)

    def __call__(self, shape: Shape, rng: np.random.Generator) -> FloatArray:
        std = self.gain / math.sqrt(_fans(shape)[0])
        return (rng.standard_normal(shape) * std).astype(np.float32)


_BY_NAME: dict[str, type[Any]] = {c.name: c for c in (Zeros, Constant, Uniform, LeCunUniform, GlorotUniform,
                                                      GlorotNormal, HeUniform, HeNormal)}
_ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
            "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal", "zero": "zeros"}


def get(spec: InitializerLike, argname: str = "init") -> Initializer | InitFunction:
    """An initializer from a name, a config dict, an Initializer or a callable."""
    if isinstance(spec, Initializer) or (callable(spec) and not isinstance(spec, (str, dict))):
        return spec
    if isinstance(spec, dict):
        cfg = dict(spec)
        cls = _BY_NAME.get(cfg.pop("name", None))
        if cls is None:
            raise ValueError(f"{argname}: unknown initializer config {spec!r}")
        return cls(**cfg)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    if isinstance(spec, str):
        key = _ALIASES.get(spec.lower(), spec.lower())
        if key == "ones":  # Keras's name
            return Constant(1.0)
        if key in _BY_NAME:
            return _BY_NAME[key]()
        raise ValueError(f"{argname}: unknown initializer {spec!r}; expected one of "
                         f"{sorted(_BY_NAME) + sorted(_ALIASES) + ['ones']}, a number (constant) or a callable")
    raise TypeError(f"{argname}: expected an initializer name, a number, an Initializer or a callable, "
                    f"got {type(spec).__name__}")


def default_weight_init(activation: str) -> Initializer:
    """He uniform for relu-like activations, Glorot uniform otherwise (Keras' default)."""
    if activation in RELU_LIKE:
        gain = math.sqrt(2.0)
        if activation == "prelu":  # PyTorch's PReLU starts at slope 0.25
            gain = math.sqrt(2.0 / (1 + 0.25 ** 2))
        return HeUniform(gain)
    return GlorotUniform()
