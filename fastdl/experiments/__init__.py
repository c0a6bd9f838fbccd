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

import argparse
import importlib
import sys
import time

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


def _module(name):
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")
    return importlib.import_module(f"fastdl.experiments.{EXPERIMENTS[name]}")


def describe(name):
    """(title, claim) of an experiment."""
    m = _module(name)
    return m.TITLE, m.CLAIM


def run(name, out, device="cpu", size="default", mnist=None, seed=0, plots=True, threads=1, verbose=False):
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


def _parser():
    p = argparse.ArgumentParser(
        prog="fastdl experiment",
        description="Runs one of the 'tips for training deep networks' experiments and writes results.csv, "
                    "PNG plots and summary.md into an output folder.")
    p.add_argument("name", nargs="?", help="the experiment (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--out", default=None, help="output folder (default: fastdl-experiments/NAME; with 'all', "
                                               "each experiment goes into OUT/NAME)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--full", action="store_true", help=f"the longer, larger version ({SIZES['full']})")
    p.add_argument("--size", choices=("tiny", "default", "full"), default=None,
                   help="; ".join(f"{k}: {v}" for k, v in SIZES.items()) + " (--full is full)")
    p.add_argument("--mnist", default=None, metavar="PATH", help="folder with the MNIST IDX files "
                                                                  "(default: the bundled 8x8 digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the kernels (default 1: best for "
                                                          "these small networks)")
    p.add_argument("--no-plots", action="store_true", help="write the CSV and summary only")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    """Entry point of ``fastdl experiment``; argv excludes the program name (a leading
    "experiment" is accepted and dropped). Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiment":
        argv = argv[1:]
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        width = max(len(n) for n in EXPERIMENTS)
        for name in EXPERIMENTS:
            title, claim = describe(name)
            print(f"{name.ljust(width)}  {claim}")
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print("fastdl experiment: error: give an experiment NAME (or 'all'), or --list", file=sys.stderr)
        return 2
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if names[0] not in EXPERIMENTS:
        print(f"fastdl experiment: error: unknown experiment {args.name!r}; one of: {', '.join(EXPERIMENTS)}, all",
              file=sys.stderr)
        return 2
    if args.full and args.size not in (None, "full"):
        print("fastdl experiment: error: --full and --size disagree", file=sys.stderr)
        return 2
    size = "full" if args.full else (args.size or "default")
    if args.threads < 1:
        print("fastdl experiment: error: --threads must be >= 1", file=sys.stderr)
        return 2
    from pathlib import Path

    base = Path(args.out) if args.out else Path("fastdl-experiments")
    for name in names:
        out = base / name if (args.name == "all" or not args.out) else base
        if not args.quiet:
            print(f"{name}: running ({size}, {args.device}) into {out}/ ...", flush=True)
        try:
            result = run(name, out, device=args.device, size=size, mnist=args.mnist, seed=args.seed,
                         plots=not args.no_plots, threads=args.threads, verbose=not args.quiet)
        except (FileNotFoundError, ValueError, ImportError) as e:
            print(f"fastdl experiment {name}: error: {e}", file=sys.stderr)
            return 1
        if not args.quiet:
            note = "" if result["plots"] or args.no_plots else \
                " (plots skipped: matplotlib not installed; pip install 'fastdl[plot]')"
            print(f"{name}: done in {result['seconds']:.1f} s; see {out / 'summary.md'}{note}", flush=True)
    return 0
