"""What every experiment shares: data, sizes, training a network, writing the outputs."""

import csv
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

import fastdl

SIZES = ("tiny", "default", "full")


class Data:
    """A training and a validation split (float32 rows in [0, 1], int64 labels)."""

    def __init__(self, x_train, y_train, x_val, y_val, name):
        self.x_train, self.y_train, self.x_val, self.y_val, self.name = x_train, y_train, x_val, y_val, name
        self.n_features = int(x_train.shape[1])
        self.n_classes = int(max(y_train.max(), y_val.max()) + 1)

    def describe(self):
        return (f"{self.name}: {len(self.x_train):,} training and {len(self.x_val):,} validation samples, "
                f"{self.n_features} features, {self.n_classes} classes")

    def subset(self, n_train=None, n_val=None):
        return Data(self.x_train[:n_train], self.y_train[:n_train], self.x_val[:n_val], self.y_val[:n_val],
                    self.name)


def load_data(mnist=None, seed=0):
    """The bundled digits (scikit-learn's 8x8 digits, 80/20 split), or MNIST from a folder:
    train/test when both splits are there, else the t10k split cut 80/20."""
    if mnist is None:
        (xt, yt), (xv, yv) = fastdl.datasets.digits(seed=seed)
        return Data(xt, yt, xv, yv, "digits (8x8, scikit-learn)")
    if "train" in fastdl.datasets.mnist_splits(mnist) or not Path(mnist).is_dir():
        (xt, yt), (xv, yv) = fastdl.datasets.mnist(mnist, split="both")
        name = "MNIST (train / t10k)"
    else:  # shuffled before the cut (datasets.mnist cuts the t10k files in order)
        x, y = fastdl.datasets.mnist(mnist, split="test")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = int(len(x) * 0.8)
        xt, yt, xv, yv = x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]
        name = "MNIST t10k (80/20 split)"
    return Data(xt, yt, xv, yv, name)


