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


def _sample_weight(sample_weight, n):
    """Keras's "sum_over_batch_size": each sample's term times w_i, the sum divided by N."""
    return np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)


def softmax_cross_entropy(logits, target, label_smoothing=0.0, sample_weight=None):
    """(loss, dlogits): sum_i w_i (-sum_j q_ij log_softmax(logits)_ij) / N (w = 1: the
    mean over rows), and its gradient."""
    n, c = logits.shape
    w = _sample_weight(sample_weight, n)[:, None]
    q = smoothed_target(target, c, label_smoothing)
    lsm = _log_softmax(logits)
    loss = -(w * q * lsm).sum() / n
    dlogits = w * (np.exp(lsm) * q.sum(axis=1, keepdims=True) - q) / n
    return loss, dlogits


def _per_sample(terms, sample_weight):
    """(loss, w): terms (N, ...) weighed per sample along the first axis, loss =
    sum_i w_i mean(terms_i) / N = sum_ij w_i terms_ij / terms.size, and the weights
    shaped to broadcast over terms (1.0 without weights: the plain mean)."""
    if sample_weight is None:
        return terms.mean(), 1.0
    w = np.asarray(sample_weight, np.float64).reshape((-1,) + (1,) * (terms.ndim - 1))
    return (w * terms).sum() / terms.size, w


def mse(pred, target, sample_weight=None):
    d = pred.astype(np.float64) - target
    loss, w = _per_sample(d * d, sample_weight)
    return loss, w * 2.0 * d / d.size


def binary_cross_entropy(logits, target, sample_weight=None):
    x = logits.astype(np.float64)
    t = target.astype(np.float64)
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    sig = 0.5 * (1.0 + np.tanh(0.5 * x))
    value, w = _per_sample(loss, sample_weight)
    return value, w * (sig - t) / x.size


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
