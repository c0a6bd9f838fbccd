"""Philox-4x32-10 against Random123's known answers, and the GPU dropout kernels against
the numpy reference of the keep rule (bit-identical masks) and the CPU kernels where the
tree has them."""

import numpy as np
import pytest

import cuda_reference as cref

cuda = cref.require_gpu_or_simulator()
pytestmark = [pytest.mark.filterwarnings(f) for f in cref.FILTERS]

import fastdl  # noqa: E402
from fastdl.cuda import kernels as G  # noqa: E402
from fastdl.cuda import philox  # noqa: E402

import reference as ref  # noqa: E402

to_dev, host = cref.to_dev, cref.host

# Random123's kat_vectors for philox4x32_10: (counter, key, expected)
KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@cuda.jit
def _philox_words(out, ctr, key):
    r0, r1, r2, r3 = philox.philox4x32_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1])
    out[0] = r0
    out[1] = r1
    out[2] = r2
    out[3] = r3


@pytest.mark.parametrize("ctr,key,expected", KATS)
def test_philox_known_answers_device(ctr, key, expected):
    out = cuda.device_array(4, np.uint64)
    _philox_words[1, 1](out, to_dev(np.array(ctr, np.uint64)), to_dev(np.array(key, np.uint64)))
    assert [hex(v) for v in host(out)] == [hex(v) for v in expected]


@pytest.mark.parametrize("ctr,key,expected", KATS)
def test_philox_known_answers_reference(ctr, key, expected):
    got = cref.philox4x32_10(*ctr, *key)
    assert [int(v) for v in got] == list(expected)


@pytest.mark.parametrize("size,p,seed,step,stream", [
    (1, 0.5, 0, 0, 0), (7, 0.3, 123, 5, 0), (33, 0.9, 2**64 - 1, 2**32 - 1, 7), (300, 0.5, 2**40 + 3, 11, 2),
    (64, 0.0, 9, 1, 0)])
def test_dropout_forward_mask_is_bit_exact(rng, size, p, seed, step, stream):
    x = rng.standard_normal(size, dtype=np.float32)
    y, mask = G.dropout_forward(to_dev(x), p, seed, step, stream)
    keep = cref.keep_mask(size, p, seed, step, stream)
    np.testing.assert_array_equal(host(mask), cref.pack(keep))
    np.testing.assert_array_equal(np.unpackbits(host(mask), bitorder="little")[:size].astype(bool), keep)
    np.testing.assert_allclose(host(y), np.where(keep, x / np.float32(1 - p), 0), rtol=1e-6)
    if p == 0.0:
        assert keep.all()
    dy = rng.standard_normal(size, dtype=np.float32)
    dx = G.dropout_backward(to_dev(dy), mask, p)
    np.testing.assert_allclose(host(dx), np.where(keep, dy / np.float32(1 - p), 0), rtol=1e-6)
    dx = G.dropout_backward(to_dev(dy), mask, p, scale=False)
    np.testing.assert_array_equal(host(dx), np.where(keep, dy, 0))


def test_dropout_2d_scale_false_and_stream_independence(rng):
    x = rng.standard_normal((5, 9), dtype=np.float32)
    y0, m0 = G.dropout_forward(to_dev(x), 0.5, 42, 3, 0, scale=False)
    y1, m1 = G.dropout_forward(to_dev(x), 0.5, 42, 3, 1, scale=False)
    keep = cref.keep_mask(45, 0.5, 42, 3, 0).reshape(5, 9)
    np.testing.assert_array_equal(host(y0), np.where(keep, x, 0))
    assert not np.array_equal(host(m0), host(m1))


def test_keep_rate_close_to_one_minus_p():
    y, mask = G.dropout_forward(to_dev(np.ones(4096, np.float32)), 0.25, 7, 1)
    rate = np.unpackbits(host(mask), bitorder="little")[:4096].mean()
    assert abs(rate - 0.75) < 0.03


def test_matches_cpu_dropout_when_present(rng):
    if not hasattr(fastdl._C, "dropout_forward"):
        pytest.skip("the CPU dropout kernel is not in this tree yet")
    x = rng.standard_normal((13, 11), dtype=np.float32)
    y_c, m_c = fastdl._C.dropout_forward(x, 0.4, 99, 3, 2)
    y_g, m_g = G.dropout_forward(to_dev(x), 0.4, 99, 3, 2)
    np.testing.assert_array_equal(host(m_g), m_c)
    np.testing.assert_allclose(host(y_g), y_c, rtol=1e-6)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "gelu", "prelu"])
