"""Data-parallel training over MPI: 2 ranks (mpirun over loopback) against one process.

Each test launches ``mpirun -n 2 python -m mpi4py tests/mpi_worker.py MODE OUTDIR`` and
compares what rank 0 wrote with ``model.fit`` in one process. Skipped when mpirun or
mpi4py is missing (.ci/mpi-setup.sh installs Open MPI; mpi4py is the `mpi` extra).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastdl

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")

try:
    import mpi4py  # noqa: F401

    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

pytestmark = pytest.mark.skipif(MPIRUN is None or not HAVE_MPI4PY,
                                reason="needs an MPI launcher (mpirun) and mpi4py (pip install fastdl[mpi])")

HAVE_ADAM_KERNEL = hasattr(fastdl._C, "adam_step")
LAUNCH_TIMEOUT = 240


def env():
    e = dict(os.environ)
    e.update({
        "OMPI_MCA_btl": "self,tcp", "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo",
        "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1",
        # the workers import the fastdl this process imported (source tree or installed)
        "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__))),
                                       e.get("PYTHONPATH", "")]),
        # MPICH/Hydra: loopback only
        "MPIR_CVAR_CH4_NETMOD": e.get("MPIR_CVAR_CH4_NETMOD", ""), "HYDRA_IFACE": "lo",
    })
    return {k: v for k, v in e.items() if v != "" or k == "PYTHONPATH"}


def is_open_mpi():
    out = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True, timeout=30)
    return "Open MPI" in out.stdout + out.stderr


def mpirun(mode, out, cfg=None, n=2, timeout=LAUNCH_TIMEOUT, check=True, extra_env=None):
    cmd = [MPIRUN]
    if is_open_mpi():
        cmd += ["--oversubscribe", "--allow-run-as-root"]
    cmd += ["-n", str(n), sys.executable, "-m", "mpi4py", WORKER, mode, str(out)]
    if cfg:
        cmd.append(json.dumps(cfg))
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**env(), **(extra_env or {})},
                       cwd=HERE)
    p.elapsed = time.monotonic() - t0
    if check and p.returncode != 0:
        raise AssertionError(f"mpirun {mode} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def reference(out, cfg=None, extra_env=None):
    cmd = [sys.executable, WORKER, "reference", str(out)] + ([json.dumps(cfg)] if cfg else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                       env={**env(), **(extra_env or {})}, cwd=HERE)
    assert p.returncode == 0, p.stderr
    return np.load(out / "params.npy"), read_json(out / "history.json")


def results(out):
    return np.load(out / "params.npy"), np.load(out / "params_all_ranks.npy"), read_json(out / "history.json")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "mpi").mkdir()
    return tmp_path / "ref", tmp_path / "mpi"


OPTIMIZERS = ["numpy_adam", pytest.param("adam", marks=pytest.mark.skipif(
    not HAVE_ADAM_KERNEL, reason="this tree has no CPU optimizer kernels (fastdl._C.adam_step)"))]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_two_ranks_equal_one_process_without_dropout(dirs, optimizer):
    # 6 epochs of 48 steps: 288 optimizer steps with global batch 32 (16 per rank)
    cfg = {"optimizer": optimizer, "epochs": 6}
    ref_params, ref_hist = reference(dirs[0], cfg)
    mpirun("train", dirs[1], cfg)
    params, per_rank, hist = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])  # the replicas never drift
    assert rel(params, ref_params) < 1e-6
    assert rel(ref_params, _initial_params(cfg)) > 1e-2  # training moved the parameters
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hist[key], ref_hist[key], rtol=1e-5, atol=1e-6)
    assert len(hist["loss"]) == 6


def _initial_params(cfg):
    sys.path.insert(0, HERE)
    import mpi_worker

    return np.asarray(mpi_worker.build(dict(mpi_worker.DEFAULTS, **cfg)).flat_params).copy()


def test_uneven_shards_and_dropout_equal_one_process(dirs):
    # global batch 37: shards of 18 and 19 rows, a last batch of 1536 % 37 = 19 rows;
    # dropout on the input (odd offsets: 18 * 20 elements) and on two hidden layers
    cfg = {"dropout": 0.3, "input_dropout": 0.1, "batch_size": 37, "epochs": 5}
    ref_params, ref_hist = reference(dirs[0], cfg)
    mpirun("train", dirs[1], cfg)
    params, per_rank, hist = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])
    assert rel(params, ref_params) < 1e-6
    np.testing.assert_allclose(hist["val_loss"], ref_hist["val_loss"], rtol=1e-5)


def test_last_batch_smaller_than_the_world(dirs):
    # 1537 samples with batch 32: the last global batch has 1 row, rank 1 gets none
    cfg = {"n": 1537, "dropout": 0.2, "epochs": 2}
    ref_params, _ = reference(dirs[0], cfg)
    mpirun("train", dirs[1], cfg)
    params, per_rank, _ = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])
    assert rel(params, ref_params) < 1e-6


def test_dropout_masks_bit_equal_to_one_process(tmp_path):
    cfg = {"dropout": 0.3, "input_dropout": 0.2, "batch_size": 37}
    mpirun("masks", tmp_path, cfg)
    z = np.load(tmp_path / "masks.npz")
    count = len([f for f in z.files if f.startswith("whole_")])
    assert count == 3  # the input Dropout, two fused Dense + Dropout
    for k in range(count):
        whole, ranks = z[f"whole_{k}"], z[f"ranks_{k}"]
        assert whole.shape == ranks.shape and whole.shape[0] == 37
        assert 0.5 < whole.mean() < 0.95  # a real mask, neither all kept nor all dropped
        np.testing.assert_array_equal(ranks, whole)


def test_early_stopping_stops_every_rank_at_the_same_epoch(dirs):
    cfg = {"epochs": 30, "early_stopping": 1, "lr": 3e-3}
    ref_params, ref_hist = reference(dirs[0], cfg)
    mpirun("train", dirs[1], cfg)
    params, per_rank, hist = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])  # both ranks left fit after the same step
    assert 2 <= len(hist["loss"]) < 30  # stopped early ...
    assert len(hist["loss"]) == len(ref_hist["loss"])  # ... at the epoch one process stops at
    # more steps at a higher rate than the 1e-6 tests: float32 rounding differences grow
    assert rel(params, ref_params) < 1e-5


@pytest.mark.parametrize("how", ["raise", "skip"])
def test_a_nan_loss_on_one_rank_is_refused_by_every_rank_at_the_same_step(dirs, how):
    # one NaN sample: in each epoch it lands in one step, on one rank's shard only (the
    # shuffle order is the same on every rank and in the one-process reference)
    cfg = {"nan_rows": [1000], "on_nonfinite": how, "epochs": 2}
    ref_params, _ = reference(dirs[0], cfg)
    mpirun("train", dirs[1], cfg)
    params, per_rank, hist = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])
    assert np.isfinite(params).all()
    assert rel(params, ref_params) < 1e-6
    if how == "raise":
        ref_err = read_json(dirs[0] / "error.json")
        for r in (0, 1):
            err = read_json(dirs[1] / f"error_{r}.json")
            assert (err["epoch"], err["step"]) == (ref_err["epoch"], ref_err["step"]) == (0, err["step"])
        assert "not finite on another rank" in read_json(dirs[1] / "error_0.json")["message"] + \
            read_json(dirs[1] / "error_1.json")["message"]
    else:
        assert hist["skipped_steps"] == [1, 1]
        assert hist["skipped_steps"] == read_json(dirs[0] / "history.json")["skipped_steps"]


def test_a_killed_rank_ends_the_job_and_the_checkpoint_survives(dirs):
    from fastdl import serialization

    out = dirs[1]
    p = mpirun("die", out, {"epochs": 50, "die_epoch": 2}, timeout=120, check=False)
    assert p.returncode != 0
    assert p.elapsed < 60  # nobody hung until the launcher's timeout
    assert not (out / "params.npy").exists()  # rank 0 never finished training
    # rank 0 wrote a checkpoint after epochs 1 and 2; the last one is complete
    meta, arrays = serialization._read(str(out / "ckpt.fdl"))
    assert meta["step"] == 2 * 48
    assert arrays["params"].shape == (fastdl_num_params(),)
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def fastdl_num_params():
    d, h, c = 20, 48, 3
    return d * h + h + h * h + h + h * c + c


def test_a_hung_rank_times_out_with_a_clear_error(dirs):
    out = dirs[1]
    p = mpirun("hang", out, {"epochs": 50, "die_epoch": 1, "timeout": 5}, timeout=120, check=False)
    assert p.returncode != 0
    assert p.elapsed < 60
    assert "did not complete within 5 s" in p.stderr
    assert "rank 0 of 2 failed; aborting all ranks" in p.stderr


def test_single_process_distributed_fit_is_model_fit(tmp_path):
    # MPI's singleton mode (no mpirun): size 1, no scaling, bit-identical to model.fit
    sys.path.insert(0, HERE)
    import mpi_worker
    from fastdl import distributed

    cfg = dict(mpi_worker.DEFAULTS, dropout=0.25, epochs=2)
    x, y, val = mpi_worker.data(cfg)
    a, b = mpi_worker.build(cfg), mpi_worker.build(cfg)
    ha = a.fit(x, y, epochs=2, batch_size=32, validation_data=val, verbose=0)
    from mpi4py import MPI

    hb = distributed.fit(b, x, y, epochs=2, batch_size=32, validation_data=val, verbose=0, comm=MPI.COMM_SELF)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert ha.history["val_loss"] == hb.history["val_loss"]
    assert all(st.row_offset == 0 for st in b._graph.stages)


def test_gpu_ranks_staged_through_host_memory_on_the_simulator(dirs):
    # device="cuda" models on Numba's CUDA simulator: the flat gradient buffer is a
    # device array, staged through host memory for the Allreduce (no CUDA-aware MPI)
    try:
        import numba.cuda  # noqa: F401
    except ImportError:
        pytest.skip("numba-cuda is not installed (pip install fastdl[cuda])")
    sim = {"NUMBA_ENABLE_CUDASIM": "1", "FASTDL_MPI_CUDA_AWARE": "0"}
    cfg = {"device": "cuda", "optimizer": "adam", "n": 64, "d": 8, "hidden": 16, "epochs": 2, "batch_size": 22,
           "dropout": 0.25, "validation": False}
    ref_params, _ = reference(dirs[0], cfg, sim)
    mpirun("train", dirs[1], cfg, extra_env=sim)
    params, per_rank, _ = results(dirs[1])
    np.testing.assert_array_equal(per_rank[0], per_rank[1])
    assert rel(params, ref_params) < 1e-6
    assert rel(ref_params, _initial_params(dict(cfg, device="cpu", optimizer="numpy_adam"))) > 1e-3


def test_shard_bounds_cover_the_batch():
    from fastdl.distributed import shard_bounds

    for m in (1, 2, 7, 32, 37):
        for size in (1, 2, 3, 8):
            parts = [shard_bounds(m, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == m
            assert all(parts[r][1] == parts[r + 1][0] for r in range(size - 1))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1
