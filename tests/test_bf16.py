"""precision="bf16": the bf16 GEMM paths (AMX, AVX512-BF16, and the portable rounding on
the fp32 paths), each forced in turn, against float64 references computed from the
bf16-rounded operands (tight: only fp32 accumulation separates them) and against the fp32
kernels (the bf16 tolerance of reference_bf16.bf16_bound); and the rounding itself."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import _C
from fastdl import kernels as K

import reference as ref
from reference_bf16 import (accumulation_bound, bf16_bound, matmul_of_rounded, nearest_bf16_by_value,
                            round_bf16)

#: Every path a bf16 GEMM can take: the bf16 units, then the portable rounding on each
#: fp32 vector path.
BF16_PATHS = ("amx", "avx512_bf16", "avx512", "avx2", "generic")


@pytest.fixture(params=BF16_PATHS)
def path(request):
    """Forces one kernel path for the test (as FASTDL_ISA does); skips a path this CPU or
    build cannot run."""
    if not fastdl.cpu_supports(request.param):
        pytest.skip(f"this CPU (or build) cannot run the {request.param} path")
    previous = fastdl.get_isa()
    fastdl.set_isa(request.param)
    yield request.param
    fastdl.set_isa(previous)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def special_values():
    """Ties (to even, both ways), NaNs of both signs with payloads, infinities, zeros,
    subnormals, the smallest normal, values that round up to infinity, and the largest bf16."""
    u = np.array([
        0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF, 0x3F808001,  # ties, near ties
        0xBF808000, 0xBF818000,  # negative ties
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFA12345, 0x7FFFFFFF,  # NaNs
        0x7F800000, 0xFF800000, 0x00000000, 0x80000000,  # infinities, zeros
        0x00000001, 0x807FFFFF, 0x00400000,  # subnormals
        0x00800000, 0x80800000, 0x00808000,  # smallest normals (and a tie above one)
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x7F7F0000,  # to infinity, or the max
    ], np.uint32)
    return u.view(np.float32)


def random_bits(rng, n):
    """Random float32 bit patterns over the whole range (NaNs and subnormals included)."""
    return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


# ---------------------------------------------------------------- the kernel paths


def test_cpu_supports_names_every_path():
    supported = {p: fastdl.cpu_supports(p) for p in BF16_PATHS}
    assert supported["generic"]
    # Each path is a superset of the next.
    for better, worse in zip(BF16_PATHS, BF16_PATHS[1:]):
        assert not supported[better] or supported[worse], (better, worse)
    with pytest.raises(ValueError, match=r"unknown name 'amx2'; expected one of amx, avx512_bf16, avx512"):
        fastdl.cpu_supports("amx2")


def test_set_isa_selects_each_path(path):
    assert fastdl.get_isa() == path


@pytest.mark.parametrize("name", ["amx", "avx512_bf16"])
def test_environment_variable_forces_the_bf16_paths(name):
    if not fastdl.cpu_supports(name):
        pytest.skip(f"this CPU (or build) cannot run the {name} path")
    code = ("import numpy as np, fastdl, fastdl.kernels as K; print(fastdl.get_isa()); "
            "print(float(K.matmul(np.ones((2, 3), np.float32), np.full((3, 4), 1.00390625, np.float32), "
            "precision='bf16').sum()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FASTDL_ISA": name},
                         capture_output=True, text=True, check=True).stdout.split()
    # 1 + 2**-8 is a tie: bf16 rounds it to 1 (even), fp32 would give 24.09375.
    assert out == [name, "24.0"]


def test_fp32_results_do_not_depend_on_the_bf16_unit(rng):
    """amx and avx512_bf16 run the fp32 kernels on avx512: the same bits."""
    paths = [p for p in ("avx512", "avx512_bf16", "amx") if fastdl.cpu_supports(p)]
    if len(paths) < 2:
        pytest.skip("this CPU has no bf16 unit beside avx512")
    x = rng.standard_normal((37, 70), dtype=np.float32)
    w = rng.standard_normal((70, 45), dtype=np.float32)
    b = rng.standard_normal(45, dtype=np.float32)
    dy = rng.standard_normal((37, 45), dtype=np.float32)
    previous = fastdl.get_isa()
    results = []
    try:
        for p in paths:
            fastdl.set_isa(p)
            y = K.dense_forward(x, w, b, "tanh")
            results.append((y, *K.dense_backward(dy, x, w, "tanh", y=y)))
    finally:
        fastdl.set_isa(previous)
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


# ---------------------------------------------------------------- rounding


def test_reference_rounding_is_round_to_nearest_even(rng):
    """The numpy reference on the bits agrees with the nearest bf16 found from the values."""
    x = np.concatenate([rng.standard_normal(20000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 20000),
                        # exact ties: the 16 bits below a bf16 mantissa are 0x8000
                        ((rng.integers(0x00800000, 0x7F000000, 5000, dtype=np.uint64) & 0xFFFF0000)
                         | 0x8000).astype(np.uint32).view(np.float32)]).astype(np.float32)
    x = x[np.isfinite(x) & (np.abs(x) >= np.finfo(np.float32).tiny) & (np.abs(x) < 3.3e38)]
    np.testing.assert_array_equal(bits(round_bf16(x)), bits(nearest_bf16_by_value(x)))
    specials = special_values()
    want = {0x3F808000: 0x3F800000, 0x3F818000: 0x3F820000, 0xBF808000: 0xBF800000,
            0x7F800001: 0x7FC00000, 0xFFA12345: 0xFFE10000, 0x00000001: 0, 0x807FFFFF: 0x80000000,
            0x7F7FFFFF: 0x7F800000, 0x7F7F8000: 0x7F800000, 0x7F7F7FFF: 0x7F7F0000, 0x00808000: 0x00800000}
    got = dict(zip(bits(specials).tolist(), bits(round_bf16(specials)).tolist()))
    for u, r in want.items():
        assert got[u] == r, hex(u)


def test_each_path_rounds_as_the_reference(path, rng):
    x = np.concatenate([special_values(), random_bits(rng, 4099),
                        rng.standard_normal(1000).astype(np.float32)])
    np.testing.assert_array_equal(bits(_C._round_to_bf16(x)), bits(round_bf16(x)))


def test_gemm_packing_rounds_each_operand_layout(path):
    """A one-term product with 1 shows each packed value: A row-major (matmul's a), B
    row-major (matmul's b), A transposed (the weight gradient's x^T) and B transposed
    (the input gradient's w^T)."""
    v = special_values()
    v = v[np.abs(v) < 3e38]  # the values that stay finite after rounding (inf * 1 checked apart)
    want = round_bf16(v)
    one = np.ones((1, 1), np.float32)
    got = [K.matmul(v[:, None].copy(), one, precision="bf16")[:, 0],
           K.matmul(one, v[None, :].copy(), precision="bf16")[0]]
    # dw = x^T @ dz with one row and dz = 1 (linear, dy = 1): dw[i, 0] = x[0, i].
    _, dw, _ = K.dense_backward(one, v[None, :].copy(), np.ones((v.size, 1), np.float32), "linear",
                                precision="bf16")
    got.append(dw[:, 0])
    # dx = dz @ w^T with one output: dx[0, i] = w[i, 0].
    dx, _, _ = K.dense_backward(one, np.ones((1, v.size), np.float32), v[:, None].copy(), "linear",
                                precision="bf16")
    got.append(dx[0])
    for g in got:
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(g), nan)
        np.testing.assert_array_equal(g[~nan], want[~nan])
    inf = np.array([[np.inf], [-np.inf], [np.finfo(np.float32).max]], np.float32)
    np.testing.assert_array_equal(K.matmul(inf, one, precision="bf16")[:, 0], [np.inf, -np.inf, np.inf])


# ---------------------------------------------------------------- the GEMM

# (m, k, n): ones, odd sizes, K in one and in several chunks and B blocks (256 and 512 on
# the bf16 units) and not a multiple of a tile's 32, tall and skinny, short and wide, N
# past a column block (768 or 1024), A past its packed block (8 MiB of bf16).
GEMM_SHAPES = [(1, 1, 1), (1, 37, 5), (3, 1, 7), (2, 33, 1), (17, 65, 33), (31, 64, 31), (32, 32, 32),
               (33, 2049, 17), (300, 17, 2), (2, 300, 130), (129, 100, 64), (64, 1000, 10), (5, 3001, 40),
               (40, 300, 1100), (2100, 2100, 33)]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_bf16_against_rounded_operands_and_fp32(path, rng, shape):
    m, k, n = shape
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = K.matmul(a, b, precision="bf16")
    assert c.dtype == np.float32 and c.shape == (m, n)
    assert np.all(np.abs(c - matmul_of_rounded(a, b)) <= accumulation_bound(a, b))
    c32 = K.matmul(a, b)
    assert np.all(np.abs(c - c32) <= bf16_bound(a, b))


def test_bf16_really_rounds(path, rng):
    a = rng.standard_normal((16, 64), dtype=np.float32)
    b = rng.standard_normal((64, 16), dtype=np.float32)
    assert not np.array_equal(K.matmul(a, b, precision="bf16"), K.matmul(a, b))


@pytest.mark.parametrize("shape", [(300, 500, 200), (1200, 64, 96), (40, 2100, 300)])
def test_bf16_results_do_not_depend_on_the_thread_count(path, rng, shape):
    m, k, n = shape
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    threads = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        one = K.matmul(a, b, precision="bf16")
        fastdl.set_num_threads(2)
        two = K.matmul(a, b, precision="bf16")
        fastdl.set_num_threads(3)
        three = K.matmul(a, b, precision="bf16")
    finally:
        fastdl.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)


