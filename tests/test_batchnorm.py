"""Batch normalization against float64 references, finite differences and PyTorch."""

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import reference_losses as ref

# (1100, 500): past the size from which the reductions fetch their next tile ahead
# (batchnorm.inl, kFetchMinFloats), with a ragged last row chunk and column block.
SHAPES = [(2, 1), (2, 3), (3, 2), (7, 17), (33, 64), (17, 65), (100, 33), (1000, 7), (5, 1000), (129, 130),
          (1100, 500)]


def make(rng, n, m):
    x = (2 * rng.standard_normal((n, m)) + rng.standard_normal(m)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, m).astype(np.float32)
    beta = rng.standard_normal(m, dtype=np.float32)
    rm = rng.standard_normal(m, dtype=np.float32)
    rv = rng.uniform(0.5, 2, m).astype(np.float32)
    return x, gamma, beta, rm, rv


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_forward_and_backward_vs_reference(isa, rng, shape, affine):
    n, m = shape
    x, gamma, beta, rm, rv = make(rng, n, m)
    if not affine:
        gamma = beta = None
    y_r, mean_r, invstd_r, rm_r, rv_r = ref.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    rm_buf, rv_buf = rm.copy(), rv.copy()
    y, save_mean, save_invstd = K.batchnorm_forward_train(x, gamma, beta, rm_buf, rv_buf)
    assert y.dtype == np.float32 and y.shape == (n, m)
    assert save_mean.shape == save_invstd.shape == (m,)
    np.testing.assert_allclose(y, y_r, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(save_mean, mean_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(save_invstd, invstd_r, rtol=1e-5)
    np.testing.assert_allclose(rm_buf, rm_r, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv_buf, rv_r, rtol=1e-5)

    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dgamma, dbeta = K.batchnorm_backward(dy, x, gamma, save_mean, save_invstd)
    dx_r, dg_r, db_r = ref.batchnorm_backward(dy, x, gamma)
    assert dx.shape == (n, m) and dgamma.shape == dbeta.shape == (m,)
    np.testing.assert_allclose(dbeta, db_r, rtol=1e-5, atol=1e-5 * np.sqrt(n))
    np.testing.assert_allclose(dgamma, dg_r, rtol=1e-4, atol=1e-5 * np.sqrt(n))
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 17), (33, 1000), (300, 257)], ids=str)
def test_eval_forward_vs_reference(isa, rng, shape):
    n, m = shape
    x, gamma, beta, rm, rv = make(rng, n, m)
    y = K.batchnorm_forward_eval(x, gamma, beta, rm, rv)
    np.testing.assert_allclose(y, ref.batchnorm_forward_eval(x, gamma, beta, rm, rv), rtol=1e-5, atol=1e-5)
    y = K.batchnorm_forward_eval(x, None, None, rm, rv, eps=1e-3)
    np.testing.assert_allclose(y, ref.batchnorm_forward_eval(x, None, None, rm, rv, 1e-3), rtol=1e-5, atol=1e-5)


def test_momentum_and_eps_are_used(isa, rng):
    x, gamma, beta, rm, rv = make(rng, 9, 20)
    rm_buf, rv_buf = rm.copy(), rv.copy()
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, rm_buf, rv_buf, momentum=0.3, eps=0.5)
    y_r, mean_r, invstd_r, rm_r, rv_r = ref.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.3, 0.5)
    np.testing.assert_allclose(y, y_r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(invstd, invstd_r, rtol=1e-5)
    np.testing.assert_allclose(rm_buf, rm_r, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv_buf, rv_r, rtol=1e-5)


def test_running_stats_may_be_none_in_training(isa, rng):
    x, gamma, beta, _, _ = make(rng, 6, 10)
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, None, None)
    np.testing.assert_allclose(y, ref.batchnorm_forward_train(x, gamma, beta, np.zeros(10), np.ones(10))[0],
                               rtol=1e-5, atol=1e-5)


def test_large_offset_keeps_variance_accurate(isa, rng):
    # Two-pass variance: a mean of 1e4 against a spread of 1 must not cancel.
    x = (1e4 + rng.standard_normal((4096, 3))).astype(np.float32)
    y, mean, invstd = K.batchnorm_forward_train(x, None, None, None, None)
    _, mean_r, invstd_r, _, _ = ref.batchnorm_forward_train(x, None, None, np.zeros(3), np.ones(3))
    np.testing.assert_allclose(mean, mean_r, rtol=1e-7)
    np.testing.assert_allclose(invstd, invstd_r, rtol=1e-4)
    np.testing.assert_allclose(y.mean(0), 0, atol=2e-3)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-3)


def test_constant_column_is_finite(isa):
    x = np.full((5, 3), 2.5, np.float32)
    y, mean, invstd = K.batchnorm_forward_train(x, None, None, None, None)
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(1e-5), rtol=1e-6)
    dx, dg, db = K.batchnorm_backward(np.ones_like(x), x, None, mean, invstd)
    assert np.isfinite(dx).all()


