"""Worker for tests/test_distributed.py: run under ``mpirun -n N python -m mpi4py
tests/mpi_worker.py MODE OUTDIR [CONFIG_JSON]`` (or plainly, for the one-process
reference). Rank 0 writes its results into OUTDIR.

Modes:
- reference: ``model.fit`` in this one process (no MPI at all);
  (config {"device": "cuda"} runs either on the GPU, or Numba's simulator with
  NUMBA_ENABLE_CUDASIM=1: the staging of device buffers through host memory)
- train: ``fastdl.distributed.fit`` over the ranks;
- masks: one global batch: every rank's dropout masks on its shard, gathered, next to
  the masks of the whole batch in one process;
- die: train, with rank 1 killing itself (SIGKILL) in epoch `die_epoch`;
- hang: train, with rank 1 stuck (sleeping) in epoch `die_epoch`; the others time out.

Config "nan_rows" puts NaN into those training samples; "on_nonfinite" is fit's
on_nonfinite_loss. A NonFiniteLossError is caught and its (epoch, step) written to
error.json (by every rank, as error_<rank>.json), with the parameters as usual.
"""

import json
import os
import signal
import sys
import time

import numpy as np

import fastdl  # noqa: E402
from fastdl import _device, callbacks, optim  # noqa: E402

DEFAULTS = {"n": 1536, "d": 20, "classes": 3, "hidden": 48, "dropout": 0.0, "input_dropout": 0.0,
            "optimizer": "numpy_adam", "lr": 1e-3, "epochs": 4, "batch_size": 32, "seed": 7, "die_epoch": 2,
            "timeout": None, "validation": True, "device": "cpu", "nan_rows": [], "on_nonfinite": "raise"}


class NumpyAdam(optim.Optimizer):
    """Adam in float32 numpy (PyTorch's update), for trees without the optimizer kernels:
    it divides by sqrt(v), so it amplifies gradient differences as the real one does."""

    name = "numpy_adam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(lr)
        self.b1, self.b2, self.eps = betas[0], betas[1], eps

    def bind(self, size, device="cpu", decay_segments=None):
        self._backend = _device.get_backend(device)
        self._size = int(size)
        self.state = {k: np.zeros(self._size, np.float32) for k in self.state_names}
        self.step_count = 0
        return self

    def _kernel_step(self, params, grads):
        m, v, t = self.state["exp_avg"], self.state["exp_avg_sq"], self.step_count
        m *= np.float32(self.b1)
        m += np.float32(1 - self.b1) * grads
        v *= np.float32(self.b2)
        v += np.float32(1 - self.b2) * grads * grads
        denom = np.sqrt(v / np.float32(1 - self.b2 ** t)) + np.float32(self.eps)
        params -= np.float32(self.lr / (1 - self.b1 ** t)) * m / denom


def data(cfg):
    rng = np.random.default_rng(123)
    n, d, c = cfg["n"], cfg["d"], cfg["classes"]
    centers = rng.standard_normal((c, d)).astype(np.float32) * 1.5
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    xv_y = rng.integers(0, c, 301)
    xv = (centers[xv_y] + rng.standard_normal((301, d))).astype(np.float32)
    return x, y, (xv, xv_y)


def build(cfg):
    layers = []
    if cfg["input_dropout"]:
        layers.append(fastdl.Dropout(cfg["input_dropout"]))
    layers += [fastdl.Dense(cfg["d"], cfg["hidden"], activation="relu")]
    if cfg["dropout"]:
        layers.append(fastdl.Dropout(cfg["dropout"]))
    layers += [fastdl.Dense(cfg["hidden"], cfg["hidden"], activation="tanh")]
    if cfg["dropout"]:
        layers.append(fastdl.Dropout(cfg["dropout"]))
    layers += [fastdl.Dense(cfg["hidden"], cfg["classes"])]
    model = fastdl.Sequential(layers, seed=cfg["seed"], device=cfg["device"])
    opt = NumpyAdam(lr=cfg["lr"]) if cfg["optimizer"] == "numpy_adam" else optim.get(cfg["optimizer"], lr=cfg["lr"])
    model.compile(optimizer=opt, loss="softmax_cross_entropy", metrics=["accuracy"])
    return model


