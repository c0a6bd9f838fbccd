"""The GPU kernels at the sizes networks use: many tiles and blocks, partial edge tiles,
the optimizers' grid-stride loop over several passes, the fused MLP and a Sequential at
the goal networks' widths; each against a float64 (or CPU-kernel) reference, with a
tolerance relative to the result's largest magnitude (float32 sums of thousands of
terms against float64).

FASTDL_CUDA_REAL_SIZES=1 (the verification run on a GPU, tools/gpu_verify.py) runs every
case at its real size; without it (CI's simulator run) each runs at a small stand-in of
the same shape class, so that this file's code runs everywhere and a broken case is
found before it costs device time.
"""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import Dense, Sequential  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402
from fastdl.cuda.fused_mlp import MAX_WIDTH, FusedMLP  # noqa: E402
from fastdl.cuda.fused_step import FusedMLPStep  # noqa: E402

import reference as ref  # noqa: E402

REAL = cref.REAL_SIZES
to_dev, host = cref.to_dev, cref.host


def sizes(small, real):
    """pytest params: the real sizes with FASTDL_CUDA_REAL_SIZES=1, else the small ones."""
    return real if REAL else small


def assert_close(got, want, what, rel=1e-4):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} x the largest magnitude {scale:.3g}"


def _dense_data(rng, n, k, m):
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = (0.5 * rng.standard_normal(m)).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("shape", sizes([(9, 20, 70), (65, 33, 17)],
                                        [(256, 784, 1024), (4096, 1024, 1024), (1000, 777, 1029)]))
@pytest.mark.parametrize("act", ["relu", "gelu", "prelu"])
def test_dense_forward_backward(rng, shape, act):
    n, k, m = shape
    x, w, b = _dense_data(rng, n, k, m)
    alpha = rng.uniform(0, 0.5, m).astype(np.float32) if act == "prelu" else None
    dev_alpha = to_dev(alpha) if alpha is not None else None
    out = G.dense_forward(to_dev(x), to_dev(w), to_dev(b), act, alpha=dev_alpha)
    y, z = out if act in G.NEEDS_Z else (out, None)
    y_ref, z_ref = ref.dense_forward(x, w, b, act, alpha)
    assert_close(host(y), y_ref, "y")
    dy = rng.standard_normal((n, m), dtype=np.float32)
    saved = {"z": z} if z is not None else {"y": y}
    grads = G.dense_backward(to_dev(dy), to_dev(x), to_dev(w), act, alpha=dev_alpha, **saved)
    dz = dy * ref.activation_grad(act, z_ref, alpha)
    assert_close(host(grads[0]), dz @ w.T.astype(np.float64), "dx")
    assert_close(host(grads[1]), x.T.astype(np.float64) @ dz, "dw")
    assert_close(host(grads[2]), dz.sum(0), "db")


@pytest.mark.parametrize("shape", sizes([(17, 9, 70)], [(1024, 1024, 1024), (1000, 4096, 333)]))
def test_matmul(rng, shape):
    m, k, n = shape
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    assert_close(host(G.matmul(to_dev(a), to_dev(b))), a.astype(np.float64) @ b, "a @ b")


@pytest.mark.parametrize("n,c", sizes([(9, 5)], [(4096, 1000), (256, 10)]))
def test_losses(rng, n, c):
    logits = (3 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, n).astype(np.int64)
    loss, d = G.softmax_cross_entropy(to_dev(logits), to_dev(labels), label_smoothing=0.1)
    loss_ref, d_ref = cref.softmax_cross_entropy(logits, labels, 0.1)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert_close(host(d), d_ref, "dlogits")
    t = rng.uniform(0, 1, (n, c)).astype(np.float32)
    loss, d = G.binary_cross_entropy(to_dev(logits), to_dev(t))
    loss_ref, d_ref = cref.bce_with_logits(logits, t)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert_close(host(d), d_ref, "dlogits (bce)")
    loss, d = G.mse(to_dev(logits), to_dev(t))
    diff = logits.astype(np.float64) - t
    assert loss == pytest.approx((diff ** 2).mean(), rel=1e-5)
    assert_close(host(d), 2 * diff / diff.size, "dpred (mse)")


