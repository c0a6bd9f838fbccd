"""Data-parallel training over MPI (mpi4py): N processes, one model replica each, the
same result as one process (docs/distributed.md).

Start a script with ``mpirun -np N python -m mpi4py train.py`` (``srun python -m mpi4py
train.py`` under Slurm); in it, build and compile the model as usual and call
``fastdl.distributed.fit(model, x, y, ...)`` instead of ``model.fit``. Every rank
passes the same x, y (a ``np.load(..., mmap_mode="r")`` array reads only the rows the
rank touches). Per global mini-batch of B samples:

1. every rank takes the same globally shuffled order (the model's shuffle generator,
   synchronised from rank 0) and computes gradients on its contiguous slice of the
   batch, rows [r * B // N, (r + 1) * B // N), with dropout drawing the masks of the
   *global* rows (the kernels' ``offset``);
2. scales its gradient by (its rows / B) and one in-place ``Allreduce`` (SUM) over
   the whole flat gradient buffer gives every rank the global batch's mean gradient;
3. every rank applies the same optimizer step, so the replicas never drift.

Rank 0 alone prints progress and runs the callbacks that write files
(ModelCheckpoint, CSVLogger); the others (EarlyStopping, learning-rate schedules)
run on every rank from the same allreduced epoch metrics. An exception on any rank
aborts all of them (``MPI.Abort``) instead of leaving the others blocked in a
collective; ``timeout`` bounds every collective as well.
"""

import math
import os
import sys
import time
import traceback
import zlib

import numpy as np

from fastdl import _device
from fastdl import callbacks as callbacks_mod

__all__ = ["fit", "Communicator", "CollectiveTimeout", "shard_bounds", "rank", "world_size", "local_rank",
           "select_gpu", "sync_model", "gradient_bytes"]

MPI_HINT = ("fastdl.distributed needs mpi4py and an MPI library: `pip install fastdl[mpi]` and e.g. Debian's "
            "`apt-get install openmpi-bin libopenmpi-dev` (or your cluster's MPI module)")

#: Callbacks that write files or print: rank 0 alone runs them.
WRITERS = (callbacks_mod.ModelCheckpoint, callbacks_mod.CSVLogger, callbacks_mod.ProgressBar)


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the timeout: some rank died or hangs."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(MPI_HINT) from e
    return MPI


def shard_bounds(m, size, r):
    """Rows [lo, hi) of an m-row global batch that rank r of `size` takes: contiguous,
    sizes differing by at most one, in rank order."""
    return r * m // size, (r + 1) * m // size


def rank(comm=None):
    """This process's rank in `comm` (COMM_WORLD by default)."""
    return (comm or _mpi().COMM_WORLD).Get_rank()


def world_size(comm=None):
    return (comm or _mpi().COMM_WORLD).Get_size()


def local_rank(comm=None):
    """Rank among the processes on this node (for choosing a GPU)."""
    MPI = _mpi()
    node = (comm or MPI.COMM_WORLD).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def select_gpu(comm=None):
    """One GPU per rank: selects GPU local_rank % (GPUs on the node) for this process
    (call it before building a device="cuda" model). Returns the device index."""
    from numba import cuda

    count = len(cuda.gpus)
    if count == 0:
        raise RuntimeError("select_gpu: no CUDA GPU visible to this rank")
    index = local_rank(comm) % count
    cuda.select_device(index)
    return index


def gradient_bytes(model):
    """Bytes each rank sends into the gradient Allreduce per step: the flat float32
    gradient buffer (a ring Allreduce moves about 2 (N - 1) / N times this per rank)."""
    return int(model.num_params) * 4