@pytest.mark.parametrize("scale", [True, False])
def test_dense_dropout_forward_backward(rng, act, scale):
    n, k, m, p = 7, 17, 13, 0.3
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    alpha = rng.uniform(0, 0.5, m).astype(np.float32) if act == "prelu" else None
    out = G.dense_dropout_forward(to_dev(x), to_dev(w), to_dev(b), act, p, 5, 2, 1,
                                  alpha=None if alpha is None else to_dev(alpha), scale=scale)
    y, mask = out[:2]
    keep = cref.keep_mask(n * m, p, 5, 2, 1).reshape(n, m)
    np.testing.assert_array_equal(host(mask), cref.pack(keep.ravel()))
    a, z = ref.dense_forward(x, w, b, act, alpha)
    s = 1 / (1 - p) if scale else 1.0
    np.testing.assert_allclose(host(y), np.where(keep, a * s, 0), rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    kw = {"z": out[2]} if act in G.NEEDS_Z else {"y": y}
    grads = G.dense_dropout_backward(to_dev(dy), to_dev(x), to_dev(w), act, mask, p, scale=scale,
                                     alpha=None if alpha is None else to_dev(alpha), **kw)
    gy = np.where(keep, dy * s, 0)
    dz = gy * ref.activation_grad(act, z, alpha)
    want = [dz @ w.T, x.T @ dz, dz.sum(0)] + ([(gy * np.minimum(z, 0)).sum(0)] if act == "prelu" else [])
    for got, exp in zip(grads, want):
        np.testing.assert_allclose(host(got), exp, rtol=1e-3, atol=1e-4)


def test_dropout_errors():
    d = to_dev(np.ones(10, np.float32))
    with pytest.raises(ValueError, match=r"p: the drop probability must be in \[0, 1\)"):
        G.dropout_forward(d, 1.0, 1, 1)
    with pytest.raises(ValueError, match="seed: expected 0 <= seed < 2\\*\\*64"):
        G.dropout_forward(d, 0.5, -1, 1)
    with pytest.raises(ValueError, match="step: expected 0 <= step < 2\\*\\*32"):
        G.dropout_forward(d, 0.5, 1, 2**32)
    with pytest.raises(ValueError, match="mask: expected shape\\[0\\] == 2"):
        G.dropout_backward(d, to_dev(np.ones(3, np.uint8)), 0.5)
    with pytest.raises(TypeError, match="mask: expected dtype uint8"):
        G.dropout_backward(d, to_dev(np.ones(2, np.int32)), 0.5)


@pytest.mark.parametrize("offset", [0, 3, 4, 13, 2**34 + 1])
def test_dropout_offset_draws_element_offset_plus_i(rng, offset):
    size, p = 45, 0.4
    x = rng.standard_normal(size, dtype=np.float32)
    y, mask = G.dropout_forward(to_dev(x), p, 17, 2, 1, offset=offset)
    import philox_reference as ph

    keep = ph.keep(np.arange(offset, offset + size, dtype=np.uint64), p, 17, 2, 1)
    np.testing.assert_array_equal(host(mask), cref.pack(keep))
    np.testing.assert_allclose(host(y), np.where(keep, x / np.float32(1 - p), 0), rtol=1e-6)
    if hasattr(fastdl._C, "dropout_forward"):
        np.testing.assert_array_equal(host(mask), fastdl._C.dropout_forward(x, p, 17, 2, 1, offset=offset)[1])


@pytest.mark.parametrize("m", [13, 16])
def test_dense_dropout_offset_matches_the_whole_batch_rows(rng, m):
    n, k, p = 9, 11, 0.3
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    whole = G.dense_dropout_forward(to_dev(x), to_dev(w), to_dev(b), "relu", p, 5, 2, 1)
    keep = np.unpackbits(host(whole[1]), bitorder="little")[:n * m].reshape(n, m)
    lo = 4
    part = G.dense_dropout_forward(to_dev(np.ascontiguousarray(x[lo:])), to_dev(w), to_dev(b), "relu", p, 5, 2, 1,
                                   offset=lo * m)
    np.testing.assert_array_equal(np.unpackbits(host(part[1]), bitorder="little")[:(n - lo) * m].reshape(n - lo, m),
                                  keep[lo:])
    np.testing.assert_allclose(host(part[0]), host(whole[0])[lo:], rtol=1e-6)
    with pytest.raises(ValueError, match="offset"):
        G.dense_dropout_forward(to_dev(x), to_dev(w), to_dev(b), "relu", p, 5, 2, 1, offset=-1)


@pytest.mark.parametrize("first", ["dense", "dropout"])
def test_scale_at_test_dropout_inference_matches_the_cpu(rng, first):
    # Inference scales by 1 - p on the device (a Dense's output, or a standalone
    # Dropout's copy of its input); the same network on the CPU is the reference.
    from fastdl import Dense, Dropout, Sequential

    def layers():
        if first == "dense":
            return [Dense(6, 8, activation="relu"), Dropout(0.25, scale_at_test=True), Dense(8, 3)]
        return [Dropout(0.5, scale_at_test=True), Dense(6, 3)]

    x = rng.standard_normal((5, 6)).astype(np.float32)
    want = Sequential(layers(), seed=0).predict(x)
    got = Sequential(layers(), seed=0, device="cuda").predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
