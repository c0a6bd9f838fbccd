"""The `fastdl train` command (fastdl.cli, also `python -m fastdl`), end to end on small runs."""

import csv
import os
import subprocess
import sys

import pytest

import fastdl
from fastdl import activations, cli, datasets, optim

from test_datasets import write_mnist


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_on_an_mnist_folder(tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=120, n_test=40)
    out = tmp_path / "run"
    rc = cli.main(["train", "--mnist", str(tmp_path / "mnist"), "--hidden", "32", "--epochs", "3",
                   "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.05", "--out", str(out), "--seed", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "\r" not in text and text.count("Epoch ") == 3 and "test accuracy" in text
    rows = read_csv(out / "history.csv")
    assert len(rows) == 3 and {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    model = fastdl.load(out / "model.fdl")
    assert model.input_dim == 784 and model.output_dim == 10
    assert isinstance(model.optimizer, fastdl.optim.SGD) and model.optimizer.lr == 0.05
    assert [s.layer.out_features for s in model._graph.stages] == [32, 10]


def test_train_with_only_the_t10k_files(tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=None, n_test=50)
    rc = cli.main(["train", "--mnist", str(tmp_path / "mnist"), "--hidden", "8,8", "--epochs", "1",
                   "--out", str(tmp_path / "run"), "--dropout", "0.2", "--activation", "tanh"])
    assert rc == 0
    assert "t10k only" in capsys.readouterr().out


def test_train_digits_end_to_end_through_python_m(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(fastdl.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "fastdl", "train", "--epochs", "8", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout
    acc = float(proc.stdout.rsplit("test accuracy", 1)[1].split()[0])
    assert acc > 0.9
    assert (out / "model.fdl").is_file() and len(read_csv(out / "history.csv")) == 8
    try:
        import matplotlib  # noqa: F401

        assert (out / "learning_curve.png").is_file()
    except ImportError:
        assert not (out / "learning_curve.png").exists()
    (x_train, y_train), (x_test, y_test) = datasets.digits()
    model = fastdl.load(out / "model.fdl")
    assert model.evaluate(x_test, y_test)[1] == pytest.approx(acc, abs=1e-4)


def test_bare_command_is_the_self_check(capsys):
    assert cli.main([]) == 0
    assert "dense_forward check ok" in capsys.readouterr().out


def test_bad_flags_are_clear_errors(tmp_path, capsys):
    assert cli.main(["train", "--hidden", "12,x"]) == 2
    assert "--hidden" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "0", "--mnist", str(tmp_path)]) == 2
    assert "--epochs: expected a positive integer, got 0" in capsys.readouterr().err
    assert cli.main(["train", "--mnist", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "t10k" in err or "split" in err
    assert cli.main(["train", "--optimizer", "lbfgs"]) == 2
    assert "adam" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert "usage: fastdl " in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--activation", "nosuch"], "argument --activation: invalid choice: 'nosuch' (choose from 'linear', "),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--batch-size", "x"], "argument --batch-size: expected a positive integer, got 'x'"),
    (["--dropout", "1.5"], "argument --dropout: expected a number in [0, 1), got 1.5"),
    (["--validation-split", "-0.1"], "argument --validation-split: expected a number in [0, 1), got -0.1"),
    (["--lr", "0"], "argument --lr: expected a positive number, got '0'"),
    (["--patience", "-1"], "argument --patience: expected an integer >= 0, got -1"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs' (choose from 'sgd', "),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--dataset", "digits", "--mnist", "x"], "argument --mnist: not allowed with argument --dataset"),
])
def test_train_usage_errors_print_trains_usage_and_exit_2(argv, message, capsys):
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastdl train ") and f"fastdl train: error: {message}" in err
    assert "Traceback" not in err


def test_train_names_every_valid_activation_and_optimizer(capsys):
    assert cli.main(["train", "--activation", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert all(repr(name) in err for name in activations.NAMES)
    assert cli.main(["train", "--activation", "ReLU", "--optimizer", "AdamW", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in optim.NAMES + activations.NAMES)


def test_train_run_time_failures_are_one_line_and_exit_1(tmp_path, capsys):
    write_mnist(tmp_path / "m", n_train=20, n_test=10)
    (tmp_path / "file").write_text("")
    for argv, message in (
            (["--mnist", str(tmp_path / "nowhere")], "nowhere"),
            (["--mnist", str(tmp_path / "m"), "--out", str(tmp_path / "file")], "file"),
    ):
        assert cli.main(["train", *argv, "--epochs", "1", "--hidden", "4"]) == 1
        out, err = capsys.readouterr()
        assert err.startswith("fastdl train: error: ") and err.count("\n") == 1 and message in err, err


def test_train_on_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    try:
        import fastdl.cuda as fcuda

        if fcuda.is_available():
            pytest.skip("a GPU (or the CUDA simulator) is available here")
    except ImportError:
        pass
    write_mnist(tmp_path / "m", n_train=20, n_test=10)
    assert cli.main(["train", "--mnist", str(tmp_path / "m"), "--device", "cuda", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastdl train: error: device='cuda'") and err.count("\n") == 1, err


def _run(*argv):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(fastdl.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastdl", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


def test_exit_statuses_of_the_process():
    p = _run("train", "--activation", "nosuch")
    assert p.returncode == 2 and p.stderr.startswith("usage: fastdl train ") and "Traceback" not in p.stderr
    p = _run("train", "--bogus")
    assert p.returncode == 2 and p.stderr.startswith("usage: fastdl train ") and "--bogus" in p.stderr
    p = _run("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"fastdl {fastdl.__version__}"


def test_version_and_top_level_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastdl {fastdl.__version__}"
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--version", "--cmake-dir", "--include-dir", "--lib-dir", "train", "check", "bench", "experiment"):
        assert word in text, word


def test_cmake_dir_from_a_source_tree_is_one_line(capsys):
    try:
        fastdl.get_cmake_dir()
        pytest.skip("an installed fastdl: its C++ package is there (tests/test_cpp_package.py)")
    except FileNotFoundError:
        pass
    assert cli.main(["--cmake-dir"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastdl: error: fastdl's C++ package is not installed") and err.count("\n") == 1


def _parsers():
    from fastdl import benchmarking, experiments
    from fastdl.benchmarking import cli as bench_cli

    top = cli.build_parser()
    yield top
    yield from top.commands.values()
    yield experiments._parser()
    yield bench_cli.run_parser()
    yield bench_cli.compare_parser()
    assert benchmarking.main is bench_cli.main


def test_every_flag_has_help_and_shows_its_default():
    import argparse

    from fastdl._argparse import HelpFormatter

    for parser in _parsers():
        assert parser.formatter_class is HelpFormatter, parser.prog
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or \
                    action.help == argparse.SUPPRESS:
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{parser.prog} {name}: no help text"
            if action.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in formatter._get_help_string(action), f"{parser.prog} {name}: default not shown"
        parser.format_help()  # every %-format in the help text expands


def test_experiment_and_bench_usage_errors_print_their_own_usage(capsys):
    from fastdl import benchmarking, experiments

    for main, argv, usage in ((experiments.main, ["--bogus"], "usage: fastdl experiment"),
                              (experiments.main, ["nosuch"], "usage: fastdl experiment"),
                              (experiments.main, ["dropout", "--threads", "0"], "usage: fastdl experiment"),
                              (benchmarking.main, ["--bogus"], "usage: fastdl bench"),
                              (benchmarking.main, ["--sizes", "tiny", "--filter", "nosuch"], "usage: fastdl bench"),
                              (benchmarking.main, ["compare", "a.json"], "usage: fastdl bench compare")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(usage) and "Traceback" not in err, (argv, err)
    # through the fastdl command too
    assert cli.main(["experiment", "--bogus"]) == 2
    assert capsys.readouterr().err.startswith("usage: fastdl experiment")


def test_subcommand_registry_leaves_room_for_more():
    assert {"train", "check"} <= set(cli.COMMANDS)
    parser = cli.build_parser()
    assert parser.parse_args(["train"]).command == "train"