# ---------------------------------------------------------------- dense layers

ACTS = list(K.ACTIVATIONS)
DENSE_SHAPES = [(1, 1, 1), (7, 33, 17), (64, 130, 70), (5, 1100, 33)]


def make(rng, n, k, m, act):
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = (0.5 * rng.standard_normal(m)).astype(np.float32)
    alpha = {"prelu": rng.uniform(-0.5, 0.5, m).astype(np.float32), "leaky_relu": 0.1, "elu": 0.7}.get(act)
    return x, w, b, alpha


def saved(act, out):
    """dense_forward's result -> (y, the keyword the backward takes)."""
    if act in K.NEEDS_Z:
        return out[0], {"z": out[1]}
    return out, ({"y": out} if act != "linear" else {})


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_forward_bf16(path, rng, act, shape):
    n, k, m = shape
    x, w, b, alpha = make(rng, n, k, m, act)
    y, kw = saved(act, K.dense_forward(x, w, b, act, alpha=alpha, precision="bf16"))
    z_ref = matmul_of_rounded(x, w) + b
    bound = accumulation_bound(x, w)
    if "z" in kw:
        assert np.all(np.abs(kw["z"] - z_ref) <= bound + 2.0**-24 * np.abs(z_ref))
    y_ref = ref.activation(act, z_ref, alpha)
    # The activations' slopes are at most ~1.13 (gelu); fp32 evaluation adds a few ulps.
    assert np.all(np.abs(y - y_ref) <= 1.2 * bound + 4e-6 * (1 + np.abs(y_ref))), act
    y32, _ = saved(act, K.dense_forward(x, w, b, act, alpha=alpha))
    assert np.all(np.abs(y - y32) <= 1.2 * bf16_bound(x, w) + 4e-6 * (1 + np.abs(y32)))


