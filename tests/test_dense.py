"""The fused dense kernel against float64 references, finite differences and PyTorch."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import reference as ref

ACTS = list(K.ACTIVATIONS)
SIZES = (1, 3, 7, 17, 33, 64, 100, 129, 1000)
# Every size appears in every position, against odd partners.
SHAPES = sorted({(v, 17, 33) for v in SIZES} | {(7, v, 129) for v in SIZES} | {(33, 100, v) for v in SIZES}
                | {(1, 784, 1024), (128, 784, 1024), (128, 1024, 10), (3, 1, 4100)})


def make(rng, n, k, m, act):
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(max(k, 1))).astype(np.float32)
    b = (0.5 * rng.standard_normal(m)).astype(np.float32)
    alpha = None
    if act == "prelu":
        alpha = rng.uniform(-0.5, 0.5, m).astype(np.float32)
    elif act == "leaky_relu":
        alpha = 0.1
    elif act == "elu":
        alpha = 0.7
    return x, w, b, alpha


def forward(x, w, b, act, alpha):
    out = K.dense_forward(x, w, b, act, alpha=alpha)
    if act in K.NEEDS_Z:
        y, z = out
        return y, z
    return out, None


def backward(dy, x, w, act, y, z, alpha, need_dx=True):
    kw = {"z": z} if act in K.NEEDS_Z else ({"y": y} if act != "linear" else {})
    return K.dense_backward(dy, x, w, act, alpha=alpha, need_dx=need_dx, **kw)


def tol(k):
    # float32 dot products of length k with unit-scale terms
    return 2e-5 * np.sqrt(max(k, 1)) + 1e-5


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 33, 17), (129, 100, 64)])
def test_activation_forward_backward_vs_reference(isa, rng, act, shape):
    n, k, m = shape
    x, w, b, alpha = make(rng, n, k, m, act)
    y, z = forward(x, w, b, act, alpha)
    y_ref, z_ref = ref.dense_forward(x, w, b, act, alpha)
    assert y.dtype == np.float32 and y.shape == (n, m)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=tol(k))
    if z is not None:
        np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=tol(k))

    dy = rng.standard_normal((n, m), dtype=np.float32)
    grads = backward(dy, x, w, act, y, z, alpha)
    dx_r, dw_r, db_r, dal_r = ref.dense_backward(dy, x, w, z_ref, act, alpha)
    dx, dw, db = grads[:3]
    # Kinks (relu at 0 etc.) are measure-zero for random data; float32 y vs float64 z
    # can flip the derivative only there.
    np.testing.assert_allclose(db, db_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(dw, dw_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=1e-4 * np.sqrt(m))
    if act == "prelu":
        assert len(grads) == 4
        np.testing.assert_allclose(grads[3], dal_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    else:
        assert len(grads) == 3


@pytest.mark.parametrize("shape", SHAPES)
def test_edge_shapes_relu(isa, rng, shape):
    n, k, m = shape
    x, w, b, _ = make(rng, n, k, m, "relu")
    y = K.dense_forward(x, w, b, "relu")
    y_ref, z_ref = ref.dense_forward(x, w, b, "relu")
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=tol(k))
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = K.dense_backward(dy, x, w, "relu", y=y)
    dx_r, dw_r, db_r, _ = ref.dense_backward(dy, x, w, z_ref, "relu")
    np.testing.assert_allclose(dw, dw_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(db, db_r, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=1e-4 * np.sqrt(m))


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_zero_sized_dimensions(isa, rng, shape):
    n, k, m = shape
    x, w, b, _ = make(rng, n, k, m, "tanh")
    y = K.dense_forward(x, w, b, "tanh")
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64) @ w + b), atol=1e-6)
    dy = np.ones((n, m), np.float32)
    dx, dw, db = K.dense_backward(dy, x, w, "tanh", y=y)
    assert dx.shape == (n, k) and dw.shape == (k, m) and db.shape == (m,)
    np.testing.assert_allclose(db, (1 - y.astype(np.float64) ** 2).sum(0), atol=1e-5)
    np.testing.assert_allclose(dw, np.zeros((k, m)) if n == 0 else x.T.astype(np.float64) @ (1 - y.astype(np.float64) ** 2), atol=1e-4)


@pytest.mark.parametrize("act", ACTS)
def test_gradients_match_float64_finite_differences(rng, act):
    """The kernel's analytic gradients against central differences of the float64 forward."""
    n, k, m = 4, 5, 3
    x, w, b, alpha = make(rng, n, k, m, act)
    # keep pre-activations away from kinks so finite differences are meaningful
    x = x + np.sign(x).astype(np.float32) * 0.05
    r = rng.standard_normal((n, m))  # loss = sum(r * y)
    y, z = forward(x, w, b, act, alpha)
    grads = backward(r.astype(np.float32), x, w, act, y, z, alpha)

    def loss(x_, w_, b_, a_):
        return float((r * ref.dense_forward(x_, w_, b_, act, a_)[0]).sum())

    h = 1e-6
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    a64 = alpha.astype(np.float64) if isinstance(alpha, np.ndarray) else alpha
    targets = [("dx", x64, grads[0]), ("dw", w64, grads[1]), ("db", b64, grads[2])]
    if act == "prelu":
        targets.append(("dalpha", a64, grads[3]))
    for name, arr, g in targets:
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + h
            lp = loss(x64, w64, b64, a64)
            arr[idx] = old - h
            lm = loss(x64, w64, b64, a64)
            arr[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=2e-3, atol=2e-4, err_msg=f"{act} {name}")


