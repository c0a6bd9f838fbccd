"""The tiled SGEMM behind every dense kernel: C = op(A) @ op(B) with a fused epilogue.

Block tile 64x64, K step 16, 256 threads, a 4x4 register tile per thread. Each thread's
rows and columns are interleaved by 16 (row ty + 16*i, column tx + 16*j) so shared-memory
reads are broadcasts or conflict-free and the epilogue's global writes are coalesced.
Tiles are double-buffered through registers: the next K tile is loaded from global memory
while the current one is multiplied out of shared memory. Shared tiles are padded by one
column so that the transposing stores do not conflict.

Kernels are specialised on what changes the code (transposes, epilogue, activation, bias,
whether z is written) by :func:`gemm_kernel`, which builds each variant once.

Epilogues:
- STORE: C = acc.
- DENSE: z = acc + b; C = f(z) (and Z = z when asked).
- DROPOUT: as DENSE, then C *= keep(i) * scale with the Philox rule of docs/kernels.md
  (i = row * N + col); the packed mask is written by a separate small kernel.
- MAXOUT: z = acc + b is staged in shared memory and each block reduces whole maxout
  units: a block covers `col_step` = (64 // pieces) * pieces columns, so no unit
  straddles two blocks and z never reaches global memory.
"""

import functools

import numpy as np
from numba import float32, uint8, uint64

from fastdl.cuda import activations as act_mod
from fastdl.cuda import philox
from fastdl.cuda import require

cuda = require()

BM = 64
BN = 64
BK = 16
THREADS = 256
# Shared tiles padded by one column; shapes must be plain constants for Numba.
A_COLS = BM + 1
B_COLS = BN + 1
STORE, DENSE, DROPOUT, MAXOUT = range(4)
ZERO = np.float32(0.0)


