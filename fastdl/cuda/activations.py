"""The activations as Numba CUDA device functions, the same formulas as the CPU kernel
(csrc/dense/activation_ops.h): f(z, alpha) and f'(s, alpha), where s is z for the
NEEDS_Z activations (prelu, silu, gelu) and y = f(z) for the others.

Kernels take the activation code as a compile-time constant (a closure variable of the
kernel factory), so each activation gets its own specialised kernel and the if-chain
below folds away. Every constant is float32: a Python float literal would promote the
arithmetic to float64 on the GPU.
"""

import math

import numpy as np

from fastdl import activations as _registry
from fastdl._scalars import real
from fastdl.cuda import require

cuda = require()

# The registry's facts (fastdl.activations, from the C++ one): the codes the kernels below
# switch on are the C++ enum's, so a name means the same function on both devices.
NAMES = _registry.NAMES
CODES = _registry.CODES
LINEAR, SIGMOID, TANH, RELU, LEAKY_RELU, PRELU, ELU, SILU, SOFTPLUS, HARD_TANH, GELU = (
    CODES[n] for n in ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "silu", "softplus",
                       "hard_tanh", "gelu"))
NEEDS_Z = _registry.NEEDS_Z
DEFAULT_ALPHA = _registry.SCALAR_ALPHA

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
HALF = np.float32(0.5)
TWENTY = np.float32(20.0)
NEG_RSQRT2 = np.float32(-0.70710678118654752)
RSQRT_2PI = np.float32(0.39894228040143268)


def code_of(activation):
    if not isinstance(activation, str) or activation not in CODES:
        raise ValueError(f"activation: unknown activation {activation!r}; expected one of "
                         + ", ".join(NAMES))
    return CODES[activation]


@cuda.jit(device=True)
def sigmoid(z):
    # exp of a non-positive number only: never overflows
    e = math.exp(-abs(z))
    r = ONE / (ONE + e)
    return r if z >= ZERO else e * r


@cuda.jit(device=True)
def activate(code, z, a):
    """f(z); `a` is alpha (leaky_relu, elu, or this column's prelu slope)."""
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    # Comparisons written so that a NaN z falls through to a branch returning z (or a
    # NaN product): NaN propagates, as on the CPU, instead of becoming 0 or +-1.
    if code == RELU:
        return ZERO if z <= ZERO else z
    if code == LEAKY_RELU or code == PRELU:
        return z if z > ZERO else a * z
    if code == ELU:
        return z if z > ZERO else a * math.expm1(z)
    if code == SILU:  # silu(-inf) = -inf * 0 = NaN, as on the CPU and in PyTorch
        return z * sigmoid(z)
    if code == SOFTPLUS:
        if z > TWENTY:
            return z
        return max(z, ZERO) + math.log1p(math.exp(-abs(z)))
    if code == HARD_TANH:
        return ONE if z > ONE else (-ONE if z < -ONE else z)
    if code == GELU:
        return HALF * z * math.erfc(z * NEG_RSQRT2)
    return z


@cuda.jit(device=True)
def derivative(code, s, a):
    """f'(z) from s (z for prelu/silu/gelu, y for the rest)."""
    if code == SIGMOID:
        return s * (ONE - s)
    if code == TANH:
        return ONE - s * s
    if code == RELU:
        return ONE if s > ZERO else ZERO
    if code == LEAKY_RELU or code == PRELU:
        return ONE if s > ZERO else a
    if code == ELU:  # for z <= 0, f'(z) = alpha * exp(z) = y + alpha
        return ONE if s > ZERO else s + a
    if code == SILU:
        sg = sigmoid(s)
        return sg * (ONE + s * (ONE - sg))
    if code == SOFTPLUS:  # sigmoid(z) = 1 - exp(-y)
        return ONE if s > TWENTY else -math.expm1(-s)
    if code == HARD_TANH:
        return ONE if abs(s) < ONE else ZERO
    if code == GELU:
        cdf = HALF * math.erfc(s * NEG_RSQRT2)
        return cdf + s * RSQRT_2PI * math.exp(-HALF * s * s)
    return ONE


def parse_alpha(activation, alpha, m, check_vec):
    """(scalar alpha as float32, prelu slope array or None), validated like the CPU side.
    `check_vec(a)` turns the prelu array into a checked device array."""
    if activation == "prelu":
        if alpha is None:
            raise ValueError(f"alpha: prelu needs its learned slopes as a float32 array of shape ({m},) "
                             "(PyTorch initialises them to 0.25)")
        return np.float32(0.0), check_vec(alpha)
    if activation in DEFAULT_ALPHA:
        if alpha is None:
            return np.float32(DEFAULT_ALPHA[activation]), None
        alpha = real("alpha", alpha, float32=True)  # a number, finite (fastdl._scalars' rules)
        if not alpha >= 0:
            raise ValueError(f"alpha: {activation} needs alpha >= 0 (its backward works from y), got {alpha}")
        return np.float32(alpha), None
    if alpha is not None:
        raise ValueError(f"alpha: only leaky_relu, elu and prelu take alpha; activation "
                         f"'{activation}' got alpha={alpha}")
    return np.float32(0.0), None
