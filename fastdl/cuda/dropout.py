"""Dropout on the GPU with the counter-based Philox masks of docs/kernels.md: the keep bit
of flat element i is a pure function of (seed, step, stream, i), so the GPU and the CPU
draw the same masks. One thread per mask byte (8 elements, two Philox calls; eight when
an `offset` not a multiple of 4 misaligns the elements with the Philox words), which
writes the byte whole: no atomics on the packed mask."""

import functools

import numpy as np
from numba import uint8, uint64

from fastdl.cuda import activations as A
from fastdl.cuda import column_grad, gemm, philox, require
from fastdl.cuda.arrays import (blocks, checked, checked_f32, dummy, expect_dim, launcher, no_update, output_array,
                                output_arrays, output_arrays_or_first, scratch)
from fastdl.cuda.dense import check_dense, check_saved, gradient_outputs, parse_alpha, weight_grads

cuda = require()
THREADS = 256
ZERO = np.float32(0.0)


@functools.lru_cache(maxsize=None)
def _mask_kernel(write_y, aligned=True):
    """Writes mask bytes (and y = x * keep * scale when write_y) for a flat tensor whose
    element i draws the keep bit of flat element offset + i. aligned: offset % 4 == 0."""
    if not aligned:
        return _mask_kernel_unaligned(write_y)

    @cuda.jit
    def kernel(y, mask, x, size, k0, k1, step, stream, threshold, keep_scale, offset):
        byte = cuda.grid(1)
        nbytes = (size + 7) // 8
        if byte >= nbytes:
            return
        bits = 0
        for half in range(2):
            i0 = byte * 8 + half * 4
            g0 = offset + uint64(i0)
            r0, r1, r2, r3 = philox.philox4x32_10((g0 >> np.uint64(2)) & philox.MASK32, g0 >> np.uint64(34),
                                                  step, stream, k0, k1)
            for lane in range(4):
                w = r0
                if lane == 1:
                    w = r1
                elif lane == 2:
                    w = r2
                elif lane == 3:
                    w = r3
                i = i0 + lane
                if i < size:
                    kept = philox.keep_word(w, threshold)
                    if kept:
                        bits |= 1 << (half * 4 + lane)
                    if write_y:
                        y[i] = x[i] * keep_scale if kept else ZERO
        mask[byte] = uint8(bits)

    return kernel


@functools.lru_cache(maxsize=None)
def _mask_kernel_unaligned(write_y):
    """_mask_kernel for an offset that is not a multiple of 4: one Philox call per element."""

    @cuda.jit
    def kernel(y, mask, x, size, k0, k1, step, stream, threshold, keep_scale, offset):
        byte = cuda.grid(1)
        nbytes = (size + 7) // 8
        if byte >= nbytes:
            return
        bits = 0
        for t in range(8):
            i = byte * 8 + t
            if i < size:
                kept = philox.keep(offset + uint64(i), k0, k1, step, stream, threshold)
                if kept:
                    bits |= 1 << t
                if write_y:
                    y[i] = x[i] * keep_scale if kept else ZERO
        mask[byte] = uint8(bits)

    return kernel


@cuda.jit
def _dropout_backward(dx, dy, mask, size, keep_scale):
    i = cuda.grid(1)
    if i < size:
        kept = (mask[i >> 3] >> (i & 7)) & 1
        dx[i] = dy[i] * keep_scale if kept != 0 else ZERO


@cuda.jit
def _scale(flat, size, factor):
    i = cuda.grid(1)
    if i < size:
        flat[i] *= factor


def scale_(a, factor):
    """a *= factor in place (any C-contiguous float32 device array): the inference pass of
    a Dropout(scale_at_test=True), which scales the kept activations by 1 - p."""
    a = checked(a, "a", a.ndim if hasattr(a, "ndim") else 1, "", np.float32)
    if a.size:
        launcher(_scale, (blocks(a.size, THREADS),), (THREADS,))(_flat(a), a.size, np.float32(factor))
    return a


def _keep_scale(p, scale):
    return np.float32(1.0 / (1.0 - p)) if scale else np.float32(1.0)


def _flat(d):
    return d.reshape(d.size) if d.ndim != 1 else d


def _write_mask(mask, size, seedwords, thr, y=None, x=None, keep_scale=np.float32(1.0), offset=0):
    k0, k1, step, stream = seedwords
    nbytes = (size + 7) // 8
    if nbytes:
        write_y = y is not None
        f1 = dummy(np.float32)
        launcher(_mask_kernel(write_y, offset % 4 == 0), (blocks(nbytes, THREADS),), (THREADS,))(
            y if write_y else f1, mask, x if write_y else f1, size, k0, k1, step, stream, thr, keep_scale,
            np.uint64(offset))


def check_offset(offset, size):
    """offset: a non-negative int with offset + size < 2**62 (as the CPU kernels)."""
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise TypeError(f"offset: expected an int, got {type(offset).__name__}")
    offset = int(offset)
    if offset < 0 or offset + int(size) >= (1 << 62):
        raise ValueError(f"offset: expected 0 <= offset and offset + size < 2**62, got offset {offset} for "
                         f"{size} elements")
    return offset


