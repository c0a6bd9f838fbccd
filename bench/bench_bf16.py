"""precision="bf16" against fp32 and against PyTorch's bf16, interleaved in one process.

    pytest bench/bench_bf16.py --benchmark-only --benchmark-group-by=group -s

Each case builds every implementation, checks it (against a float64 reference, or a
training step's loss against the fp32 one), then times them all interleaved, rotating
their order, median of the rounds (fastdl.benchmarking.timing), so load from elsewhere on
the machine hits them alike; the ratios to fastdl bf16 go to extra_info and are printed.
pytest-benchmark itself times fastdl bf16, the headline. Needs a CPU with bf16 units
(AMX or AVX512-BF16) to mean anything: elsewhere bf16 is the portable path and the
cases are skipped. Goals (Xeon with AMX): GEMM 2048^3 >= 0.9x torch's bf16 matmul;
train_step 784-4096-4096-10 b256 >= 3x fastdl fp32 and >= 1.5x torch autocast;
784-1024-1024-10 b128 >= 1.5x torch autocast (docs/benchmarks.md).
"""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K
from fastdl.benchmarking.timing import Impl, time_interleaved, validate

from bench_train_step import fastdl_model, torch_twin
from conftest import torch

ROUNDS = 9


def bf16_units():
    return fastdl.get_isa() in ("amx", "avx512_bf16")


@pytest.fixture(autouse=True)
def need_bf16_units():
    if not bf16_units():
        pytest.skip(f"no bf16 units on this CPU (isa {fastdl.get_isa()}): bf16 runs the portable path")


def interleaved(benchmark, impls, headline, work=None, unit="GFLOP/s"):
    """Checks each impl (also its warm-up), then times them interleaved; records each
    median, its rate and its ratio to headline."""
    for impl in impls:
        validate(impl)
    res = time_interleaved(impls, rounds=ROUNDS, target_s=0.1)
    base = res[headline].median_s
    lines = []
    for name, t in res.items():
        benchmark.extra_info[f"{name} ms"] = round(t.median_s * 1e3, 3)
        benchmark.extra_info[f"{name} / {headline}"] = round(t.median_s / base, 2)
        rate = f"  {work / t.median_s / 1e9:8.1f} {unit}" if work else ""
        if work:
            benchmark.extra_info[f"{name} {unit}"] = round(work / t.median_s / 1e9, 1)
        lines.append(f"    {name:22s} {t.median_s * 1e3:9.3f} ms{rate}  {t.median_s / base:5.2f}x {headline}'s time")
    print(f"\n  {benchmark.group} (isa {fastdl.get_isa()}, median of {ROUNDS} interleaved rounds):")
    print("\n".join(lines))
    fn = next(i.fn for i in impls if i.name == headline)
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)


# ---------------------------------------------------------------- GEMM


@pytest.mark.parametrize("n", [2048])
def bench_gemm_bf16(benchmark, n):
    benchmark.group = f"gemm {n}^3 bf16"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    rows = np.arange(0, n, 64)
    ref = a[rows].astype(np.float64) @ b
    tol = 2.0**-7 * np.abs(a[rows]).astype(np.float64) @ np.abs(b) + 1e-3

    def check(c, bf16_out=False):  # torch's bf16 outputs are rounded once more: 2**-8
        assert np.all(np.abs(np.asarray(c, np.float64)[rows] - ref) <= tol + bf16_out * 2.0**-8 * np.abs(ref))

    c = np.empty((n, n), np.float32)
    impls = [Impl("fastdl bf16", lambda: K.matmul(a, b, out=c, precision="bf16"), check),
             Impl("fastdl fp32", lambda: K.matmul(a, b, out=c), check)]
    if torch is not None:
        ta, tb = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
        impls.append(Impl("torch bf16 matmul", lambda: torch.matmul(ta, tb),
                          lambda r: check(r.float().numpy(), bf16_out=True)))
    interleaved(benchmark, impls, "fastdl bf16", 2.0 * n**3)


# ---------------------------------------------------------------- dense layers

DENSE_SHAPES = [(128, 784, 1024), (128, 1024, 1024), (256, 4096, 4096)]