def dz_float32(act, dy, y, z, alpha):
    """dz = dy * f'(s) in float32 for the activations whose f' the kernel forms exactly
    (a select of 1, 0 or alpha: one float32 product)."""
    s = z if act in K.NEEDS_Z else y
    if act == "linear":
        return dy
    if act == "relu":
        return np.where(s > 0, dy, np.float32(0)).astype(np.float32)
    a = np.float32(alpha) if act == "leaky_relu" else alpha[None, :]
    return np.where(s > 0, dy, dy * a).astype(np.float32)


@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu", "prelu"])
# + the weight gradient's K (the batch) in several chunks and B blocks.
@pytest.mark.parametrize("shape", DENSE_SHAPES + [(1100, 40, 24)], ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_bf16_against_rounded_operands(path, rng, act, shape):
    n, k, m = shape
    x, w, b, alpha = make(rng, n, k, m, act)
    y, kw = saved(act, K.dense_forward(x, w, b, act, alpha=alpha))
    dy = rng.standard_normal((n, m), dtype=np.float32)
    got = K.dense_backward(dy, x, w, act, alpha=alpha, precision="bf16", **kw)
    dx, dw, db = got[:3]
    dz = dz_float32(act, dy, y, kw.get("z"), alpha)
    assert np.all(np.abs(dx - matmul_of_rounded(dz, w.T)) <= accumulation_bound(dz, w.T))
    assert np.all(np.abs(dw - matmul_of_rounded(x.T, dz)) <= accumulation_bound(x.T, dz))
    # db and dalpha are reduced from the fp32 dz, unrounded.
    np.testing.assert_allclose(db, dz.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5 * np.sqrt(n))
    if act == "prelu":
        dalpha_ref = (dy.astype(np.float64) * np.minimum(kw["z"], 0)).sum(0)
        np.testing.assert_allclose(got[3], dalpha_ref, rtol=1e-5, atol=1e-5 * np.sqrt(n))


def test_weight_gradient_past_a_packed_block_of_a(path, rng):
    """dw = x^T @ dz with x^T larger than one packed A block (8 MiB of bf16): each block
    packs dz again, and db is still reduced once."""
    n, k, m = 1100, 4200, 24
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = rng.standard_normal((k, m), dtype=np.float32)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    dx, dw, db = K.dense_backward(dy, x, w, "linear", need_dx=False, precision="bf16")
    assert dx is None
    assert np.all(np.abs(dw - matmul_of_rounded(x.T, dy)) <= accumulation_bound(x.T, dy))
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5 * np.sqrt(n))