def test_gradients_match_float64_finite_differences(rng):
    n, m = 5, 4
    x, gamma, beta, rm, rv = make(rng, n, m)
    r = rng.standard_normal((n, m))  # loss = sum(r * y)
    _, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, None, None)
    dx, dgamma, dbeta = K.batchnorm_backward(r.astype(np.float32), x, gamma, mean, invstd)
    x64, g64, b64 = x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64)

    def loss():
        return float((r * ref.batchnorm_forward_train(x64, g64, b64, rm, rv)[0]).sum())

    h = 1e-6
    for name, arr, g in (("dx", x64, dx), ("dgamma", g64, dgamma), ("dbeta", b64, dbeta)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            lp = loss()
            arr[idx] = old - h
            lm = loss()
            arr[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-5, err_msg=name)


def test_isa_paths_agree(rng):
    x, gamma, beta, rm, rv = make(rng, 65, 200)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    results = {}
    previous = fastdl.get_isa()
    try:
        for name in ("avx512", "avx2", "generic"):
            if fastdl.cpu_supports(name):
                fastdl.set_isa(name)
                y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, None, None)
                results[name] = (y, mean, invstd, *K.batchnorm_backward(dy, x, gamma, mean, invstd))
    finally:
        fastdl.set_isa(previous)
    for name, outs in results.items():
        for a, b in zip(outs, results["generic"]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("shape", [(300, 1000), (1100, 500)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_results_do_not_depend_on_thread_count(rng, shape):
    x, gamma, beta, rm, rv = make(rng, *shape)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    before = fastdl.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            rm_buf, rv_buf = rm.copy(), rv.copy()
            y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, rm_buf, rv_buf)
            outs.append((y, mean, invstd, rm_buf, rv_buf, *K.batchnorm_backward(dy, x, gamma, mean, invstd),
                         K.batchnorm_forward_eval(x, gamma, beta, rm, rv)))
    finally:
        fastdl.set_num_threads(before)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


def test_zero_features(rng):
    x = np.zeros((4, 0), np.float32)
    y, mean, invstd = K.batchnorm_forward_train(x, None, None, None, None)
    assert y.shape == (4, 0) and mean.shape == (0,)
    dx, dg, db = K.batchnorm_backward(x, x, None, mean, invstd)
    assert dx.shape == (4, 0) and dg.shape == (0,)


# ---------------------------------------------------------------- PyTorch parity


def test_parity_with_pytorch_over_steps(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, m = 32, 45
    _, gamma, beta, rm, rv = make(rng, n, m)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    for _ in range(3):
        x = (3 * rng.standard_normal((n, m)) + 1).astype(np.float32)
        dy = rng.standard_normal((n, m), dtype=np.float32)
        y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, rm, rv)
        dx, dgamma, dbeta = K.batchnorm_backward(dy, x, gamma, mean, invstd)
        tx, tg, tb = (torch.tensor(v, requires_grad=True) for v in (x, gamma, beta))
        ty = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.1, eps=1e-5)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-5)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dgamma, tg.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dbeta, tb.grad.numpy(), rtol=1e-4, atol=1e-4)
    x = rng.standard_normal((7, m), dtype=np.float32)
    y = K.batchnorm_forward_eval(x, gamma, beta, rm, rv)
    ty = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=False)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bad input


def test_single_sample_in_training_is_an_error(rng):
    x, gamma, beta, rm, rv = make(rng, 1, 5)
    rm_before = rm.copy()
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size \(1, 5\)"):
        K.batchnorm_forward_train(x, gamma, beta, rm, rv)
    np.testing.assert_array_equal(rm, rm_before)
    K.batchnorm_forward_eval(x, gamma, beta, rm, rv)  # fine in eval


def test_running_stats_must_be_writable_float32_contiguous(rng):
    x, gamma, beta, rm, rv = make(rng, 4, 6)
    ro = rm.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"running_mean: the array is read-only"):
        K.batchnorm_forward_train(x, gamma, beta, ro, rv)
    rv64 = rv.astype(np.float64)
    with pytest.raises(TypeError, match=r"running_var: expected dtype float32, got float64"):
        K.batchnorm_forward_train(x, gamma, beta, rm, rv64)
    np.testing.assert_array_equal(rv64, rv)  # no silent copy was updated instead
    strided = np.zeros(12, np.float32)[::2]
    with pytest.raises(ValueError, match=r"running_mean: expected a C-contiguous array"):
        K.batchnorm_forward_train(x, gamma, beta, strided, rv)
    with pytest.raises(ValueError, match=r"running_var: shares memory with 'running_mean'|running_mean: shares memory with 'running_var'"):
        K.batchnorm_forward_train(x, gamma, beta, rm, rm)
    with pytest.raises(ValueError, match=r"running_mean: shares memory with 'gamma'"):
        K.batchnorm_forward_train(x, gamma, beta, gamma, rv)


def test_bad_shapes_and_types(rng):
    x, gamma, beta, rm, rv = make(rng, 4, 6)
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        K.batchnorm_forward_train(x.astype(np.float64), gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"x: expected a 2-D array .* got shape \(24,\)"):
        K.batchnorm_forward_train(x.ravel(), gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"x: expected a C-contiguous array"):
        K.batchnorm_forward_train(np.asfortranarray(x), gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"gamma: expected shape\[0\] == 6"):
        K.batchnorm_forward_train(x, gamma[:5].copy(), beta, rm, rv)
    with pytest.raises(ValueError, match=r"beta: expected shape\[0\] == 6"):
        K.batchnorm_forward_eval(x, gamma, beta[:5].copy(), rm, rv)
    with pytest.raises(ValueError, match=r"running_var: expected a float32 array of shape \(6,\), got None"):
        K.batchnorm_forward_eval(x, gamma, beta, rm, None)
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\]"):
        K.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum=1.5)
    with pytest.raises(ValueError, match=r"eps: expected a finite value >= 0"):
        K.batchnorm_forward_train(x, gamma, beta, rm, rv, eps=-1.0)
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"dy: expected shape\[1\] == 6"):
        K.batchnorm_backward(y[:, :5].copy(), x, gamma, mean, invstd)
    with pytest.raises(ValueError, match=r"save_invstd: expected shape\[0\] == 6"):
        K.batchnorm_backward(y, x, gamma, mean, invstd[:5].copy())
    with pytest.raises(TypeError, match=r"save_mean: expected dtype float32, got float64"):
        K.batchnorm_backward(y, x, gamma, mean.astype(np.float64), invstd)