class Context:
    """What an experiment gets: its settings, the data, helpers to train and to write.

    size: "tiny" (the tests: seconds), "default" (a few minutes on 2 cores) or "full"."""

    def __init__(self, name, out, device="cpu", size="default", mnist=None, seed=0, plots=True, verbose=False):
        if size not in SIZES:
            raise ValueError(f"size: expected one of {SIZES}, got {size!r}")
        self.name, self.device, self.size, self.mnist, self.seed = name, device, size, mnist, seed
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.verbose = verbose
        self.plots = plots and _have_matplotlib()
        self.plot_note = None if self.plots else (
            "plots skipped: matplotlib is not installed (pip install 'fastdl[plot]')" if plots else "plots skipped")
        self.files = []
        self.images = []
        self.diverged = {}  # run label -> what happened, for the summary
        self._data = self._used = None
        self.t0 = time.perf_counter()

    # -- settings --------------------------------------------------------------------
    def pick(self, tiny, default, full=None):
        """The value for this run's size (full falls back to default)."""
        if self.size == "tiny":
            return tiny
        if self.size == "full" and full is not None:
            return full
        return default

    def data(self, n_train=None, n_val=None):
        """The dataset cut to its first n_train / n_val samples (None: all; the digits have
        only 1,438 / 359, so the cuts matter for MNIST)."""
        if self._data is None:
            self._data = load_data(self.mnist, self.seed)
        self._used = self._data.subset(n_train, n_val)
        return self._used

    @property
    def on_mnist(self):
        return self.mnist is not None

    def log(self, msg):
        if self.verbose:
            print(f"[{self.name}] {msg}", flush=True)

    # -- training --------------------------------------------------------------------
    def model(self, layers, optimizer, seed=None):
        m = fastdl.Sequential(layers, device=self.device, seed=self.seed if seed is None else seed)
        return m.compile(optimizer, loss="softmax_cross_entropy", metrics=["accuracy"])

    def fit(self, model, data, epochs, batch_size=32, callbacks=None, validation=True, label=None):
        """model.fit, silent; returns (history dict, seconds). A run whose training loss
        turns NaN or infinite stops there instead of ending the experiment: its history
        holds the epochs it completed and then one epoch of NaN (the loss: the non-finite
        value) for the epoch it diverged in, so every series has a first value and
        final() / best() skip the NaN; `label` (or "run N") goes into self.diverged,
        which the summary reports and run_label marks in plots."""
        t = time.perf_counter()
        try:
            h = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                          validation_data=(data.x_val, data.y_val) if validation else None,
                          callbacks=callbacks, verbose=0).history
        except fastdl.NonFiniteLossError as e:
            done = dict(getattr(e.history, "history", e.history) or {})  # type: ignore[arg-type]
            epochs_done = len(done.get("loss", []))
            h = {k: list(done.get(k, []))[:epochs_done] + [math.nan] * (epochs_done + 1 - len(done.get(k, [])[:epochs_done]))
                 for k in [*done, *(k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k not in done)]}
            h["loss"][epochs_done] = float(e.loss)
            label = label or f"run {len(self.diverged) + 1}"
            self.diverged[label] = (f"{label}: diverged -- the training loss became {e.loss} at epoch {e.epoch + 1}, "
                                    f"step {e.step + 1}; the run stopped there after {epochs_done} complete epochs "
                                    "(its curves end early)")
            self.log(self.diverged[label])
        return h, time.perf_counter() - t

    def run_label(self, label):
        """label, marked "(diverged)" when that run diverged: for plot legends."""
        return f"{label} (diverged)" if label in self.diverged else label

    # -- outputs ---------------------------------------------------------------------
    def write_csv(self, filename, rows):
        """rows: a list of dicts (columns: the union of their keys, in first-seen order)."""
        cols = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        path = self.out / filename
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            for r in rows:
                w.writerow({k: _cell(v) for k, v in r.items()})
        self.files.append(path)
        return path

    def plot(self, filename, draw, caption=""):
        """Calls draw(path) to write a PNG when plotting is on; records it for the summary."""
        if not self.plots:
            return None
        path = self.out / filename
        fig = draw(path)
        if fig is not None and not path.exists():
            fig.savefig(path, dpi=80)
        self.files.append(path)
        self.images.append((filename, caption))
        return path

    def write_summary(self, title, claim, setup, findings, table=None):
        """summary.md: the claim tested, the setup, what was found (sentences computed from
        the numbers), an optional table (list of dicts) and the plots."""
        seconds = time.perf_counter() - self.t0
        lines = [f"# {title}", "", f"**Claim tested:** {claim}", "", "## Setup", ""]
        lines += [f"- {s}" for s in setup]
        lines += [f"- data: {(self._used or self.data()).describe()}",
                  f"- size: {self.size}; device: {self.device}; seed: {self.seed}; "
                  f"threads: {fastdl.get_num_threads()}",
                  f"- machine: {machine()}; took {seconds:.1f} s", "", "## Findings", ""]
        lines += [f"- {s}" for s in findings]
        if self.diverged:
            lines += ["", "### Runs that diverged", ""]
            lines += [f"- {s}" for s in self.diverged.values()]
        if table:
            cols = []
            for r in table:
                cols += [k for k in r if k not in cols]
            lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_md(r.get(c, "")) for c in cols) + " |" for r in table]
        lines += [""]
        if self.images:
            lines += ["## Plots", ""]
            for fn, caption in self.images:
                lines += [f"![{caption or fn}]({fn})", ""]
        if self.plot_note:
            lines += [f"_{self.plot_note}._", ""]
        path = self.out / "summary.md"
        path.write_text("\n".join(lines))
        self.files.append(path)
        self.seconds = seconds
        return path


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f}"
    return f"{cpu}, {os.cpu_count()} logical CPUs{load}, fastdl ISA {fastdl.get_isa()}"


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _cell(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return repr(v) if math.isfinite(v) else str(v)
    return v


def _md(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.4g}"
    return str(v)


def final(history, key):
    """The last finite value of a per-epoch series (nan if none)."""
    for v in reversed(history.get(key, [])):
        if v is not None and math.isfinite(v):
            return float(v)
    return math.nan


def first(history, key):
    """The first value of a per-epoch series (nan if the run completed no epoch)."""
    values = history.get(key, [])
    return float(values[0]) if values else math.nan


def best(history, key, mode="max"):
    vals = [v for v in history.get(key, []) if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan
    return float(max(vals) if mode == "max" else min(vals))


def epoch_rows(label_cols, history):
    """One dict per epoch: the label columns then every logged series."""
    n = len(history.get("loss", []))
    rows = []
    for e in range(n):
        r = dict(label_cols)
        r["epoch"] = e + 1
        for k, v in history.items():
            if e < len(v):
                r[k] = v[e]
        rows.append(r)
    return rows
