"""Philox-4x32-10 and the dropout keep mask in plain numpy (uint64 holding uint32 words),
written from docs/kernels.md alone: the oracle the C++ (and GPU) masks must match bit for bit."""

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
_U32 = np.uint64(0xFFFFFFFF)


def philox4x32_int(counter, key):
    """Scalar Philox-4x32-10 on Python ints."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF
    return c0, c1, c2, c3


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Vectorised: each argument a uint64 array (or scalar) of uint32 values."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(W0)) & _U32, (k1 + np.uint64(W1)) & _U32
        p0 = np.uint64(M0) * c0  # < 2^64: no overflow
        p1 = np.uint64(M1) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _U32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _U32
    return c0, c1, c2, c3


def keep(indices, p, seed, step, stream=0):
    """Keep flags (bool) of the given flat element indices."""
    i = np.asarray(indices, dtype=np.uint64)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    r = philox4x32((i >> np.uint64(2)) & _U32, i >> np.uint64(34), np.uint64(step), np.uint64(stream), k0, k1)
    w = np.choose((i & np.uint64(3)).astype(np.intp), r)
    u = (w >> np.uint64(8)).astype(np.float64) * 2.0**-24
    return u >= p


def keep_mask(size, p, seed, step, stream=0):
    return keep(np.arange(size, dtype=np.uint64), p, seed, step, stream)


def pack(keep_flags):
    return np.packbits(np.asarray(keep_flags, dtype=np.uint8), bitorder="little")


def unpack(mask, size):
    return np.unpackbits(mask, bitorder="little")[:size].astype(bool)


def scale_of(p, scale=True):
    return np.float32(1.0 / (1.0 - p)) if scale else np.float32(1.0)


def dropout(x, p, seed, step, stream=0, scale=True):
    """(y, mask) in float32 exactly as the kernels define them."""
    k = keep_mask(x.size, p, seed, step, stream).reshape(x.shape)
    y = np.where(k, x * scale_of(p, scale), np.float32(0)).astype(np.float32)
    return y, pack(k.ravel())
