"""GradientMonitor, fastdl.plotting and the experiments (every one at the tiny size):
outputs exist, numbers are finite and say what the experiment is about."""

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl import Dense, BatchNorm, Dropout, optim
from fastdl import experiments as X
from fastdl.callbacks import CSVLogger, GradientMonitor
from fastdl.monitoring import gradient_norms

pytest.importorskip("sklearn", reason="the experiments' default data is scikit-learn's digits")

# ../shared/data/mnist beside the repository (a git worktree one level deeper also finds it)
MNIST = next((p / "shared" / "data" / "mnist" for p in Path(__file__).resolve().parents[2:4]
              if (p / "shared" / "data" / "mnist").is_dir()),
             Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False


@pytest.fixture(autouse=True)
def one_thread():
    previous = fastdl.get_num_threads()
    fastdl.set_num_threads(1)
    yield
    fastdl.set_num_threads(previous)


def small_data(n=96, k=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(np.float32)
    return x, rng.integers(0, c, n)


# -- GradientMonitor ----------------------------------------------------------------------
def test_gradient_monitor_history_and_update_ratio_match_plain_sgd():
    x, y = small_data()
    lr = 0.05
    m = fastdl.Sequential([Dense(12, 16, activation="tanh"), Dense(16, activation="tanh"), Dense(4)], seed=3)
    m.compile(optim.SGD(lr), metrics=["accuracy"])
    before = m.get_flat_weights()[0]
    mon = GradientMonitor()
    h = m.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[mon])
    layers = ["dense_0", "dense_1", "dense_2"]
    for layer in layers:
        assert len(h.history[f"grad_norm/{layer}"]) == 2
        assert len(h.history[f"update_ratio/{layer}"]) == 2
        assert len(mon.steps[f"grad_norm/{layer}"]) == 6  # 3 steps per epoch
    assert mon.steps["step"] == [1, 2, 3, 4, 5, 6]
    assert mon.steps["epoch"] == [0, 0, 0, 1, 1, 1]
    # the epoch value is the mean of its steps
    g = mon.steps["grad_norm/dense_1"]
    assert h.history["grad_norm/dense_1"][0] == pytest.approx(np.mean(g[:3]))
    # plain SGD: the update of step 1 is -lr * grad, so ||dW|| / ||W|| = lr ||g|| / ||W_0||
    w0 = before[: 12 * 16]
    r = mon.steps["update_ratio/dense_0"][0]
    assert r == pytest.approx(lr * mon.steps["grad_norm/dense_0"][0] / np.linalg.norm(w0), rel=1e-4)


def test_gradient_monitor_every_n_and_csv_logger_sees_its_keys(tmp_path):
    x, y = small_data(n=160)
    m = fastdl.Sequential([Dense(12, 8, activation="relu"), BatchNorm(8), Dense(4)], seed=0).compile("adam")
    mon = GradientMonitor(every=2)
    path = tmp_path / "log.csv"
    h = m.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[mon, CSVLogger(path)])
    assert mon.steps["step"] == [2, 4, 6, 8, 10]  # 5 steps per epoch, every second one
    assert all(math.isfinite(v) and v > 0 for v in mon.steps["update_ratio/dense_0"])
    # BatchNorm has no weight matrix: only the Dense layers are monitored by default
    assert not any("batchnorm" in k for k in h.history)
    with open(path) as f:
        header = next(csv.reader(f))
    assert "grad_norm/dense_1" in header
    # weights_only=False counts biases and gamma/beta too
    mon_all = GradientMonitor(weights_only=False, update_ratio=False)
    h2 = m.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[mon_all])
    assert "grad_norm/batchnorm_0" in h2.history and "update_ratio/dense_0" not in h2.history


def test_gradient_monitor_rejects_bad_every():
    for bad in (0, -1, "step", 1.5, True):
        with pytest.raises(ValueError, match="every"):
            GradientMonitor(every=bad)


