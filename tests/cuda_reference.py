"""Shared by the GPU kernel tests: the module-level skip, device helpers and float64 numpy
references for the kernels that have no CPU version in this tree yet (Philox dropout,
maxout, losses, batch norm, optimizers). The dense references live in reference.py."""

import collections
import math
import os

import numpy as np
import pytest


def require_gpu_or_simulator():
    """numba.cuda, or a module-level skip when neither a GPU nor the simulator
    (NUMBA_ENABLE_CUDASIM=1, set before numba is imported) can run the kernels."""
    try:
        from numba import cuda
    except ImportError:
        pytest.skip("numba-cuda is not installed (pip install fastdl[cuda])", allow_module_level=True)
    if not cuda.is_available():
        pytest.skip("no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 to use Numba's simulator",
                    allow_module_level=True)
    return cuda


def count_device_traffic(monkeypatch):
    """A Counter of what the process asks of the device while the test runs: "launch"
    (kernel launches), "to_host" and "to_device" (copies between host and device
    memory, which wait for the device), "on_device" (device-to-device copies). Works on
    the simulator and on a GPU alike."""
    import fastdl.cuda

    counts = collections.Counter()

    if fastdl.cuda.is_simulator():
        from numba.cuda.simulator import kernel as sim_kernel
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as array_class

        original_call = sim_kernel.FakeCUDAKernel.__call__

        def launch(self, *args):
            # device functions and calls from inside a running kernel are not launches
            if not self._device and sim_kernel._kernel_context is None:
                counts["launch"] += 1
            return original_call(self, *args)

        monkeypatch.setattr(sim_kernel.FakeCUDAKernel, "__call__", launch)
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArrayBase as array_class
        from numba.cuda.dispatcher import _LaunchConfiguration

        original_call = _LaunchConfiguration.__call__

        def launch(self, *args):
            counts["launch"] += 1
            return original_call(self, *args)

        monkeypatch.setattr(_LaunchConfiguration, "__call__", launch)

    original_to_host, original_to_device = array_class.copy_to_host, array_class.copy_to_device

    def to_host(self, *args, **kwargs):
        counts["to_host"] += 1
        return original_to_host(self, *args, **kwargs)

    def to_device(self, ary, *args, **kwargs):
        on_device = hasattr(ary, "__cuda_array_interface__") or getattr(ary, "__cuda_ndarray__", False)
        counts["on_device" if on_device else "to_device"] += 1
        return original_to_device(self, ary, *args, **kwargs)

    monkeypatch.setattr(array_class, "copy_to_host", to_host)
    monkeypatch.setattr(array_class, "copy_to_device", to_device)
    return counts


#: FASTDL_CUDA_REAL_SIZES=1 runs test_cuda_real_sizes.py at the sizes networks use (for a
#: GPU: the verification run sets it); otherwise at small stand-ins the simulator can run.
REAL_SIZES = os.environ.get("FASTDL_CUDA_REAL_SIZES") == "1"

#: Warnings numba emits on tiny test launches (low occupancy, host copies): not errors here.
FILTERS = ["ignore::numba.core.errors.NumbaPerformanceWarning"]


def to_dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return None if d is None else d.copy_to_host()


# ---- Philox-4x32-10 and the dropout keep rule (docs/kernels.md), vectorised over uint64 ----
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    c = [np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3)]
    k0, k1 = np.asarray(k0, dtype=np.uint64), np.asarray(k1, dtype=np.uint64)
    for _ in range(10):
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _MASK]
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c


