"""Maxout on the GPU, adjacent-column grouping (unit j = max of columns j*k .. j*k+k-1),
uint8 argmax, first maximum wins ties. dense_maxout_forward reduces the units inside the
GEMM's epilogue, so z never reaches global memory."""

import numpy as np
from numba import uint8

from fastdl._scalars import integer
from fastdl.cuda import column_grad, gemm, require
from fastdl.cuda.arrays import (blocks, checked, checked_f32, expect_dim, launcher, no_update, output_array,
                                output_arrays, scratch)
from fastdl.cuda.dense import check_dense, gradient_outputs, weight_grads

cuda = require()
THREADS = 256


def check_pieces(pieces, width=None, width_name="z"):
    pieces = integer("pieces", pieces)
    if not 1 <= pieces <= 255:
        raise ValueError(f"pieces: expected 1 <= pieces <= 255 (argmax is uint8), got {pieces}")
    if width is not None and width % pieces:
        raise ValueError(f"{width_name}: expected shape[1] to be a multiple of pieces = {pieces}, got {width}")
    return int(pieces)


@cuda.jit
def _maxout_forward(y, argmax, z, n_units, pieces, size):
    i = cuda.grid(1)
    if i < size:
        n = i // n_units
        j = i - n * n_units
        base = j * pieces
        best = z[n, base]
        arg = 0
        for p in range(1, pieces):
            v = z[n, base + p]
            if v > best:
                best = v
                arg = p
        y[n, j] = best
        argmax[n, j] = uint8(arg)


@cuda.jit
def _maxout_backward(dz, dy, argmax, pieces, width, size):
    i = cuda.grid(1)
    if i < size:
        n = i // width
        c = i - n * width
        u = c // pieces
        dz[n, c] = dy[n, u] if argmax[n, u] == uint8(c - u * pieces) else np.float32(0.0)


def check_argmax(argmax, dy):
    argmax = checked(argmax, "argmax", 2, "of shape (N, M)", np.uint8)
    expect_dim(argmax, "argmax", 0, dy.shape[0], "N = dy.shape[0]")
    expect_dim(argmax, "argmax", 1, dy.shape[1], "M = dy.shape[1]")
    return argmax


def maxout_forward(z, pieces, *, out=None):
    """(y, argmax) for z (N, M * pieces)."""
    z = checked_f32(z, "z", 2, "of shape (N, M * pieces)")
    k = check_pieces(pieces, z.shape[1])
    n, m = z.shape[0], z.shape[1] // k
    y, argmax = output_arrays(out, [("y", (n, m)), ("argmax", (n, m), np.uint8)], (("z", z),))
    size = n * m
    if size:
        launcher(_maxout_forward, (blocks(size, THREADS),), (THREADS,))(y, argmax, z, m, k, size)
    return y, argmax


def maxout_backward(dy, argmax, pieces, *, out=None):
    """dz (N, M * pieces): dy routed to the winning piece of each unit."""
    dy = checked_f32(dy, "dy", 2, "of shape (N, M)")
    k = check_pieces(pieces)
    argmax = check_argmax(argmax, dy)
    n, width = dy.shape[0], dy.shape[1] * k
    dz = output_array(out, (n, width), (("dy", dy), ("argmax", argmax)))
    size = n * width
    if size:
        launcher(_maxout_backward, (blocks(size, THREADS),), (THREADS,))(dz, dy, argmax, k, width, size)
    return dz


def dense_maxout_forward(x, w, b, pieces, *, out=None):
    """(y, argmax) for y = maxout(x @ w + b), w (K, M * pieces)."""
    x, w, b = check_dense(x, w, b)
    k = check_pieces(pieces, w.shape[1], "w")
    n, kin = x.shape
    width = w.shape[1]
    m = width // k
    y, argmax = output_arrays(out, [("y", (n, m)), ("argmax", (n, m), np.uint8)], (("x", x), ("w", w), ("b", b)))
    if k > gemm.BN:
        # A unit wider than the GEMM tile: z goes through memory once.
        z = scratch("dense_maxout_forward.z", (n, width))
        gemm.launch(gemm.gemm_kernel(False, False, gemm.DENSE, 0, b is not None, False), x, w, z, n, width, kin, bias=b)
        if n * m:
            launcher(_maxout_forward, (blocks(n * m, THREADS),), (THREADS,))(y, argmax, z, m, k, n * m)
        return y, argmax
    kernel = gemm.gemm_kernel(False, False, gemm.MAXOUT, 0, b is not None, False)
    gemm.launch(kernel, x, w, y, n, width, kin, bias=b, aux=argmax, pieces=k,
                col_step=(gemm.BN // k) * k)
    return y, argmax


def dense_maxout_backward(dy, x, w, argmax, pieces, *, need_dx=True, out=None, update=None):
    """(dx, dw, db) of dense_maxout_forward."""
    no_update(update)
    x, w, _ = check_dense(x, w, None)
    k = check_pieces(pieces, w.shape[1], "w")
    dy = checked_f32(dy, "dy", 2, "of shape (N, M)")
    n, width = x.shape[0], w.shape[1]
    expect_dim(dy, "dy", 0, n, "N = x.shape[0]")
    expect_dim(dy, "dy", 1, width // k, "M = w.shape[1] // pieces")
    argmax = check_argmax(argmax, dy)
    dx, dw, db, _ = gradient_outputs(out, n, x.shape[1], width, need_dx, False,
                                     [("dy", dy), ("x", x), ("w", w), ("argmax", argmax)])
    dz = scratch("dense_maxout_backward.dz", (n, width))
    if width:
        column_grad.launch(column_grad.MAXOUT, 0, dz=dz, db=db, dy=dy, N=n, M=width,
                           argmax=argmax, pieces=k)
    dx, dw = weight_grads(dz, x, w, need_dx, dx, dw)
    return dx, dw, db