class Communicator:
    """The few collectives data-parallel training needs, over an mpi4py communicator.

    Buffers are float32 numpy arrays or, for GPU models, device arrays: passed to MPI
    directly when the MPI library is CUDA-aware (``cuda_aware=None`` asks it,
    ``FASTDL_MPI_CUDA_AWARE=0/1`` overrides), else staged through a pinned host buffer.
    timeout: seconds any collective may take before CollectiveTimeout (None: wait as
    MPI does; a dead rank then still ends the job through mpirun / MPI's error
    handler, a hung one does not)."""

    def __init__(self, comm=None, timeout=None, cuda_aware=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        if timeout is not None and not float(timeout) > 0:
            raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        self._cuda_aware = cuda_aware
        self._staging = None

    # -- GPU buffers ---------------------------------------------------------------------
    @property
    def cuda_aware(self):
        if self._cuda_aware is None:
            env = os.environ.get("FASTDL_MPI_CUDA_AWARE")
            if env is not None:
                self._cuda_aware = env.strip().lower() in ("1", "true", "yes")
            else:
                query = getattr(self.MPI, "Query_cuda_support", None)
                try:
                    self._cuda_aware = bool(query()) if query is not None else False
                except Exception:  # an MPI without the MPIX extension
                    self._cuda_aware = False
        return self._cuda_aware

    def _host_stage(self, n):
        if self._staging is None or self._staging.shape[0] < n:
            from numba import cuda

            try:
                self._staging = cuda.pinned_array(n, np.float32)
            except Exception:  # the CUDA simulator has no pinned memory
                self._staging = np.empty(n, np.float32)
        return self._staging[:n]

    def _on_device(self, buf, collective, scale=None):
        """Runs collective(host_or_device_buffer) on a flat buffer, after multiplying
        this rank's contribution by `scale` (where it is cheapest: on the host copy when
        staging)."""
        if not _device.is_device_array(buf):
            if scale is not None:
                buf *= buf.dtype.type(scale)
            collective(buf)
            return
        if self.cuda_aware and hasattr(buf, "__cuda_array_interface__"):
            from numba import cuda

            if scale is not None:
                _device.get_backend("cuda").scale_(buf, scale)
            cuda.synchronize()  # the kernels that wrote buf have finished
            collective(buf)
            return
        host = self._host_stage(buf.shape[0])
        buf.copy_to_host(host)
        if scale is not None:
            host *= np.float32(scale)
        collective(host)
        buf.copy_to_device(host)

    # -- collectives -----------------------------------------------------------------------
    def _wait(self, req, what):
        if self.timeout is None:
            req.Wait()
            return
        deadline = time.monotonic() + self.timeout
        polls = 0
        while not req.Test():
            polls += 1
            if polls > 64:  # spin briefly (short collectives), then back off to 1 ms
                time.sleep(min(1e-3, 1e-5 * (polls - 64)))
            if time.monotonic() > deadline:
                raise CollectiveTimeout(
                    f"rank {self.rank}: {what} did not complete within {self.timeout:g} s; another rank has died "
                    "or hangs")

    def allreduce_(self, buf, what="Allreduce", scale=None):
        """buf = the sum over the ranks of (scale * buf), in place."""
        if self.size == 1:
            if scale is not None and scale != 1:
                self._on_device(buf, lambda b: None, scale)
            return
        MPI = self.MPI

        def run(b):
            if self.timeout is None:
                self.comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)
            else:
                self._wait(self.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM), what)

        self._on_device(buf, run, scale)

    def bcast_(self, buf, root=0, what="Bcast"):
        """buf = root's buf, in place."""
        if self.size == 1:
            return

        def run(b):
            if self.timeout is None:
                self.comm.Bcast(b, root=root)
            else:
                self._wait(self.comm.Ibcast(b, root=root), what)

        self._on_device(buf, run)

    def sum_scalars(self, values, what="Allreduce of the metrics"):
        """The float64 sums of `values` over the ranks, bit-identical on every rank (rank
        0's result is broadcast, whatever the MPI's reduction order)."""
        a = np.array(values, np.float64)
        if self.size == 1:
            return a
        self.allreduce_(a, what)
        self.bcast_(a, 0, what)
        return a

    def bcast_object(self, obj, root=0):
        if self.size == 1:
            return obj
        if self.timeout is None:
            return self.comm.bcast(obj, root=root)
        # small pickled objects: the length, then the bytes, each under the timeout
        import pickle

        data = np.frombuffer(pickle.dumps(obj), np.uint8).copy() if self.rank == root else None
        n = np.array([0 if data is None else data.size], np.int64)
        self.bcast_(n, root, "Bcast")
        if data is None:
            data = np.empty(int(n[0]), np.uint8)
        self.bcast_(data, root, "Bcast")
        return pickle.loads(data.tobytes())

    def allgather_object(self, obj):
        if self.size == 1:
            return [obj]
        gathered = []
        for r in range(self.size):  # small objects; bcast keeps the timeout path simple
            gathered.append(self.bcast_object(obj if r == self.rank else None, root=r))
        return gathered

    def abort(self, code=1):
        self.comm.Abort(code)