def test_gradient_norms_changes_nothing():
    x, y = small_data()
    m = fastdl.Sequential([Dense(12, 16, activation="relu"), Dropout(0.3), BatchNorm(16), Dense(4)], seed=1)
    m.compile("sgd")
    before = [w.copy() for w in m.get_flat_weights()]
    step = m.global_step
    norms = gradient_norms(m, x, y)
    assert list(norms) == ["dense_0", "dense_1"] and all(v > 0 for v in norms.values())
    for a, b in zip(before, m.get_flat_weights()):
        np.testing.assert_array_equal(a, b)  # parameters and BatchNorm running statistics
    assert m.global_step == step
    # the norms are those of the gradient the network computes
    m.compute_gradients(x, y)
    w_grad = m.flat_grads[: 12 * 16]
    assert norms["dense_0"] == pytest.approx(float(np.linalg.norm(w_grad.astype(np.float64))), rel=1e-6)


# -- plotting -------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib (the plot extra) is not installed")
def test_plot_helpers_write_pngs(tmp_path):
    from fastdl import plotting

    x, y = small_data()
    m = fastdl.Sequential([Dense(12, 8, activation="relu"), Dense(4)], seed=0).compile("adam", metrics=["accuracy"])
    mon = GradientMonitor()
    h = m.fit(x, y, epochs=3, batch_size=32, validation_data=(x, y), verbose=0, callbacks=[mon])
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    plotting.learning_curves({"a": h, "b": h.history}, path=paths[0], marks={"a": [(2, "best")]})
    plotting.learning_curves(h, metrics=("loss",), x="time", path=paths[1])
    plotting.gradient_norms_by_depth({"net": gradient_norms(m, x, y)}, path=paths[2])
    plotting.gradient_norms_over_time(mon, per="step", path=paths[3])
    plotting.line_chart({"s": ([1, 2, 4], [3.0, float("nan"), 1.0])}, logx=2, logy=True, path=paths[4])
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="GradientMonitor"):
        plotting.gradient_norms_over_time({"loss": [1.0]})
    with pytest.raises(ValueError, match="expected .epoch. or .time."):
        plotting.learning_curves(h, x="step")


def test_plotting_without_matplotlib_names_the_extra(monkeypatch):
    from fastdl import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"fastdl\[plot\]"):
        plotting.learning_curves({"loss": [1.0, 0.5]})


def test_experiment_without_matplotlib_writes_csv_and_says_plots_were_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = X.run("learning-rate", tmp_path, size="tiny")
    assert not r["plots"]
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "results.csv").is_file()
    assert "plots skipped: matplotlib is not installed" in (tmp_path / "summary.md").read_text()


# -- the experiments --------------------------------------------------------------------------
def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def numbers(rows, *cols):
    out = []
    for r in rows:
        for c in cols:
            out.append(float(r[c]))
    return out


