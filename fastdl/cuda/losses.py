"""Fused losses on the GPU: each writes its gradient and per-row (or per-block) partial
losses in one launch and sums the partials in a second (no atomics). sample_weight (N,)
weighs each sample as on the CPU (Keras's "sum_over_batch_size": sum_i w_i l_i / N, each
sample's gradient times w_i); it is checked (finite, >= 0) by a launch of its own before
anything is written."""

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
POS_INF = np.float32(np.inf)
ROWS_PER_BLOCK = 8  # one 32-thread group per row
GROUP = 32
THREADS = reduce.THREADS
NO_BAD_LABEL = 1 << 53  # above any row index; exact in the float64 it comes back in


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
def _first_bad_weight(bad, weights, n):
    """bad[0] = the smallest i with weights[i] negative or not finite (left as is if none)."""
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = weights[i]
        if not (v >= ZERO and v < POS_INF):  # NaN fails both
            cuda.atomic.min(bad, 0, i)


def _checked_weight(sample_weight, n, why):
    """None, or sample_weight as a float32 (N,) device array whose values were checked."""
    if sample_weight is None:
        return None
    w = checked_f32(sample_weight, "sample_weight", 1, "of per-sample weights, shape (N,)")
    expect_dim(w, "sample_weight", 0, n, why)
    bad = scratch("sample_weight.first_bad", (1,), np.int64)
    bad.copy_to_device(np.array([n], dtype=np.int64))
    launcher(_first_bad_weight, (reduce.grid_for(n),), (THREADS,))(bad, w, n)
    first = int(bad.copy_to_host()[0])
    if first < n:
        v = float(w[first:first + 1].copy_to_host()[0])
        what = "negative" if math.isfinite(v) else "not finite"
        raise ValueError(f"sample_weight: weight {v:.9g} at index {first} is {what}; "
                         "sample weights must be finite and >= 0")
    return w


@cuda.jit
def _first_bad_label(bad, labels, N, C):
    i = cuda.grid(1)
    if i < N:
        label = int64(labels[i])
        if label < 0 or label >= C:
            cuda.atomic.min(bad, 0, i)


@cuda.jit
def _softmax_xent_rows(dlogits, row_loss, bad, logits, labels, probs, use_labels, weights,
                       use_weights, N, C, eps, off, inv_n):
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
        # w / N where the unweighted gradient has 1 / N (times one is exact)
        scale = inv_n * weights[row] if use_weights else inv_n
        for c in range(lane, C, GROUP):
            x = logits[row, c]
            if use_labels:
                t = off + ((ONE - eps) if c == label else ZERO)
            else:
                t = (ONE - eps) * probs[row, c] + off
            dlogits[row, c] = (math.exp(x - mx) * inv_se * ts - t) * scale
        if lane == 0:
            row_loss[row] = (lse * ts - tx) * weights[row] if use_weights else lse * ts - tx
    elif row < N and lane == 0:
        row_loss[row] = ZERO


