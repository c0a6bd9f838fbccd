"""Determinism and thread safety of every kernel in fastdl.kernels (table in
kernel_specs.py), at sizes large enough that the kernels split their work over threads.

- Same inputs, same ISA: bit-identical results for 1, 2 and 3 threads and across
  repeated calls (reductions run in a fixed order that does not depend on the thread
  count).
- Different ISA paths (avx512 / avx2 / generic): within the float32 rounding bound of
  the float64 reference (the vector width changes the summation order); integer outputs
  (dropout masks, maxout argmax of exact inputs) are identical.
- Several Python threads calling every kernel at once (the GIL is released) each get
  exactly the serial result.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastdl
from fastdl import kernels as K

import kernel_specs as ks
from conftest import ISAS
from kernel_specs import SPECS

THREAD_COUNTS = (1, 2, 3)


def _big_args(spec, seed=11):
    return ks.build(spec, np.random.default_rng(seed), spec.big_sizes)


def _run(spec, args):
    a = ks.copy_args(args)  # in-place kernels start from the same state every time
    return spec.outputs(getattr(K, spec.kernel)(**a), a)


def _bits(outputs):
    return [None if o is None else (np.asarray(o).dtype.str, np.asarray(o).shape, np.asarray(o).tobytes())
            for o in outputs]


@pytest.fixture
def restore_threads():
    n = fastdl.get_num_threads()
    yield
    fastdl.set_num_threads(n)


def test_every_kernel_is_covered():
    assert {s.kernel for s in SPECS} == set(K._KERNELS)
    assert all(s.big_sizes for s in SPECS)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_bit_identical_across_thread_counts_and_calls(spec, isa, restore_threads):
    args = _big_args(spec)
    results = {}
    for t in THREAD_COUNTS:
        fastdl.set_num_threads(t)
        assert fastdl.get_num_threads() == t
        first = _bits(_run(spec, args))
        again = _bits(_run(spec, args))
        assert first == again, f"{spec.id} on {isa}: two calls with {t} threads differ"
        results[t] = first
    for t in THREAD_COUNTS[1:]:
        for i, (a, b) in enumerate(zip(results[1], results[t])):
            assert a == b, f"{spec.id} on {isa}: output {i} differs between 1 and {t} threads"


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_isa_paths_agree_within_the_rounding_bound(spec):
    if len(ISAS) < 2:
        pytest.skip("one ISA path on this CPU")
    args = _big_args(spec, seed=5)
    exp = ks.expected(spec, args)
    tol = spec.tol(args, exp)
    previous = fastdl.get_isa()
    try:
        outs = {}
        for isa in ISAS:
            fastdl.set_isa(isa)
            outs[isa] = _run(spec, args)
            ks.check_close(spec, outs[isa], exp, tol, f" on {isa}")
    finally:
        fastdl.set_isa(previous)


def test_set_num_threads_is_process_wide(restore_threads):
    """OpenMP's omp_set_num_threads only sets the calling thread's count: the kernels
    must use the count set from any thread, in every thread."""
    fastdl.set_num_threads(1)
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastdl.get_num_threads()))
    t.start()
    t.join()
    assert seen == [1]
    fastdl.set_num_threads(3)
    t = threading.Thread(target=lambda: seen.append(fastdl.get_num_threads()))
    t.start()
    t.join()
    assert seen == [1, 3]


@pytest.mark.parametrize("threads", [1, 2])
def test_every_kernel_from_several_python_threads_at_once(threads, restore_threads):
    """Four Python threads each run every kernel (each with its own inputs) several
    times, interleaved; every result must equal the serial one bit for bit."""
    fastdl.set_num_threads(threads)
    work = [(spec, _big_args(spec, seed=100 + i)) for i, spec in enumerate(SPECS) for _ in range(2)]
    expected = [_bits(_run(spec, args)) for spec, args in work]
    barrier = threading.Barrier(4)

    def worker(wid):
        barrier.wait()
        bad = []
        order = np.random.default_rng(wid).permutation(len(work))
        for _ in range(3):
            for j in order:
                spec, args = work[j]
                if _bits(_run(spec, args)) != expected[j]:
                    bad.append(spec.id)
        return bad

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [b for r in pool.map(worker, range(4)) for b in r]
    assert not failures, f"concurrent calls gave different results: {sorted(set(failures))}"


def test_refusals_from_several_threads_leave_no_state(restore_threads):
    """Refused calls (exceptions thrown with the GIL released or while checking) mixed
    with good calls from several threads: the good ones stay right, nothing leaks."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 48), dtype=np.float32)
    w = rng.standard_normal((48, 32), dtype=np.float32)
    want = K.dense_forward(x, w, None, "tanh")
    labels_bad = np.full(64, 40, np.int64)  # out of range for 32 classes

    def worker(i):
        ok = True
        for _ in range(50):
            with pytest.raises(ValueError, match=r"^target: label 40"):
                K.softmax_cross_entropy(want, labels_bad)
            with pytest.raises(IndexError, match=r"^argmax"):
                K.maxout_backward(want, np.full(want.shape, 9, np.uint8), 3)
            ok &= K.dense_forward(x, w, None, "tanh").tobytes() == want.tobytes()
        return ok

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(worker, range(4)))


