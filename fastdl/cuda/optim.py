"""Fused optimizer steps on the GPU: one launch per step over the whole flat parameter
buffer (every layer at once), grid-stride, with the bias corrections and learning-rate
schedules computed on the host. PyTorch's formulas (torch.optim) unless stated.

Weight decay and L1 (g += weight_decay * p + l1 * sign(p)) apply inside
`decay_segments` ([start, stop) rows of an int64 (S, 2) array; None means everywhere),
which is how biases are excluded. AdamW (decoupled=True) shrinks p by lr * weight_decay
instead of adding to the gradient.

Complements such as 1 - beta2 are computed on the host in float64: in float32 on the
device, 1 - float32(0.999) loses four digits.
"""

import math

import numpy as np

from fastdl._C import check_optimizer_options
from fastdl._scalars import integer, real
from fastdl.cuda import require
from fastdl.cuda.arrays import blocks, checked, checked_f32, expect_dim, launcher

cuda = require()
THREADS = 256
MAX_BLOCKS = 132 * 16  # enough to fill an H100 (132 SMs); grid-stride beyond that
ZERO = np.float32(0.0)
ONE = np.float32(1.0)


@cuda.jit(device=True)
def decays(i, segs, nseg):
    if nseg < 0:
        return True
    for s in range(nseg):
        if segs[s, 0] <= i and i < segs[s, 1]:
            return True
    return False


@cuda.jit(device=True)
def regularised(g, p, wd, l1):
    if l1 != ZERO:
        g += l1 * (ONE if p > ZERO else (-ONE if p < ZERO else ZERO))
    return g + wd * p


@cuda.jit
def _sgd(params, grads, buf, n, lr, momentum, one_m_dampening, wd, l1, nesterov, first_step,
         classic, segs, nseg):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = params[i]
        g = grads[i]
        if decays(i, segs, nseg):
            g = regularised(g, p, wd, l1)
        if classic:  # v = mu * v - lr * g; p += v
            v = -lr * g if first_step else momentum * buf[i] - lr * g
            buf[i] = v
            params[i] = p + v
        else:
            if momentum != ZERO:
                b = g if first_step else momentum * buf[i] + one_m_dampening * g
                buf[i] = b
                g = g + momentum * b if nesterov else b
            params[i] = p - lr * g


@cuda.jit
def _adagrad(params, grads, sum_sq, n, clr, wd, l1, eps, segs, nseg):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = params[i]
        g = grads[i]
        if decays(i, segs, nseg):
            g = regularised(g, p, wd, l1)
        s = sum_sq[i] + g * g
        sum_sq[i] = s
        params[i] = p - clr * g / (math.sqrt(s) + eps)


@cuda.jit
def _rmsprop(params, grads, square_avg, momentum_buf, grad_avg, n, lr, alpha, one_m_alpha, eps, wd, l1,
             momentum, centered, segs, nseg):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = params[i]
        g = grads[i]
        if decays(i, segs, nseg):
            g = regularised(g, p, wd, l1)
        sq = alpha * square_avg[i] + one_m_alpha * g * g
        square_avg[i] = sq
        if centered:
            ga = alpha * grad_avg[i] + one_m_alpha * g
            grad_avg[i] = ga
            avg = math.sqrt(sq - ga * ga) + eps
        else:
            avg = math.sqrt(sq) + eps
        if momentum > ZERO:
            b = momentum * momentum_buf[i] + g / avg
            momentum_buf[i] = b
            params[i] = p - lr * b
        else:
            params[i] = p - lr * g / avg


@cuda.jit
def _adadelta(params, grads, square_avg, acc_delta, n, lr, rho, one_m_rho, eps, wd, l1, segs, nseg):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = params[i]
        g = grads[i]
        if decays(i, segs, nseg):
            g = regularised(g, p, wd, l1)
        sq = rho * square_avg[i] + one_m_rho * g * g
        square_avg[i] = sq
        delta = math.sqrt(acc_delta[i] + eps) / math.sqrt(sq + eps) * g
        acc_delta[i] = rho * acc_delta[i] + one_m_rho * delta * delta
        params[i] = p - lr * delta


