"""Plot helpers for training runs (matplotlib: ``pip install 'fastdl[plot]'``).

Every function draws onto a new figure (or onto ``ax`` when given), saves it when
``path`` is given, and returns the matplotlib Figure. They use matplotlib's
object-oriented API with the Agg renderer, never pyplot's global state, so they work
in scripts, on servers without a display and in threads; in a notebook, display the
returned figure.

- ``learning_curves(runs)``: training and validation loss / accuracy per epoch (or vs
  wall time) for one or several runs on one chart.
- ``gradient_norms_by_depth(norms)``: per-layer gradient norms against the layer's
  depth, one line per network: vanishing gradients are a line falling toward the input.
- ``gradient_norms_over_time(history)``: each layer's gradient norm per epoch (or per
  step), from ``GradientMonitor``.
- ``line_chart(series)``: any several runs on one chart.

A run is a ``History`` (``model.fit``'s return value), its ``.history`` dict, or any dict
of per-epoch lists with Keras' keys (loss, val_loss, accuracy, val_accuracy, time).
"""

import math

__all__ = ["require_matplotlib", "learning_curves", "gradient_norms_by_depth", "gradient_norms_over_time",
           "line_chart", "save"]


def require_matplotlib():
    """Imports matplotlib (the ``plot`` extra) or raises ImportError saying how to get it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ImportError("fastdl.plotting needs matplotlib: pip install 'fastdl[plot]' "
                          "(or pip install matplotlib)") from None
    return matplotlib


def _figure(ncols=1, width=6.0, height=4.0):
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save(fig, path, dpi=80):
    """Writes the figure (format from the file name, e.g. .png)."""
    fig.savefig(path, dpi=dpi)
    return path


def _history(run):
    h = getattr(run, "history", run)
    if not isinstance(h, dict):
        raise TypeError(f"expected a History or a dict of per-epoch lists, got {type(run).__name__}")
    return h


def _runs(runs):
    """{label: history dict} from a History, a dict of lists, or {label: History}."""
    if hasattr(runs, "history") or (isinstance(runs, dict) and runs and
                                     all(isinstance(v, (list, tuple)) for v in runs.values())):
        return {"": _history(runs)}
    if not isinstance(runs, dict) or not runs:
        raise TypeError("runs: expected a History, a dict of per-epoch lists, or {label: History}")
    return {str(k): _history(v) for k, v in runs.items()}


def _finite(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _xs(h, x, n):
    if x == "epoch":
        return list(range(1, n + 1))
    if x == "time":
        t, out = 0.0, []
        for v in h.get("time", [])[:n]:
            t += v
            out.append(t)
        if len(out) != n:
            raise ValueError("x='time' needs each run's per-epoch 'time' (model.fit logs it)")
        return out
    raise ValueError(f"x: expected 'epoch' or 'time', got {x!r}")


def learning_curves(runs, metrics=("loss", "accuracy"), validation=True, train=True, x="epoch", logy=None,
                    title=None, path=None, marks=None):
    """Loss and accuracy curves: one panel per metric, one color per run; training solid,
    validation dashed. metrics: the keys to draw (those a run lacks are skipped).
    x: "epoch" or "time" (cumulative training seconds). logy: per-metric log scale, e.g.
    {"loss": True} (default: log for loss when it spans more than a factor of 20).
    marks: {label: [(epoch, text), ...]} vertical lines drawn on that run's color."""
    runs = _runs(runs)
    metrics = [m for m in metrics if any(m in h or f"val_{m}" in h for h in runs.values())]
    if not metrics:
        raise ValueError("runs: none of the requested metrics was logged")
    fig, axes = _figure(len(metrics))
    colors = _colors(len(runs))
    for ax, metric in zip(axes, metrics):
        allv = []
        for (label, h), color in zip(runs.items(), colors):
            for key, style, show in ((metric, "-", train), (f"val_{metric}", "--", validation)):
                if not show or key not in h:
                    continue
                ys = list(h[key])
                xs, ys = _finite(_xs(h, x, len(ys)), ys)
                allv += ys
                name = ("val " if key.startswith("val_") else "train ") + metric
                ax.plot(xs, ys, style, color=color, label=f"{label}: {name}" if label else name)
            for epoch, text in (marks or {}).get(label, []):
                ax.axvline(epoch, color=color, linestyle=":", linewidth=1)
                ax.annotate(text, (epoch, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                            ha="right", fontsize=7, color=color)
        use_log = (logy or {}).get(metric)
        if use_log is None:
            pos = [v for v in allv if v > 0]
            use_log = "loss" in metric and bool(pos) and max(pos) / min(pos) > 20
        if use_log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch" if x == "epoch" else "training time (s)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    if path is not None:
        save(fig, path)
    return fig


def gradient_norms_by_depth(norms, title=None, path=None, ylabel="gradient norm (L2, weights)", ax=None):
    """norms: {label: {layer name: norm} or [norm per layer, input side first]}: one line
    per network, layer index (1 = the layer nearest the input) on x, log scale on y."""
    if ax is None:
        fig, (ax,) = _figure(1)
    else:
        fig = ax.figure
    for (label, vals), color in zip(norms.items(), _colors(len(norms))):
        vals = list(vals.values()) if isinstance(vals, dict) else list(vals)
        xs, ys = _finite(range(1, len(vals) + 1), vals)
        ax.plot(xs, ys, "o-", color=color, label=str(label), markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    if path is not None:
        save(fig, path)
    return fig


def gradient_norms_over_time(history, key="grad_norm", per="epoch", title=None, path=None, ax=None):
    """One line per layer of a GradientMonitor's records: ``history`` is the fit's History
    (per="epoch") or the monitor itself / its ``steps`` dict (per="step"). key:
    "grad_norm" or "update_ratio"."""
    h = getattr(history, "steps", None) if per == "step" else None
    h = h if h is not None else _history(history)
    cols = {k.split("/", 1)[1]: v for k, v in h.items() if k.startswith(key + "/")}
    if not cols:
        raise ValueError(f"no '{key}/<layer>' records: train with fastdl.callbacks.GradientMonitor")
    if ax is None:
        fig, (ax,) = _figure(1)
    else:
        fig = ax.figure
    for (layer, vals), color in zip(cols.items(), _colors(len(cols), "viridis")):
        xs = h["step"] if per == "step" and "step" in h else range(1, len(vals) + 1)
        xs, ys = _finite(xs, vals)
        ax.plot(xs, ys, "-", color=color, label=layer)
    ax.set_yscale("log")
    ax.set_xlabel(per)
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title)
    if path is not None:
        save(fig, path)
    return fig


def line_chart(series, xlabel="", ylabel="", title=None, logx=False, logy=False, path=None, ax=None,
               styles=None, reference=None):
    """series: {label: (xs, ys)}; non-finite points are dropped. styles: {label: fmt}.
    reference: (xs, ys, label) drawn as a thin grey line (e.g. an ideal 1/sqrt(B))."""
    if ax is None:
        fig, (ax,) = _figure(1)
    else:
        fig = ax.figure
    for (label, (xs, ys)), color in zip(series.items(), _colors(len(series))):
        xs, ys = _finite(list(xs), list(ys))
        ax.plot(xs, ys, (styles or {}).get(label, "o-"), color=color, label=str(label), markersize=3)
    if reference is not None:
        ax.plot(reference[0], reference[1], "-", color="0.5", linewidth=1, label=reference[2])
    if logx:
        ax.set_xscale("log", base=2 if logx == 2 else 10)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    if path is not None:
        save(fig, path)
    return fig


def _colors(n, cmap="tab10"):
    require_matplotlib()
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    if cmap == "tab10" and n <= 10:
        return [cm(i) for i in range(n)]
    return [cm(i / max(n - 1, 1)) for i in range(n)]