def keep_mask(size, p, seed, step, stream=0):
    """Boolean keep decisions for flat elements 0..size-1."""
    i = np.arange(size, dtype=np.uint64)
    r = philox4x32_10((i >> np.uint64(2)) & _MASK, i >> np.uint64(34), np.uint64(step), np.uint64(stream),
                      np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32))
    w = np.choose((i & np.uint64(3)).astype(np.int64), r)
    u = (w >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    return u >= p


def pack(keep):
    return np.packbits(keep.astype(np.uint8), bitorder="little")


# ---- maxout ----
def maxout(z, k):
    n, w = z.shape
    g = z.reshape(n, w // k, k)
    return g.max(-1), g.argmax(-1).astype(np.uint8)


def maxout_grad(dy, argmax, k):
    n, m = dy.shape
    dz = np.zeros((n, m, k))
    np.put_along_axis(dz, argmax[..., None].astype(np.int64), dy[..., None].astype(np.float64), -1)
    return dz.reshape(n, m * k)


# ---- losses ----
def softmax_cross_entropy(logits, target, eps=0.0):
    x = logits.astype(np.float64)
    n, c = x.shape
    lp = x - x.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    if target.ndim == 1:
        q = np.zeros((n, c))
        q[np.arange(n), target] = 1.0
    else:
        q = target.astype(np.float64)
    q = (1 - eps) * q + eps / c
    loss = -(q * lp).sum() / n
    grad = (np.exp(lp) * q.sum(1, keepdims=True) - q) / n
    return loss, grad


def bce_with_logits(x, t):
    x, t = x.astype(np.float64), t.astype(np.float64)
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return loss.mean(), (0.5 * (1 + np.tanh(0.5 * x)) - t) / x.size


# ---- batch norm ----
def batchnorm_train(x, gamma, beta, rm, rv, momentum=0.1, eps=1e-5):
    x = x.astype(np.float64)
    n = x.shape[0]
    mean, var = x.mean(0), x.var(0)
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * invstd * gamma + beta
    return y, mean, invstd, (1 - momentum) * rm + momentum * mean, (1 - momentum) * rv + momentum * var * n / (n - 1)


def batchnorm_backward(dy, x, gamma, mean, invstd):
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    xhat = (x - mean) * invstd
    dbeta = dy.sum(0)
    dgamma = (dy * xhat).sum(0)
    dx = gamma * invstd * (dy - dbeta / len(x) - xhat * dgamma / len(x))
    return dx, dgamma, dbeta


# ---- optimizers (torch.optim's formulas, float64) ----
def decay_mask(n, segments):
    if segments is None:
        return np.ones(n, dtype=bool)
    m = np.zeros(n, dtype=bool)
    for a, b in segments:
        m[a:b] = True
    return m


def regularise(g, p, mask, wd, l1):
    return g + mask * (wd * p + l1 * np.sign(p))


def adam(p, g, m, v, *, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
         l1=0.0, segments=None):
    mask = decay_mask(len(p), segments)
    if decoupled:
        g = regularise(g, p, mask, 0.0, l1)
        p = p * np.where(mask, 1 - lr * weight_decay, 1.0)
    else:
        g = regularise(g, p, mask, weight_decay, l1)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
    return p - lr / (1 - beta1 ** step) * m / denom, m, v


def sgd(p, g, buf, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, first_step=False,
        classic=False, l1=0.0, segments=None):
    g = regularise(g, p, decay_mask(len(p), segments), weight_decay, l1)
    if classic:
        buf = (0 if first_step else momentum * buf) - lr * g
        return p + buf, buf
    if momentum:
        buf = g if first_step else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adagrad(p, g, s, *, lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10, l1=0.0, segments=None):
    g = regularise(g, p, decay_mask(len(p), segments), weight_decay, l1)
    s = s + g * g
    return p - lr / (1 + (step - 1) * lr_decay) * g / (np.sqrt(s) + eps), s


def rmsprop(p, g, sq, mb, ga, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            l1=0.0, segments=None):
    g = regularise(g, p, decay_mask(len(p), segments), weight_decay, l1)
    sq = alpha * sq + (1 - alpha) * g * g
    if centered:
        ga = alpha * ga + (1 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        mb = momentum * mb + g / avg
        return p - lr * mb, sq, mb, ga
    return p - lr * g / avg, sq, mb, ga


def adadelta(p, g, sq, acc, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, l1=0.0, segments=None):
    g = regularise(g, p, decay_mask(len(p), segments), weight_decay, l1)
    sq = rho * sq + (1 - rho) * g * g
    delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
    acc = rho * acc + (1 - rho) * delta * delta
    return p - lr * delta, sq, acc