@pytest.mark.parametrize("n,m", sizes([(9, 40)], [(4096, 1024)]))
def test_batchnorm(rng, n, m):
    x = (2 * rng.standard_normal((n, m)) + 1).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, m).astype(np.float32)
    beta = rng.standard_normal(m).astype(np.float32)
    rm, rv = np.zeros(m, np.float32), np.ones(m, np.float32)
    y, mean, invstd = G.batchnorm_forward_train(to_dev(x), to_dev(gamma), to_dev(beta), to_dev(rm), to_dev(rv))
    y_r, mean_r, invstd_r, _, _ = cref.batchnorm_train(x, gamma, beta, rm, rv)
    assert_close(host(y), y_r, "y")
    dy = rng.standard_normal((n, m), dtype=np.float32)
    grads = G.batchnorm_backward(to_dev(dy), to_dev(x), to_dev(gamma), mean, invstd)
    for got, want, what in zip(grads, cref.batchnorm_backward(dy, x, gamma, mean_r, invstd_r),
                               ("dx", "dgamma", "dbeta")):
        assert_close(host(got), want, what, rel=1e-3)


@pytest.mark.parametrize("n,m", sizes([(13, 17)], [(4096, 4096), (1000, 1023)]))
def test_dropout_masks_are_bit_exact(rng, n, m):
    x = rng.standard_normal((n, m), dtype=np.float32)
    p, seed, step = 0.3, 12345, 7
    y, mask = G.dropout_forward(to_dev(x), p, seed, step, 2)
    keep = cref.keep_mask(n * m, p, seed, step, 2)
    np.testing.assert_array_equal(host(mask), cref.pack(keep))
    np.testing.assert_array_equal(host(y).ravel() != 0, keep & (x.ravel() != 0))
    dx = G.dropout_backward(to_dev(x), mask, p)
    np.testing.assert_allclose(host(dx).ravel(), np.where(keep, x.ravel() / np.float32(1 - p), 0), rtol=1e-6)


@pytest.mark.parametrize("n,k,m,pieces", sizes([(9, 10, 5, 3)], [(1024, 784, 256, 4), (300, 100, 50, 70)]))
def test_dense_maxout(rng, n, k, m, pieces):
    x, w, b = _dense_data(rng, n, k, m * pieces)
    y, am = G.dense_maxout_forward(to_dev(x), to_dev(w), to_dev(b), pieces)
    z = x.astype(np.float64) @ w + b
    y_ref, _ = cref.maxout(z, pieces)
    assert_close(host(y), y_ref, "y")
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = G.dense_maxout_backward(to_dev(dy), to_dev(x), to_dev(w), am, pieces)
    dz = cref.maxout_grad(dy, host(am), pieces)  # the GPU's argmax: ties in float32 may differ
    assert_close(host(dx), dz @ w.T, "dx")
    assert_close(host(dw), x.T @ dz, "dw")
    assert_close(host(db), dz.sum(0), "db")


