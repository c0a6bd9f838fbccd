"""Batch normalization over the batch, per feature, for x (N, M): one launch each.

A block owns 32 features for the whole batch (32 threads across for coalesced rows, 8
down), so means, variances and the backward's two sums are reduced in shared memory
and used in the same launch: no second pass over a global buffer, no atomics."""

import math

import numpy as np
from numba import float32

from fastdl._scalars import real
from fastdl.cuda import require
from fastdl.cuda.arrays import blocks, checked_f32, expect_dim, launcher, output_array, output_arrays

cuda = require()
COLS = 32
ROWS = 8
ZERO = np.float32(0.0)
ONE = np.float32(1.0)


@cuda.jit(device=True)
def column_sum(sh, tx, ty, v):
    """Sum of v over the block's ROWS threads of column tx; every thread gets it."""
    sh[ty, tx] = v
    cuda.syncthreads()
    if ty == 0:
        t = ZERO
        for r in range(ROWS):
            t += sh[r, tx]
        sh[0, tx] = t
    cuda.syncthreads()
    r = sh[0, tx]
    cuda.syncthreads()
    return r


@cuda.jit
def _forward_train(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta,
                   N, M, momentum, eps, inv_n, unbias):
    sh = cuda.shared.array((ROWS, COLS), float32)
    tx = cuda.threadIdx.x % COLS
    ty = cuda.threadIdx.x // COLS
    col = cuda.blockIdx.x * COLS + tx
    ok = col < M
    s = ZERO
    if ok:
        for n in range(ty, N, ROWS):
            s += x[n, col]
    mean = column_sum(sh, tx, ty, s) * inv_n
    s = ZERO
    if ok:
        for n in range(ty, N, ROWS):
            d = x[n, col] - mean
            s += d * d
    var = column_sum(sh, tx, ty, s) * inv_n  # biased: what normalises
    if ok:
        invstd = ONE / math.sqrt(var + eps)
        g = gamma[col] * invstd
        bt = beta[col]
        for n in range(ty, N, ROWS):
            y[n, col] = (x[n, col] - mean) * g + bt
        if ty == 0:
            save_mean[col] = mean
            save_invstd[col] = invstd
            running_mean[col] = (ONE - momentum) * running_mean[col] + momentum * mean
            running_var[col] = (ONE - momentum) * running_var[col] + momentum * var * unbias


@cuda.jit
def _forward_eval(y, x, gamma, beta, running_mean, running_var, N, M, eps):
    i = cuda.grid(1)
    if i < N * M:
        n = i // M
        col = i - n * M
        y[n, col] = (x[n, col] - running_mean[col]) / math.sqrt(running_var[col] + eps) * gamma[col] + beta[col]


@cuda.jit
def _backward(dx, dgamma, dbeta, dy, x, gamma, save_mean, save_invstd, N, M, inv_n):
    sh = cuda.shared.array((ROWS, COLS), float32)
    tx = cuda.threadIdx.x % COLS
    ty = cuda.threadIdx.x // COLS
    col = cuda.blockIdx.x * COLS + tx
    ok = col < M
    mean = save_mean[col] if ok else ZERO
    invstd = save_invstd[col] if ok else ZERO
    s_dy = ZERO
    s_dyx = ZERO
    if ok:
        for n in range(ty, N, ROWS):
            g = dy[n, col]
            s_dy += g
            s_dyx += g * (x[n, col] - mean) * invstd
    s_dy = column_sum(sh, tx, ty, s_dy)
    s_dyx = column_sum(sh, tx, ty, s_dyx)
    if ok:
        k = gamma[col] * invstd
        mdy = s_dy * inv_n
        mdyx = s_dyx * inv_n
        for n in range(ty, N, ROWS):
            xhat = (x[n, col] - mean) * invstd
            dx[n, col] = k * (dy[n, col] - mdy - xhat * mdyx)
        if ty == 0:
            dgamma[col] = s_dyx
            dbeta[col] = s_dy


def _vec(a, name, m):
    d = checked_f32(a, name, 1, "of shape (M,)")
    expect_dim(d, name, 0, m, "M = x.shape[1]")
    return d


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, *, momentum=0.1, eps=1e-5, out=None):
    """(y, save_mean, save_invstd); running_mean/var updated in place (unbiased var)."""
    momentum = real("momentum", momentum, 0.0, 1.0)
    eps = real("eps", eps, 0.0, float32=True)
    x = checked_f32(x, "x", 2, "of shape (N, M)")
    n, m = x.shape
    if n < 2:
        raise ValueError(f"x: batch norm in training needs more than one row per feature, got shape ({n}, {m})")
    gamma, beta = _vec(gamma, "gamma", m), _vec(beta, "beta", m)
    running_mean, running_var = _vec(running_mean, "running_mean", m), _vec(running_var, "running_var", m)
    y, save_mean, save_invstd = output_arrays(
        out, [("y", (n, m)), ("save_mean", (m,)), ("save_invstd", (m,))],
        (("x", x), ("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)))
    if m:
        launcher(_forward_train, (blocks(m, COLS),), (COLS * ROWS,))(
            y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, n, m,
            np.float32(momentum), np.float32(eps), np.float32(1.0 / n), np.float32(n / (n - 1)))
    return y, save_mean, save_invstd


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, *, eps=1e-5, out=None):
    """y normalised with the running statistics."""
    eps = real("eps", eps, 0.0, float32=True)
    x = checked_f32(x, "x", 2, "of shape (N, M)")
    n, m = x.shape
    args = [_vec(a, nm, m) for a, nm in ((gamma, "gamma"), (beta, "beta"),
                                        (running_mean, "running_mean"), (running_var, "running_var"))]
    y = output_array(out, (n, m), (("x", x), ("gamma", args[0]), ("beta", args[1]), ("running_mean", args[2]),
                                   ("running_var", args[3])))
    if n * m:
        launcher(_forward_eval, (blocks(n * m, 256),), (256,))(y, x, *args, n, m, np.float32(eps))
    return y


def batchnorm_backward(dy, x, gamma, save_mean, save_invstd, *, out=None):
    """(dx, dgamma, dbeta) from the statistics saved by batchnorm_forward_train."""
    x = checked_f32(x, "x", 2, "of shape (N, M)")
    n, m = x.shape
    dy = checked_f32(dy, "dy", 2, "of shape (N, M)")
    expect_dim(dy, "dy", 0, n, "N = x.shape[0]")
    expect_dim(dy, "dy", 1, m, "M = x.shape[1]")
    gamma, save_mean, save_invstd = (_vec(a, nm, m) for a, nm in ((gamma, "gamma"), (save_mean, "save_mean"),
                                                                  (save_invstd, "save_invstd")))
    dx, dgamma, dbeta = output_arrays(
        out, [("dx", (n, m)), ("dgamma", (m,)), ("dbeta", (m,))],
        (("dy", dy), ("x", x), ("gamma", gamma), ("save_mean", save_mean), ("save_invstd", save_invstd)))
    if m:
        launcher(_backward, (blocks(m, COLS),), (COLS * ROWS,))(
            dx, dgamma, dbeta, dy, x, gamma, save_mean, save_invstd, n, m, np.float32(1.0 / max(n, 1)))
    return dx, dgamma, dbeta
