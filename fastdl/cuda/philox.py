"""Philox-4x32-10 (Salmon et al., Random123) as a Numba CUDA device function, and the
dropout keep rule of docs/kernels.md built on it.

All words are carried in uint64 holding 32-bit values: the 32x32 -> 64-bit products
never overflow, sums are masked back to 32 bits, and every constant is a uint64 (mixing
uint64 with a signed integer would make Numba compute in float64).
"""

import numpy as np

from fastdl._scalars import integer, real
from fastdl.cuda import require

cuda = require()

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
U2 = np.uint64(2)
U3 = np.uint64(3)
U8 = np.uint64(8)
U32 = np.uint64(32)
U34 = np.uint64(34)


@cuda.jit(device=True)
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """The four output words for counter (c0..c3) and key (k0, k1)."""
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> U32) ^ c1 ^ k0, p1 & MASK32,
                          (p0 >> U32) ^ c3 ^ k1, p0 & MASK32)
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


@cuda.jit(device=True)
def keep_word(w, threshold):
    """u = (w >> 8) * 2^-24 >= p, as integers: (w >> 8) >= ceil(p * 2^24)."""
    return (w >> U8) >= threshold


@cuda.jit(device=True)
def keep(i, k0, k1, step, stream, threshold):
    """The keep decision for flat element i (uint64) of a dropout tensor."""
    r0, r1, r2, r3 = philox4x32_10((i >> U2) & MASK32, i >> U34, step, stream, k0, k1)
    lane = i & U3
    w = r0
    if lane == np.uint64(1):
        w = r1
    elif lane == U2:
        w = r2
    elif lane == U3:
        w = r3
    return keep_word(w, threshold)


def threshold(p):
    """The integer form of `u >= p` for the 24-bit uniforms u = k * 2^-24: k >= ceil(p * 2^24),
    computed in float64 from p (exact: p * 2^24 only shifts the exponent)."""
    return np.uint64(int(np.ceil(float(p) * 16777216.0)))


def key_words(seed, step, stream):
    """(k0, k1, step, stream) as uint64 after checking their ranges."""
    checked = []
    for name, v, bits in (("seed", seed, 64), ("step", step, 32), ("stream", stream, 32)):
        v = integer(name, v)  # an int (fastdl._scalars' rules); the range as before
        if not 0 <= v < (1 << bits):
            raise ValueError(f"{name}: expected 0 <= {name} < 2**{bits}, got {v}")
        checked.append(v)
    seed, step, stream = checked
    return (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32), np.uint64(int(step)), np.uint64(int(stream)))


def check_p(p):
    p = real("p", p, finite=False)  # a number (fastdl._scalars' rules); the range as the CPU's
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: the drop probability must be in [0, 1), got {p}")
    return p