@pytest.mark.parametrize("n", sizes([1000], [3_000_017]))  # past one grid-stride pass (132 * 16 * 256)
def test_optimizers_over_a_large_buffer(rng, n):
    p = rng.standard_normal(n).astype(np.float32)
    segs = [(0, n // 3), (n // 2, n)]
    dp, dm, dv = to_dev(p), to_dev(np.zeros(n, np.float32)), to_dev(np.zeros(n, np.float32))
    ref_p, m, v = p.astype(np.float64), np.zeros(n), np.zeros(n)
    for step in (1, 2):
        g = rng.standard_normal(n).astype(np.float32)
        G.adam_step(dp, to_dev(g), dm, dv, lr=0.01, step=step, weight_decay=0.1, decoupled=True,
                    decay_segments=np.array(segs, np.int64))
        ref_p, m, v = cref.adam(ref_p, g, m, v, lr=0.01, step=step, weight_decay=0.1, decoupled=True, segments=segs)
    np.testing.assert_allclose(host(dp), ref_p, rtol=1e-5, atol=1e-6)
    buf = to_dev(np.zeros(n, np.float32))
    sp = to_dev(p)
    g = rng.standard_normal(n).astype(np.float32)
    G.sgd_step(sp, to_dev(g), buf, lr=0.1, momentum=0.9, first_step=True)
    np.testing.assert_allclose(host(sp), p - 0.1 * g.astype(np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes_,act,n", sizes(
    [((20, 16, 16, 4), "relu", 40)],
    [((784, 64, 64, 64, 64, 10), "relu", 256), ((784, MAX_WIDTH, MAX_WIDTH, 10), "gelu", 1000),
     ((100, 33, 128, 7), "elu", 4096)]))
def test_fused_mlp_step_against_the_per_layer_kernels(rng, sizes_, act, n):
    mlp = FusedMLP(sizes_, act, batch=n)
    params = mlp.init_params(rng)
    x = to_dev(rng.standard_normal((n, sizes_[0]), dtype=np.float32))
    labels = to_dev(rng.integers(0, sizes_[-1], n).astype(np.int64))
    grads = cuda.to_device(np.full(mlp.n_params, np.nan, np.float32))
    step = FusedMLPStep(sizes_[0], sizes_[1:], act, params=params, grads=grads)
    loss = step.train(x, labels)
    # the oracle: the per-layer kernels over views of the same flat buffer
    h, saved = x, []
    views = mlp.layer_views(params)
    for i, (w, b) in enumerate(views):
        a = act if i < len(views) - 1 else "linear"
        out = G.dense_forward(h, w, b, a)
        y, z = out if a in G.NEEDS_Z else (out, None)
        saved.append((h, y, z, a))
        h = y
    want_loss, d = G.softmax_cross_entropy(h, labels)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_close(host(step.last_output), host(h), "logits")
    got = host(grads)
    for i in range(len(saved) - 1, -1, -1):
        hin, y, z, a = saved[i]
        kw = {"z": z} if a in G.NEEDS_Z else ({"y": y} if a != "linear" else {})
        dx, dw, db = G.dense_backward(d, hin, views[i][0], a, need_dx=i > 0, **kw)
        assert_close(got[mlp.woff[i]:mlp.boff[i]], host(dw).ravel(), f"dw of layer {i}", rel=1e-3)
        assert_close(got[mlp.boff[i]:mlp.boff[i] + sizes_[i + 1]], host(db), f"db of layer {i}", rel=1e-3)
        d = dx


@pytest.mark.parametrize("sizes_,n", sizes([((12, 16, 4), 8)], [((784, 1024, 1024, 10), 128)]))
def test_sequential_gradients_match_the_cpu(rng, sizes_, n):
    def model(device):
        layers = [Dense(din, dout, activation="relu" if i < len(sizes_) - 2 else "linear")
                  for i, (din, dout) in enumerate(zip(sizes_[:-1], sizes_[1:]))]
        m = Sequential(layers, seed=1, device=device)
        m.compile(optimizer=fastdl.optim.Adam(1e-3), loss="softmax_cross_entropy")
        return m

    x = rng.standard_normal((n, sizes_[0])).astype(np.float32)
    y = rng.integers(0, sizes_[-1], n).astype(np.int64)
    cpu, gpu = model("cpu"), model("cuda")
    want_loss = cpu.compute_gradients(x, y)
    loss = gpu.compute_gradients(x, y)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_close(host(gpu.flat_grads), cpu.flat_grads, "flat gradients", rel=1e-3)
