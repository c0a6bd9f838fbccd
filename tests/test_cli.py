"""The `fastdl train` command (fastdl.cli, also `python -m fastdl`), end to end on small runs."""

import csv
import os
import subprocess
import sys

import pytest

import fastdl
from fastdl import cli, datasets

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
    with pytest.raises(SystemExit):
        cli.main(["train", "--hidden", "12,x"])
    assert "--hidden" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="epochs"):
        cli.main(["train", "--epochs", "0", "--mnist", str(tmp_path)])
    with pytest.raises(SystemExit, match="t10k|split"):
        cli.main(["train", "--mnist", str(tmp_path), "--out", str(tmp_path / "o")])
    write_mnist(tmp_path / "m", n_train=20, n_test=10)
    with pytest.raises(SystemExit, match="optimizer"):
        cli.main(["train", "--mnist", str(tmp_path / "m"), "--optimizer", "lbfgs", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_subcommand_registry_leaves_room_for_more():
    assert {"train", "check"} <= set(cli.COMMANDS)
    parser = cli.build_parser()
    assert parser.parse_args(["train"]).command == "train"
