"""GPU optimizer steps (one launch over a flat buffer) against float64 references of
torch.optim's formulas, step by step."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402

to_dev, host = cref.to_dev, cref.host
N = 37
SEGS = [(0, 10), (20, 30)]


def setup(rng):
    p = rng.standard_normal(N).astype(np.float32)
    p[3] = 0.0  # sign(0) = 0 for L1
    return p


def grads(rng):
    return rng.standard_normal(N).astype(np.float32)


@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.1, "l1": 0.01, "segments": SEGS},
                                {"weight_decay": 0.05, "decoupled": True, "segments": SEGS},
                                {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}])
def test_adam(rng, kw):
    p = setup(rng)
    m, v = np.zeros(N), np.zeros(N)
    dp, dm, dv = to_dev(p), to_dev(np.zeros(N, np.float32)), to_dev(np.zeros(N, np.float32))
    segs = kw.pop("segments", None)
    ref = p.astype(np.float64)
    for step in range(1, 4):
        g = grads(rng)
        G.adam_step(dp, to_dev(g), dm, dv, lr=0.01, step=step, decay_segments=None if segs is None
                    else np.array(segs, np.int64), **kw)
        ref, m, v = cref.adam(ref, g, m, v, lr=0.01, step=step, segments=segs, **kw)
        np.testing.assert_allclose(host(dp), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(dv), v, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
                                {"momentum": 0.8, "dampening": 0.3, "l1": 0.01, "segments": SEGS},
                                {"momentum": 0.9, "classic": True}])
def test_sgd(rng, kw):
    p = setup(rng)
    segs = kw.pop("segments", None)
    buf = np.zeros(N)
    dp, db = to_dev(p), to_dev(np.full(N, 123.0, np.float32))  # first_step ignores the old contents
    ref = p.astype(np.float64)
    for step in range(3):
        g = grads(rng)
        G.sgd_step(dp, to_dev(g), db, lr=0.1, first_step=step == 0,
                   decay_segments=None if segs is None else np.array(segs, np.int64), **kw)
        ref, buf = cref.sgd(ref, g, buf, lr=0.1, first_step=step == 0, segments=segs, **kw)
        np.testing.assert_allclose(host(dp), ref, rtol=1e-5, atol=1e-6)


def test_adagrad_rmsprop_adadelta(rng):
    p = setup(rng)
    dp1, dp2, dp3 = to_dev(p), to_dev(p), to_dev(p)
    z = lambda: to_dev(np.zeros(N, np.float32))  # noqa: E731
    s1, sq2, mb2, ga2, sq3, ac3 = z(), z(), z(), z(), z(), z()
    r1, r2, r3 = (p.astype(np.float64) for _ in range(3))
    rs1, rsq2, rmb2, rga2, rsq3, rac3 = (np.zeros(N) for _ in range(6))
    for step in range(1, 4):
        g = grads(rng)
        G.adagrad_step(dp1, to_dev(g), s1, lr=0.1, step=step, lr_decay=0.01, weight_decay=0.1)
        r1, rs1 = cref.adagrad(r1, g, rs1, lr=0.1, step=step, lr_decay=0.01, weight_decay=0.1)
        G.rmsprop_step(dp2, to_dev(g), sq2, lr=0.01, momentum=0.9, centered=True, momentum_buf=mb2,
                       grad_avg=ga2, l1=0.01)
        r2, rsq2, rmb2, rga2 = cref.rmsprop(r2, g, rsq2, rmb2, rga2, lr=0.01, momentum=0.9, centered=True, l1=0.01)
        G.adadelta_step(dp3, to_dev(g), sq3, ac3, lr=1.0, weight_decay=0.01,
                        decay_segments=np.array(SEGS, np.int64))
        r3, rsq3, rac3 = cref.adadelta(r3, g, rsq3, rac3, lr=1.0, weight_decay=0.01, segments=SEGS)
        np.testing.assert_allclose(host(dp1), r1, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(dp2), r2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(host(dp3), r3, rtol=1e-5, atol=1e-6)


def test_max_norm(rng):
    w = rng.standard_normal((9, 40)).astype(np.float32)
    w[:, 0] *= 0.01  # already inside the ball: untouched
    dw = to_dev(w)
    G.max_norm_(dw, 1.5)
    norms = np.linalg.norm(w.astype(np.float64), axis=0)
    want = w * np.where(norms > 1.5, 1.5 / (norms + 1e-7), 1.0)
    np.testing.assert_allclose(host(dw), want, rtol=1e-5, atol=1e-7)


def test_optimizer_errors(rng):
    d = to_dev(np.zeros(N, np.float32))
    with pytest.raises(ValueError, match="exp_avg: expected shape\\[0\\] == 37"):
        G.adam_step(d, d, to_dev(np.zeros(3, np.float32)), d, lr=0.1, step=1)
    with pytest.raises(ValueError, match=r"^step: expected an integer in \[1, 9223372036854775807\], got 0"):
        G.adam_step(d, d, d, d, lr=0.1, step=0)
    with pytest.raises(ValueError, match="decay_segments: row 0"):
        G.adam_step(d, d, d, d, lr=0.1, step=1, decay_segments=np.array([[5, 100]], np.int64))
    with pytest.raises(ValueError, match="nesterov"):
        G.sgd_step(d, d, d, lr=0.1, nesterov=True)
