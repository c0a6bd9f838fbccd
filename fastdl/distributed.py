"""Data-parallel training over MPI (mpi4py): N processes, one model replica each, the
same result as one process (docs/distributed.md).

Start a script with ``mpirun -np N python -m mpi4py train.py`` (``srun python -m mpi4py
train.py`` under Slurm); in it, build and compile the model as usual and call
``model.fit(x, y, ..., distributed="mpi")`` (or ``fastdl.distributed.fit(model, x, y,
...)``, which also takes a communicator and a timeout). Every rank passes the same x, y
(a ``np.load(..., mmap_mode="r")`` array reads only the rows the rank touches).

The training loop is fastdl.training's, the one ``model.fit`` runs; ``MPIStrategy`` is
the set of hooks it calls to spread over the ranks. Per global mini-batch of B samples:

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

from __future__ import annotations

import math
import os
import sys
import time
import traceback
import zlib
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from fastdl import _device
from fastdl import callbacks as callbacks_mod
from fastdl.training import NonFiniteLossError, Strategy
from fastdl.training import fit as _fit_loop

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._typing import DeviceArray
    from fastdl.network import Network
    from fastdl.training.data import ArrayData, Batch, IterableData

__all__ = ["fit", "MPIStrategy", "Communicator", "CollectiveTimeout", "shard_bounds", "rank", "world_size",
           "local_rank", "select_gpu", "sync_model", "gradient_bytes"]

MPI_HINT = ("fastdl.distributed needs mpi4py and an MPI library: `pip install fastdl[mpi]` and e.g. Debian's "
            "`apt-get install openmpi-bin libopenmpi-dev` (or your cluster's MPI module)")

#: Callbacks that write files or print: rank 0 alone runs them.
WRITERS = (callbacks_mod.ModelCheckpoint, callbacks_mod.CSVLogger, callbacks_mod.ProgressBar)


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the timeout: some rank died or hangs."""


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(MPI_HINT) from e
    return MPI


def shard_bounds(m: int, size: int, r: int) -> tuple[int, int]:
    """Rows [lo, hi) of an m-row global batch that rank r of `size` takes: contiguous,
    sizes differing by at most one, in rank order."""
    return r * m // size, (r + 1) * m // size


def rank(comm: Any = None) -> int:
    """This process's rank in `comm` (COMM_WORLD by default)."""
    return (comm or _mpi().COMM_WORLD).Get_rank()


def world_size(comm: Any = None) -> int:
    """The number of processes in `comm` (COMM_WORLD by default)."""
    return (comm or _mpi().COMM_WORLD).Get_size()


def local_rank(comm: Any = None) -> int:
    """Rank among the processes on this node (for choosing a GPU)."""
    MPI = _mpi()
    node = (comm or MPI.COMM_WORLD).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def select_gpu(comm: Any = None) -> int:
    """One GPU per rank: selects GPU local_rank % (GPUs on the node) for this process
    (call it before building a device="cuda" model). Returns the device index."""
    from numba import cuda

    count = len(cuda.gpus)
    if count == 0:
        raise RuntimeError("select_gpu: no CUDA GPU visible to this rank")
    index = local_rank(comm) % count
    cuda.select_device(index)
    return index


