"""A process forked after the kernels ran threaded gets working kernels, promptly, with
the parent's results bit for bit: os.fork, a chain of forks, and multiprocessing's fork
context (what DataLoader workers, joblib, gunicorn and pytest-xdist do).

OpenMP's worker threads do not survive a fork; before the fix the child's first parallel
kernel waited for them forever. Each scenario runs in a subprocess under a timeout, so a
hang fails the test instead of hanging the suite.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import fastdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))
TIMEOUT = 120  # seconds; each scenario takes about one on an idle 2-core machine

# Kernels that split their work over threads at these sizes: the GEMM, a dense layer's
# forward and backward, an optimizer step over 300 000 parameters.
PRELUDE = textwrap.dedent("""
    import os, sys
    import numpy as np
    import fastdl
    from fastdl import kernels as K

    fastdl.set_num_threads(2)

    def work():
        rng = np.random.default_rng(0)
        a = rng.standard_normal((256, 384), dtype=np.float32)
        b = rng.standard_normal((384, 320), dtype=np.float32)
        y, z = K.dense_forward(a, b, np.ones(320, np.float32), "gelu")
        dx, dw, db = K.dense_backward(y, a, b, "gelu", z=z)
        p = rng.standard_normal(300_000, dtype=np.float32)
        g = rng.standard_normal(300_000, dtype=np.float32)
        m, v = np.zeros_like(p), np.zeros_like(p)
        K.adam_step(p, g, m, v, lr=1e-3, step=1)
        return b"".join(r.tobytes() for r in (K.matmul(a, b), y, z, dx, dw, db, p, m, v))

    expected = work()  # the parent's threads are running now
    assert fastdl.get_num_threads() == 2
""")


def run(body):
    code = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the forked kernels did not finish within {TIMEOUT} s (a hang)")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_a_forked_child_runs_threaded_kernels_with_the_parents_results():
    run("""
        pid = os.fork()
        if pid == 0:
            os._exit(0 if work() == expected and fastdl.get_num_threads() == 2 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert work() == expected  # and the parent's kernels still run after the fork
        print("ok")
    """)


def test_a_chain_of_forks():
    """Each generation runs the kernels (one sets its thread count again first) and then
    forks the next."""
    run("""
        depth = 0
        for depth in range(1, 5):
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                if depth > 1:
                    os._exit(code)
                assert code == 0, (depth, status)
                break
            if depth == 2:
                fastdl.set_num_threads(2)
            if work() != expected:
                os._exit(10 + depth)
        else:
            os._exit(0)
        assert work() == expected
        print("ok")
    """)


def test_multiprocessing_fork_context():
    run("""
        import multiprocessing as mp

        def child(i):
            return work() == expected

        with mp.get_context("fork").Pool(2) as pool:
            assert pool.map(child, range(4)) == [True] * 4
        assert work() == expected
        print("ok")
    """)


def test_set_num_threads_refuses_counts_past_the_cap():
    """100000 threads crashed the process inside OpenMP (and 2**31 - 1 made it exit):
    the cap is 4 per processor OpenMP reports, at least 64."""
    cap = fastdl.max_num_threads()
    assert cap == max(64, 4 * len(os.sched_getaffinity(0)))
    before = fastdl.get_num_threads()
    try:
        for n in (cap + 1, 100_000, 2 ** 31 - 1, 2 ** 70):
            with pytest.raises(ValueError, match=rf"^n: expected 1 <= n <= {cap} threads"):
                fastdl.set_num_threads(n)
            assert fastdl.get_num_threads() == before
        for bad in (True, 2.0, "2", None):
            with pytest.raises(TypeError, match=r"^n: expected an int"):
                fastdl.set_num_threads(bad)
        fastdl.set_num_threads(cap)
        assert fastdl.get_num_threads() == cap
        import numpy as np
        fastdl.set_num_threads(np.int64(2))
        assert fastdl.get_num_threads() == 2
    finally:
        fastdl.set_num_threads(before)