# -- replicas ------------------------------------------------------------------------------
def _model_arrays(model):
    """Every array that must be equal on all ranks: parameters, BatchNorm statistics,
    optimizer state (in a fixed order)."""
    arrays = [model.flat_params]
    for s in model._bn_stages:
        arrays += [s.running_mean, s.running_var]
    if model.optimizer is not None:
        arrays += [model.optimizer.state[k] for k in sorted(model.optimizer.state)]
    return arrays


def _describe(model):
    opt = model.optimizer
    return {"num_params": model.num_params, "config": model.get_config()["layers"],
            "optimizer": None if opt is None else (opt.name, sorted(opt.state),
                                                   tuple(int(a.shape[0]) for a in opt.state.values())),
            "device": model._backend.name}


def sync_model(model, comm):
    """Makes every rank's model equal to rank 0's: parameters, BatchNorm statistics,
    optimizer state and step, the step counter and seeds that drive dropout, and the
    shuffle generator. Raises ValueError on every rank if the ranks built different
    architectures or optimizers."""
    descs = comm.allgather_object(_describe(model))
    for r, d in enumerate(descs):
        if d != descs[0]:
            raise ValueError(f"rank {r} built a different model or optimizer than rank 0 ({d} vs {descs[0]}); "
                             "every rank must build and compile the same network")
    for a in _model_arrays(model):
        comm.bcast_(a.reshape(-1) if not _device.is_device_array(a) else a.reshape(a.size), 0, "Bcast of the model")
    opt = model.optimizer
    meta = comm.bcast_object({
        "step": model._step, "seed": model.seed, "dropout_seed": model._dropout_seed,
        "rng": model._shuffle_rng.bit_generator.state,
        "opt": None if opt is None else (opt.step_count, opt.lr)})
    model._step = meta["step"]
    model.seed = meta["seed"]
    model._dropout_seed = meta["dropout_seed"]
    for s in model._stages:
        s.seed = meta["dropout_seed"]
    model._shuffle_rng.bit_generator.state = meta["rng"]
    if opt is not None:
        opt.step_count, opt.lr = meta["opt"]


def _fingerprint(model):
    crc = 0
    for a in _model_arrays(model):
        crc = zlib.crc32(np.ascontiguousarray(_device.to_host(a)).view(np.uint8), crc)
    return crc


# -- training --------------------------------------------------------------------------------
def fit(model, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=0.0, shuffle=True,
        callbacks=None, verbose="auto", initial_epoch=0, comm=None, timeout=None, abort_on_error=True,
        on_nonfinite_loss="raise"):
    """``model.fit`` data-parallel over the ranks of `comm` (an mpi4py communicator,
    COMM_WORLD by default), with the same result as ``model.fit`` in one process:
    batch_size is the *global* batch, split across the ranks. Every rank must call it
    with the same arguments and data. Returns the History (on every rank).

    timeout: seconds any collective may wait (None: no limit of our own). With
    abort_on_error (default) an exception on one rank prints its traceback and aborts
    the whole job (MPI_Abort), so no rank waits forever for it. Not supported: the
    `augment` argument of model.fit. BatchNorm normalises with each rank's shard
    statistics (no sync-BN), so networks with BatchNorm are not equivalent to one
    process; its running statistics are averaged over the ranks every epoch."""
    c = comm if isinstance(comm, Communicator) else Communicator(comm, timeout)
    try:
        return _fit(model, c, x, y, epochs, batch_size, validation_data, validation_split, shuffle, callbacks,
                    verbose, initial_epoch, on_nonfinite_loss)
    except BaseException as e:
        from fastdl.network import NonFiniteLossError

        if isinstance(e, NonFiniteLossError):  # raised on every rank at the same step: no abort needed
            raise
        if abort_on_error and c.size > 1:
            sys.stderr.write(f"fastdl.distributed: rank {c.rank} of {c.size} failed; aborting all ranks\n")
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            c.abort(1)
        raise
    finally:
        for s in model._stages:
            s.row_offset = 0