@functools.lru_cache(maxsize=None)
def gemm_kernel(trans_a, trans_b, epilogue=STORE, act=0, has_bias=False, write_z=False):
    """The kernel for C (M, N) = op(A) (M, K) @ op(B) (K, N); A is stored (K, M) when
    trans_a, B is stored (N, K) when trans_b. Launch with grid
    (ceil(N / col_step), ceil(M / 64)) and 256 threads."""
    zs_rows = BM if epilogue == MAXOUT else 1
    zs_cols = BN + 1 if epilogue == MAXOUT else 1
    is_prelu = act == act_mod.PRELU
    activates = epilogue in (DENSE, DROPOUT)

    @cuda.jit(device=True)
    def load_a(A, ra, row0, k0, M, K, tid):
        for r in range(4):
            e = tid + THREADS * r
            if trans_a:  # A stored (K, M): consecutive threads read consecutive rows of C
                kl = e // BM
                ml = e % BM
                gm = row0 + ml
                gk = k0 + kl
                ra[r] = A[gk, gm] if gm < M and gk < K else ZERO
            else:
                ml = e // BK
                kl = e % BK
                gm = row0 + ml
                gk = k0 + kl
                ra[r] = A[gm, gk] if gm < M and gk < K else ZERO

    @cuda.jit(device=True)
    def store_a(As, ra, tid):
        for r in range(4):
            e = tid + THREADS * r
            if trans_a:
                As[e // BM, e % BM] = ra[r]
            else:
                As[e % BK, e // BK] = ra[r]

    @cuda.jit(device=True)
    def load_b(B, rb, col0, k0, N, K, tid):
        for r in range(4):
            e = tid + THREADS * r
            if trans_b:  # B stored (N, K)
                nl = e // BK
                kl = e % BK
                gn = col0 + nl
                gk = k0 + kl
                rb[r] = B[gn, gk] if gn < N and gk < K else ZERO
            else:
                kl = e // BN
                nl = e % BN
                gn = col0 + nl
                gk = k0 + kl
                rb[r] = B[gk, gn] if gn < N and gk < K else ZERO

    @cuda.jit(device=True)
    def store_b(Bs, rb, tid):
        for r in range(4):
            e = tid + THREADS * r
            if trans_b:
                Bs[e % BK, e // BK] = rb[r]
            else:
                Bs[e // BN, e % BN] = rb[r]

    @cuda.jit
    def kernel(A, B, C, Z, bias, alpha_vec, alpha, aux, M, N, K, pieces, col_step,
               k0w, k1w, step, stream, threshold, keep_scale, drop_offset):
        As = cuda.shared.array((BK, A_COLS), float32)
        Bs = cuda.shared.array((BK, B_COLS), float32)
        Zs = cuda.shared.array((zs_rows, zs_cols), float32)
        acc = cuda.local.array(16, float32)
        ra = cuda.local.array(4, float32)
        rb = cuda.local.array(4, float32)
        tid = cuda.threadIdx.x
        ty = tid // 16
        tx = tid % 16
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * col_step
        for q in range(16):
            acc[q] = ZERO
        ntiles = (K + BK - 1) // BK
        if ntiles > 0:
            load_a(A, ra, row0, 0, M, K, tid)
            load_b(B, rb, col0, 0, N, K, tid)
            store_a(As, ra, tid)
            store_b(Bs, rb, tid)
        cuda.syncthreads()
        for t in range(ntiles):
            if t + 1 < ntiles:  # prefetch the next tile into registers
                load_a(A, ra, row0, (t + 1) * BK, M, K, tid)
                load_b(B, rb, col0, (t + 1) * BK, N, K, tid)
            for kk in range(BK):
                a0 = As[kk, ty]
                a1 = As[kk, ty + 16]
                a2 = As[kk, ty + 32]
                a3 = As[kk, ty + 48]
                for j in range(4):
                    bj = Bs[kk, tx + 16 * j]
                    acc[j] += a0 * bj
                    acc[4 + j] += a1 * bj
                    acc[8 + j] += a2 * bj
                    acc[12 + j] += a3 * bj
            cuda.syncthreads()
            if t + 1 < ntiles:
                store_a(As, ra, tid)
                store_b(Bs, rb, tid)
                cuda.syncthreads()

        if epilogue == MAXOUT:
            for i in range(4):
                for j in range(4):
                    cl = tx + 16 * j
                    col = col0 + cl
                    if cl < col_step and col < N:
                        v = acc[4 * i + j]
                        if has_bias:
                            v += bias[col]
                        Zs[ty + 16 * i, cl] = v
            cuda.syncthreads()
            units_here = col_step // pieces
            m_units = N // pieces
            unit0 = cuda.blockIdx.x * units_here
            for e in range(tid, BM * units_here, THREADS):
                rl = e // units_here
                u = e % units_here
                row = row0 + rl
                unit = unit0 + u
                if row < M and unit < m_units:
                    base = u * pieces
                    best = Zs[rl, base]
                    arg = 0
                    for p in range(1, pieces):
                        v = Zs[rl, base + p]
                        if v > best:
                            best = v
                            arg = p
                    C[row, unit] = best
                    aux[row, unit] = uint8(arg)
            return

        for i in range(4):
            row = row0 + ty + 16 * i
            if row < M:
                for j in range(4):
                    col = col0 + tx + 16 * j
                    if col < N:
                        v = acc[4 * i + j]
                        if activates:
                            if has_bias:
                                v += bias[col]
                            if write_z:
                                Z[row, col] = v
                            a = alpha_vec[col] if is_prelu else alpha
                            v = act_mod.activate(act, v, a)
                            if epilogue == DROPOUT:
                                flat = drop_offset + uint64(row * N + col)
                                if philox.keep(flat, k0w, k1w, step, stream, threshold):
                                    v = v * keep_scale
                                else:
                                    v = ZERO
                        C[row, col] = v

    return kernel


_U0 = np.uint64(0)
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


def launch(kernel, A, B, C, M, N, K, *, Z=None, bias=None, alpha_vec=None, alpha=_F0,
           aux=None, pieces=1, col_step=BN, dropout=(_U0, _U0, _U0, _U0, _U0, _F1), drop_offset=0):
    """Launches a gemm_kernel variant; absent optional arrays are passed as dummies.
    drop_offset: the DROPOUT epilogue keeps element (row, col) iff flat element
    drop_offset + row * N + col is kept (a shard of a larger batch)."""
    from fastdl.cuda.arrays import blocks, dummy, launcher

    if M == 0 or N == 0:
        return
    grid = (blocks(N, col_step), blocks(M, BM))
    f1 = dummy(np.float32)
    k0w, k1w, step, stream, threshold, keep_scale = dropout
    launcher(kernel, grid, (THREADS,))(
        A, B, C, dummy2() if Z is None else Z, f1 if bias is None else bias,
        f1 if alpha_vec is None else alpha_vec, np.float32(alpha),
        dummy2(np.uint8) if aux is None else aux,
        M, N, K, pieces, col_step, k0w, k1w, step, stream, threshold, np.float32(keep_scale),
        np.uint64(drop_offset))


@functools.lru_cache(maxsize=None)
def dummy2(dtype=np.float32):
    """A (1, 1) stand-in for an absent 2-D argument."""
    return cuda.to_device(np.zeros((1, 1), dtype=dtype))