def gradient_bytes(model: Network) -> int:
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

    def __init__(self, comm: Any = None, timeout: float | None = None, cuda_aware: bool | None = None) -> None:
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        if timeout is not None and not float(timeout) > 0:
            raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        self._cuda_aware = cuda_aware
        self._staging: Any = None

    # -- GPU buffers ---------------------------------------------------------------------
    @property
    def cuda_aware(self) -> bool:
        """Whether the MPI library takes GPU buffers directly (else they are staged
        through host memory)."""
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

    def _host_stage(self, n: int) -> Any:
        if self._staging is None or self._staging.shape[0] < n:
            from numba import cuda

            try:
                self._staging = cuda.pinned_array(n, np.float32)
            except Exception:  # the CUDA simulator has no pinned memory
                self._staging = np.empty(n, np.float32)
        return self._staging[:n]

    def _on_device(self, buf: DeviceArray, collective: Callable[[Any], Any], scale: float | None = None) -> None:
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
    def _wait(self, req: Any, what: str) -> None:
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

    def allreduce_(self, buf: DeviceArray, what: str = "Allreduce", scale: float | None = None) -> None:
        """buf = the sum over the ranks of (scale * buf), in place."""
        if self.size == 1:
            if scale is not None and scale != 1:
                self._on_device(buf, lambda b: None, scale)
            return
        MPI = self.MPI

        def run(b: Any) -> None:
            if self.timeout is None:
                self.comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)
            else:
                self._wait(self.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM), what)

        self._on_device(buf, run, scale)

    def bcast_(self, buf: DeviceArray, root: int = 0, what: str = "Bcast") -> None:
        """buf = root's buf, in place."""
        if self.size == 1:
            return

        def run(b: Any) -> None:
            if self.timeout is None:
                self.comm.Bcast(b, root=root)
            else:
                self._wait(self.comm.Ibcast(b, root=root), what)

        self._on_device(buf, run)

    def sum_scalars(self, values: Sequence[float], what: str = "Allreduce of the metrics") -> npt.NDArray[np.float64]:
        """The float64 sums of `values` over the ranks, bit-identical on every rank (rank
        0's result is broadcast, whatever the MPI's reduction order)."""
        a = np.array(values, np.float64)
        if self.size == 1:
            return a
        self.allreduce_(a, what)
        self.bcast_(a, 0, what)
        return a

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """root's `obj` (small, picklable) on every rank."""
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

    def allgather_object(self, obj: Any) -> list[Any]:
        """[every rank's `obj`] (small, picklable), in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        gathered = []
        for r in range(self.size):  # small objects; bcast keeps the timeout path simple
            gathered.append(self.bcast_object(obj if r == self.rank else None, root=r))
        return gathered

    def abort(self, code: int = 1) -> None:
        """Ends every rank of the job (MPI_Abort)."""
        self.comm.Abort(code)


# -- replicas ------------------------------------------------------------------------------
def _describe(model: Network) -> dict[str, Any]:
    opt = model.optimizer
    return {"num_params": model.num_params, "config": model.get_config()["layers"],
            "optimizer": None if opt is None else (opt.name, sorted(opt.state),
                                                   tuple(int(a.shape[0]) for a in opt.state.values())),
            "device": model.device}


def sync_model(model: Network, comm: Communicator) -> None:
    """Makes every rank's model equal to rank 0's: parameters, BatchNorm statistics,
    optimizer state and step, the step counter and seeds that drive dropout, and the
    shuffle generator. Raises ValueError on every rank if the ranks built different
    architectures or optimizers."""
    descs = comm.allgather_object(_describe(model))
    for r, d in enumerate(descs):
        if d != descs[0]:
            raise ValueError(f"rank {r} built a different model or optimizer than rank 0 ({d} vs {descs[0]}); "
                             "every rank must build and compile the same network")
    for a in model.replica_arrays():
        comm.bcast_(a.reshape(-1) if not _device.is_device_array(a) else a.reshape(a.size), 0, "Bcast of the model")
    opt = model.optimizer
    meta = comm.bcast_object({"training": model.training_state(),
                              "opt": None if opt is None else (opt.step_count, opt.lr)})
    model.load_training_state(meta["training"])
    if opt is not None:
        opt.step_count, opt.lr = meta["opt"]


def _crc(a: Any, crc: int = 0) -> int:
    # an ndarray is a buffer (numpy's stubs say so from Python 3.12 on only)
    return zlib.crc32(cast(Any, np.ascontiguousarray(a).view(np.uint8)), crc)


def _fingerprint(model: Network) -> int:
    crc = 0
    for a in model.replica_arrays():
        crc = _crc(_device.to_host(a), crc)
    return crc


def _data_signature(x: Any, y: Any) -> tuple[Any, ...]:
    """Shapes and a checksum of the first and last rows: the ranks must hold the same data."""
    k = min(16, x.shape[0])
    crc = _crc(x[:k])
    crc = _crc(x[-k:], crc)
    crc = _crc(y[:k], crc)
    return (tuple(x.shape), tuple(y.shape), str(y.dtype), crc)


# -- the strategy ----------------------------------------------------------------------------
class MPIStrategy(Strategy):
    """Data parallelism over the ranks of an MPI communicator: the hooks fastdl.training's
    loop calls (``model.fit(..., distributed="mpi")`` makes one over COMM_WORLD).

    comm: an mpi4py communicator or a Communicator (COMM_WORLD by default); timeout:
    seconds any collective may wait (None: no limit of our own); abort_on_error: an
    exception on one rank prints its traceback and aborts the whole job (MPI_Abort),
    so no rank waits forever for it (fastdl.distributed.fit applies it)."""

    name = "mpi"
    stops_mid_epoch = False
    needs_gradients = True

    def __init__(self, comm: Any = None, timeout: float | None = None, abort_on_error: bool = True) -> None:
        self.comm = comm if isinstance(comm, Communicator) else Communicator(comm, timeout)
        self.abort_on_error = bool(abort_on_error)
        self.is_writer = self.comm.rank == 0
        self._bad: npt.NDArray[np.float64] = np.zeros(1, np.float64)  # every rank learns whether any rank's loss was NaN/Inf

    def shard(self, m: int) -> tuple[int, int]:
        return shard_bounds(m, self.comm.size, self.comm.rank)

    eval_shard = shard  # type: ignore[assignment]  # (its argument is named m, not n)

    def begin_fit(self, model: Network, data: ArrayData | IterableData, validation: Any,
                  arguments: tuple[Any, ...]) -> None:
        from fastdl.training.data import ArrayData

        if not isinstance(data, ArrayData):
            raise ValueError("x: data-parallel training reads arrays (every rank the same), not an iterable")
        if validation is not None and not isinstance(validation, tuple):
            raise ValueError("validation_data: data-parallel training validates on arrays, not an iterable")
        c = self.comm
        sigs = c.allgather_object((_data_signature(data.x, data.y),
                                   None if validation is None else _data_signature(*validation[:2]),
                                   data.w is not None, arguments))
        for r, s in enumerate(sigs):
            if s != sigs[0]:
                raise ValueError(f"rank {r} passed different data or fit arguments than rank 0 ({s} vs {sigs[0]}); "
                                 "every rank must pass the same x, y, validation data, epochs and batch_size")
        if model.batchnorm_statistics() and min(data.shard_sizes(self.shard)) == 1:
            raise ValueError(f"batch_size: a batch split over {c.size} ranks leaves one rank a single sample, which "
                             "a BatchNorm layer cannot normalise; use a batch size of at least "
                             f"{2 * c.size} with a last batch of at least {2 * c.size} samples")
        sync_model(model, c)

    def callbacks(self, callbacks: Any) -> Any:
        # Rank 0 alone runs the callbacks that write files or print; the others
        # (EarlyStopping, schedules) run everywhere from the same allreduced logs.
        return callbacks if self.is_writer else [cb for cb in callbacks if not isinstance(cb, WRITERS)]

    def train_batch(self, model: Network, batch: Batch, fill_gradients: bool) -> tuple[float, bool]:
        c = self.comm
        rows = 0 if batch.x is None else batch.x.shape[0]
        if rows:
            model.set_row_offset(self.shard(batch.size)[0])
            loss = float(model.compute_gradients(batch.x, batch.y, batch.w))  # type: ignore[arg-type]  # rows
        else:  # a last batch smaller than the world: this rank contributes nothing
            model.count_step()  # dropout steps stay in lockstep with the other ranks
            loss = 0.0
        # One 8-byte allreduce per step, so that every rank refuses the same steps (a sum
        # of 0/1 flags is exact in any reduction order).
        self._bad[0] = 0.0 if math.isfinite(loss) else 1.0
        if c.size > 1:
            c.allreduce_(self._bad, "Allreduce of the non-finite-loss flags")
        if self._bad[0]:
            if rows:
                model.revert_statistics()
            return loss, False
        m = batch.size
        # this rank's mean gradient weighs rows / m (exactly 1 / N for even shards)
        share = None if c.size == 1 else (1.0 / c.size if rows * c.size == m else rows / m)
        c.allreduce_(model.flat_grads, "Allreduce of the gradients", scale=share)
        model.apply_gradients()
        return loss, True

    def sum_scalars(self, values: Sequence[float]) -> npt.NDArray[np.float64]:
        return self.comm.sum_scalars(values)

    def end_epoch(self, model: Network, epoch: int) -> None:
        c = self.comm
        for mean, var in model.batchnorm_statistics():  # shard statistics differ: every replica keeps the mean
            for a in (mean, var):
                c.allreduce_(a, "Allreduce of the BatchNorm statistics", scale=1.0 / c.size)
        self._check_replicas(model, epoch)

    def _check_replicas(self, model: Network, epoch: int) -> None:
        """Every rank must hold identical parameters and optimizer state. With 2 ranks a
        SUM Allreduce is commutative, hence identical everywhere; with more, an MPI may
        sum in a different order on different ranks (allowed by the standard). If the
        replicas differ, rank 0's state is broadcast (and the resyncs counted)."""
        c = self.comm
        if c.size == 1:
            return
        prints = c.allgather_object(_fingerprint(model))
        if len(set(prints)) > 1:
            for a in model.replica_arrays():
                c.bcast_(a, 0, "Bcast of the model")
            self.resyncs = getattr(self, "resyncs", 0) + 1
            if c.rank == 0:
                sys.stderr.write(f"fastdl.distributed: epoch {epoch + 1}: replicas differed in the last bits "
                                 "(the MPI's reduction order); resynchronised from rank 0\n")

    def agree_stop(self, stop: bool) -> bool:
        # callbacks saw the same logs everywhere; rank 0's decision is the one that counts
        return bool(self.comm.bcast_object(bool(stop)))

    def failed(self, error: BaseException) -> None:
        """Aborts every rank on an exception that only this rank may have: the others
        would wait for it in their next collective."""
        c = self.comm
        if isinstance(error, NonFiniteLossError) or not self.abort_on_error or c.size == 1:
            return  # NonFiniteLossError is raised on every rank at the same step: no abort needed
        sys.stderr.write(f"fastdl.distributed: rank {c.rank} of {c.size} failed; aborting all ranks\n")
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        c.abort(1)

    def end_fit(self, model: Network) -> None:
        model.set_row_offset(0)