def _data_signature(x, y):
    """Shapes and a checksum of the first and last rows: the ranks must hold the same data."""
    k = min(16, x.shape[0])
    crc = zlib.crc32(np.ascontiguousarray(x[:k]).view(np.uint8))
    crc = zlib.crc32(np.ascontiguousarray(x[-k:]).view(np.uint8), crc)
    crc = zlib.crc32(np.ascontiguousarray(y[:k]).view(np.uint8), crc)
    return (tuple(x.shape), tuple(y.shape), str(y.dtype), crc)


def _fit(model, comm, x, y, epochs, batch_size, validation_data, validation_split, shuffle, callbacks, verbose,
         initial_epoch, on_nonfinite_loss):
    from fastdl.network import NonFiniteLossError, _nonneg, _positive

    if on_nonfinite_loss not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite_loss: expected 'raise' or 'skip', got {on_nonfinite_loss!r}")

    model._require_compiled("fit")
    epochs = _nonneg("epochs", epochs)
    batch_size = _positive("batch_size", batch_size)
    initial_epoch = _nonneg("initial_epoch", initial_epoch)
    x, y, val = model._prepare_fit_data(x, y, validation_data, validation_split)
    sigs = comm.allgather_object((_data_signature(x, y), None if val is None else _data_signature(*val),
                                  epochs, batch_size, initial_epoch, bool(shuffle)))
    for r, s in enumerate(sigs):
        if s != sigs[0]:
            raise ValueError(f"rank {r} passed different data or fit arguments than rank 0 ({s} vs {sigs[0]}); "
                             "every rank must pass the same x, y, validation data, epochs and batch_size")
    sync_model(model, comm)

    n = x.shape[0]
    root = comm.rank == 0
    user = list(callbacks or [])
    if not root:
        user = [c for c in user if not isinstance(c, WRITERS)]
    history = callbacks_mod.History()
    cbs = callbacks_mod.CallbackList(user, model=model, verbose=verbose if root else 0, epochs=epochs,
                                     steps=(n + batch_size - 1) // batch_size, history=history)
    model.stop_training = False
    model.history = history
    model._epoch_samples = n
    backend = model._backend
    gpu = backend.name != "cpu"
    stages = model._stages
    batch_bufs = {}
    bad_flag = np.zeros(1, np.float64)  # every rank learns whether any rank's loss was NaN/Inf
    cbs.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        if model.stop_training:
            break
        cbs.on_epoch_begin(epoch)
        t0 = time.perf_counter()
        order = model._shuffle_rng.permutation(n) if shuffle else None
        seen = 0
        skipped = 0
        loss_sum = 0.0
        correct = 0.0
        for b, s in enumerate(range(0, n, batch_size)):
            m = min(s + batch_size, n) - s
            lo, hi = shard_bounds(m, comm.size, comm.rank)
            rows = hi - lo
            if rows:
                if order is None:
                    xb, yb = x[s + lo:s + hi], y[s + lo:s + hi]
                else:
                    bufs = batch_bufs.get(rows)
                    if bufs is None:
                        bufs = batch_bufs[rows] = (np.empty((rows,) + x.shape[1:], x.dtype),
                                                   np.empty((rows,) + y.shape[1:], y.dtype))
                    xb, yb = bufs
                    idx = order[s + lo:s + hi]
                    np.take(x, idx, axis=0, out=xb)
                    np.take(y, idx, axis=0, out=yb)
                for st in stages:
                    st.row_offset = lo
                for st in model._bn_stages:
                    st.keep_running_stats()
                loss = float(model.compute_gradients(xb, yb))
            else:  # a last batch smaller than the world: this rank contributes nothing
                model._step += 1  # dropout steps stay in lockstep with the other ranks
                loss = 0.0
            # One 8-byte allreduce per step, so that every rank refuses the same steps
            # (a sum of 0/1 flags is exact in any reduction order).
            bad_flag[0] = 0.0 if math.isfinite(loss) else 1.0
            if comm.size > 1:
                comm.allreduce_(bad_flag, "Allreduce of the non-finite-loss flags")
            if bad_flag[0]:
                if rows:
                    for st in model._bn_stages:
                        st.restore_running_stats()
                if on_nonfinite_loss == "skip":
                    skipped += 1
                    continue
                cbs.on_train_end()
                raise NonFiniteLossError(epoch, b, s, s + m - 1, loss, history,
                                         "not finite on another rank" if math.isfinite(loss) else None)
            # this rank's mean gradient weighs rows / m (exactly 1 / N for even shards)
            share = None if comm.size == 1 else (1.0 / comm.size if rows * comm.size == m else rows / m)
            comm.allreduce_(model.flat_grads, "Allreduce of the gradients", scale=share)
            model.apply_gradients()
            seen += rows
            loss_sum += loss * rows
            logs = {"loss": loss_sum / seen if seen else 0.0}  # rank-local running values (progress only)
            if model.metrics:
                if rows:
                    out = model._last_output if not gpu else _device.to_host(model._last_output)
                    correct += model._correct(out, yb)
                logs["accuracy"] = correct / seen if seen else 0.0
            cbs.on_train_batch_end(b, logs)
        for st in stages:
            st.row_offset = 0
        totals = comm.sum_scalars([loss_sum, correct, seen])
        logs = {"loss": float(totals[0] / totals[2]) if totals[2] else float("nan")}
        if model.metrics:
            logs["accuracy"] = float(totals[1] / totals[2]) if totals[2] else float("nan")
        if on_nonfinite_loss == "skip":
            logs["skipped_steps"] = skipped
        if model._bn_stages:  # shard statistics differ: every replica keeps the mean
            for st in model._bn_stages:
                for a in (st.running_mean, st.running_var):
                    comm.allreduce_(a, "Allreduce of the BatchNorm statistics", scale=1.0 / comm.size)
        if val is not None:
            logs.update(_evaluate(model, comm, val, max(batch_size, 256)))
        logs["lr"] = model.optimizer.lr
        logs["time"] = time.perf_counter() - t0
        _check_replicas(model, comm, epoch)
        cbs.on_epoch_end(epoch, logs)
        # callbacks saw the same logs everywhere; rank 0's decision is the one that counts
        model.stop_training = bool(comm.bcast_object(bool(model.stop_training)))
    cbs.on_train_end()
    return history


def _evaluate(model, comm, val, batch_size):
    """Validation loss (and accuracy) over the whole set, each rank evaluating a
    contiguous shard: val_* identical on every rank."""
    xv, yv = val
    lo, hi = shard_bounds(xv.shape[0], comm.size, comm.rank)
    count = hi - lo
    loss_sum = acc_sum = 0.0
    if count:
        part = model._evaluate(xv[lo:hi], yv[lo:hi], batch_size)
        loss_sum = part["loss"] * count
        acc_sum = part.get("accuracy", 0.0) * count
    totals = comm.sum_scalars([loss_sum, acc_sum, count])
    out = {"val_loss": float(totals[0] / totals[2])}
    if model.metrics:
        out["val_accuracy"] = float(totals[1] / totals[2])
    return out


def _check_replicas(model, comm, epoch):
    """Every rank must hold identical parameters and optimizer state. With 2 ranks a
    SUM Allreduce is commutative, hence identical everywhere; with more, an MPI may sum
    in a different order on different ranks (allowed by the standard). If the replicas
    differ, rank 0's state is broadcast (and the number of resyncs counted)."""
    if comm.size == 1:
        return
    prints = comm.allgather_object(_fingerprint(model))
    if len(set(prints)) > 1:
        for a in _model_arrays(model):
            comm.bcast_(a, 0, "Bcast of the model")
        model._replica_resyncs = getattr(model, "_replica_resyncs", 0) + 1
        if comm.rank == 0:
            sys.stderr.write(f"fastdl.distributed: epoch {epoch + 1}: replicas differed in the last bits "
                             "(the MPI's reduction order); resynchronised from rank 0\n")