# -- a whole fit ---------------------------------------------------------------------------
def _fit_weights(threads, seed=5):
    fastdl.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    m = fastdl.Sequential([fastdl.Dense(40, 96, activation="relu"), fastdl.Dropout(0.3), fastdl.BatchNorm(96),
                           fastdl.Maxout(96, 64, pieces=3), fastdl.Dense(64, 5)], seed=seed)
    m.compile(optimizer=fastdl.optim.AdamW(lr=1e-2))
    m.fit(x, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0)
    return m.flat_params.copy(), [st.running_mean.copy() for st in m._graph.bn_stages]


def test_fit_is_bit_identical_for_the_same_seed_at_any_thread_count(restore_threads):
    # the docs' guarantee: same seed, same ISA path -> the same weights bit for bit,
    # whatever the thread count (every reduction is split into fixed blocks)
    ref_params, ref_stats = _fit_weights(1)
    for threads in (1, 2, 3):
        params, stats = _fit_weights(threads)
        np.testing.assert_array_equal(params, ref_params)
        for a, b in zip(stats, ref_stats):
            np.testing.assert_array_equal(a, b)
    other, _ = _fit_weights(1, seed=6)
    assert not np.array_equal(other, ref_params)


# Backward shapes small enough that its two GEMMs (dw and dx) run side by side, one per
# thread, instead of one after the other (dense.cpp): one thread must give the same bits.
SIDE_BY_SIDE_SHAPES = [(32, 64, 64), (32, 64, 10), (8, 64, 64), (17, 33, 40)]


@pytest.mark.parametrize("act", ["relu", "prelu", "linear"])
@pytest.mark.parametrize("n,k,m", SIDE_BY_SIDE_SHAPES)
def test_dense_backward_side_by_side_matches_one_thread(n, k, m, act, isa, restore_threads):
    assert 2.0e4 <= 2 * n * k * m < 4.0e5  # big enough for the fork, too small to split
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = rng.standard_normal((k, m), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    alpha = rng.uniform(-0.5, 0.5, m).astype(np.float32) if act == "prelu" else None
    dy = rng.standard_normal((n, m), dtype=np.float32)
    results = []
    for t in THREAD_COUNTS:
        fastdl.set_num_threads(t)
        y = K.dense_forward(x, w, b, act, alpha=alpha)
        kw = {"y": y} if act == "relu" else {}
        if act == "prelu":
            y, kw = y[0], {"z": y[1]}
        results.append([a.copy() for a in K.dense_backward(dy, x, w, act, alpha=alpha, **kw)])
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)
    z = x.astype(np.float64) @ w + b
    if act == "relu":
        slope = (z > 0).astype(np.float64)
    elif act == "prelu":
        slope = np.where(z > 0, 1.0, alpha.astype(np.float64))
    else:
        slope = np.ones_like(z)
    dz = dy * slope
    dx, dw, db = results[0][:3]
    np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dz, rtol=1e-4, atol=1e-4 * np.sqrt(n))
    np.testing.assert_allclose(dx, dz @ w.T.astype(np.float64), rtol=1e-4, atol=1e-4 * np.sqrt(m))
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-4, atol=1e-4 * np.sqrt(n))
    if act == "prelu":
        np.testing.assert_allclose(results[0][3], (dy * np.minimum(z, 0)).sum(axis=0), rtol=1e-4,
                                   atol=1e-4 * np.sqrt(n))

# GEMM shapes at the edge of the thread-split rule (gemm_kernel.inl): two column panels
# against three row panels (split by columns, 1 + 1), three against two (by rows), few
# rows and many columns, a split that leaves one thread a ragged panel, and ties broken
# both ways (784 x 64 outputs by rows, 24 x 40 by columns).
SPLIT_SHAPES = [(32, 784, 64), (784, 32, 64), (20, 300, 90), (24, 500, 40), (13, 700, 33), (300, 64, 1)]


@pytest.mark.parametrize("n,k,m", SPLIT_SHAPES)
def test_dense_kernels_at_the_split_edges_are_thread_count_independent(n, k, m, isa, restore_threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = rng.standard_normal((k, m), dtype=np.float32)
    b = rng.standard_normal(m, dtype=np.float32)
    dy = rng.standard_normal((n, m), dtype=np.float32)
    results = []
    for t in THREAD_COUNTS:
        fastdl.set_num_threads(t)
        y = K.dense_forward(x, w, b, "relu")
        dx, dw, db = K.dense_backward(dy, x, w, "relu", y=y)
        results.append([a.copy() for a in (y, dx, dw, db)])
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)
    z = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(results[0][0], np.maximum(z, 0), rtol=1e-4, atol=1e-4 * np.sqrt(k))
    dz = dy * (z > 0)
    np.testing.assert_allclose(results[0][2], x.T.astype(np.float64) @ dz, rtol=1e-4, atol=1e-4 * np.sqrt(n))