def check_mask(mask, size):
    mask = checked(mask, "mask", 1, "of packed keep bits", np.uint8)
    expect_dim(mask, "mask", 0, (size + 7) // 8, f"ceil(size / 8) for {size} elements")
    return mask


def dropout_forward(x, p, seed, step, stream=0, *, scale=True, out=None, offset=0):
    """(y, mask): y = x * keep / (1 - p) (or x * keep with scale=False); element i draws
    the keep bit of flat element offset + i."""
    p = philox.check_p(p)
    x = checked(x, "x", x.ndim if hasattr(x, "ndim") else 1, "", np.float32)
    words = philox.key_words(seed, step, stream)
    offset = check_offset(offset, x.size)
    # out= is y alone (an array) or the pair (y, mask) as a tuple, as on the CPU.
    y, mask = output_arrays_or_first(out, [("y", x.shape), ("mask", ((x.size + 7) // 8,), np.uint8)], (("x", x),))
    _write_mask(mask, x.size, words, philox.threshold(p), _flat(y), _flat(x), _keep_scale(p, scale), offset)
    return y, mask


def dropout_backward(dy, mask, p, *, scale=True, out=None):
    """dx = dy * keep (/ (1 - p))."""
    p = philox.check_p(p)
    dy = checked(dy, "dy", dy.ndim if hasattr(dy, "ndim") else 1, "", np.float32)
    mask = check_mask(mask, dy.size)
    dx = output_array(out, dy.shape, (("dy", dy), ("mask", mask)))
    if dy.size:
        launcher(_dropout_backward, (blocks(dy.size, THREADS),), (THREADS,))(
            _flat(dx), _flat(dy), mask, dy.size, _keep_scale(p, scale))
    return dx


def dense_dropout_forward(x, w, b, activation, p, seed, step, stream=0, *, alpha=None, scale=True, offset=0,
                          out=None):
    """(y, mask) or (y, mask, z): dense + activation + dropout in the GEMM epilogue, then
    the packed mask from the same Philox words (a second, small launch)."""
    code = A.code_of(activation)
    p = philox.check_p(p)
    x, w, b = check_dense(x, w, b)
    words = philox.key_words(seed, step, stream)
    n, k = x.shape
    m = w.shape[1]
    offset = check_offset(offset, n * m)
    a_scalar, a_vec = parse_alpha(activation, alpha, m)
    needs_z = activation in A.NEEDS_Z
    specs = [("y", (n, m)), ("mask", ((n * m + 7) // 8,), np.uint8)] + ([("z", (n, m))] if needs_z else [])
    outs = output_arrays(out, specs, (("x", x), ("w", w), ("b", b), ("alpha", a_vec)))
    y, mask = outs[0], outs[1]
    z = outs[2] if needs_z else None
    thr = philox.threshold(p)
    kernel = gemm.gemm_kernel(False, False, gemm.DROPOUT, code, b is not None, needs_z)
    gemm.launch(kernel, x, w, y, n, m, k, Z=z, bias=b, alpha_vec=a_vec, alpha=a_scalar,
                dropout=(*words, thr, _keep_scale(p, scale)), drop_offset=offset)
    _write_mask(mask, n * m, words, thr, offset=offset)
    return (y, mask, z) if needs_z else (y, mask)


def dense_dropout_backward(dy, x, w, activation, mask, p, *, y=None, z=None, alpha=None,
                           scale=True, need_dx=True, out=None, update=None):
    """As dense_backward, through the dropout mask. `y` is the output of
    dense_dropout_forward (after dropout): where kept it is f(z) * scale, so the
    y-based derivatives see y * (1 - p) when scale is True."""
    no_update(update)
    code = A.code_of(activation)
    p = philox.check_p(p)
    dy = checked_f32(dy, "dy", 2, "of shape (N, M)")
    x, w, _ = check_dense(x, w, None)
    n, m = x.shape[0], w.shape[1]
    expect_dim(dy, "dy", 0, n, "N = x.shape[0]")
    expect_dim(dy, "dy", 1, m, "M = w.shape[1]")
    a_scalar, a_vec = parse_alpha(activation, alpha, m)
    s = check_saved(activation, y, z, n, m)
    mask = check_mask(mask, n * m)
    dx, dw, db, dalpha = gradient_outputs(out, n, x.shape[1], m, need_dx, activation == "prelu",
                                          [("dy", dy), ("x", x), ("w", w), ("y" if z is None else "z", s),
                                           ("mask", mask), ("alpha", a_vec)])
    dz = scratch("dense_dropout_backward.dz", (n, m))
    if m:
        column_grad.launch(column_grad.DROPOUT, code, dz=dz, db=db, dy=dy, N=n, M=m, s=s,
                           dalpha=dalpha, alpha_vec=a_vec, alpha=a_scalar, mask=mask,
                           keep_scale=_keep_scale(p, scale), unscale=(1.0 - p) if scale else 1.0)
    dx, dw = weight_grads(dz, x, w, need_dx, dx, dw)
    return (dx, dw, db, dalpha) if dalpha is not None else (dx, dw, db)