@pytest.mark.parametrize("act", ACTS)
def test_dense_backward_bf16_against_fp32(path, rng, act):
    n, k, m = 33, 70, 45
    x, w, b, alpha = make(rng, n, k, m, act)
    _, kw = saved(act, K.dense_forward(x, w, b, act, alpha=alpha))
    dy = rng.standard_normal((n, m), dtype=np.float32)
    got = K.dense_backward(dy, x, w, act, alpha=alpha, precision="bf16", **kw)
    want = K.dense_backward(dy, x, w, act, alpha=alpha, **kw)
    # |f'| <= 1.13 for every activation here (gelu's peak; alpha <= 0.7): a bound on |dz|.
    dz = 1.13 * np.abs(dy)
    assert np.all(np.abs(got[0] - want[0]) <= 1.01 * bf16_bound(dz, w.T) + 1e-6)
    assert np.all(np.abs(got[1] - want[1]) <= 1.01 * bf16_bound(x.T, dz) + 1e-6)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-5)  # fp32 in both


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 17, 33), (64, 33, 64), (1100, 40, 70)],
                         ids=lambda s: "x".join(map(str, s)))
def test_update_in_the_bf16_backward_equals_backward_then_step(path, rng, shape):
    """The optimizer step fused into the bf16 dw GEMM gives bit for bit the plain bf16
    backward followed by the step (dw and the parameters both)."""
    n, k, m = shape
    params = (0.1 * rng.standard_normal(5 + k * m + 7)).astype(np.float32)
    state = {"exp_avg": (0.01 * rng.standard_normal(params.size)).astype(np.float32),
             "exp_avg_sq": rng.uniform(0.0, 1e-3, params.size).astype(np.float32)}
    x = rng.standard_normal((n, k), dtype=np.float32)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    p_ref = params.copy()
    s_ref = {key: v.copy() for key, v in state.items()}
    w_ref = p_ref[5:5 + k * m].reshape(k, m)
    y = np.maximum(x @ w_ref, 0).astype(np.float32)
    want = K.dense_backward(dy, x, w_ref, "relu", y=y, precision="bf16")
    grads = np.zeros_like(params)
    grads[5:5 + k * m] = want[1].reshape(-1)
    kw = dict(lr=1e-2, step=4, weight_decay=0.01)
    K.adam_step(p_ref, grads, s_ref["exp_avg"], s_ref["exp_avg_sq"], **kw)

    w = params[5:5 + k * m].reshape(k, m)
    step = K.adam_step(params, None, state["exp_avg"], state["exp_avg_sq"], **kw)
    dw = np.empty((k, m), np.float32)
    got = K.dense_backward(dy, x, w, "relu", y=y, out=(None, dw, None), update=step, precision="bf16")
    step.apply(np.zeros_like(params), segments=np.array([[0, 5], [5 + k * m, params.size]], np.int64))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(dw, want[1])
    np.testing.assert_array_equal(params, p_ref)
    for key in state:
        np.testing.assert_array_equal(state[key], s_ref[key])