def _dense_data(n, k, m):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    return x, w, b, dy


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def bench_dense_forward_bf16(benchmark, shape):
    n, k, m = shape
    benchmark.group = f"dense_forward relu {n}x{k}x{m} bf16"
    x, w, b, _ = _dense_data(n, k, m)
    ref = np.maximum(x.astype(np.float64) @ w + b, 0)
    tol = 2.0**-7 * (np.abs(x).astype(np.float64) @ np.abs(w)) + 1e-3

    def check(y, bf16_out=False):  # autocast's bf16 outputs are rounded once more: 2**-8
        assert np.all(np.abs(np.asarray(y, np.float64) - ref) <= tol + bf16_out * 2.0**-8 * np.abs(ref))

    y = np.empty((n, m), np.float32)
    impls = [Impl("fastdl bf16", lambda: K.dense_forward(x, w, b, "relu", out=y, precision="bf16"), check),
             Impl("fastdl fp32", lambda: K.dense_forward(x, w, b, "relu", out=y), check)]
    if torch is not None:
        tx, tw, tb = map(torch.from_numpy, (x, w, b))
        impls.append(Impl("torch fp32", lambda: torch.relu(torch.addmm(tb, tx, tw)), lambda r: check(r.numpy())))

        def autocast():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.relu(torch.addmm(tb, tx, tw))

        impls.append(Impl("torch autocast", autocast, lambda r: check(r.float().numpy(), bf16_out=True)))
    interleaved(benchmark, impls, "fastdl bf16", 2.0 * n * k * m)


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def bench_dense_backward_bf16(benchmark, shape):
    n, k, m = shape
    benchmark.group = f"dense_backward relu {n}x{k}x{m} bf16"
    x, w, b, dy = _dense_data(n, k, m)
    y = K.dense_forward(x, w, b, "relu")
    dz = dy.astype(np.float64) * (y > 0)
    dw_ref = x.T.astype(np.float64) @ dz
    tol = 2.0**-7 * (np.abs(x.T).astype(np.float64) @ np.abs(dz)) + 1e-3

    def check(r, bf16_out=False):  # autocast's bf16 outputs are rounded once more: 2**-8
        assert np.all(np.abs(np.asarray(r[1], np.float64) - dw_ref) <= tol + bf16_out * 2.0**-8 * np.abs(dw_ref))

    out = (np.empty((n, k), np.float32), np.empty((k, m), np.float32), np.empty(m, np.float32))
    impls = [Impl("fastdl bf16", lambda: K.dense_backward(dy, x, w, "relu", y=y, out=out, precision="bf16"),
                  check),
             Impl("fastdl fp32", lambda: K.dense_backward(dy, x, w, "relu", y=y, out=out), check)]
    if torch is not None:
        tdz = torch.from_numpy(dz.astype(np.float32))
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)

        def eager():  # what autograd runs for addmm + relu: dz, then dx, dw, db
            return tdz @ tw.T, tx.T @ tdz, tdz.sum(0)

        def autocast():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.mm(tdz, tw.T), torch.mm(tx.T, tdz), tdz.sum(0)

        impls.append(Impl("torch fp32", eager, lambda r: check([t.numpy() for t in r])))
        impls.append(Impl("torch autocast", autocast,
                          lambda r: check([t.float().numpy() for t in r], bf16_out=True)))
    interleaved(benchmark, impls, "fastdl bf16", 4.0 * n * k * m)


# ---------------------------------------------------------------- training steps

CASES = {
    "784-1024-1024-10 relu b128 adam": ([784, 1024, 1024, 10], 128),
    "784-4096-4096-10 relu b256 adam": ([784, 4096, 4096, 10], 256),
    "784-64x4-10 relu b32 adam": ([784, 64, 64, 64, 64, 10], 32),
}


@pytest.mark.parametrize("case", list(CASES))
def bench_train_step_bf16(benchmark, case):
    widths, n = CASES[case]
    benchmark.group = f"train_step {case} bf16"
    rng = np.random.default_rng(1)
    x = rng.random((n, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], n)
    models = {p: fastdl_model(widths, p) for p in ("bf16", "fp32")}
    first = models["fp32"].train_step(x, y)

    def first_loss(fn, rel):
        def check():  # the same initial weights: the first loss is fp32's (bf16: within 2%)
            loss = fn()
            assert abs(loss - first) <= rel * abs(first), (loss, first)
        return check

    # (Each validation is also the first step, which allocates the per-batch-size buffers.)
    bf16_step = lambda: models["bf16"].train_step(x, y)  # noqa: E731
    impls = [Impl("fastdl bf16", bf16_step, validate=first_loss(bf16_step, 0.02)),
             Impl("fastdl fp32", lambda: models["fp32"].train_step(x, y))]
    if torch is not None:
        for name, cast in (("torch fp32", False), ("torch autocast", True)):
            tmodel = torch_twin(fastdl_model(widths, "fp32"))
            opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)

            def step(tmodel=tmodel, opt=opt, cast=cast):
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cast):
                    loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
                loss.backward()
                opt.step()
                return loss.item()

            impls.append(Impl(name, step, validate=first_loss(step, 0.02 if cast else 1e-4)))
    interleaved(benchmark, impls, "fastdl bf16")
    benchmark.extra_info["params"] = models["fp32"].num_params