@cuda.jit
def _adam(params, grads, exp_avg, exp_avg_sq, n, lr, beta1, one_m_beta1, beta2, one_m_beta2, eps, wd,
          l1, decoupled, step_size, inv_sqrt_bc2, segs, nseg):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = params[i]
        g = grads[i]
        if decays(i, segs, nseg):
            if decoupled:
                g = regularised(g, p, ZERO, l1)
                p = p * (ONE - lr * wd)
            else:
                g = regularised(g, p, wd, l1)
        m = beta1 * exp_avg[i] + one_m_beta1 * g
        v = beta2 * exp_avg_sq[i] + one_m_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        params[i] = p - step_size * m / (math.sqrt(v) * inv_sqrt_bc2 + eps)


@cuda.jit
def _max_norm(w, K, M, max_norm):
    sh = cuda.shared.array((8, 32), np.float32)
    tx = cuda.threadIdx.x % 32
    ty = cuda.threadIdx.x // 32
    col = cuda.blockIdx.x * 32 + tx
    s = ZERO
    if col < M:
        for k in range(ty, K, 8):
            s += w[k, col] * w[k, col]
    sh[ty, tx] = s
    cuda.syncthreads()
    if col < M:
        t = ZERO
        for r in range(8):
            t += sh[r, tx]
        norm = math.sqrt(t)
        if norm > max_norm:  # torch.renorm's rule
            scale = max_norm / (norm + np.float32(1e-7))
            for k in range(ty, K, 8):
                w[k, col] = w[k, col] * scale


def _buffers(params, grads, **state):
    params = checked_f32(params, "params", 1, "(the flat parameter buffer)")
    n = params.shape[0]
    out = [params]
    for name, a in (("grads", grads), *state.items()):
        if a is None:
            out.append(None)
            continue
        d = checked_f32(a, name, 1, "of the parameters' length")
        expect_dim(d, name, 0, n, "len(params)")
        out.append(d)
    return n, out


_NO_SEGS = None
_SEGMENTS_ON_DEVICE: dict = {}  # (table bytes, n) -> its device copy


def _segments(decay_segments, n):
    """(device int64 (S, 2) array, S), with S = -1 for 'everywhere'. A numpy array is
    checked and copied to the device the first time its contents are seen, then reused."""
    global _NO_SEGS
    if decay_segments is None:
        if _NO_SEGS is None:
            _NO_SEGS = cuda.to_device(np.zeros((1, 2), dtype=np.int64))
        return _NO_SEGS, -1
    if isinstance(decay_segments, np.ndarray):
        if decay_segments.dtype != np.int64 or decay_segments.ndim != 2 or decay_segments.shape[1] != 2:
            raise ValueError(f"decay_segments: expected an int64 array of shape (S, 2), got "
                             f"{decay_segments.dtype} {decay_segments.shape}")
        key = (decay_segments.tobytes(), n)
        segs = _SEGMENTS_ON_DEVICE.get(key)
        if segs is None:  # checked and copied once per distinct table (a network has one)
            bad = (decay_segments[:, 0] < 0) | (decay_segments[:, 0] > decay_segments[:, 1]) | (decay_segments[:, 1] > n)
            if bad.any():
                r = int(np.argmax(bad))
                raise ValueError(f"decay_segments: row {r} = {decay_segments[r].tolist()} is not a range "
                                 f"[start, stop) inside [0, {n}]")
            if len(_SEGMENTS_ON_DEVICE) >= 64:
                _SEGMENTS_ON_DEVICE.clear()
            segs = _SEGMENTS_ON_DEVICE[key] = cuda.to_device(np.ascontiguousarray(decay_segments))
    else:
        segs = checked(decay_segments, "decay_segments", 2, "of shape (S, 2)", np.int64)
        expect_dim(segs, "decay_segments", 1, 2, "[start, stop) rows")
    if segs.shape[0] == 0:
        return _segments(None, n)[0], 0
    return segs, segs.shape[0]


def _launch(kernel, n, *args):
    if n:
        launcher(kernel, (min(blocks(n, THREADS), MAX_BLOCKS),), (THREADS,))(*args)


def _f(v):
    return np.float32(v)


def _hyper(kind, **values):
    """The hyperparameters as float32-range Python floats (fastdl._scalars' type rules),
    checked by the CPU steps' own rules (fastdl._C.check_optimizer_options, csrc's
    check_options) before anything is launched: one place for each rule."""
    out = {name: (bool(v) if name == "nesterov" else real(name, v, float32=True)) for name, v in values.items()}
    check_optimizer_options(kind, **out)
    return out


def _step(step):
    return integer("step", step, 1, 2 ** 63 - 1)


