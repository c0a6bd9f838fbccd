"""Where fastdl departs from a reference (Keras 3, PyTorch) by choice, or where the docs
describe behaviour, a test pins the code and the doc together:

- EarlyStopping with NaN monitored values starts from inf (Keras 3 takes the first
  value, even NaN, as the best);
- CosineDecay holds min_lr past `total` (PyTorch's CosineAnnealingLR rises again);
- a missing numba-cuda is an ImportError naming the `cuda` extra (docs/gpu.md);
- docs/distributed.md's script defines every name it uses and says how to run Open MPI
  as root;
- `fastdl experiment --help` states the same run times as the package's docstring.
"""

import ast
import builtins
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl import Dense, callbacks, schedules

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _doc(name):
    path = DOCS / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this tree (an installed package without its docs)")
    return path.read_text()


# -- EarlyStopping and NaN ----------------------------------------------------------------------
class _Scripted(callbacks.Callback):
    """Replaces val_loss with scripted values and marks the weights with the epoch (in
    the first parameter), so the restored weights say which epoch they are from."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]
        self.model.flat_params[0] = epoch


def test_early_stopping_with_nan_starts_from_inf_unlike_keras():
    values = [math.nan, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3)).astype(np.float32), rng.integers(0, 2, 16)
    model = fastdl.Sequential([Dense(3, 2)], seed=0).compile("sgd")
    stop = callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    hist = model.fit(x, y, epochs=len(values), batch_size=16, verbose=0, callbacks=[_Scripted(values), stop])
    assert len(hist.history["loss"]) == 4  # stopped after epoch 3 (0-based); Keras 3: after epoch 1
    assert stop.best == 0.8 and stop.best_epoch == 2  # Keras 3 restores epoch 0, the NaN one
    assert model.flat_params[0] == 2
    doc = _doc("network.md")
    assert "One departure from Keras 3: NaN" in doc and "restores epoch 2's" in doc


# -- CosineDecay past its end -------------------------------------------------------------------
def test_cosine_decay_holds_min_lr_past_total():
    s = schedules.CosineDecay(10, min_lr=0.01, initial_lr=0.1)
    assert s(0) == pytest.approx(0.1) and s(5) == pytest.approx(0.055)
    assert [s(t) for t in (10, 11, 15, 20, 1000)] == [pytest.approx(0.01)] * 5
    assert "holds min_lr after `total`" in _doc("network.md")


def test_cosine_decay_differs_from_torch_past_t_max():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    s = schedules.CosineDecay(10, min_lr=0.01, initial_lr=0.1)
    for t in range(11):
        assert s(t) == pytest.approx(lrs[t], rel=1e-6)
    assert lrs[15] > 0.04 and s(15) == pytest.approx(0.01)  # torch rose again, fastdl holds


# -- the GPU package missing --------------------------------------------------------------------
def test_a_missing_numba_cuda_is_an_import_error_naming_the_extra(monkeypatch):
    import fastdl.cuda as fc
    from fastdl import _device

    monkeypatch.setattr(fc, "_numba_cuda", lambda: None)
    monkeypatch.setitem(sys.modules, "numba", None)  # as if not installed
    monkeypatch.delitem(_device._BACKENDS, "cuda", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'fastdl\[cuda\]'"):
        fc.require()
    with pytest.raises(ImportError, match=r"^device='cuda' needs numba-cuda: .*pip install 'fastdl\[cuda\]'"):
        fastdl.Sequential([Dense(4, 3)], device="cuda")
    assert "raises an ImportError" in _doc("gpu.md")


# -- docs/distributed.md ------------------------------------------------------------------------
def test_the_distributed_script_defines_every_name_it_uses():
    doc = _doc("distributed.md")
    script = re.search(r"```python\n(# train.py\n.*?)```", doc, re.S).group(1)
    tree = ast.parse(script)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used <= defined, f"the script uses {sorted(used - defined)} without defining them"
    assert "--allow-run-as-root" in doc


# -- fastdl experiment --help -------------------------------------------------------------------
def test_the_experiment_help_states_the_documented_run_times():
    """`--help` once said the default size takes minutes; it takes seconds. The help,
    the package docstring and docs/experiments.md state the same SIZES."""
    from fastdl import experiments

    help_text = " ".join(experiments._parser().format_help().split())
    doc = " ".join(experiments.__doc__.split())
    for size, claim in experiments.SIZES.items():
        assert f"{size}: {claim}" in help_text, help_text
        assert claim in doc, (claim, doc)
    assert "minutes" not in experiments.SIZES["default"]
    assert experiments.SIZES["default"] in " ".join(_doc("experiments.md").split())
