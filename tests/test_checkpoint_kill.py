"""model.save under SIGKILL: a child process saves two different models to the same path
in a loop and is killed at random moments, many times. After every kill the file is the
complete old or the complete new checkpoint, and fastdl.load reads it."""

import os
import signal
import time
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense

KILLS = int(os.environ.get("FASTDL_KILL_TEST_KILLS", "60"))


def two_models():
    # ~1.2 M parameters plus Adam state: a save writes ~15 MB and takes long enough
    # for most random kills to land inside it
    out = []
    for seed in (1, 2):
        m = fastdl.Sequential([Dense(512, 1024, activation="relu"), BatchNorm(1024), Dense(1024, 640)], seed=seed)
        m.compile(optimizer="adam")
        m.optimizer.state_dict()  # state buffers exist
        out.append(m)
    return out


def saver(models, path, pipe_w):
    """Child: save A, B, A, B, ... forever; one byte 'b' before each save and 'e' after."""
    i = 0
    while True:
        os.write(pipe_w, b"b")
        models[i % 2].save(path)
        os.write(pipe_w, b"e")
        i += 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_during_save_leaves_a_complete_old_or_new_checkpoint(tmp_path):
    models = two_models()
    fingerprints = [m.flat_params.copy() for m in models]
    path = str(tmp_path / "ckpt.fdl")
    models[0].save(path)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    models[1].save(path)
    save_s = time.perf_counter() - t0
    mid_save = 0
    seen = [0, 0]
    for _ in range(KILLS):
        r, w = os.pipe()
        with warnings.catch_warnings():  # Python 3.12+: fork with threads; the child only writes files
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            try:
                os.close(r)
                saver(models, path, w)
            finally:
                os._exit(1)
        os.close(w)
        # kill after 0 to 3 save durations: sometimes before the first save finishes,
        # sometimes between saves, mostly in the middle of one
        first = os.read(r, 1)
        time.sleep(rng.uniform(0, 3 * save_s))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        trace = first + _drain(r)
        os.close(r)
        if trace.endswith(b"b"):
            mid_save += 1
        got = fastdl.load(path)  # always a complete file ...
        which = [np.array_equal(got.flat_params, f) for f in fingerprints]
        assert sum(which) == 1, "the checkpoint is neither the old nor the new model"
        seen[which.index(True)] += 1
        assert got.optimizer is not None
        # a killed save may leave its temporary file behind, never a damaged target
        for name in os.listdir(tmp_path):
            if name != "ckpt.fdl":
                assert name.startswith(".ckpt.fdl.") and name.endswith(".tmp"), name
                os.unlink(tmp_path / name)
    # the test could have failed: most kills hit a save in progress, and both files were seen
    assert mid_save >= KILLS // 2, (mid_save, KILLS)
    assert min(seen) > 0, seen
    print(f"{KILLS} kills, {mid_save} in the middle of a save; loaded old/new: {seen}")


def _drain(fd):
    chunks = []
    while True:
        b = os.read(fd, 4096)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