# The elementwise losses: element i belongs to sample i // C (C elements per sample),
# whose weight scales its loss and gradient where use_weights is set.
@cuda.jit
def _mse(dpred, partials, pred, target, weights, use_weights, C, size, inv_size):
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    two = np.float32(2.0) * inv_size
    for i in range(cuda.grid(1), size, cuda.gridsize(1)):
        d = pred[i] - target[i]
        if use_weights:
            w = weights[i // C]
            dpred[i] = (two * w) * d
            acc += float64(d * d) * float64(w)
        else:
            dpred[i] = two * d
            acc += float64(d * d)
    total = reduce.block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


@cuda.jit
def _bce(dlogits, partials, logits, target, weights, use_weights, C, size, inv_size):
    sh = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.grid(1), size, cuda.gridsize(1)):
        x = logits[i]
        t = target[i]
        loss = float64(max(x, ZERO) - x * t + math.log1p(math.exp(-abs(x))))
        if use_weights:
            w = weights[i // C]
            acc += loss * float64(w)
            dlogits[i] = (A.sigmoid(x) - t) * (inv_size * w)
        else:
            acc += loss
            dlogits[i] = (A.sigmoid(x) - t) * inv_size
    total = reduce.block_sum(sh, acc)
    if cuda.threadIdx.x == 0:
        partials[cuda.blockIdx.x] = total


def softmax_cross_entropy(logits, target, *, label_smoothing=0.0, sample_weight=None, out=None):
    """(loss, dlogits) for logits (N, C) and int labels (N,) or float32 probabilities (N, C);
    sample_weight (N,): loss sum_i w_i l_i / N, gradient rows times w_i."""
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
    weights = _checked_weight(sample_weight, n, "N = logits.shape[0]")
    dlogits = output_array(out, (n, c), (("logits", logits), ("target", target), ("sample_weight", weights)))
    if n == 0:
        return 0.0, dlogits
    row_loss = scratch("softmax_cross_entropy.row_loss", (n,))
    # The first out-of-range label's row (atomic min), found by a launch of its own before
    # the rows kernel, which then writes nothing. It holds NO_BAD_LABEL between calls: the
    # final sum reads it and puts NO_BAD_LABEL back, so the loss and the check come back
    # in one copy and nothing is copied to the device per call.
    bad = scratch("softmax_cross_entropy.first_bad", (1,), np.int64, fill=NO_BAD_LABEL)
    if use_labels:
        launcher(_first_bad_label, ((n + THREADS - 1) // THREADS,), (THREADS,))(bad, labels, n, c)
    launcher(_softmax_xent_rows, ((n + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK,), (ROWS_PER_BLOCK * GROUP,))(
        dlogits, row_loss, bad, logits, labels, probs, use_labels,
        dummy() if weights is None else weights, weights is not None, n, c,
        np.float32(label_smoothing), np.float32(label_smoothing / c if c else 0.0),
        np.float32(1.0 / n))
    loss, first_bad = reduce.finish_with_flag(row_loss, n, 1.0 / n, bad, NO_BAD_LABEL)
    if first_bad < n:  # nothing was written: dlogits is as it came
        label = int(labels[first_bad:first_bad + 1].copy_to_host()[0])
        raise ValueError(f"target: label {label} at index {first_bad} is outside [0, {c})")
    return loss, dlogits


def _elementwise_loss(kernel, pred, target, pred_name, sample_weight, out):
    shape = pred.shape
    pred = checked_f32(pred, pred_name, len(shape))
    target = checked_f32(target, "target", len(shape))
    for axis, s in enumerate(shape):
        expect_dim(target, "target", axis, s, f"the shape of {pred_name}")
    size = pred.size
    weights = None
    if sample_weight is not None:
        if len(shape) == 0:
            raise ValueError(f"sample_weight: {pred_name} is a 0-D array, one element and no batch "
                             "axis to weigh; give it shape (N, ...)")
        weights = _checked_weight(sample_weight, shape[0], f"N = {pred_name}.shape[0]")
    grad = output_array(out, shape, ((pred_name, pred), ("target", target), ("sample_weight", weights)))
    if size == 0:
        return float("nan"), grad
    per_sample = size // shape[0] if weights is not None else 1
    blocks = reduce.grid_for(size)
    partials = scratch("elementwise_loss.partials", (blocks,), np.float64)
    flat = (lambda d: d.reshape(size))
    launcher(kernel, (blocks,), (reduce.THREADS,))(
        flat(grad), partials, flat(pred), flat(target), dummy() if weights is None else weights,
        weights is not None, per_sample, size, np.float32(1.0 / size))
    return reduce.finish(partials, blocks, 1.0 / size), grad


def mse(pred, target, *, sample_weight=None, out=None):
    """(loss, dpred): mean squared error over all elements; sample_weight (N,) weighs each
    sample (a row along the first axis): sum_i w_i mean_j err_ij^2 / N."""
    return _elementwise_loss(_mse, pred, target, "pred", sample_weight, out)


def binary_cross_entropy(logits, target, *, sample_weight=None, out=None):
    """(loss, dlogits): BCE from logits in the stable form, mean over all elements;
    sample_weight (N,) as for mse."""
    return _elementwise_loss(_bce, logits, target, "logits", sample_weight, out)