class Saboteur(callbacks.Callback):
    """On rank 1, in epoch `epoch` (after a few steps): die or hang."""

    def __init__(self, rank, epoch, how):
        self.rank, self.epoch, self.how = rank, epoch, how
        self._epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.rank == 1 and self._epoch == self.epoch and batch == 3:
            if self.how == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)


def main():
    mode, out = sys.argv[1], sys.argv[2]
    cfg = dict(DEFAULTS)
    if len(sys.argv) > 3:
        cfg.update(json.loads(sys.argv[3]))
    fastdl.set_num_threads(1)
    x, y, val = data(cfg)
    x[cfg["nan_rows"]] = np.nan
    model = build(cfg)
    fit_kw = dict(epochs=cfg["epochs"], batch_size=cfg["batch_size"], verbose=0,
                  validation_data=val if cfg["validation"] else None, on_nonfinite_loss=cfg["on_nonfinite"])
    stop = []
    if cfg.get("early_stopping"):
        stop.append(callbacks.EarlyStopping(monitor="val_loss", patience=cfg["early_stopping"], min_delta=1e-3))
    if mode == "reference":
        hist = fit_or_record(lambda: model.fit(x, y, callbacks=stop, **fit_kw), out, "error.json")
        np.save(os.path.join(out, "params.npy"), _device.to_host(model.flat_params))
        with open(os.path.join(out, "history.json"), "w") as f:
            json.dump(hist.history, f)
        return

    from fastdl import distributed
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    r = comm.Get_rank()
    if mode == "masks":
        masks_of_rank = shard_masks(cfg, model, x, y, comm)
        gathered = comm.gather(masks_of_rank, root=0)
        if r == 0:
            whole = build(cfg)
            xb, yb = x[:cfg["batch_size"]], y[:cfg["batch_size"]]
            whole.compute_gradients(xb, yb.astype(np.int64))
            ref = stage_masks(whole, cfg["batch_size"])
            np.savez(os.path.join(out, "masks.npz"),
                     **{f"ranks_{k}": np.concatenate([g[k] for g in gathered]) for k in range(len(ref))},
                     **{f"whole_{k}": m for k, m in enumerate(ref)})
        return

    cbs = [callbacks.ModelCheckpoint(os.path.join(out, "ckpt.fdl"))] + stop
    if mode in ("die", "hang"):
        cbs.append(Saboteur(r, cfg["die_epoch"], mode))
    hist = fit_or_record(lambda: distributed.fit(model, x, y, callbacks=cbs, timeout=cfg["timeout"], **fit_kw),
                         out, f"error_{r}.json")
    params = _device.to_host(model.flat_params).copy()
    finger = comm.gather(params, root=0)
    if r == 0:
        np.save(os.path.join(out, "params.npy"), params)
        np.save(os.path.join(out, "params_all_ranks.npy"), np.stack(finger))
        with open(os.path.join(out, "history.json"), "w") as f:
            json.dump(hist.history, f)


def fit_or_record(run, out, name):
    """run(); a NonFiniteLossError becomes OUTDIR/name with its epoch and step."""
    try:
        return run()
    except fastdl.NonFiniteLossError as e:
        with open(os.path.join(out, name), "w") as f:
            json.dump({"epoch": e.epoch, "step": e.step, "message": str(e)}, f)
        return e.history


def stage_masks(model, rows):
    """Each dropout stage's keep flags as (rows, M) bool."""
    out = []
    for st in model._graph.stages:
        if getattr(st, "p", 0) and getattr(st, "mask", None) is not None:
            m = st.m
            out.append(np.unpackbits(st.mask, bitorder="little")[:rows * m].reshape(rows, m).astype(bool))
    return out


def shard_masks(cfg, model, x, y, comm):
    from fastdl import distributed

    c = distributed.Communicator(comm)
    distributed.sync_model(model, c)
    lo, hi = distributed.shard_bounds(cfg["batch_size"], c.size, c.rank)
    for st in model._graph.stages:
        st.row_offset = lo
    model.compute_gradients(np.ascontiguousarray(x[lo:hi]), y[lo:hi].astype(np.int64))
    return stage_masks(model, hi - lo)


if __name__ == "__main__":
    main()
