"""The table: one row per case — fastdl's time, each peer's time, the ratios
peer/fastdl (above 1: fastdl is faster) and fastdl's achieved GFLOP/s or GB/s next to
the measured peak. Works on plain result dicts (what ``--json`` writes).
"""

PEER_ORDER = ("torch", "numpy", "sklearn")


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            v = s / scale
            break
    else:
        unit, v = "ns", s / 1e-9
    return f"{v:.3g} {unit}"


def fmt_rate(v, unit):
    if v is None or unit is None:
        return "-"
    return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"


def fmt_ratio(x):
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def derive(result, peak):
    """Adds ratios (peer median / fastdl median), achieved rate and fraction of peak."""
    times = result.get("times", {})
    fd = times.get("fastdl")
    result["ratios"] = {}
    result["achieved"] = result["peak_fraction"] = None
    if fd is None or not fd.get("median_s"):
        return result
    for name, t in times.items():
        if name != "fastdl" and t.get("median_s"):
            result["ratios"][name] = t["median_s"] / fd["median_s"]
    work, unit = result.get("work"), result.get("unit")
    if work and unit:
        rate = work / fd["median_s"] / 1e9
        result["achieved"] = rate
        ref = (peak or {}).get("gemm_gflops" if unit == "GFLOP/s" else "copy_gbs")
        result["peak_fraction"] = rate / ref if ref else None
    return result


def peers_in(results):
    seen = {n for r in results for n in list(r.get("times", {})) + list(r.get("invalid", {}))}
    return [p for p in PEER_ORDER if p in seen] + sorted(seen - set(PEER_ORDER) - {"fastdl"})


def _table(header, rows, align):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        (str(c).ljust(w) if a == "l" else str(c).rjust(w)) for c, w, a in zip(cells, widths, align)).rstrip()
    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def table(results, peak=None):
    """The result table as text (the ok and invalid cases; skips are listed by notes())."""
    shown = [r for r in results if r.get("status") in ("ok", "invalid")]
    peers = peers_in(shown)
    header = ["case", "fastdl"] + peers + [f"{p}/fastdl" for p in peers] + ["fastdl rate", "% peak"]
    align = "ll" + "r" * (2 * len(peers) + 2)
    rows = []
    for r in shown:
        derive(r, peak)
        times, bad = r.get("times", {}), r.get("invalid", {})

        def cell(name):
            if name in bad:
                return "WRONG"
            t = times.get(name)
            return fmt_time(t["median_s"]) if t else "-"

        ratios = []
        for p in peers:
            if p in bad:
                ratios.append("WRONG")
            elif p in r["ratios"]:
                ratios.append(fmt_ratio(r['ratios'][p]))
            else:
                ratios.append("-")
        frac = r.get("peak_fraction")
        rows.append([r["case"], cell("fastdl")] + [cell(p) for p in peers] + ratios
                    + [fmt_rate(r.get("achieved"), r.get("unit")), f"{100 * frac:.0f}%" if frac else "-"])
    return _table(header, rows, align) if rows else "(no case ran)"


def header_lines(machine, peak):
    v = machine.get("versions", {})
    libs = ", ".join(f"{k} {x}" for k, x in v.items() if x)
    load = machine.get("load_average")
    out = [
        f"fastdl bench ({machine.get('device', 'cpu')}): {machine.get('cpu_model')}, "
        f"{machine.get('cores_available')} cores available, isa={machine.get('isa')}, "
        f"threads={machine.get('threads')}" + (f", load average {load[0]:.1f}" if load else "")
        + (f"; GPU {machine['gpu']}" if machine.get("gpu") else ""),
        f"versions: {libs}",
    ]
    env = machine.get("environment") or {}
    if env:
        out.append("environment: " + ", ".join(f"{k}={'unset' if x is None else x}" for k, x in env.items())
                   + ("" if all(x is not None for x in env.values())
                      else " (numpy's idle BLAS threads spin ~0.1 s and slow whatever is timed next)"))
    if peak:
        by = ", ".join(f"{k} {x:.0f}" for k, x in peak.get("gemm_gflops_by_library", {}).items())
        out.append(f"peak: GEMM {peak['gemm_gflops']:.0f} GFLOP/s ({by}); copy {peak['copy_gbs']:.1f} GB/s")
        out.append(f"  measured as: {peak['how']}")
    return out


def notes(results):
    """Skips, wrong results, errors, accuracies and per-case notes, one line each."""
    out = []
    for r in results:
        st = r.get("status")
        if st == "skipped":
            out.append(f"skipped  {r['case']}: {r.get('reason')}")
        elif st == "error":
            out.append(f"ERROR    {r['case']}: {r.get('reason')}")
        for name, msg in r.get("invalid", {}).items():
            out.append(f"WRONG    {r['case']}: {msg}" if msg.startswith(name) else f"WRONG    {r['case']}: {name}: {msg}")
        metrics = {n: t.get("metrics") for n, t in r.get("times", {}).items() if t.get("metrics")}
        if metrics:
            keys = sorted({k for m in metrics.values() for k in m})
            for k in keys:
                vals = ", ".join(f"{n} {m[k]:.4f}" for n, m in metrics.items() if k in m)
                out.append(f"{k:<8} {r['case']}: {vals}")
        for note in r.get("notes", []) if st in ("ok", "invalid") else []:
            out.append(f"note     {r['case']}: {note}")
    return out


def render(report):
    """The whole printed report from a report dict (see cli.run)."""
    lines = header_lines(report["machine"], report.get("peak"))
    lines += ["", table(report["results"], report.get("peak")), ""]
    lines += ["ratio = peer time / fastdl time (above 1: fastdl is faster); times are medians of "
              "interleaved samples; every result was checked before it was timed."]
    n = notes(report["results"])
    if n:
        lines += [""] + n
    if report.get("elapsed_s") is not None:
        lines.append(f"\ntotal {report['elapsed_s']:.0f} s")
    return "\n".join(lines)
