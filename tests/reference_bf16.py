"""numpy references for bfloat16: the rounding every bf16 path must apply, written twice
(on the bits, and from the values), and the GEMM of bf16-rounded operands in float64."""

import numpy as np


def round_bf16(x):
    """x (float32) rounded to bfloat16, as float32: round to nearest, ties to even; a
    subnormal becomes a zero of its sign; a NaN keeps its sign and upper payload with the
    quiet bit set; past the largest bf16, infinity (fastdl/bf16.h)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    tiny = (u & 0x7F800000) == 0
    r = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    r = np.where(nan, (u | 0x00400000) & 0xFFFF0000, r)
    r = np.where(tiny, u & 0x80000000, r)
    return r.astype(np.uint32).view(np.float32)


def nearest_bf16_by_value(x):
    """For finite normal float32 x: the nearest bf16 found from the values themselves (the
    two bf16 neighbours of x compared in float64; a tie goes to the even mantissa)."""
    x = np.ascontiguousarray(x, np.float32)
    u = x.view(np.uint32)
    toward_zero = (u & np.uint32(0xFFFF0000)).view(np.float32)
    away = ((u & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        d0 = np.abs(x.astype(np.float64) - toward_zero.astype(np.float64))
        d1 = np.abs(away.astype(np.float64) - x.astype(np.float64))
    even0 = ((toward_zero.view(np.uint32) >> 16) & 1) == 0
    pick_away = (d1 < d0) | ((d1 == d0) & ~even0)
    return np.where(pick_away, away, toward_zero)


def matmul_of_rounded(a, b):
    """float64 product of the bf16-rounded operands (exact products; float64 sums)."""
    return round_bf16(a).astype(np.float64) @ round_bf16(b).astype(np.float64)


def accumulation_bound(a, b):
    """A bound on fp32 accumulation error for the product of the rounded operands:
    (K + 2) * 2**-24 * (|a| @ |b|), each product being exact in fp32."""
    k = a.shape[1]
    return (k + 2) * 2.0**-24 * (np.abs(round_bf16(a)).astype(np.float64)
                                 @ np.abs(round_bf16(b)).astype(np.float64))


def bf16_bound(a, b):
    """How far a bf16 product may be from the fp32 one: rounding to bf16 (8 significant
    bits) moves each operand by at most 2**-8 relative, so each product by at most
    2**-7 + 2**-16; plus fp32 accumulation in both."""
    k = a.shape[1]
    mag = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    return (2.0**-7 + 2.0**-16 + (k + 2) * 2.0**-23) * mag