def test_dense_dropout_bf16(path, rng):
    n, k, m, p = 40, 70, 50, 0.3
    x, w, b, _ = make(rng, n, k, m, "relu")
    y, mask = K.dense_dropout_forward(x, w, b, "relu", p, 11, 3, precision="bf16")
    y32, mask32 = K.dense_dropout_forward(x, w, b, "relu", p, 11, 3)
    np.testing.assert_array_equal(mask, mask32)  # the mask depends on the seed, not the values
    kept = np.unpackbits(mask, bitorder="little")[:n * m].reshape(n, m).astype(bool)
    y_ref = np.maximum(matmul_of_rounded(x, w) + b, 0) / (1 - p)
    assert np.all(np.abs(y - np.where(kept, y_ref, 0)) <= 1.5 * accumulation_bound(x, w) + 1e-6 * np.abs(y_ref))
    assert np.all(y[~kept] == 0)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    got = K.dense_dropout_backward(dy, x, w, "relu", mask, p, y=y, precision="bf16")
    want = K.dense_dropout_backward(dy, x, w, "relu", mask, p, y=y)
    dz = np.where(kept & (y > 0), dy / (1 - p), 0)
    assert np.all(np.abs(got[0] - want[0]) <= 1.01 * bf16_bound(dz, w.T) + 1e-6)
    assert np.all(np.abs(got[1] - want[1]) <= 1.01 * bf16_bound(x.T, dz) + 1e-6)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pieces", [2, 3, 5])
def test_dense_maxout_bf16(path, rng, pieces):
    n, k, m = 37, 90, 13
    x, w, b, _ = make(rng, n, k, m * pieces, "linear")
    y, arg = K.dense_maxout_forward(x, w, b, pieces, precision="bf16")
    z = matmul_of_rounded(x, w) + b
    y_ref = z.reshape(n, m, pieces).max(-1)
    bound = accumulation_bound(x, w).reshape(n, m, pieces).max(-1)
    assert np.all(np.abs(y - y_ref) <= bound + 2.0**-24 * np.abs(y_ref))
    # The argmax is the reference's wherever the top two pieces are apart by more than the bound.
    zs = np.sort(z.reshape(n, m, pieces), -1)
    clear = zs[..., -1] - zs[..., -2] > 2 * bound + 1e-5
    np.testing.assert_array_equal(arg[clear], z.reshape(n, m, pieces).argmax(-1)[clear])
    dy = rng.standard_normal((n, m), dtype=np.float32)
    got = K.dense_maxout_backward(dy, x, w, arg, pieces, precision="bf16")
    want = K.dense_maxout_backward(dy, x, w, arg, pieces)
    dz = K.maxout_backward(dy, arg, pieces)
    assert np.all(np.abs(got[0] - matmul_of_rounded(dz, w.T)) <= accumulation_bound(dz, w.T))
    assert np.all(np.abs(got[1] - matmul_of_rounded(x.T, dz)) <= accumulation_bound(x.T, dz))
    np.testing.assert_array_equal(got[2], want[2])  # db: the same fp32 dz, summed the same way


def test_dense_stack_bf16_equals_the_per_layer_kernels(path, rng):
    n, sizes = 48, [30, 40, 20, 10]
    acts = ["relu", "gelu", "linear"]
    layers, ref_layers = [], []
    for i, act in enumerate(acts):
        k, m = sizes[i], sizes[i + 1]
        w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
        b = (0.1 * rng.standard_normal(m)).astype(np.float32)
        buf = {"w": w, "b": b, "activation": act, "y": np.empty((n, m), np.float32),
               "z": np.empty((n, m), np.float32) if act in K.NEEDS_Z else None,
               "dx": np.empty((n, k), np.float32) if i else None,
               "dw": np.empty((k, m), np.float32), "db": np.empty(m, np.float32)}
        layers.append(buf)
        ref_layers.append((w, b, act))
    dout = np.empty((n, sizes[-1]), np.float32)
    stack = K.DenseStack(layers, loss="softmax_cross_entropy", dout=dout, precision="bf16")
    assert stack.precision == "bf16"
    x = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    labels = rng.integers(0, sizes[-1], n).astype(np.int64)
    loss = stack.train(x, labels)

    h, saved_fwd = x, []
    for w, b, act in ref_layers:
        out = K.dense_forward(h, w, b, act, precision="bf16")
        y, kw = saved(act, out)
        saved_fwd.append((h, y, kw))
        h = y
    ref_loss, d = K.softmax_cross_entropy(h, labels)
    assert loss == ref_loss
    for i in reversed(range(len(ref_layers))):
        w, b, act = ref_layers[i]
        h_in, y, kw = saved_fwd[i]
        dx, dw, db = K.dense_backward(d, h_in, w, act, need_dx=i > 0, precision="bf16", **kw)
        np.testing.assert_array_equal(layers[i]["y"], y)
        np.testing.assert_array_equal(layers[i]["dw"], dw)
        np.testing.assert_array_equal(layers[i]["db"], db)
        if i:
            np.testing.assert_array_equal(layers[i]["dx"], dx)
        d = dx


