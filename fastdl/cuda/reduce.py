"""Block-level sums in shared memory (the simulator has no warp shuffles, so one code
path serves both) and the one-block final sum that turns per-block partials into a
scalar without atomics (deterministic)."""

import numpy as np
from numba import float64

from fastdl.cuda import require

cuda = require()

THREADS = 256
MAX_PARTIALS = 1024


@cuda.jit(device=True)
def block_sum(sh, v):
    """Sum of v over the block (THREADS threads, sh a float64 shared array of THREADS);
    every thread must call it; every thread gets the result."""
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@cuda.jit
def final_sum(out, partials, count, scale):
    """out[0] = scale * sum(partials[:count]), one block."""
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.threadIdx.x, count, THREADS):
        acc += partials[i]
    total = block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total * scale


@cuda.jit
def final_sum_and_flag(out, partials, count, scale, flag, reset):
    """As final_sum, and out[1] = flag[0], then flag[0] = reset: a kernel's int64 report
    (the first bad label) comes back in the same copy as the loss, and the slot is ready
    for the next call without a copy to the device."""
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.threadIdx.x, count, THREADS):
        acc += partials[i]
    total = block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        out[0] = total * scale
        out[1] = float64(flag[0])
        flag[0] = reset


def grid_for(size):
    """Blocks for a grid-stride pass that leaves at most MAX_PARTIALS partial sums."""
    return max(1, min(MAX_PARTIALS, (size + THREADS - 1) // THREADS))


def finish(partials, count, scale):
    """The scalar scale * sum(partials[:count]) as a Python float (one launch + a copy)."""
    from fastdl.cuda.arrays import launcher, scratch

    out = scratch("reduce.finish", (1,), np.float64)
    launcher(final_sum, (1,), (THREADS,))(out, partials, count, np.float64(scale))
    return float(out.copy_to_host()[0])


def finish_with_flag(partials, count, scale, flag, reset):
    """(scale * sum(partials[:count]), int(flag[0])) in one launch and one copy to the
    host, leaving flag[0] = reset (see final_sum_and_flag)."""
    from fastdl.cuda.arrays import launcher, scratch

    out = scratch("reduce.finish_with_flag", (2,), np.float64)
    launcher(final_sum_and_flag, (1,), (THREADS,))(out, partials, count, np.float64(scale), flag,
                                                   np.int64(reset))
    total, flagged = out.copy_to_host()
    return float(total), int(flagged)
