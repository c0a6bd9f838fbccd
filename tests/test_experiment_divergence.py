"""An experiment finishes and reports what happened: a run whose loss turns NaN is
stopped and named in the summary (and marked in the plots' legends) instead of aborting
the experiment -- and so `fastdl experiment all` -- with NonFiniteLossError. The
batch-norm experiment's default configuration trains at its default seed."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import Dense, optim
from fastdl.experiments import _base
from fastdl.experiments import batch_norm as B

pytest.importorskip("sklearn", reason="the experiments' default data is scikit-learn's digits")


@pytest.fixture(autouse=True)
def one_thread():
    previous = fastdl.get_num_threads()
    fastdl.set_num_threads(1)
    yield
    fastdl.set_num_threads(previous)


def test_a_diverging_run_is_reported_not_raised(tmp_path):
    ctx = _base.Context("t", tmp_path, size="tiny", plots=False)
    data = _base.Data(np.full((8, 3), np.nan, np.float32), np.zeros(8, np.int64), np.zeros((4, 3), np.float32),
                      np.ones(4, np.int64), "nan data")
    model = ctx.model([Dense(3, 2)], optim.SGD(0.1))
    hist, _ = ctx.fit(model, data, 3, batch_size=4, label="nan run")
    assert list(ctx.diverged) == ["nan run"] and "epoch 1, step 1" in ctx.diverged["nan run"]
    # one epoch of NaN for the epoch it diverged in: every series has a first value
    assert len(hist["loss"]) == 1 and math.isnan(hist["loss"][0]) and math.isnan(hist["val_accuracy"][0])
    assert math.isnan(_base.final(hist, "loss")) and ctx.run_label("nan run") == "nan run (diverged)"
    ctx.write_summary("t", "claim", [], ["a finding"])
    text = (tmp_path / "summary.md").read_text()
    assert "### Runs that diverged" in text and "nan run: diverged" in text


def test_the_batch_norm_experiment_finishes_when_a_run_diverges(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "LR", 20.0)  # every network blows up
    result = fastdl.experiments.run("batch-norm", tmp_path, size="tiny", plots=False)
    assert any(r["diverged"] for r in result["table"])
    text = (tmp_path / "summary.md").read_text()
    assert "### Runs that diverged" in text and "network diverged" in text


def test_the_batch_norm_default_configuration_trains_at_the_default_seed(tmp_path):
    """The network that diverged at lr 0.05 (the 10-layer ReLU net without BatchNorm),
    at the default size and seed: it trains now."""
    ctx = _base.Context("batch-norm", tmp_path, size="default", seed=0, plots=False)
    depth, width, epochs, data = B.sizes(ctx)
    model = ctx.model(B.net("relu", depth, data.n_features, width, data.n_classes, False),
                      optim.SGD(B.LR, momentum=B.MOMENTUM))
    hist, _ = ctx.fit(model, data, epochs, label="relu")
    assert not ctx.diverged, ctx.diverged
    assert len(hist["loss"]) == epochs and hist["val_accuracy"][-1] > 0.8
