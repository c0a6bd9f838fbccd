"""Plain float64 numpy references for the losses and batch normalization."""

import numpy as np


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def smoothed_target(target, c, label_smoothing=0.0):
    """The (N, C) target distribution PyTorch's cross_entropy uses, in float64."""
    target = np.asarray(target)
    if target.ndim == 1:
        q = np.zeros((target.shape[0], c))
        q[np.arange(target.shape[0]), target] = 1.0
    else:
        q = target.astype(np.float64)
    return q * (1.0 - label_smoothing) + label_smoothing / c


def softmax_cross_entropy(logits, target, label_smoothing=0.0):
    """(loss, dlogits): mean over rows of -sum q log_softmax(logits), and its gradient."""
    n, c = logits.shape
    q = smoothed_target(target, c, label_smoothing)
    lsm = _log_softmax(logits)
    loss = -(q * lsm).sum() / n
    dlogits = (np.exp(lsm) * q.sum(axis=1, keepdims=True) - q) / n
    return loss, dlogits


def mse(pred, target):
    d = pred.astype(np.float64) - target
    return (d * d).mean(), 2.0 * d / d.size


def binary_cross_entropy(logits, target):
    x = logits.astype(np.float64)
    t = target.astype(np.float64)
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    sig = 0.5 * (1.0 + np.tanh(0.5 * x))
    return loss.mean(), (sig - t) / x.size


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    """(y, mean, invstd, new_running_mean, new_running_var) in float64."""
    x = x.astype(np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    invstd = 1.0 / np.sqrt(var + eps)
    g = 1.0 if gamma is None else gamma.astype(np.float64)
    b = 0.0 if beta is None else beta.astype(np.float64)
    y = (x - mean) * invstd * g + b
    rm = (1 - momentum) * running_mean.astype(np.float64) + momentum * mean
    rv = (1 - momentum) * running_var.astype(np.float64) + momentum * var * n / (n - 1)
    return y, mean, invstd, rm, rv


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5):
    g = 1.0 if gamma is None else gamma.astype(np.float64)
    b = 0.0 if beta is None else beta.astype(np.float64)
    return (x.astype(np.float64) - running_mean) / np.sqrt(running_var.astype(np.float64) + eps) * g + b


def batchnorm_backward(dy, x, gamma, eps=1e-5):
    """(dx, dgamma, dbeta) in float64, from the batch statistics of x."""
    dy = dy.astype(np.float64)
    x = x.astype(np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    invstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=0) + eps)
    xhat = (x - mean) * invstd
    g = 1.0 if gamma is None else gamma.astype(np.float64)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = g * invstd * (dy - dbeta / n - xhat * dgamma / n)
    return dx, dgamma, dbeta
