"""GPU benchmarks (real GPU only: skipped without one and under the simulator).

    python -m pytest bench/bench_cuda.py --benchmark-only

Every timed function synchronises the device before it returns. Peers: PyTorch CUDA
(fused Adam, the same MLPs, cuBLAS FP32 with TF32 off) when installed with CUDA.
"""

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("GPU benchmarks mean nothing under the CUDA simulator", allow_module_level=True)
try:
    from numba import cuda
except ImportError:
    pytest.skip("numba-cuda is not installed (pip install fastdl[cuda])", allow_module_level=True)
if not cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

from fastdl.benchmarking.cuda_cases import TRAIN_STEP_GOALS, network_name  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402
from fastdl.cuda.fused_mlp import FusedMLP  # noqa: E402

try:
    import torch

    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None

ADAM_PARAMS = 100_000_000
ADAM_BYTES = 28  # per parameter: read p, g, m, v; write p, m, v (float32)


def _torch():
    if torch is None:
        pytest.skip("PyTorch with CUDA is not installed")
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 against FP32
    return torch


def _report(benchmark, **extra):
    benchmark.extra_info["device"] = cuda.get_current_device().name.decode() if isinstance(
        cuda.get_current_device().name, bytes) else str(cuda.get_current_device().name)
    benchmark.extra_info.update(extra)


# ---------------------------------------------------------------- Adam over 100M params
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_adam_100m(benchmark, impl):
    benchmark.group = "adam 100M params"
    rng = np.random.default_rng(0)
    host = rng.standard_normal(ADAM_PARAMS, dtype=np.float32)
    if impl == "fastdl":
        p, g = cuda.to_device(host), cuda.to_device(host * 1e-3)
        m, v = cuda.to_device(np.zeros_like(host)), cuda.to_device(np.zeros_like(host))
        state = {"step": 0}

        def fn():
            state["step"] += 1
            G.adam_step(p, g, m, v, lr=1e-3, step=state["step"])
            cuda.synchronize()
    else:
        t = _torch()
        p = t.nn.Parameter(t.from_numpy(host).cuda())
        p.grad = t.from_numpy(host * 1e-3).cuda()
        opt = t.optim.Adam([p], lr=1e-3, fused=True)

        def fn():
            opt.step()
            t.cuda.synchronize()

    benchmark.pedantic(fn, rounds=20, iterations=1, warmup_rounds=2)
    _report(benchmark, **{"TB/s effective": round(ADAM_PARAMS * ADAM_BYTES / benchmark.stats.stats.median / 1e12, 3)})


# ---------------------------------------------------------------- MLP training steps
def _data(n, k, c, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k), dtype=np.float32), rng.integers(0, c, n).astype(np.int64)


class LayerwiseMLP:
    """The per-layer path (any width): dense kernels over views of one flat buffer."""

    def __init__(self, sizes, activation="relu"):
        self.sizes = sizes
        self.activation = activation
        self.woff, self.boff, o = [], [], 0
        for din, dout in zip(sizes[:-1], sizes[1:]):
            self.woff.append(o)
            o += din * dout
            self.boff.append(o)
            o += dout
        self.n_params = o

    def views(self, flat):
        return [(flat[wo:wo + din * dout].reshape(din, dout), flat[bo:bo + dout])
                for (din, dout), wo, bo in zip(zip(self.sizes[:-1], self.sizes[1:]), self.woff, self.boff)]

    def step(self, x, t, params, grads, adam_state):
        h, saved = x, []
        pv, gv = self.views(params), self.views(grads)
        for i, (w, b) in enumerate(pv):
            act = self.activation if i < len(pv) - 1 else "linear"
            y = G.dense_forward(h, w, b, act)
            saved.append((h, y, act))
            h = y
        loss, d = G.softmax_cross_entropy(h, t)
        for i in range(len(pv) - 1, -1, -1):
            hin, y, act = saved[i]
            dx, dw, db = G.dense_backward(d, hin, pv[i][0], act, y=None if act == "linear" else y, need_dx=i > 0)
            gv[i][0].copy_to_device(dw)
            gv[i][1].copy_to_device(db)
            d = dx
        adam_state["step"] += 1
        G.adam_step(params, grads, adam_state["m"], adam_state["v"], lr=1e-3, step=adam_state["step"])
        return loss


