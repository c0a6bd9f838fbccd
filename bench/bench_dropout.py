"""Dropout forward: fastdl (Philox mask, bit-packed) vs torch.nn.functional.dropout.

    pytest bench/bench_dropout.py --benchmark-only --benchmark-group-by=group

Each case is validated before it is timed: fastdl's y against its own mask, torch's kept
values against x / (1 - p). GB/s in extra_info counts x read + y written (+ the mask).
"""

import numpy as np
import pytest

from fastdl import kernels as K

from conftest import torch

SHAPES = [(4096, 4096), (128, 1024)]
P = 0.5


def _id(s):
    return "x".join(map(str, s))


def gbps(benchmark, nbytes):
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("impl", ["fastdl", "fastdl-alloc", "torch"])
def bench_dropout_forward(benchmark, shape, impl):
    benchmark.group = f"dropout_forward p={P} {_id(shape)}"
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    size = x.size
    if impl.startswith("fastdl"):
        out = np.empty_like(x) if impl == "fastdl" else None
        step = iter(range(1 << 30))
        fn = lambda: K.dropout_forward(x, P, 1234, next(step), out=out)  # noqa: E731
        y, mask = fn()
        keep = np.unpackbits(mask, bitorder="little")[:size].reshape(shape).astype(bool)
        np.testing.assert_array_equal(y, np.where(keep, x * np.float32(1 / (1 - P)), 0))
        assert abs(keep.mean() - (1 - P)) < 0.01
        nbytes = 8 * size + size / 8
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        tx = torch.from_numpy(x)
        fn = lambda: torch.nn.functional.dropout(tx, p=P, training=True)  # noqa: E731
        ty = fn().numpy()
        kept = ty != 0
        np.testing.assert_allclose(ty[kept], x[kept] / (1 - P), rtol=1e-6)
        assert abs(kept.mean() - (1 - P)) < 0.01
        nbytes = 8 * size
    benchmark(fn)
    gbps(benchmark, nbytes)


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def bench_dropout_backward(benchmark, impl):
    shape = (4096, 4096)
    benchmark.group = f"dropout_backward p={P} {_id(shape)}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    _, mask = K.dropout_forward(x, P, 1, 1)
    keep = np.unpackbits(mask, bitorder="little")[: x.size].reshape(shape).astype(bool)
    expected = np.where(keep, dy * np.float32(1 / (1 - P)), 0)
    if impl == "fastdl":
        fn = lambda: K.dropout_backward(dy, mask, P)  # noqa: E731
        np.testing.assert_array_equal(fn(), expected)
        nbytes = 8 * x.size + x.size / 8
    else:
        if torch is None:
            pytest.skip("PyTorch is not installed")
        # PyTorch's backward: grad * mask * scale with a stored float/bool mask.
        tdy = torch.from_numpy(dy)
        tmask = torch.from_numpy(keep)
        fn = lambda: torch.ops.aten.native_dropout_backward(tdy, tmask, 1 / (1 - P))  # noqa: E731
        np.testing.assert_allclose(fn().numpy(), expected, rtol=1e-6)
        nbytes = 9 * x.size
    benchmark(fn)
    gbps(benchmark, nbytes)