@pytest.mark.parametrize("widths, n", [((784, 64, 64, 10), 32), ((300, 200, 10), 64)])
def test_dense_stack_bf16_with_the_whole_step_inside(path, rng, widths, n):
    """step=: each parameter stepped by the thread that read it in the bf16 forward (its
    partition is the bf16 path's), on 1, 2 and 3 threads: the bits of one separate step."""
    from test_dense_stack import _buffers, _flat_layers, _same_views

    flat, layers, gather = _flat_layers(rng, widths, ["relu"] * (len(widths) - 2) + ["linear"])

    def stack_over():
        f = flat.copy()
        bufs = _buffers(n, _same_views(layers, flat, f))
        dout = np.empty((n, widths[-1]), np.float32)
        return K.DenseStack(bufs, loss="softmax_cross_entropy", dout=dout, precision="bf16"), bufs, f

    a, _, a_flat = stack_over()
    b, b_bufs, b_flat = stack_over()
    sa = [np.zeros_like(flat), np.zeros_like(flat)]
    sb = [np.zeros_like(flat), np.zeros_like(flat)]
    threads = fastdl.get_num_threads()
    try:
        for step, t in enumerate((1, 2, 3), start=1):
            fastdl.set_num_threads(t)
            x = rng.standard_normal((n, widths[0])).astype(np.float32)
            y = rng.integers(0, widths[-1], n)
            va = a.train(x, y, step=K.adam_step(a_flat, None, *sa, lr=1e-2, step=step))
            vb = b.train(x, y)
            K.adam_step(b_flat, gather(b_bufs), *sb, lr=1e-2, step=step)
            assert va == vb
            np.testing.assert_array_equal(a_flat, b_flat, err_msg=f"{t} threads")
    finally:
        fastdl.set_num_threads(threads)


# ---------------------------------------------------------------- bad input


def _calls(rng):
    x = rng.standard_normal((4, 6), dtype=np.float32)
    w = rng.standard_normal((6, 8), dtype=np.float32)
    dy = rng.standard_normal((4, 8), dtype=np.float32)
    y, mask = K.dense_dropout_forward(x, w, None, "relu", 0.5, 1, 1)
    ym, arg = K.dense_maxout_forward(x, w, None, 2)
    return {
        "matmul": lambda p: K.matmul(x, w, precision=p),
        "dense_forward": lambda p: K.dense_forward(x, w, None, "relu", precision=p),
        "dense_backward": lambda p: K.dense_backward(dy, x, w, "relu", y=y, precision=p),
        "dense_dropout_forward": lambda p: K.dense_dropout_forward(x, w, None, "relu", 0.5, 1, 1, precision=p),
        "dense_dropout_backward": lambda p: K.dense_dropout_backward(dy, x, w, "relu", mask, 0.5, y=y,
                                                                     precision=p),
        "dense_maxout_forward": lambda p: K.dense_maxout_forward(x, w, None, 2, precision=p),
        "dense_maxout_backward": lambda p: K.dense_maxout_backward(ym, x, w, arg, 2, precision=p),
    }


def test_every_precision_kernel_is_covered():
    assert set(_calls(np.random.default_rng(0))) == set(K.PRECISION_KERNELS)


@pytest.mark.parametrize("name", K.PRECISION_KERNELS)
def test_unknown_precision_is_a_clear_error(rng, name):
    call = _calls(rng)[name]
    with pytest.raises(ValueError, match=r"precision: expected 'fp32' or 'bf16', got 'fp16'"):
        call("fp16")
    with pytest.raises(TypeError, match=r"precision: expected 'fp32' or 'bf16', got NoneType"):
        call(None)
    call("fp32")  # the default, spelled out


def test_dense_stack_refuses_an_unknown_precision(rng):
    layer = {"w": np.ones((3, 2), np.float32), "y": np.empty((4, 2), np.float32),
             "dw": np.empty((3, 2), np.float32)}
    with pytest.raises(ValueError, match=r"precision: expected 'fp32' or 'bf16', got 'bfloat16'"):
        K.DenseStack([layer], loss="mse", dout=np.empty((4, 2), np.float32), precision="bfloat16")
    stack = K.DenseStack([layer], loss="mse", dout=np.empty((4, 2), np.float32))
    assert stack.precision == "fp32"
