"""``--plot PATH``: a bar chart of the ratios peer/fastdl (matplotlib, optional)."""


def require_matplotlib():
    """Imports matplotlib with a file backend, or raises RuntimeError saying what to do."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                           "(or leave out --plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ratios(report, path):
    from .report import derive, peers_in

    plt = require_matplotlib()
    results = [derive(r, report.get("peak")) for r in report["results"] if r.get("status") == "ok"]
    results = [r for r in results if r["ratios"]]
    peers = [p for p in peers_in(results) if any(p in r["ratios"] for r in results)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(3, len(results)) + 1.5))
    height = 0.8 / max(1, len(peers))
    for j, p in enumerate(peers):
        ys = [i + (j - (len(peers) - 1) / 2) * height for i in range(len(results))]
        vals = [r["ratios"].get(p, 0) for r in results]
        ax.barh(ys, vals, height=height, label=f"{p} time / fastdl time")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(results)), [r["case"] for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ratio_fmt = FuncFormatter(lambda v, _: f"{v:g}x")
    ax.xaxis.set_major_formatter(ratio_fmt)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}x" if str(v)[0] in "25" else ""))
    ax.set_xlabel("ratio (above 1: fastdl is faster)")
    m = report["machine"]
    ax.set_title(f"fastdl bench: {m.get('cpu_model')}, isa={m.get('isa')}, threads={m.get('threads')}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