def check_outputs(out, result):
    assert (out / "results.csv").is_file()
    summary = (out / "summary.md").read_text()
    assert "## Findings" in summary and "machine:" in summary
    pngs = sorted(out.glob("*.png"))
    if HAVE_MPL:
        assert pngs, "no plots written"
        for p in pngs:
            assert p.read_bytes()[:4] == b"\x89PNG" and f"]({p.name})" in summary
    assert result["seconds"] > 0
    return read_csv(out / "results.csv"), summary


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every experiment at the tiny size, once."""
    base = tmp_path_factory.mktemp("experiments")
    out = {}
    for name in X.EXPERIMENTS:
        out[name] = (base / name, X.run(name, base / name, size="tiny", threads=1))
    return out


def test_vanishing_gradients(results):
    out, r = results["vanishing-gradients"]
    rows, _ = check_outputs(out, r)
    assert all(math.isfinite(v) and v > 0 for v in numbers(rows, "grad_first_init", "grad_last_init"))
    deep = max(int(row["depth"]) for row in rows)
    by = {(row["activation"], int(row["depth"])): row for row in rows}
    sig, relu = by[("sigmoid", deep)], by[("relu", deep)]
    # the first layer of the deepest sigmoid network gets a far smaller gradient than the ReLU one's
    assert float(sig["grad_first_init"]) < 1e-2 * float(relu["grad_first_init"])
    # and far smaller than its own last layer's, while ReLU's stays within a small factor
    assert float(sig["first_over_last"]) < 1e-3
    assert 0.1 < float(relu["first_over_last"]) < 10
    # the gradient shrinks monotonically toward the input in the sigmoid network
    g = [row for row in read_csv(out / "gradients.csv") if row["activation"] == "sigmoid" and int(row["depth"]) == deep]
    vals = [float(row["grad_norm_init"]) for row in sorted(g, key=lambda row: int(row["layer"]))]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert all(math.isfinite(v) for v in numbers(g, "grad_norm_epoch1_mean", "update_ratio_epoch1_mean"))


def test_activations(results):
    out, r = results["activations"]
    rows, _ = check_outputs(out, r)
    assert {row["activation"] for row in rows} == set(r["units"])
    assert all(math.isfinite(v) for v in numbers(rows, "loss", "accuracy", "val_loss", "val_accuracy"))
    final = {t["activation"]: t for t in r["table"]}
    assert final["relu"]["final_loss"] < final["sigmoid"]["final_loss"]
    assert final["maxout2"]["params"] > final["relu"]["params"]  # two pieces: twice the hidden weights


def test_optimizers(results):
    out, r = results["optimizers"]
    rows, _ = check_outputs(out, r)
    assert all(math.isfinite(v) and v > 0 for v in numbers(rows, "loss", "time"))
    by = {t["optimizer"].split()[0]: t for t in r["table"]}
    assert by["momentum"]["final_loss"] < by["SGD"]["final_loss"]
    # every optimizer learned something in its two tiny epochs (chance level is ln 10 = 2.303)
    assert all(t["final_loss"] < t["loss_epoch1"] <= math.log(10) + 0.2 for t in r["table"])


def test_learning_rate(results):
    out, r = results["learning-rate"]
    rows, _ = check_outputs(out, r)
    by = {t["schedule"]: t for t in r["table"]}
    small, const, big = by["too small (lr=0.001)"], by["constant lr=0.1"], by["too large (lr=2)"]
    assert small["final_loss"] > const["final_loss"]
    assert not (big["final_loss"] < const["final_loss"])  # nan (diverged) or worse
    assert big["diverged_or_at_chance"] and not const["diverged_or_at_chance"]
    step = next(t for k, t in by.items() if k.startswith("step decay"))
    assert step["lr_end"] < step["lr_start"]
    lrs = [float(row["lr"]) for row in rows if row["schedule"].startswith("1/sqrt")]
    assert lrs == pytest.approx([0.3 / math.sqrt(t + 1) for t in range(len(lrs))])


def test_dropout(results):
    out, r = results["dropout"]
    rows, summary = check_outputs(out, r)
    assert all(math.isfinite(v) for v in numbers(rows, "clean_loss", "clean_accuracy", "val_loss"))
    by = {t["variant"]: t for t in r["table"]}
    assert set(by) == {"no dropout", "dropout 0.2 in / 0.5 hidden", "dropout + max-norm 3"}
    # measured without dropout, the plain network fits its training set better than the dropout one
    assert by["no dropout"]["train_loss_clean"] < by["dropout 0.2 in / 0.5 hidden"]["train_loss_clean"]


def test_early_stopping(results):
    out, r = results["early-stopping"]
    rows, summary = check_outputs(out, r)
    stopped = [row for row in rows if row["run"] == "early stopping"]
    full = [row for row in rows if row["run"] == "full"]
    assert len(stopped) == r["epochs_run"] <= len(full)
    # the same seed: the early-stopped run is the full run's prefix
    assert numbers(stopped, "val_loss") == pytest.approx(numbers(full[:len(stopped)], "val_loss"))
    # the restored network is the best epoch's
    val = numbers(stopped, "val_loss")
    assert r["best_epoch"] == val.index(min(val)) + 1
    assert r["restored_val_loss"] == pytest.approx(min(val), rel=1e-5)
    assert f"restored epoch {r['best_epoch']}" in summary


def test_batch_size(results):
    out, r = results["batch-size"]
    rows, _ = check_outputs(out, r)
    assert all(math.isfinite(v) and v > 0 for v in numbers(rows, "ms_per_epoch", "final_loss"))
    noise = r["noise"]
    bs = sorted(noise)
    assert noise[bs[0]] > 3 * noise[bs[-1]]  # a bigger batch estimates the gradient better
    # ... by less than linear returns: B times the samples is not B times less error
    assert noise[bs[0]] / noise[bs[-1]] < bs[-1] / bs[0]
    by = {int(row["batch_size"]): row for row in rows}
    assert int(by[1]["steps_per_epoch"]) > int(by[128]["steps_per_epoch"])


def test_initialization(results):
    out, r = results["initialization"]
    check_outputs(out, r)
    by = {t["init"]: t for t in r["table"]}
    u, g, h = by["uniform 1/sqrt(m)"], by["Glorot uniform"], by["He uniform"]
    # the output signal's scale after the depth: uniform < Glorot < He
    assert u["output_std_init"] < g["output_std_init"] < h["output_std_init"]
    assert u["grad_first_init"] < g["grad_first_init"] < h["grad_first_init"]


def test_batch_norm(results):
    out, r = results["batch-norm"]
    rows, _ = check_outputs(out, r)
    assert all(math.isfinite(v) for v in numbers(rows, "loss", "val_loss", "grad_norm/dense_0"))
    by = {t["network"]: t for t in r["table"]}
    assert by["sigmoid + BatchNorm"]["first_over_last"] > 100 * by["sigmoid"]["first_over_last"]
    assert by["sigmoid + BatchNorm"]["final_loss"] < by["sigmoid"]["final_loss"]


def test_deep_vs_fat(results):
    out, r = results["deep-vs-fat"]
    rows, _ = check_outputs(out, r)
    for row in rows:  # each shape lands near its parameter budget
        assert abs(int(row["params"]) - int(row["budget"])) < 0.1 * int(row["budget"])
        assert 0.0 <= float(row["best_val_accuracy"]) <= 1.0
    assert len({int(row["hidden_layers"]) for row in rows}) >= 2


# -- command line ------------------------------------------------------------------------------
def test_main_list_and_errors(capsys):
    assert X.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in X.EXPERIMENTS:
        assert name in listed
    assert X.main(["experiment", "--list"]) == 0  # as `fastdl experiment --list` passes it
    capsys.readouterr()
    assert X.main(["no-such-thing"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert X.main([]) == 2
    assert X.main(["dropout", "--full", "--size", "tiny"]) == 2


def test_main_runs_one_experiment_and_restores_threads(tmp_path, capsys):
    fastdl.set_num_threads(2)
    try:
        assert X.main(["initialization", "--size", "tiny", "--out", str(tmp_path), "--no-plots", "--quiet"]) == 0
        assert fastdl.get_num_threads() == 2
    finally:
        fastdl.set_num_threads(1)
    assert (tmp_path / "results.csv").is_file() and not list(tmp_path.glob("*.png"))
    assert "threads: 1" in (tmp_path / "summary.md").read_text()


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"no MNIST files at {MNIST}")
def test_experiment_on_mnist(tmp_path):
    r = X.run("vanishing-gradients", tmp_path, size="tiny", mnist=str(MNIST), plots=False)
    summary = (tmp_path / "summary.md").read_text()
    assert "MNIST" in summary and "784 features" in summary
    by = {(row["activation"], row["depth"]): row for row in r["rows"]}
    deep = max(r["depths"])
    assert by[("sigmoid", deep)]["grad_first_init"] < 1e-2 * by[("relu", deep)]["grad_first_init"]


def test_experiment_on_missing_mnist_folder_is_an_error(tmp_path, capsys):
    assert X.main(["dropout", "--size", "tiny", "--mnist", str(tmp_path / "nowhere"), "--out", str(tmp_path),
                   "--quiet"]) == 1
    assert "not a folder" in capsys.readouterr().err
