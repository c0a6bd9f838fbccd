"""GPU dense kernels (Numba CUDA; the simulator in CI) against the float64 references,
the CPU kernels, and the argument checks."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl import kernels as K  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402

import reference as ref  # noqa: E402

to_dev, host = cref.to_dev, cref.host


def make(rng, n, k, m, act):
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(max(k, 1))).astype(np.float32)
    b = (0.5 * rng.standard_normal(m)).astype(np.float32)
    alpha = {"prelu": rng.uniform(-0.5, 0.5, m).astype(np.float32), "leaky_relu": 0.1, "elu": 0.7}.get(act)
    return x, w, b, alpha


def dev_alpha(alpha):
    return to_dev(alpha) if isinstance(alpha, np.ndarray) else alpha


def tol(k):
    return 2e-5 * np.sqrt(max(k, 1)) + 1e-5


def saved_kw(act, y, z):
    return {"z": z} if act in G.NEEDS_Z else ({"y": y} if act != "linear" else {})


def gpu_forward(x, w, b, act, alpha):
    out = G.dense_forward(to_dev(x), to_dev(w), None if b is None else to_dev(b), act, alpha=dev_alpha(alpha))
    return out if act in G.NEEDS_Z else (out, None)


def test_activation_names_match_cpu():
    assert tuple(G.ACTIVATIONS) == tuple(K.ACTIVATIONS)
    assert tuple(G.NEEDS_Z) == tuple(K.NEEDS_Z)


@pytest.mark.parametrize("act", list(G.ACTIVATIONS))
def test_forward_backward_vs_reference_and_cpu(rng, act):
    n, k, m = 7, 17, 33
    x, w, b, alpha = make(rng, n, k, m, act)
    y, z = gpu_forward(x, w, b, act, alpha)
    y_ref, z_ref = ref.dense_forward(x, w, b, act, alpha)
    np.testing.assert_allclose(host(y), y_ref, rtol=1e-4, atol=tol(k))
    if z is not None:
        np.testing.assert_allclose(host(z), z_ref, rtol=1e-4, atol=tol(k))
    cpu = K.dense_forward(x, w, b, act, alpha=alpha)
    np.testing.assert_allclose(host(y), cpu[0] if act in K.NEEDS_Z else cpu, rtol=1e-4, atol=tol(k))

    dy = rng.standard_normal((n, m), dtype=np.float32)
    grads = G.dense_backward(to_dev(dy), to_dev(x), to_dev(w), act, alpha=dev_alpha(alpha), **saved_kw(act, y, z))
    dz = dy * ref.activation_grad(act, z_ref, alpha)
    expect = [dz @ w.T.astype(np.float64), x.T.astype(np.float64) @ dz, dz.sum(0)]
    if act == "prelu":
        expect.append((dy * np.minimum(z_ref, 0)).sum(0))
    assert len(grads) == len(expect)
    for got, want in zip(grads, expect):
        np.testing.assert_allclose(host(got), want, rtol=1e-3, atol=10 * tol(max(n, m)))
    y_cpu, z_cpu = (cpu if act in K.NEEDS_Z else (cpu, None))
    cpu_grads = K.dense_backward(dy, x, w, act, alpha=alpha, **saved_kw(act, y_cpu, z_cpu))
    for got, want in zip(grads, cpu_grads):
        np.testing.assert_allclose(host(got), want, rtol=1e-3, atol=10 * tol(max(n, m)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes with numpy scalars
@pytest.mark.parametrize("act", list(G.ACTIVATIONS))
def test_nan_and_inf_propagate_as_on_the_cpu(rng, act):
    # a NaN/Inf input row must give the same non-finite pattern on both devices: a GPU
    # relu written as max(z, 0) would turn NaN into 0 and hide a diverged run
    n, k, m = 4, 5, 6
    x, w, b, alpha = make(rng, n, k, m, act)
    x[1, 2], x[3, 0] = np.nan, np.inf
    y, z = gpu_forward(x, w, b, act, alpha)
    cpu = K.dense_forward(x, w, b, act, alpha=alpha)
    y_cpu = cpu[0] if act in K.NEEDS_Z else cpu
    np.testing.assert_array_equal(np.isnan(host(y)), np.isnan(y_cpu))
    assert np.isnan(host(y)[1]).all()
    finite = np.isfinite(y_cpu)
    np.testing.assert_allclose(host(y)[finite], y_cpu[finite], rtol=1e-4, atol=tol(k))


@pytest.mark.parametrize("shape", [(1, 1, 1), (65, 33, 70), (3, 0, 5), (0, 4, 3)])
@pytest.mark.parametrize("act", ["relu", "linear"])
def test_odd_shapes_and_multiple_tiles(rng, shape, act):
    n, k, m = shape
    x, w, b, _ = make(rng, n, k, m, act)
    y, _ = gpu_forward(x, w, b, act, None)
    y_ref, z_ref = ref.dense_forward(x, w, b, act)
    np.testing.assert_allclose(host(y), y_ref, rtol=1e-4, atol=tol(k))
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = G.dense_backward(to_dev(dy), to_dev(x), to_dev(w), act, **saved_kw(act, y, None))
    dz = dy * ref.activation_grad(act, z_ref)
    np.testing.assert_allclose(host(dx), dz @ w.T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(host(dw), x.T @ dz, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(host(db), dz.sum(0), rtol=1e-3, atol=1e-4)


def test_no_bias_need_dx_false_and_out(rng):
    x, w, _, _ = make(rng, 9, 20, 6, "tanh")
    out = cuda.device_array((9, 6), np.float32)
    y = G.dense_forward(to_dev(x), to_dev(w), None, "tanh", out=out)
    assert y is out
    np.testing.assert_allclose(host(out), np.tanh(x.astype(np.float64) @ w), rtol=1e-4, atol=1e-5)
    dx, dw, db = G.dense_backward(to_dev(np.ones((9, 6), np.float32)), to_dev(x), to_dev(w), "tanh", y=out,
                                  need_dx=False)
    assert dx is None and host(dw).shape == (20, 6)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 17), (70, 5, 66)])
def test_matmul(rng, shape):
    m, k, n = shape
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    np.testing.assert_allclose(host(G.matmul(to_dev(a), to_dev(b))), a.astype(np.float64) @ b, rtol=1e-4, atol=tol(k))


def test_dispatch_routes_device_arrays_to_gpu(rng):
    x, w, b, _ = make(rng, 5, 6, 7, "relu")
    y = K.dense_forward(to_dev(x), to_dev(w), to_dev(b), "relu")
    assert hasattr(y, "copy_to_host")
    np.testing.assert_allclose(host(y), K.dense_forward(x, w, b, "relu"), rtol=1e-5, atol=1e-5)


def test_argument_errors_name_the_argument(rng):
    x, w, b, _ = make(rng, 4, 5, 6, "relu")
    dx, dw, db = to_dev(x), to_dev(w), to_dev(b)
    with pytest.raises(TypeError, match="x: got a numpy.ndarray"):
        G.dense_forward(x, dw, db)
    with pytest.raises(TypeError, match="w: expected dtype float32, got float64"):
        G.dense_forward(dx, to_dev(w.astype(np.float64)), db)
    with pytest.raises(ValueError, match=r"w: expected shape\[0\] == 5"):
        G.dense_forward(dx, to_dev(w[:4]), db)
    with pytest.raises(ValueError, match="b: expected a 1-D array"):
        G.dense_forward(dx, dw, to_dev(b[None]))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        G.dense_forward(dx, dw, db, "swish")
    with pytest.raises(ValueError, match="alpha: prelu needs its learned slopes"):
        G.dense_forward(dx, dw, db, "prelu")
    with pytest.raises(ValueError, match="alpha: leaky_relu needs alpha >= 0"):
        G.dense_forward(dx, dw, db, "leaky_relu", alpha=-0.1)
    with pytest.raises(ValueError, match="alpha: only leaky_relu, elu and prelu"):
        G.dense_forward(dx, dw, db, "relu", alpha=0.1)
    with pytest.raises(ValueError, match="out: expected shape"):
        G.dense_forward(dx, dw, db, out=cuda.device_array((4, 5), np.float32))
    with pytest.raises(ValueError, match="out: shares memory with input 'x'"):
        G.dense_forward(dx, to_dev(np.eye(5, dtype=np.float32)), None, out=dx)
    with pytest.raises(ValueError, match="z: activation 'gelu' needs the pre-activation z"):
        G.dense_backward(to_dev(np.ones((4, 6), np.float32)), dx, dw, "gelu", y=to_dev(np.ones((4, 6), np.float32)))
    with pytest.raises(ValueError, match="y: activation 'relu' needs the forward output y"):
        G.dense_backward(to_dev(np.ones((4, 6), np.float32)), dx, dw, "relu")
    with pytest.raises(TypeError, match="expected a GPU array"):
        G.matmul([[1.0]], dw)


def test_strided_view_is_refused(rng):
    d = to_dev(rng.standard_normal((6, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="a: expected a C-contiguous array"):
        G.matmul(d[:, ::2], to_dev(np.ones((4, 3), np.float32)))


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_backward_out_writes_into_the_given_arrays(rng, act):
    n, k, m = 5, 6, 7
    x, w, b, alpha = make(rng, n, k, m, act)
    y, z = gpu_forward(x, w, b, act, alpha)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx_, w_ = to_dev(x), to_dev(w)
    ref = G.dense_backward(to_dev(dy), dx_, w_, act, alpha=dev_alpha(alpha), **saved_kw(act, y, z))
    outs = [cuda.device_array(s, np.float32) for s in [(n, k), (k, m), (m,)] + ([(m,)] if act == "prelu" else [])]
    got = G.dense_backward(to_dev(dy), dx_, w_, act, alpha=dev_alpha(alpha), **saved_kw(act, y, z),
                           out=tuple(outs))
    for g, o, r in zip(got, outs, ref):
        assert g is o
        np.testing.assert_array_equal(host(g), host(r))
    with pytest.raises(ValueError, match=r"out\[1\] \(dw\): shares memory with input 'w'"):
        G.dense_backward(to_dev(dy), dx_, w_, act, alpha=dev_alpha(alpha), **saved_kw(act, y, z),
                         out=(None, w_) + ((None,) * (len(outs) - 2)))
    with pytest.raises(ValueError, match=r"out: expected"):
        G.dense_backward(to_dev(dy), dx_, w_, act, alpha=dev_alpha(alpha), **saved_kw(act, y, z), out=(None,))


def test_update_in_the_backward_is_refused_on_the_gpu(rng):
    # The step inside the dw GEMM is a CPU kernel feature; the GPU kernels say so.
    x, w, b, _ = make(rng, 4, 6, 8, "relu")
    dy = rng.standard_normal((4, 8), dtype=np.float32)
    p = np.zeros(10, np.float32)
    step = K.adam_step(p, None, np.zeros_like(p), np.zeros_like(p), lr=1e-3, step=1)
    with pytest.raises(TypeError, match="update: the optimizer step inside the backward kernel is CPU only"):
        G.dense_backward(to_dev(dy), to_dev(x), to_dev(w), "linear", update=step)
