"""One training step (forward, loss, backward, optimizer update): fastdl's
``model.train_step`` vs the same network in PyTorch, side by side per group.

    pytest bench/bench_train_step.py --benchmark-only --benchmark-group-by=group

Goals: 784-1024-1024-10 ReLU, batch 128, Adam: >= 1.6x torch;
784-64-64-64-64-10, batch 32: >= 10x torch. Both start from the same weights and are
checked to compute the same loss before they are timed. The full 20-epoch MNIST dropout
fit is ``bench/fit_mnist_dropout.py`` (also a case here, one round).
"""

import numpy as np
import pytest

import fastdl

from conftest import torch

CASES = {
    "784-1024-1024-10 relu b128 adam": ([784, 1024, 1024, 10], 128),
    "784-64x4-10 relu b32 adam": ([784, 64, 64, 64, 64, 10], 32),
}


def fastdl_model(widths, precision="fp32", seed=0):
    layers = [fastdl.Dense(widths[i], widths[i + 1], activation="relu") for i in range(len(widths) - 2)]
    layers.append(fastdl.Dense(widths[-2], widths[-1]))
    model = fastdl.Sequential(layers, seed=seed)
    model.compile(optimizer=fastdl.optim.Adam(lr=1e-3), loss="softmax_cross_entropy", precision=precision)
    return model


def torch_twin(model):
    """The same network in PyTorch with the same weights (fastdl.interop.to_torch)."""
    from fastdl.interop import to_torch

    return to_torch(model)


def batch(n, k, c, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, k), dtype=np.float32), rng.integers(0, c, n)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_train_step(benchmark, case, impl):
    widths, n = CASES[case]
    benchmark.group = f"train_step {case}"
    x, y = batch(n, widths[0], widths[-1])
    model = fastdl_model(widths)
    if impl == "fastdl":
        fn = lambda: model.train_step(x, y)  # noqa: E731
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tmodel = torch_twin(model)
        opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def fn():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
            loss.backward()
            opt.step()
            return loss.item()

        # same weights, same first loss
        assert fn() == pytest.approx(model.train_step(x, y), rel=1e-4)
    fn()  # warm up: the first step allocates the per-batch-size buffers
    benchmark(fn)
    benchmark.extra_info["params"] = model.num_params


@pytest.mark.benchmark(group="fit 20 epochs MNIST dropout")
@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_fit_mnist_dropout(benchmark, impl):
    import fit_mnist_dropout as F

    try:
        data = F.load_data()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed")
    run = F.run_fastdl if impl == "fastdl" else F.run_torch
    result = benchmark.pedantic(run, args=(data,), kwargs={"seed": 0}, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["accuracy"] > 0.9
