"""The ``fastdl`` command (also ``python -m fastdl``).

    fastdl train [--dataset digits | --mnist PATH] [--hidden 256,256] [--activation relu]
                 [--optimizer adam] [--lr 1e-3] [--epochs 20] [--batch-size 64] [--dropout 0]
                 [--device cpu] [--seed 0] [--out fastdl-run] [--verbose auto]
    fastdl check          what this installation runs on, and a one-kernel self-check
    fastdl --cmake-dir | --include-dir | --lib-dir    where the C++ package lives
    fastdl --version

Subcommands are registered in ``COMMANDS`` (name -> (add_arguments, run, help)). Each
parses its own arguments, so a usage error prints that subcommand's usage (exit 2); a
run-time failure prints one line ``fastdl NAME: error: ...`` (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from fastdl._argparse import HelpFormatter, fraction, nonnegative_int, parse_args, positive_int

__all__ = ["main", "COMMANDS"]


class CommandError(Exception):
    """A run-time failure of a subcommand: printed as one line, exit status 1."""


def _hidden(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()] if text.strip() else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 256,256, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return sizes


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _lower(text):
    return text.lower()


def _add_train(p):
    from fastdl import activations, optim

    data = p.add_mutually_exclusive_group()
    # default None, not "digits": argparse sees a clash with --mnist only for a value
    # other than the default
    data.add_argument("--dataset", choices=["digits"], default=None,
                      help="built-in dataset: scikit-learn's 8x8 digits (needs fastdl[examples]); "
                           "the default without --mnist")
    data.add_argument("--mnist", metavar="PATH",
                      help="folder with MNIST IDX files (train-*/t10k-*, gzipped or not); with only the t10k files, "
                           "their first 80%% train and the rest test (default: --dataset)")
    p.add_argument("--hidden", type=_hidden, default=[256, 256], metavar="W1,W2,...",
                   help="hidden layer widths, comma-separated; empty for none (default: 256,256)")
    p.add_argument("--activation", type=_lower, default="relu", choices=activations.NAMES, metavar="NAME",
                   help=f"hidden activation: {', '.join(activations.NAMES)}")
    p.add_argument("--dropout", type=fraction(), default=0.0, metavar="P",
                   help="dropout rate after each hidden layer, in [0, 1)")
    p.add_argument("--optimizer", type=_lower, default="adam", choices=optim.NAMES, metavar="NAME",
                   help=f"optimizer: {', '.join(optim.NAMES)}")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the optimizer's, PyTorch's)")
    p.add_argument("--epochs", type=positive_int, default=20, metavar="N", help="passes over the training data")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="samples per step")
    p.add_argument("--validation-split", type=fraction(), default=0.1, metavar="F",
                   help="last fraction of the training data held out for validation, in [0, 1)")
    p.add_argument("--patience", type=nonnegative_int, default=None, metavar="N",
                   help="early stopping patience in epochs on val_loss (default: off)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to train; cuda needs fastdl[cuda] (numba-cuda) and an NVIDIA GPU")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, shuffling and dropout")
    p.add_argument("--out", default="fastdl-run", metavar="DIR",
                   help="output folder: model.fdl, history.csv, learning_curve.png")
    p.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                   help="progress output: 0 none, 1 a progress bar, 2 one line per epoch, auto: 1 on a "
                        "terminal, else 2")


def _load_data(args):
    """((x_train, y_train), (x_test, y_test)) and a description of the source."""
    from fastdl import datasets

    if args.mnist:
        folder = args.mnist
        (train, test) = datasets.mnist(folder)  # with only the t10k files there: cut 80/20
        if "train" in datasets.mnist_splits(folder):
            return (train, test), f"MNIST ({folder})"
        return (train, test), f"MNIST t10k only ({folder}: first {len(train[0])} train)"
    return datasets.digits(), "digits (scikit-learn 8x8, 20% held out for test)"


def _run_train(args):
    import fastdl

    try:
        ((x_train, y_train), (x_test, y_test)), source = _load_data(args)
    except (ImportError, OSError, ValueError) as e:
        raise CommandError(e) from None
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    layers: list = []
    for width in args.hidden:
        layers.append(fastdl.Dense(width, activation=args.activation))
        if args.dropout:
            layers.append(fastdl.Dropout(args.dropout))
    layers.append(fastdl.Dense(n_classes))
    try:
        model = fastdl.Sequential(layers, device=args.device, seed=args.seed, input_dim=x_train.shape[1])
        opt_kwargs = {} if args.lr is None else {"lr": args.lr}
        model.compile(optimizer=fastdl.optim.get(args.optimizer, **opt_kwargs), loss="softmax_cross_entropy",
                      metrics=["accuracy"])
    except (ValueError, TypeError, RuntimeError, ImportError) as e:
        raise CommandError(e) from None
    try:
        return _fit_and_save(args, model, source, (x_train, y_train), (x_test, y_test), n_classes)
    # A bad --out, a full disk, a loss that went to NaN: one line, not a traceback.
    except (OSError, ValueError, RuntimeError, ArithmeticError) as e:
        raise CommandError(e) from None


def _fit_and_save(args, model, source, train, test, n_classes):
    import fastdl
    from fastdl import callbacks as C

    (x_train, y_train), (x_test, y_test) = train, test
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.fdl")
    csv_path = os.path.join(args.out, "history.csv")
    callbacks: list[C.Callback] = [C.CSVLogger(csv_path)]
    if args.patience is not None:
        callbacks.append(C.EarlyStopping(patience=args.patience, restore_best_weights=True))
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    print(f"fastdl {fastdl.__version__} train: {source}, {x_train.shape[0]} training / {x_test.shape[0]} test "
          f"samples, {x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-{n_classes} {args.activation}, "
          f"{type(model.optimizer).__name__} lr={model.optimizer.lr:g}, batch {args.batch_size}, "
          f"device {args.device} (isa {fastdl.get_isa()}, {fastdl.get_num_threads()} threads), seed {args.seed}")
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split if args.validation_split > 0 else 0.0,
                        callbacks=callbacks, verbose=verbose)
    wall = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(x_test, y_test)
    model.save(model_path)
    print(f"trained {len(history.epoch)} epochs in {wall:.1f}s; test loss {test_loss:.4f}, "
          f"test accuracy {test_acc:.4f}")
    print(f"saved {model_path} and {csv_path}", end="")
    png = _plot(history, os.path.join(args.out, "learning_curve.png"))
    print(f" and {png}" if png else " (pip install fastdl[plot] for the PNG)")
    return 0


def _plot(history, path):
    """The learning curve as a PNG, when matplotlib is installed; returns the path or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    h = history.history
    epochs = [e + 1 for e in history.epoch]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, ax in (("loss", ax1), ("accuracy", ax2)):
        ax.plot(epochs, h[key], label=f"train {key}")
        if f"val_{key}" in h:
            ax.plot(epochs, h[f"val_{key}"], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _add_check(p):
    pass  # no options


def _run_check(args):
    import numpy as np

    import fastdl
    from fastdl import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32), dtype=np.float32)
    w = rng.standard_normal((32, 16), dtype=np.float32)
    b = rng.standard_normal(16, dtype=np.float32)
    y = kernels.dense_forward(x, w, b, "relu")
    ok = np.allclose(y, np.maximum(x.astype(np.float64) @ w + b, 0), atol=1e-4)
    print(f"fastdl {fastdl.__version__}: isa={fastdl.get_isa()} threads={fastdl.get_num_threads()} "
          f"dense_forward check {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


#: subcommand -> (add its arguments to a parser, run it with the parsed args)
COMMANDS = {
    "train": (_add_train, _run_train, "train an MLP and save the model and its learning curve"),
    "check": (_add_check, _run_check, "print the ISA/threads in use and check one fused kernel"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; ``parser.commands`` maps each subcommand of COMMANDS to its
    own parser (prog ``fastdl NAME``), which main() hands that subcommand's arguments."""
    import fastdl

    parser = argparse.ArgumentParser(
        prog="fastdl", formatter_class=HelpFormatter,
        description="fastdl: fast feed-forward network training. With no command: what this installation "
                    "runs on, and a one-kernel self-check.")
    parser.add_argument("--version", action="version", version=f"fastdl {fastdl.__version__}")
    for flag, what in (("--cmake-dir", "the CMake package (fastdlConfig.cmake, for -Dfastdl_DIR=...)"),
                       ("--include-dir", "the C++ headers (fastdl/*.h)"),
                       ("--lib-dir", "the static library (libfastdl_kernels.a)")):
        parser.add_argument(flag, dest="paths", action="append_const", const=flag,
                            help=f"print the folder of {what} in this installation, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}
    parser.commands = commands  # type: ignore[attr-defined]  # main() reads it
    for name, (add, _, help_text) in COMMANDS.items():
        commands[name] = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        add(commands[name])
    for name, (_, help_text) in DELEGATED.items():  # listed for --help; main() routes them
        sub.add_parser(name, help=f"{help_text}; `fastdl {name} --help` for its options", add_help=False)
    return parser


#: subcommands with a parser of their own: everything after the name is theirs.
DELEGATED = {
    "bench": ("fastdl.benchmarking", "time fastdl against PyTorch, numpy and scikit-learn (docs/benchmarks.md)"),
    "experiment": ("fastdl.experiments", "run the training-tips experiments (docs/experiments.md)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastdl``; returns the exit status: 0 ok, 1 a run-time failure
    (one line on stderr), 2 a usage error (the usage of the command it belongs to and
    the message on stderr)."""
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module = importlib.import_module(DELEGATED[argv[0]][0])
        if argv[0] == "bench":
            if from_console:  # numpy's idle BLAS threads must sleep at once (idle_threads.py)
                from fastdl.benchmarking.idle_threads import restart_with_quiet_blas

                restart_with_quiet_blas(["fastdl", *argv])
            return module.main(argv[1:], prog="fastdl bench")
        return module.main(argv[1:])
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        # The subcommand's own parser: `fastdl train --bogus` prints train's usage.
        name = argv[0]
        args, status = parse_args(parser.commands[name], argv[1:])  # type: ignore[attr-defined]  # build_parser
        if args is None:
            return status
        args.command = name
        try:
            return COMMANDS[name][1](args)
        except CommandError as e:
            print(f"fastdl {name}: error: {e}", file=sys.stderr)
            return 1
    args, status = parse_args(parser, argv)
    if args is None:
        return status
    if args.paths:
        from fastdl._paths import print_paths

        try:
            print_paths(args.paths)
        except FileNotFoundError as e:
            print(f"fastdl: error: {e}", file=sys.stderr)
            return 1
        return 0
    return _run_check(args)  # bare `fastdl` / `python -m fastdl`: the self-check


if __name__ == "__main__":
    raise SystemExit(main())
