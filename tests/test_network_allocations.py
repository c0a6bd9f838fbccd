"""A training step allocates no arrays (issue: "no per-step allocation on this path"):
after a batch size's first step, every stage writes into buffers it keeps and the loss
gradient into one the network keeps. numpy reports its allocations to tracemalloc, so the
peak of traced memory over a few steps stays below the size of any array of the step.
Each measurement runs in a process of its own (_measured)."""

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout, Sequential

# Every array a step makes is at least 16 KiB at these sizes (dropout masks are one bit
# per element, batch-norm statistics one float per feature), so a single array allocated
# per step would show; the Python objects of a step (ints, tuples, the loss) peak at a
# few KiB.
BATCH, WIDTH, BN_WIDTH = 128, 1024, 4096
LIMIT = 12 * 1024


def _network():
    return Sequential([
        Dropout(0.2),
        Dense(WIDTH, WIDTH, activation="relu"), Dropout(0.5),
        Dense(WIDTH, BN_WIDTH, activation="gelu"),
        BatchNorm(BN_WIDTH),
        Maxout(BN_WIDTH, WIDTH, pieces=4), Dropout(0.3),
        Dense(WIDTH, WIDTH, activation="prelu"),
        Dense(WIDTH, WIDTH),
    ], seed=0)


def _peak_over_steps(step, steps=3):
    tracemalloc.start()
    try:
        step()  # tracing's own first-use bookkeeping
        step()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(steps):
            step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _measure(case):
    """The peak over steps of `case` in this process: "dropout" (a kernel call that makes
    one of the step's arrays each time) or "<loss>:<step_in_backward>" (a training step)."""
    if case == "dropout":
        x = np.ones((BATCH, WIDTH), np.float32)
        return _peak_over_steps(lambda: fastdl.kernels.dropout_forward(x, 0.5, 0, 1))
    loss, step_in_backward = case.split(":")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, WIDTH, BATCH).astype(np.int64)
    else:
        y = rng.uniform(0, 1, (BATCH, WIDTH)).astype(np.float32)
    model = _network()
    model.compile(optimizer=fastdl.optim.Adam(1e-3), loss=loss,
                  optimizer_step="in_backward" if step_in_backward == "True" else "separate")
    model.train_step(x, y)  # the batch size's first step allocates the buffers
    return _peak_over_steps(lambda: model.train_step(x, y))


def _measured(case):
    """_measure(case) in a fresh interpreter (this file run as a script). tracemalloc counts
    every thread's allocations, and in a pytest-xdist worker a thread receives the next
    tests while the step runs (423 KB within one measured step, in CI): a process of its
    own runs nothing else."""
    # The fastdl this process imported, wherever it came from (installed or a source tree).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))
    pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    p = subprocess.run([sys.executable, os.path.abspath(__file__), case], capture_output=True,
                       text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split()[-1])


@pytest.mark.parametrize("step_in_backward", [True, False])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse", "binary_cross_entropy"])
def test_train_step_allocates_no_arrays_after_the_first(loss, step_in_backward):
    peak = _measured(f"{loss}:{step_in_backward}")
    assert peak < LIMIT, f"a training step allocated {peak} bytes"


def test_the_check_sees_an_array_allocated_per_step():
    # The same measurement around a step that also makes one of the step's arrays.
    assert _measured("dropout") > LIMIT


def test_reused_buffers_give_the_gradients_of_fresh_ones_for_every_batch_size():
    # One network alternating batch sizes (so its kept buffers are reused, per size)
    # against a fresh network for every call (every buffer new): same gradients, bit for bit.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = rng.integers(0, WIDTH, BATCH).astype(np.int64)
    reused = _network()
    reused.compile(optimizer="adam", loss="softmax_cross_entropy")
    for k in range(5):
        n = BATCH if k % 2 == 0 else BATCH // 2 + 1
        fresh = _network()
        fresh.compile(optimizer="adam", loss="softmax_cross_entropy")
        fresh._step = reused.global_step  # the same dropout masks
        assert reused.compute_gradients(x[:n], y[:n]) == fresh.compute_gradients(x[:n], y[:n])
        np.testing.assert_array_equal(reused.flat_grads, fresh.flat_grads)


def test_every_buffer_of_a_step_starts_on_a_cache_line():
    # The CPU buffers fastdl allocates are 64-byte aligned (fastdl._device.ALIGN): the
    # optimizer applied tile by tile then starts each weight row with a whole vector.
    from fastdl._device import ALIGN, aligned_empty

    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = rng.integers(0, WIDTH, BATCH).astype(np.int64)
    model = _network()
    model.compile(optimizer=fastdl.optim.Adam(1e-3))
    model.train_step(x, y)
    arrays = [model.flat_params, model.flat_grads, *model.optimizer.state.values(), *model._stepper._loss_grads.values()]
    for stage in model._graph.stages:
        arrays += stage._kept_buffers.values()
    assert len(arrays) > 10
    for a in arrays:
        assert a.ctypes.data % ALIGN == 0
    for shape, dtype in [(0,), np.float32], [(3, 5), np.uint8], [(7,), np.int64], [(2, 3, 4), np.float32]:
        a = aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % ALIGN == 0  # an empty view has no data to align


def test_large_buffers_get_pages_of_their_own_at_distinct_offsets():
    # From OWN_PAGES_MIN bytes an array is an anonymous mapping of its own, starting at
    # another line of its page than the last one, so that parameters, gradients and
    # optimizer state (walked side by side by the optimizer) never share their low 12
    # address bits -- wherever the process's heap stands (fastdl/_device.py).
    from fastdl._device import ALIGN, OWN_PAGES_MIN, aligned_empty

    n = OWN_PAGES_MIN // 4
    arrays = [aligned_empty((n,)) for _ in range(4)]
    offsets = [a.ctypes.data % 4096 for a in arrays]
    assert len(set(offsets)) == 4, offsets
    for i, a in enumerate(arrays):
        assert a.ctypes.data % ALIGN == 0 and a.flags.writeable and a.flags.c_contiguous
        a[...] = i
    for i, a in enumerate(arrays):  # separate memory
        assert (a == i).all()
    two_d = aligned_empty((3, n), np.float64)
    assert two_d.shape == (3, n) and two_d.dtype == np.float64 and two_d.ctypes.data % ALIGN == 0
    model = _network()
    model.compile(optimizer=fastdl.optim.Adam(1e-3))
    big = [a for a in (model.flat_params, model.flat_grads, *model.optimizer.state.values())
           if a.nbytes >= OWN_PAGES_MIN]
    assert len({a.ctypes.data % 4096 for a in big}) == len(big)
    if hasattr(os, "fork"):  # private pages, like malloc's: a forked child writes its own copy
        pid = os.fork()
        if pid == 0:
            arrays[0][...] = -1.0
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert (arrays[0] == 0).all()


if __name__ == "__main__":  # one measurement for _measured: prints the peak in bytes
    print(_measure(sys.argv[1]))