@pytest.mark.parametrize("act", ACTS)
def test_nan_passes_through(isa, rng, act):
    x, w, b, alpha = make(rng, 3, 8, 20, act)
    x[1, 2] = np.nan
    y, _ = forward(x, w, b, act, alpha)
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("act", ACTS)
def test_extreme_inputs_stay_finite(isa, act):
    z = np.array([[-1e4, -100, -20.5, -1e-7, 0, 1e-7, 19.9, 20.5, 100, 1e4]], np.float32)
    w = np.eye(z.shape[1], dtype=np.float32)
    alpha = np.full(z.shape[1], 0.25, np.float32) if act == "prelu" else None
    y, _ = forward(z, w, None, act, alpha)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref.activation(act, z, alpha), rtol=2e-6, atol=1e-6)


def test_isa_paths_agree(rng):
    x, w, b, _ = make(rng, 65, 300, 77, "gelu")
    results = {}
    previous = fastdl.get_isa()
    try:
        for name in ("avx512", "avx2", "generic"):
            if fastdl.cpu_supports(name):
                fastdl.set_isa(name)
                results[name] = K.dense_forward(x, w, b, "gelu")[0]
    finally:
        fastdl.set_isa(previous)
    base = results["generic"]
    for name, y in results.items():
        np.testing.assert_allclose(y, base, rtol=1e-5, atol=1e-5, err_msg=name)


def same_bits_for_1_2_3_threads(run):
    """run() with 1, 2 and 3 threads: asserts its outputs identical bit for bit and
    returns the one-thread outputs (the thread count is restored)."""
    before = fastdl.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            fastdl.set_num_threads(t)
            outs.append(run())
    finally:
        fastdl.set_num_threads(before)
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_array_equal(a, c)
    return outs[0]


def test_results_do_not_depend_on_thread_count(rng):
    x, w, b, _ = make(rng, 300, 513, 257, "silu")
    dy = rng.standard_normal((300, 257), dtype=np.float32)

    def run():
        y, z = K.dense_forward(x, w, b, "silu")
        return (y, *K.dense_backward(dy, x, w, "silu", z=z))

    same_bits_for_1_2_3_threads(run)


def test_out_argument_is_written(rng):
    x, w, b, _ = make(rng, 9, 10, 11, "relu")
    out = np.full((9, 11), np.nan, np.float32)
    y = K.dense_forward(x, w, b, "relu", out=out)
    assert y is out or np.shares_memory(y, out)
    np.testing.assert_allclose(out, ref.dense_forward(x, w, b, "relu")[0], atol=1e-5)


def test_bias_may_be_none_and_need_dx_false(rng):
    x, w, _, _ = make(rng, 5, 6, 7, "tanh")
    y = K.dense_forward(x, w, None, "tanh")
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64) @ w), atol=1e-6)
    dx, dw, db = K.dense_backward(np.ones_like(y), x, w, "tanh", y=y, need_dx=False)
    assert dx is None and dw.shape == (6, 7)