def _torch_step(sizes, batch):
    t = _torch()
    layers = []
    for i, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(t.nn.Linear(din, dout))
        if i < len(sizes) - 2:
            layers.append(t.nn.ReLU())
    model = t.nn.Sequential(*layers).cuda()
    opt = t.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    xh, yh = _data(batch, sizes[0], sizes[-1])
    x, y = t.from_numpy(xh).cuda(), t.from_numpy(yh).cuda()

    def fn():
        opt.zero_grad(set_to_none=True)
        loss = t.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        t.cuda.synchronize()
    return fn


# The goal networks, shared with the verification run's measurements (tools/gpu_goals.py).
TRAIN_CASES = TRAIN_STEP_GOALS


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("sizes,batch", TRAIN_CASES, ids=[f"{network_name(s)} b{b}" for s, b in TRAIN_CASES])
def bench_train_step(benchmark, sizes, batch, impl):
    benchmark.group = f"train step {'-'.join(map(str, sizes))} batch {batch}"
    if impl == "torch":
        fn = _torch_step(sizes, batch)
    else:
        xh, yh = _data(batch, sizes[0], sizes[-1])
        x, t = cuda.to_device(xh), cuda.to_device(yh)
        rng = np.random.default_rng(1)
        fused = max(sizes[1:]) <= 128
        mlp = FusedMLP(sizes, "relu", batch=batch) if fused else LayerwiseMLP(sizes)
        params = mlp.init_params(rng) if fused else cuda.to_device(
            rng.uniform(-0.03, 0.03, mlp.n_params).astype(np.float32))
        grads = cuda.device_array(mlp.n_params, np.float32)
        state = {"step": 0, "m": cuda.to_device(np.zeros(mlp.n_params, np.float32)),
                 "v": cuda.to_device(np.zeros(mlp.n_params, np.float32))}

        def fn():
            if fused:
                loss, d = G.softmax_cross_entropy(mlp.forward(x, params), t)
                mlp.backward(d, x, params, grads)
                state["step"] += 1
                G.adam_step(params, grads, state["m"], state["v"], lr=1e-3, step=state["step"])
            else:
                mlp.step(x, t, params, grads, state)
            cuda.synchronize()
        benchmark.extra_info["path"] = "fused MLP" if fused else "per-layer kernels"
    benchmark.pedantic(fn, rounds=30 if batch < 4096 else 10, iterations=1, warmup_rounds=3)
    _report(benchmark, **{"ms/step": round(benchmark.stats.stats.median * 1e3, 3)})


# ---------------------------------------------------------------- dense at 4096^3
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_dense_fwd_bwd_4096(benchmark, impl):
    benchmark.group = "dense relu forward+backward 4096^3 FP32"
    n = 4096
    rng = np.random.default_rng(0)
    xh = rng.standard_normal((n, n), dtype=np.float32)
    wh = (rng.standard_normal((n, n)) / 64).astype(np.float32)
    bh = np.zeros(n, np.float32)
    if impl == "fastdl":
        x, w, b, dy = (cuda.to_device(a) for a in (xh, wh, bh, xh))

        def fn():
            y = G.dense_forward(x, w, b, "relu")
            G.dense_backward(dy, x, w, "relu", y=y)
            cuda.synchronize()
    else:
        t = _torch()
        x = t.from_numpy(xh).cuda()
        lin = t.nn.Linear(n, n).cuda()
        dy = t.from_numpy(xh).cuda()
        x.requires_grad_(True)

        def fn():
            y = t.relu(lin(x))
            y.backward(dy)
            t.cuda.synchronize()
    benchmark.pedantic(fn, rounds=10, iterations=1, warmup_rounds=2)
    flops = 3 * 2 * n ** 3  # forward, dx, dw
    _report(benchmark, **{"TFLOP/s": round(flops / benchmark.stats.stats.median / 1e12, 2)})
