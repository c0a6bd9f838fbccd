"""The tips for training deep networks, reproduced: one experiment per claim.

``fastdl experiment NAME [--out DIR] [--device cpu|cuda] [--full] [--size tiny]
[--mnist PATH] [--seed N] [--threads N]``, ``fastdl experiment --list``, and
``fastdl experiment all`` (every experiment, each in DIR/NAME). Each experiment writes
into its output folder a CSV of its results (results.csv, some also a second CSV), PNG
plots (when matplotlib, the ``plot`` extra, is installed; otherwise it says so and
skips them) and summary.md: the claim, the setup, what it found (computed from the
numbers of this run) and the plots.

From Python: ``fastdl.experiments.run("dropout", out="runs/dropout")`` returns the
experiment's key numbers as a dict.

Data: the bundled 8x8 digits by default (scikit-learn), or MNIST with
``--mnist FOLDER`` (the IDX files; with only the t10k split there it is cut 80/20).
Sizes (SIZES below, which ``--help`` prints): ``--size tiny`` (seconds, what the tests
run), the default (seconds to tens of seconds per experiment on two cores), ``--full``
(minutes, with more epochs, more data and more variants).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

from fastdl._argparse import HelpFormatter, parse_args, positive_int, usage_error

if TYPE_CHECKING:
    from fastdl._typing import PathLike

__all__ = ["EXPERIMENTS", "SIZES", "run", "main", "describe"]

#: what each --size takes
SIZES = {"tiny": "seconds, what the tests run",
         "default": "seconds to tens of seconds per experiment on two cores",
         "full": "minutes, with more epochs, more data and more variants"}

#: name -> module (in fastdl.experiments), in the lectures' order
EXPERIMENTS = {
    "vanishing-gradients": "vanishing_gradients",
    "activations": "activations",
    "optimizers": "optimizers",
    "learning-rate": "learning_rate",
    "dropout": "dropout",
    "early-stopping": "early_stopping",
    "batch-size": "batch_size",
    "initialization": "initialization",
    "batch-norm": "batch_norm",
    "deep-vs-fat": "deep_vs_fat",
}


def _module(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")
    return importlib.import_module(f"fastdl.experiments.{EXPERIMENTS[name]}")


def describe(name: str) -> tuple[str, str]:
    """(title, claim) of an experiment."""
    m = _module(name)
    return m.TITLE, m.CLAIM


def run(name: str, out: PathLike, device: str = "cpu", size: str = "default", mnist: PathLike | None = None,
        seed: int = 0, plots: bool = True, threads: int | None = 1, verbose: bool = False) -> dict[str, Any]:
    """Runs one experiment into folder `out`; returns its key numbers (a dict, including
    "seconds" and "files"). threads: fastdl's CPU thread count for the run (restored
    after); the default 1 suits these small networks best, above all on a shared
    machine, where a second thread mostly waits at barriers. None: leave it as it is."""
    import fastdl
    from fastdl.experiments._base import Context

    module = _module(name)
    previous = fastdl.get_num_threads()
    if threads is not None:
        fastdl.set_num_threads(threads)
    try:
        ctx = Context(name, out, device=device, size=size, mnist=mnist, seed=seed, plots=plots, verbose=verbose)
        result = module.run(ctx)
    finally:
        fastdl.set_num_threads(previous)
    result = dict(result or {})
    result["seconds"] = getattr(ctx, "seconds", time.perf_counter() - ctx.t0)
    result["files"] = [str(p) for p in ctx.files]
    result["plots"] = ctx.plots
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastdl experiment", formatter_class=HelpFormatter,
        description="Runs one of the 'tips for training deep networks' experiments and writes results.csv, "
                    "PNG plots and summary.md into an output folder.")
    p.add_argument("name", nargs="?", help="the experiment (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: fastdl-experiments/NAME; with 'all', each experiment goes "
                        "into DIR/NAME)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where to train; cuda needs fastdl[cuda] (numba-cuda) and an NVIDIA GPU")
    p.add_argument("--full", action="store_true", help=f"the longer, larger version ({SIZES['full']}; as --size full)")
    p.add_argument("--size", choices=("tiny", "default", "full"), default=None,
                   help="; ".join(f"{k}: {v}" for k, v in SIZES.items()) + " (default: default)")
    p.add_argument("--mnist", default=None, metavar="PATH", help="folder with the MNIST IDX files "
                                                                  "(default: the bundled 8x8 digits)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, shuffling and dropout")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="CPU threads for the kernels (1 is best for these small networks)")
    p.add_argument("--no-plots", action="store_true", help="write the CSV and summary only")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastdl experiment``; argv excludes the program name (a leading
    "experiment" is accepted and dropped). Returns the exit status: 0 ok, 1 a run-time
    failure (one line on stderr), 2 a usage error (the usage and the message printed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiment":
        argv = argv[1:]
    parser = _parser()
    args, status = parse_args(parser, argv)
    if args is None:
        return status
    if args.list:
        width = max(len(n) for n in EXPERIMENTS)
        for name in EXPERIMENTS:
            title, claim = describe(name)
            print(f"{name.ljust(width)}  {claim}")
        return 0
    if not args.name:
        return usage_error(parser, "give an experiment NAME (or 'all'), or --list")
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if names[0] not in EXPERIMENTS:
        return usage_error(parser, f"unknown experiment {args.name!r}; one of: {', '.join(EXPERIMENTS)}, all")
    if args.full and args.size not in (None, "full"):
        return usage_error(parser, "--full and --size disagree")
    size = "full" if args.full else (args.size or "default")
    from pathlib import Path

    base = Path(args.out) if args.out else Path("fastdl-experiments")
    for name in names:
        out = base / name if (args.name == "all" or not args.out) else base
        if not args.quiet:
            print(f"{name}: running ({size}, {args.device}) into {out}/ ...", flush=True)
        try:
            result = run(name, out, device=args.device, size=size, mnist=args.mnist, seed=args.seed,
                         plots=not args.no_plots, threads=args.threads, verbose=not args.quiet)
        # A missing data folder, no GPU, an unwritable --out: one line, not a traceback.
        except (OSError, ValueError, ImportError, RuntimeError, ArithmeticError) as e:
            print(f"fastdl experiment {name}: error: {e}", file=sys.stderr)
            return 1
        if not args.quiet:
            note = "" if result["plots"] or args.no_plots else \
                " (plots skipped: matplotlib not installed; pip install 'fastdl[plot]')"
            print(f"{name}: done in {result['seconds']:.1f} s; see {out / 'summary.md'}{note}", flush=True)
    return 0
