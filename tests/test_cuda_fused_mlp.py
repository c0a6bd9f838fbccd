"""The fused small-MLP kernels against the per-layer GPU kernels (the oracle) and a
float64 numpy forward."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402
from fastdl.cuda.fused_mlp import FusedMLP  # noqa: E402

import reference as ref  # noqa: E402

to_dev, host = cref.to_dev, cref.host


def per_layer(mlp, x, params, dlogits):
    """Forward and backward with the per-layer kernels: (logits, flat grads)."""
    h, saved = x, []
    views = mlp.layer_views(params)
    for i, (w, b) in enumerate(views):
        act = mlp.activation if i < len(views) - 1 else "linear"
        out = G.dense_forward(h, w, b, act)
        y, z = out if act in G.NEEDS_Z else (out, None)
        saved.append((h, y, z, act))
        h = y
    grads = np.zeros(mlp.n_params, np.float32)
    d = dlogits
    for i in range(len(saved) - 1, -1, -1):
        hin, y, z, act = saved[i]
        kw = {"z": z} if act in G.NEEDS_Z else ({"y": y} if act != "linear" else {})
        dx, dw, db = G.dense_backward(d, hin, views[i][0], act, need_dx=i > 0, **kw)
        grads[mlp.woff[i]:mlp.boff[i]] = host(dw).ravel()
        grads[mlp.boff[i]:mlp.boff[i] + mlp.sizes[i + 1]] = host(db)
        d = dx
    return host(h), grads


@pytest.mark.parametrize("sizes,act,n", [((20, 33, 17, 5), "relu", 37), ((7, 128, 3), "gelu", 5),
                                         ((9, 4), "tanh", 1), ((5, 6, 6, 6, 2), "elu", 33)])
def test_fused_matches_per_layer_kernels(rng, sizes, act, n):
    mlp = FusedMLP(sizes, act, batch=40)
    params = mlp.init_params(rng)
    x = to_dev(rng.standard_normal((n, sizes[0]), dtype=np.float32))
    dlogits = to_dev(rng.standard_normal((n, sizes[-1]), dtype=np.float32))
    logits = host(mlp.forward(x, params))
    grads = cuda.to_device(np.full(mlp.n_params, np.nan, np.float32))
    mlp.backward(dlogits, x, params, grads)
    logits_ref, grads_ref = per_layer(mlp, x, params, dlogits)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host(grads), grads_ref, rtol=1e-4, atol=1e-5)
    # and the forward against float64
    h = host(x).astype(np.float64)
    p = host(params).astype(np.float64)
    for i, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = p[mlp.woff[i]:mlp.boff[i]].reshape(din, dout)
        b = p[mlp.boff[i]:mlp.boff[i] + dout]
        h = ref.activation(act if i < len(sizes) - 2 else "linear", h @ w + b)
    np.testing.assert_allclose(logits, h, rtol=1e-4, atol=1e-4)


def test_train_step_with_adam_reduces_loss(rng):
    mlp = FusedMLP((6, 16, 16, 3), "relu", batch=24)
    params = mlp.init_params(rng)
    grads = cuda.device_array(mlp.n_params, np.float32)
    m = cuda.to_device(np.zeros(mlp.n_params, np.float32))
    v = cuda.to_device(np.zeros(mlp.n_params, np.float32))
    xs = rng.standard_normal((24, 6)).astype(np.float32)
    labels = (xs[:, 0] > 0).astype(np.int64) + (xs[:, 1] > 0)
    x, t = to_dev(xs), to_dev(labels)
    losses = []
    for step in range(1, 16):
        loss, d = G.softmax_cross_entropy(mlp.forward(x, params), t)
        mlp.backward(d, x, params, grads)
        G.adam_step(params, grads, m, v, lr=0.03, step=step)
        losses.append(loss)
    assert losses[-1] < 0.7 * losses[0]


def test_limits_and_errors(rng):
    with pytest.raises(ValueError, match="width 512 is not supported by the fused MLP; use width <= 128 "
                                         "or the layer-by-layer path"):
        FusedMLP((784, 512, 10), batch=8)
    with pytest.raises(ValueError, match="prelu is not supported by the fused MLP"):
        FusedMLP((4, 8, 2), "prelu", batch=8)
    mlp = FusedMLP((4, 8, 2), batch=8)
    params = mlp.init_params(rng)
    with pytest.raises(ValueError, match="x: 9 rows exceed the batch of 8"):
        mlp.forward(to_dev(np.zeros((9, 4), np.float32)), params)
    with pytest.raises(ValueError, match="params: expected shape\\[0\\] == 58"):
        mlp.forward(to_dev(np.zeros((2, 4), np.float32)), to_dev(np.zeros(5, np.float32)))