def test_matmul_matches_numpy(isa, rng):
    for m, k, n in [(1, 1, 1), (5, 300, 7), (200, 33, 130), (64, 513, 64)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        np.testing.assert_allclose(K.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-5, atol=tol(k))


# ---------------------------------------------------------------- PyTorch parity

TORCH_ACT = {
    "linear": lambda t, a: t,
    "sigmoid": lambda t, a: t.sigmoid(),
    "tanh": lambda t, a: t.tanh(),
    "relu": lambda t, a: t.relu(),
    "leaky_relu": lambda t, a: __import__("torch").nn.functional.leaky_relu(t, a),
    "prelu": lambda t, a: __import__("torch").nn.functional.prelu(t, a),
    "elu": lambda t, a: __import__("torch").nn.functional.elu(t, a),
    "silu": lambda t, a: __import__("torch").nn.functional.silu(t),
    "softplus": lambda t, a: __import__("torch").nn.functional.softplus(t),
    "hard_tanh": lambda t, a: __import__("torch").nn.functional.hardtanh(t),
    "gelu": lambda t, a: __import__("torch").nn.functional.gelu(t),
}


@pytest.mark.parametrize("act", ACTS)
def test_parity_with_pytorch(rng, act):
    torch = pytest.importorskip("torch")
    x, w, b, alpha = make(rng, 31, 47, 23, act)
    y, z = forward(x, w, b, act, alpha)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    grads = backward(dy, x, w, act, y, z, alpha)

    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    ta = torch.tensor(alpha, requires_grad=True) if act == "prelu" else alpha
    ty = TORCH_ACT[act](torch.addmm(tb, tx, tw), ta)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[1], tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[2], tb.grad.numpy(), rtol=1e-4, atol=1e-4)
    if act == "prelu":
        np.testing.assert_allclose(grads[3], ta.grad.numpy(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad input


@pytest.fixture
def xwb(rng):
    return make(rng, 4, 5, 6, "relu")[:3]


def test_wrong_dtype_names_argument(xwb):
    x, w, b = xwb
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got float64"):
        K.dense_forward(x.astype(np.float64), w, b, "relu")
    with pytest.raises(TypeError, match=r"w: expected dtype float32, got int32"):
        K.dense_forward(x, w.astype(np.int32), b, "relu")
    with pytest.raises(TypeError, match=r"b: expected dtype float32, got bool"):
        K.dense_forward(x, w, b.astype(bool), "relu")
    with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray .* got list"):
        K.dense_forward(x.tolist(), w, b, "relu")
    with pytest.raises(TypeError, match=r"x: expected dtype float32"):
        K.dense_forward(x.astype(object), w, b, "relu")


def test_wrong_rank_and_shapes(xwb):
    x, w, b = xwb
    with pytest.raises(ValueError, match=r"x: expected a 2-D array .* got shape \(20,\)"):
        K.dense_forward(x.ravel(), w, b, "relu")
    with pytest.raises(ValueError, match=r"w: expected shape\[0\] == 5"):
        K.dense_forward(x, w[:4].copy(), b, "relu")
    with pytest.raises(ValueError, match=r"b: expected shape\[0\] == 6"):
        K.dense_forward(x, w, b[:5].copy(), "relu")
    y = K.dense_forward(x, w, b, "relu")
    with pytest.raises(ValueError, match=r"dy: expected shape\[1\] == 6"):
        K.dense_backward(y[:, :5].copy(), x, w, "relu", y=y)


def test_non_contiguous_is_refused_not_copied(xwb):
    x, w, b = xwb
    with pytest.raises(ValueError, match=r"x: expected a C-contiguous array"):
        K.dense_forward(np.asfortranarray(x), w, b, "relu")
    with pytest.raises(ValueError, match=r"w: expected a C-contiguous array"):
        K.dense_forward(x, np.ascontiguousarray(np.hstack([w, w]))[:, ::2], b, "relu")
    with pytest.raises(ValueError, match=r"x: expected a C-contiguous array"):
        K.dense_forward(x[::-1], w, b, "relu")


def test_activation_and_alpha_errors(xwb):
    x, w, b = xwb
    with pytest.raises(ValueError, match=r"unknown name 'swish'; expected one of linear, sigmoid"):
        K.dense_forward(x, w, b, "swish")
    with pytest.raises(ValueError, match=r"alpha: prelu needs"):
        K.dense_forward(x, w, b, "prelu")
    with pytest.raises(ValueError, match=r"alpha: only leaky_relu, elu and prelu take alpha"):
        K.dense_forward(x, w, b, "relu", alpha=0.1)
    with pytest.raises(ValueError, match=r"alpha: leaky_relu needs alpha >= 0"):
        K.dense_forward(x, w, b, "leaky_relu", alpha=-0.1)
    with pytest.raises(ValueError, match=r"alpha: expected shape\[0\] == 6"):
        K.dense_forward(x, w, b, "prelu", alpha=np.zeros(5, np.float32))
    y, z = K.dense_forward(x, w, b, "gelu")
    with pytest.raises(ValueError, match=r"z: activation 'gelu' needs the pre-activation z"):
        K.dense_backward(y, x, w, "gelu", y=y)
    with pytest.raises(ValueError, match=r"y: activation 'tanh' needs the forward output y"):
        K.dense_backward(y, x, w, "tanh")


def test_bad_out_arguments(xwb):
    x, w, b = xwb
    with pytest.raises(ValueError, match=r"out: expected shape\[1\] == 6"):
        K.dense_forward(x, w, b, "relu", out=np.empty((4, 5), np.float32))
    ro = np.empty((4, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: the array is read-only"):
        K.dense_forward(x, w, b, "relu", out=ro)
    buf = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"out: shares memory with input 'x'"):
        K.dense_forward(buf[:, :5], np.eye(5, 6, dtype=np.float32), b, "relu", out=buf) if False else \
            K.dense_forward(np.ascontiguousarray(buf.reshape(4, 6)), np.eye(6, dtype=np.float32), b, "relu", out=buf)
    with pytest.raises(TypeError, match=r"out: expected dtype float32"):
        K.dense_forward(x, w, b, "relu", out=np.empty((4, 6), np.float64))


def test_threads_and_isa_controls():
    n = fastdl.get_num_threads()
    assert n >= 1
    with pytest.raises(ValueError, match=r"^n: expected 1 <= n <= \d+ threads .*got 0$"):
        fastdl.set_num_threads(0)
    with pytest.raises(ValueError, match=r"unknown name 'sse9'"):
        fastdl.set_isa("sse9")
    assert fastdl.get_isa() in ("amx", "avx512_bf16", "avx512", "avx2", "generic")


@pytest.mark.parametrize("path", ["avx512", "avx2", "generic"])
def test_environment_variable_forces_the_path(path):
    if not fastdl.cpu_supports(path):
        pytest.skip(f"this CPU cannot run {path}")
    code = ("import numpy as np, fastdl, fastdl.kernels as K; print(fastdl.get_isa()); "
            "print(float(K.dense_forward(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), None, 'relu').sum()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTDL_ISA": path},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [path, "24.0"]


def test_bad_environment_variable_is_a_clear_error():
    code = "import fastdl; fastdl.get_isa()"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTDL_ISA": "neon"},
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "FASTDL_ISA=neon is not a kernel path" in r.stderr


def test_concurrent_calls_from_python_threads(rng):
    """The GIL is released inside the kernels: several Python threads at once must each
    get their own right answer (per-thread packing buffers, no shared scratch)."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [make(np.random.default_rng(s), 40 + s, 50 + 3 * s, 30 + 5 * s, "tanh") for s in range(8)]
    expected = [K.dense_forward(x, w, b, "tanh") for x, w, b, _ in cases]

    def run(i):
        x, w, b, _ = cases[i]
        for _ in range(20):
            y = K.dense_forward(x, w, b, "tanh")
            dx, dw, db = K.dense_backward(np.ones_like(y), x, w, "tanh", y=y)
            if not np.array_equal(y, expected[i]):
                return False
        return True

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(run, range(len(cases))))


@pytest.mark.parametrize("shape", [(5, 300, 1024), (40, 70, 64), (1, 900, 2048), (48, 33, 10)])
def test_small_batch_paths(isa, rng, shape):
    """Small N reads B in place (no packing) unless its row stride would alias in L1."""
    n, k, m = shape
    x, w, b, _ = make(rng, n, k, m, "relu")
    np.testing.assert_allclose(K.dense_forward(x, w, b, "relu"), ref.dense_forward(x, w, b, "relu")[0],
                               rtol=1e-5, atol=tol(k))


def test_a_read_in_place_every_row_count(isa, rng):
    """Few output columns: the GEMM reads x's rows in place instead of packing them,
    except a row panel no micro-kernel covers exactly (packed with zero padding) -- every
    batch size from 1 to 40 against 10 (a narrow last column panel), 16, 40 and 64
    columns, forward and, through the dropout epilogue, with a mask."""
    for m in (10, 16, 40, 64):
        for n in range(1, 41):
            x, w, b, _ = make(rng, n, 57, m, "relu")
            y_ref = ref.dense_forward(x, w, b, "relu")[0]
            np.testing.assert_allclose(K.dense_forward(x, w, b, "relu"), y_ref, rtol=1e-5,
                                       atol=tol(57), err_msg=f"n={n} m={m}")
            y, mask = K.dense_dropout_forward(x, w, b, "relu", 0.0, 1, 1)
            np.testing.assert_array_equal(y, K.dense_forward(x, w, b, "relu"), err_msg=f"n={n} m={m}")


def test_weight_gradient_reads_x_in_place_every_row_count(isa, rng):
    """The weight gradient x^T @ dz reads x^T in place (a p-step of a panel is MR
    contiguous floats of one row of x) where few column panels share it: every input
    width from 1 to 40 (the GEMM's rows), against 10, 40 and 64 units."""
    for m in (10, 40, 64):
        for k in range(1, 41):
            x, w, b, _ = make(rng, 33, k, m, "linear")
            dy = rng.standard_normal((33, m), dtype=np.float32)
            dx, dw, db = K.dense_backward(dy, x, w, "linear")
            np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dy, rtol=1e-5, atol=1e-4,
                                       err_msg=f"k={k} m={m}")


# Shapes whose GEMM splits K over two threads (K in two blocks, C of at most 8 micro-tiles):
# on AVX-512 (blocks of up to 512) the first three, on AVX2 (up to 256) the last; the
# generic path's tiles are too small for any GEMM worth two threads to have so few.
@pytest.mark.parametrize("shape", [(32, 700, 64), (20, 1000, 10), (48, 600, 64), (12, 500, 48)])
def test_k_split_over_threads_is_bit_identical(isa, rng, shape):
    n, k, m = shape
    x, w, b, _ = make(rng, n, k, m, "silu")

    def run():
        y, z = K.dense_forward(x, w, b, "silu")
        yd, mask, zd = K.dense_dropout_forward(x, w, b, "silu", 0.3, 7, 2)
        return y, z, yd, mask, zd, K.matmul(x, w)

    y, z, _, _, zd, xw = same_bits_for_1_2_3_threads(run)
    y_ref, z_ref = ref.dense_forward(x, w, b, "silu")
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=tol(k))
    np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=tol(k))
    np.testing.assert_array_equal(zd, z)  # the dropout kernel's z
    np.testing.assert_allclose(xw, x.astype(np.float64) @ w, rtol=1e-5, atol=tol(k))


def test_fewer_threads_than_asked():
    """OpenMP may give a parallel region fewer threads than asked (OMP_THREAD_LIMIT,
    OMP_DYNAMIC): work meant for a second thread -- the forward's K split, the backward's
    dx beside dw -- then runs on the first (dx was left unwritten: NaN or stale)."""
    code = (
        "import numpy as np, fastdl, fastdl.kernels as K\n"
        "fastdl.set_num_threads(2)\n"
        "rng = np.random.default_rng(3)\n"
        "x = rng.standard_normal((32, 700), dtype=np.float32)\n"
        "w = rng.standard_normal((700, 64), dtype=np.float32)\n"
        "b = rng.standard_normal(64, dtype=np.float32)\n"
        "err = np.abs(K.dense_forward(x, w, b, 'linear') - (x.astype(np.float64) @ w + b)).max()\n"
        "h, w2 = x[:, :64].copy(), w[:64].copy()\n"
        "dy = rng.standard_normal((32, 64), dtype=np.float32)\n"
        "dx, dw, db = K.dense_backward(dy, h, w2, 'linear')\n"
        "err = max(err, np.abs(dx - dy.astype(np.float64) @ w2.T).max(), np.abs(dw - h.T.astype(np.float64) @ dy).max())\n"
        "print(float(err))\n")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1e-3, out.stdout
