"""Plain float64 numpy references for the kernels: the oracles the tests hold them to."""

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(z):
    # 0.5 * (1 + tanh(z / 2)): exact in float64 and never overflows
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def activation(name, z, alpha=None):
    """f(z) in float64."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return z.copy()
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name in ("leaky_relu", "prelu"):
        a = 0.01 if alpha is None else np.asarray(alpha, dtype=np.float64)
        return np.where(z > 0, z, a * z)
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return np.where(z > 0, z, a * np.expm1(np.minimum(z, 0.0)))
    if name == "silu":
        return z * _sigmoid(z)
    if name == "softplus":
        return np.where(z > 20, z, np.logaddexp(0.0, z))
    if name == "hard_tanh":
        return np.clip(z, -1.0, 1.0)
    if name == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    raise ValueError(name)


def activation_grad(name, z, alpha=None):
    """f'(z) in float64, with PyTorch's choices at the kinks (f'(0) = 0 for relu)."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return np.ones_like(z)
    if name == "sigmoid":
        s = _sigmoid(z)
        return s * (1 - s)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name in ("leaky_relu", "prelu"):
        a = 0.01 if alpha is None else np.asarray(alpha, dtype=np.float64)
        return np.where(z > 0, 1.0, a * np.ones_like(z))
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0.0)))
    if name == "silu":
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))
    if name == "softplus":
        return np.where(z > 20, 1.0, _sigmoid(z))
    if name == "hard_tanh":
        return ((z > -1) & (z < 1)).astype(np.float64)
    if name == "gelu":
        return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * np.minimum(z * z, 1e4)) / math.sqrt(2 * math.pi)
    raise ValueError(name)


def dense_forward(x, w, b, name, alpha=None):
    """(y, z) in float64."""
    z = x.astype(np.float64) @ w.astype(np.float64)
    if b is not None:
        z = z + b
    return activation(name, z, alpha), z


def dense_backward(dy, x, w, z, name, alpha=None):
    """(dx, dw, db, dalpha) in float64 from the float64 pre-activation z."""
    dz = dy.astype(np.float64) * activation_grad(name, z, alpha)
    dx = dz @ w.astype(np.float64).T
    dw = x.astype(np.float64).T @ dz
    db = dz.sum(axis=0)
    dalpha = (dy * np.minimum(z, 0.0)).sum(axis=0)
    return dx, dw, db, dalpha
