"""dz = dy * f'(s) with db (and prelu's dalpha) reduced over the batch in the same pass:
the first launch of every dense backward.

A block owns 32 columns for the whole batch: 32 threads across (coalesced row reads) and
8 down, each summing every 8th row in registers, then one shared-memory reduction. No
atomics, so db is deterministic. Variants (compile-time modes):
- ACT: gy = dy.
- DROPOUT: gy = dy * keep * scale from the packed mask; y-based derivatives see
  y * unscale (y was stored after dropout scaling).
- MAXOUT: gy[n, c] = dy[n, c // k] where argmax[n, c // k] == c % k, else 0.
dz = gy * f'(s); dz is not written for linear (the caller uses dy itself).
"""

import functools

import numpy as np
from numba import float32, uint8

from fastdl.cuda import activations as act_mod
from fastdl.cuda import require

cuda = require()

ACT, DROPOUT, MAXOUT = range(3)
COLS = 32
ROWS = 8
ZERO = np.float32(0.0)


@functools.lru_cache(maxsize=None)
def column_grad_kernel(mode, act, write_dz):
    is_prelu = act == act_mod.PRELU
    from_z = act in (act_mod.PRELU, act_mod.SILU, act_mod.GELU)

    @cuda.jit
    def kernel(dz, db, dalpha, dy, s, alpha_vec, alpha, mask, argmax, N, M, pieces,
               keep_scale, unscale):
        red = cuda.shared.array((ROWS, COLS), float32)
        red_a = cuda.shared.array((ROWS, COLS), float32)
        tx = cuda.threadIdx.x % COLS
        ty = cuda.threadIdx.x // COLS
        col = cuda.blockIdx.x * COLS + tx
        acc = ZERO
        acc_a = ZERO
        if col < M:
            a = alpha_vec[col] if is_prelu else alpha
            for n in range(ty, N, ROWS):
                if mode == MAXOUT:
                    u = col // pieces
                    gy = dy[n, u] if argmax[n, u] == uint8(col - u * pieces) else ZERO
                elif mode == DROPOUT:
                    flat = n * M + col
                    kept = (mask[flat >> 3] >> (flat & 7)) & 1
                    gy = dy[n, col] * keep_scale if kept != 0 else ZERO
                else:
                    gy = dy[n, col]
                g = gy
                if act != act_mod.LINEAR:
                    sv = s[n, col]
                    if mode == DROPOUT and not from_z:
                        sv = sv * unscale
                    g = gy * act_mod.derivative(act, sv, a)
                    if is_prelu:
                        acc_a += gy * min(sv, ZERO)
                if write_dz:
                    dz[n, col] = g
                acc += g
        red[ty, tx] = acc
        red_a[ty, tx] = acc_a
        cuda.syncthreads()
        if ty == 0 and col < M:
            t = ZERO
            ta = ZERO
            for r in range(ROWS):
                t += red[r, tx]
                ta += red_a[r, tx]
            db[col] = t
            if is_prelu:
                dalpha[col] = ta
    return kernel


def launch(mode, act, *, dz, db, dy, N, M, s=None, dalpha=None, alpha_vec=None, alpha=0.0,
           mask=None, argmax=None, pieces=1, keep_scale=1.0, unscale=1.0):
    from fastdl.cuda.arrays import blocks, dummy, launcher
    from fastdl.cuda.gemm import dummy2

    write_dz = dz is not None
    kernel = column_grad_kernel(mode, act, write_dz)
    f1 = dummy(np.float32)
    launcher(kernel, (blocks(M, COLS),), (COLS * ROWS,))(
        dummy2() if dz is None else dz, db, f1 if dalpha is None else dalpha, dy,
        dummy2() if s is None else s, f1 if alpha_vec is None else alpha_vec, np.float32(alpha),
        dummy(np.uint8) if mask is None else mask, dummy2(np.uint8) if argmax is None else argmax,
        N, M, pieces, np.float32(keep_scale), np.float32(unscale))
