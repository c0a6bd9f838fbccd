"""Data-parallel training over MPI: time per epoch for 1 and 2 ranks, the gradient
Allreduce alone, and the communication volume per step.

    python bench/bench_distributed.py [--samples 16384] [--batch 128] [--hidden 512]

launches ``mpirun -n 1`` and ``-n 2`` (Open MPI over loopback) itself and prints a
table; each rank runs with one fastdl thread, and the one-process ``model.fit``
baseline runs with 1 and with 2 threads. On a 2-core machine this measures the cost of
communication and of sharding (half-size GEMMs), not a speedup. The optimizer is
Adam when this build has the CPU optimizer kernels, else a float32 numpy SGD (every
rank runs the full step either way, so it weighs the same in every row).
Not a pytest-benchmark suite: it defines no bench_* function.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _optimizer():
    import fastdl
    from fastdl import _device, optim

    if hasattr(fastdl._C, "adam_step"):
        return optim.Adam(lr=1e-3), "adam (fastdl kernel)"

    class NumpySGD(optim.Optimizer):
        name = "numpy_sgd"

        def bind(self, size, device="cpu", decay_segments=None):
            self._backend = _device.get_backend(device)
            self._size = int(size)
            self.state = {}
            self.step_count = 0
            return self

        def _kernel_step(self, params, grads):
            params -= np.float32(self.lr) * grads

    return NumpySGD(lr=1e-2), "numpy SGD (this build has no CPU optimizer kernels)"


def _setup(args, threads):
    import fastdl

    fastdl.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    model = fastdl.Sequential([fastdl.Dense(784, args.hidden, activation="relu"), fastdl.Dropout(0.2),
                               fastdl.Dense(args.hidden, args.hidden, activation="relu"),
                               fastdl.Dense(args.hidden, 10)], seed=1)
    opt, opt_name = _optimizer()
    model.compile(optimizer=opt, loss="softmax_cross_entropy")
    return model, x, y, opt_name


def _epochs(fit, epochs):
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    return times


def worker(args):
    """Inside mpirun: time distributed.fit epochs and the bare Allreduce."""
    from mpi4py import MPI

    from fastdl import distributed

    comm = MPI.COMM_WORLD
    model, x, y, opt_name = _setup(args, 1)
    c = distributed.Communicator(comm, timeout=args.timeout)
    times = _epochs(lambda: distributed.fit(model, x, y, epochs=1, batch_size=args.batch, verbose=0, comm=c),
                    args.epochs)
    # the gradient Allreduce alone (all ranks in step first)
    buf = np.ones(model.num_params, np.float32)
    comm.Barrier()
    ar = []
    for _ in range(args.allreduce_reps):
        t0 = time.perf_counter()
        c.allreduce_(buf)
        ar.append(time.perf_counter() - t0)
    ar = comm.gather(float(np.median(ar)), root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"epoch_s": times, "allreduce_s": max(ar), "optimizer": opt_name,
                          "grad_bytes": distributed.gradient_bytes(model),
                          "steps": (args.samples + args.batch - 1) // args.batch}))


def single(args, threads):
    model, x, y, opt_name = _setup(args, threads)
    return _epochs(lambda: model.fit(x, y, epochs=1, batch_size=args.batch, verbose=0), args.epochs), opt_name


def launch(args, n, timeout):
    mpirun = shutil.which("mpirun")
    env = dict(os.environ, OMPI_MCA_btl="self,tcp", OMPI_MCA_btl_tcp_if_include="lo",
               OMPI_MCA_oob_tcp_if_include="lo", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [mpirun, "--oversubscribe", "--allow-run-as-root", "-n", str(n), sys.executable, "-m", "mpi4py",
           os.path.abspath(__file__), "--worker", "--samples", str(args.samples), "--batch", str(args.batch),
           "--hidden", str(args.hidden), "--epochs", str(args.epochs)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (the first one is warm-up)")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--allreduce-reps", type=int, default=200)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, ROOT)
    rows = []
    for threads in (1, 2):
        times, opt_name = single(args, threads)
        rows.append((f"model.fit, 1 process, {threads} thread(s)", times, None))
    r1 = launch(args, 1, None)
    rows.append(("distributed.fit, 1 rank", r1["epoch_s"], None))
    r2 = launch(args, 2, None)
    rows.append(("distributed.fit, 2 ranks x 1 thread", r2["epoch_s"], r2["allreduce_s"]))
    r2t = launch(args, 2, 600)
    rows.append(("  same, timeout=600 (Iallreduce + Test)", r2t["epoch_s"], r2t["allreduce_s"]))
    mb = r2["grad_bytes"] / 2**20
    print(f"MLP 784-{args.hidden}-{args.hidden}-10 (dropout 0.2), {args.samples} samples, global batch "
          f"{args.batch}: {r2['steps']} steps/epoch; optimizer: {opt_name}")
    print(f"gradient Allreduce per step: {r2['grad_bytes']:,} bytes ({mb:.2f} MiB) per rank in, "
          f"~{mb * 2 * (2 - 1) / 2:.2f} MiB sent per rank by a ring Allreduce over 2 ranks")
    print(f"{'configuration':44s} {'s/epoch (median)':>17s} {'ms/step':>8s} {'Allreduce ms':>13s}")
    for name, times, ar in rows:
        t = float(np.median(times[1:] if len(times) > 1 else times))
        ar_s = f"{ar * 1e3:13.2f}" if ar is not None else f"{'':13s}"
        print(f"{name:44s} {t:17.3f} {t / r2['steps'] * 1e3:8.2f} {ar_s}")


if __name__ == "__main__":
    main()
