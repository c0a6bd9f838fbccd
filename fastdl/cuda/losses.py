"""Fused losses on the GPU: each writes its gradient and per-row (or per-block) partial
losses in one launch and sums the partials in a second (no atomics)."""

import math

import numpy as np
from numba import float32, float64, int64

from fastdl._scalars import real
from fastdl.cuda import activations as A
from fastdl.cuda import gemm, reduce, require
from fastdl.cuda.arrays import checked, checked_f32, dummy, expect_dim, launcher, output_array, scratch

cuda = require()
ZERO = np.float32(0.0)
ONE = np.float32(1.0)
NEG_INF = np.float32(-np.inf)
ROWS_PER_BLOCK = 8  # one 32-thread group per row
GROUP = 32
THREADS = reduce.THREADS


@cuda.jit(device=True)
def _group_reduce(sh, g, lane, v, is_max):
    sh[g, lane] = v
    cuda.syncthreads()
    s = GROUP // 2
    while s > 0:
        if lane < s:
            if is_max:
                sh[g, lane] = max(sh[g, lane], sh[g, lane + s])
            else:
                sh[g, lane] += sh[g, lane + s]
        cuda.syncthreads()
        s //= 2
    r = sh[g, 0]
    cuda.syncthreads()
    return r


@cuda.jit
def _first_bad_label(bad, labels, N, C):
    i = cuda.grid(1)
    if i < N:
        label = int64(labels[i])
        if label < 0 or label >= C:
            cuda.atomic.min(bad, 0, i)


@cuda.jit
def _softmax_xent_rows(dlogits, row_loss, bad, logits, labels, probs, use_labels, N, C,
                       eps, off, inv_n):
    # A bad label anywhere (found by _first_bad_label, launched before on the same stream)
    # refuses the whole call before anything is written; the same for every thread of the
    # block, so no thread skips a barrier another waits at.
    if bad[0] < N:
        return
    sh = cuda.shared.array((ROWS_PER_BLOCK, GROUP), float32)
    g = cuda.threadIdx.x // GROUP
    lane = cuda.threadIdx.x % GROUP
    row = cuda.blockIdx.x * ROWS_PER_BLOCK + g
    active = row < N
    label = int64(0)
    if active and use_labels:
        label = int64(labels[row])
    mx = NEG_INF
    if active:
        for c in range(lane, C, GROUP):
            mx = max(mx, logits[row, c])
    mx = _group_reduce(sh, g, lane, mx, True)
    se = ZERO
    tx = ZERO  # sum_c t_c * x_c
    ts = ZERO  # sum_c t_c
    if active:
        for c in range(lane, C, GROUP):
            x = logits[row, c]
            se += math.exp(x - mx)
            if use_labels:
                t = off + ((ONE - eps) if c == label else ZERO)
            else:
                t = (ONE - eps) * probs[row, c] + off
            tx += t * x
            ts += t
    se = _group_reduce(sh, g, lane, se, False)
    tx = _group_reduce(sh, g, lane, tx, False)
    ts = _group_reduce(sh, g, lane, ts, False)
    if active:
        lse = mx + math.log(se)
        inv_se = ONE / se
        for c in range(lane, C, GROUP):
            x = logits[row, c]
            if use_labels:
                t = off + ((ONE - eps) if c == label else ZERO)
            else:
                t = (ONE - eps) * probs[row, c] + off
            dlogits[row, c] = (math.exp(x - mx) * inv_se * ts - t) * inv_n
        if lane == 0:
            row_loss[row] = lse * ts - tx
    elif row < N and lane == 0:
        row_loss[row] = ZERO


@cuda.jit
def _mse(dpred, partials, pred, target, size, inv_size):
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    two = np.float32(2.0) * inv_size
    for i in range(cuda.grid(1), size, cuda.gridsize(1)):
        d = pred[i] - target[i]
        dpred[i] = two * d
        acc += float64(d * d)
    total = reduce.block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit
def _bce(dlogits, partials, logits, target, size, inv_size):
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.grid(1), size, cuda.gridsize(1)):
        x = logits[i]
        t = target[i]
        acc += float64(max(x, ZERO) - x * t + math.log1p(math.exp(-abs(x))))
        dlogits[i] = (A.sigmoid(x) - t) * inv_size
    total = reduce.block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


def softmax_cross_entropy(logits, target, *, label_smoothing=0.0, out=None):
    """(loss, dlogits) for logits (N, C) and int labels (N,) or float32 probabilities (N, C)."""
    logits = checked_f32(logits, "logits", 2, "of shape (N, C)")
    n, c = logits.shape
    label_smoothing = real("label_smoothing", label_smoothing, 0.0, 1.0)
    dtype = getattr(target, "dtype", None)
    from fastdl.cuda.arrays import as_device
    target = as_device(target, "target")
    f1 = gemm.dummy2()  # the absent form of the target, never read
    if target.dtype in (np.dtype(np.int32), np.dtype(np.int64)):
        labels = checked(target, "target", 1, "of labels, shape (N,)", target.dtype)
        expect_dim(labels, "target", 0, n, "N = logits.shape[0]")
        probs, use_labels = f1, True
    elif target.dtype == np.dtype(np.float32):
        probs = checked_f32(target, "target", 2, "of probabilities, shape (N, C)")
        expect_dim(probs, "target", 0, n, "N = logits.shape[0]")
        expect_dim(probs, "target", 1, c, "C = logits.shape[1]")
        labels, use_labels = dummy(np.int64), False
    else:
        raise TypeError(f"target: expected int32/int64 labels or float32 probabilities, got {dtype}")
    dlogits = output_array(out, (n, c), (("logits", logits), ("target", target)))
    if n == 0:
        return 0.0, dlogits
    row_loss = scratch("softmax_cross_entropy.row_loss", (n,))
    bad = scratch("softmax_cross_entropy.first_bad", (1,), np.int64)
    bad.copy_to_device(np.array([n], dtype=np.int64))
    if use_labels:
        launcher(_first_bad_label, ((n + THREADS - 1) // THREADS,), (THREADS,))(bad, labels, n, c)
    launcher(_softmax_xent_rows, ((n + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK,), (ROWS_PER_BLOCK * GROUP,))(
        dlogits, row_loss, bad, logits, labels, probs, use_labels, n, c,
        np.float32(label_smoothing), np.float32(label_smoothing / c if c else 0.0),
        np.float32(1.0 / n))
    first_bad = int(bad.copy_to_host()[0])
    if first_bad < n:  # nothing was written: dlogits is as it came
        label = int(labels[first_bad:first_bad + 1].copy_to_host()[0])
        raise ValueError(f"target: label {label} at index {first_bad} is outside [0, {c})")
    return reduce.finish(row_loss, n, 1.0 / n), dlogits


def _elementwise_loss(kernel, pred, target, pred_name, out):
    shape = pred.shape
    pred = checked_f32(pred, pred_name, len(shape))
    target = checked_f32(target, "target", len(shape))
    for axis, s in enumerate(shape):
        expect_dim(target, "target", axis, s, f"the shape of {pred_name}")
    size = pred.size
    grad = output_array(out, shape, ((pred_name, pred), ("target", target)))
    if size == 0:
        return float("nan"), grad
    blocks = reduce.grid_for(size)
    partials = scratch("elementwise_loss.partials", (blocks,), np.float64)
    flat = (lambda d: d.reshape(size))
    launcher(kernel, (blocks,), (reduce.THREADS,))(flat(grad), partials, flat(pred), flat(target), size,
                                                   np.float32(1.0 / size))
    return reduce.finish(partials, blocks, 1.0 / size), grad


def mse(pred, target, *, out=None):
    """(loss, dpred): mean squared error over all elements."""
    return _elementwise_loss(_mse, pred, target, "pred", out)


def binary_cross_entropy(logits, target, *, out=None):
    """(loss, dlogits): BCE from logits in the stable form, mean over all elements."""
    return _elementwise_loss(_bce, logits, target, "logits", out)
