"""Fused Adam / AdamW steps over one flat 10M-parameter buffer: fastdl vs torch.optim.

    pytest bench/bench_optim.py --benchmark-only -p no:cacheprovider

The step is memory-bound: per parameter it reads params, grads, exp_avg, exp_avg_sq and
writes params, exp_avg, exp_avg_sq (7 floats, 28 bytes). extra_info carries the
effective GB/s; the `copy` group measures the machine's plain copy bandwidth (np.copyto
of a 40 MB array, 8 bytes moved per float) for context. Each case checks one step
against the float64 reference before it is timed.
"""

import numpy as np
import pytest

from fastdl import kernels as K

from conftest import THREADS, torch

N = 10_000_000
HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
BYTES_PER_PARAM = 7 * 4


def adam_reference(p, g, m, v, *, lr, step, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam/AdamW step in float64 (new params, exp_avg, exp_avg_sq)."""
    p, g, m, v = (a.astype(np.float64) for a in (p, g, m, v))
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr / (1 - beta1**step) * m / (np.sqrt(v) / np.sqrt(1 - beta2**step) + eps)
    return p, m, v


def buffers(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(N, dtype=np.float32)
    g = rng.standard_normal(N, dtype=np.float32)
    m = (0.1 * rng.standard_normal(N, dtype=np.float32)).astype(np.float32)
    v = rng.uniform(0.0, 0.01, N).astype(np.float32)
    return p, g, m, v


def check(got, expected, what):
    for a, e, name in zip(got, expected, ("params", "exp_avg", "exp_avg_sq")):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, err_msg=f"{what}: {name}")


def gbps(benchmark):
    benchmark.extra_info["GB/s"] = round(BYTES_PER_PARAM * N / benchmark.stats.stats.median / 1e9, 2)
    benchmark.extra_info["threads"] = THREADS


IMPLS = ["fastdl", "torch_fused", "torch_foreach"]


@pytest.mark.benchmark(group="adam step, 10M params")
@pytest.mark.parametrize("impl", IMPLS)
def bench_adam_step_10m(benchmark, impl):
    run_adam(benchmark, impl, decoupled=False)


@pytest.mark.benchmark(group="adamw step, 10M params")
@pytest.mark.parametrize("impl", IMPLS)
def bench_adamw_step_10m(benchmark, impl):
    run_adam(benchmark, impl, decoupled=True)


def run_adam(benchmark, impl, decoupled):
    wd = 1e-2 if decoupled else 0.0
    p, g, m, v = buffers()
    expected = adam_reference(p, g, m, v, step=1, weight_decay=wd, decoupled=decoupled, **HYPER)
    if impl == "fastdl":
        kw = dict(HYPER, step=1, weight_decay=wd, decoupled=decoupled)
        fn = lambda: K.adam_step(p, g, m, v, **kw)  # noqa: E731
        fn()
        check((p, m, v), expected, "fastdl")
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tp = torch.nn.Parameter(torch.from_numpy(p))
        tp.grad = torch.from_numpy(g)
        opt_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        opt = opt_cls([tp], lr=HYPER["lr"], betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["eps"],
                      weight_decay=wd, **({"fused": True} if impl == "torch_fused" else {"foreach": True}))
        # start from the same state as the others
        opt.state[tp] = {"step": torch.tensor(0.0), "exp_avg": torch.from_numpy(m),
                         "exp_avg_sq": torch.from_numpy(v)}
        fn = opt.step
        fn()
        check((p, m, v), expected, impl)  # the tensors share memory with the numpy arrays
    benchmark(fn)
    gbps(benchmark)


@pytest.mark.benchmark(group="copy bandwidth (40 MB, np.copyto)")
def bench_copy_bandwidth(benchmark):
    src = np.random.default_rng(0).standard_normal(N, dtype=np.float32)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)
    np.testing.assert_array_equal(dst, src)
    benchmark.extra_info["GB/s"] = round(2 * src.nbytes / benchmark.stats.stats.median / 1e9, 2)