def sgd_step(params, grads, momentum_buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, first_step=False, classic=False, l1=0.0, decay_segments=None):
    h = _hyper("sgd", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, l1=l1,
               nesterov=nesterov)
    lr, momentum, dampening, weight_decay, l1 = h["lr"], h["momentum"], h["dampening"], h["weight_decay"], h["l1"]
    if (momentum != 0 or classic) and momentum_buf is None:
        raise ValueError("momentum_buf: a momentum buffer is needed when momentum != 0 (or classic=True)")
    n, (p, g, buf) = _buffers(params, grads, momentum_buf=momentum_buf)
    segs, nseg = _segments(decay_segments, n)
    _launch(_sgd, n, p, g, p if buf is None else buf, n, _f(lr), _f(momentum), _f(1.0 - dampening),
            _f(weight_decay), _f(l1), bool(nesterov), bool(first_step), bool(classic), segs, nseg)


def adagrad_step(params, grads, sum_sq, *, lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 l1=0.0, decay_segments=None):
    step = _step(step)
    h = _hyper("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, l1=l1)
    lr, lr_decay, weight_decay, eps, l1 = h["lr"], h["lr_decay"], h["weight_decay"], h["eps"], h["l1"]
    n, (p, g, s) = _buffers(params, grads, sum_sq=sum_sq)
    segs, nseg = _segments(decay_segments, n)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    _launch(_adagrad, n, p, g, s, n, _f(clr), _f(weight_decay), _f(l1), _f(eps), segs, nseg)


def rmsprop_step(params, grads, square_avg, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, centered=False, momentum_buf=None, grad_avg=None, l1=0.0,
                 decay_segments=None):
    h = _hyper("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, l1=l1)
    lr, alpha, eps, weight_decay, momentum, l1 = (h[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum",
                                                                  "l1"))
    if momentum > 0 and momentum_buf is None:
        raise ValueError("momentum_buf: needed when momentum > 0")
    if centered and grad_avg is None:
        raise ValueError("grad_avg: needed when centered=True")
    n, (p, g, sq, mb, ga) = _buffers(params, grads, square_avg=square_avg, momentum_buf=momentum_buf,
                                     grad_avg=grad_avg)
    segs, nseg = _segments(decay_segments, n)
    _launch(_rmsprop, n, p, g, sq, p if mb is None else mb, p if ga is None else ga, n, _f(lr), _f(alpha),
            _f(1.0 - alpha), _f(eps), _f(weight_decay), _f(l1), _f(momentum), bool(centered), segs, nseg)


def adadelta_step(params, grads, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6,
                  weight_decay=0.0, l1=0.0, decay_segments=None):
    h = _hyper("adadelta", lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, l1=l1)
    lr, rho, eps, weight_decay, l1 = h["lr"], h["rho"], h["eps"], h["weight_decay"], h["l1"]
    n, (p, g, sq, ad) = _buffers(params, grads, square_avg=square_avg, acc_delta=acc_delta)
    segs, nseg = _segments(decay_segments, n)
    _launch(_adadelta, n, p, g, sq, ad, n, _f(lr), _f(rho), _f(1.0 - rho), _f(eps), _f(weight_decay), _f(l1), segs, nseg)


def adam_step(params, grads, exp_avg, exp_avg_sq, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False, l1=0.0, decay_segments=None):
    step = _step(step)
    h = _hyper("adam", lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, l1=l1)
    lr, beta1, beta2, eps, weight_decay, l1 = (h[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "l1"))
    n, (p, g, m, v) = _buffers(params, grads, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    segs, nseg = _segments(decay_segments, n)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    _launch(_adam, n, p, g, m, v, n, _f(lr), _f(beta1), _f(1.0 - beta1), _f(beta2), _f(1.0 - beta2), _f(eps), _f(weight_decay), _f(l1),
            bool(decoupled), _f(lr / bc1), _f(1.0 / math.sqrt(bc2)), segs, nseg)


def max_norm_(w, max_norm):
    """Rescales each column of w (K, M) to L2 norm <= max_norm, in place."""
    w = checked_f32(w, "w", 2, "of shape (K, M)")
    max_norm = real("max_norm", max_norm, 0.0, lo_open=True, float32=True)
    k, m = w.shape
    if m:
        launcher(_max_norm, (blocks(m, 32),), (256,))(w, k, m, _f(max_norm))
    return w