# -- training --------------------------------------------------------------------------------
def fit(model: Network, x: npt.ArrayLike, y: npt.ArrayLike, epochs: int = 1, batch_size: int = 32,
        validation_data: Sequence[Any] | None = None, validation_split: float = 0.0, shuffle: bool = True,
        callbacks: Sequence[callbacks_mod.Callback] | None = None, verbose: int | str = "auto",
        initial_epoch: int = 0, comm: Any = None, timeout: float | None = None, abort_on_error: bool = True,
        on_nonfinite_loss: str = "raise", **fit_kwargs: Any) -> callbacks_mod.History:
    """``model.fit`` data-parallel over the ranks of `comm` (an mpi4py communicator,
    COMM_WORLD by default), with the same result as ``model.fit`` in one process:
    batch_size is the *global* batch, split across the ranks. Every rank must call it
    with the same arguments and data. Returns the History (on every rank). Other
    keyword arguments are model.fit's (sample_weight, class_weight, validation_freq...).

    timeout: seconds any collective may wait (None: no limit of our own). With
    abort_on_error (default) an exception on one rank prints its traceback and aborts
    the whole job (MPI_Abort), so no rank waits forever for it. Not supported: the
    `augment` argument of model.fit and iterable inputs. BatchNorm normalises with each
    rank's shard statistics (no sync-BN), so networks with BatchNorm are not equivalent
    to one process; its running statistics are averaged over the ranks every epoch."""
    strategy = MPIStrategy(comm, timeout, abort_on_error)
    return _fit_loop(model, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                     validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                     initial_epoch=initial_epoch, on_nonfinite_loss=on_nonfinite_loss, strategy=strategy,
                     **fit_kwargs)
