"""The JSON file (``--json``) and the compare mode (``compare A.json B.json``)."""

import json
import os

from .report import _table, derive, fmt_time

SCHEMA = "fastdl-bench/1"


def save(report, path):
    """Writes the report atomically (a temporary file renamed into place)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def load(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a fastdl bench JSON file ({e})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a fastdl bench JSON file (expected schema {SCHEMA!r}, "
                         f"found {report.get('schema') if isinstance(report, dict) else type(report).__name__!r})")
    return report


def _fastdl_median(r):
    t = r.get("times", {}).get("fastdl") if r.get("status") == "ok" else None
    return t.get("median_s") if t else None


def compare(a, b, threshold=0.05):
    """Rows of (case, A time, B time, speedup A/B, verdict, peer ratio changes).

    verdict: "faster" when B's fastdl time is below A's by more than ``threshold``
    (relative), "slower" when above, "same" otherwise; cases in only one file or not ok
    in one are reported as such."""
    by_a = {r["case"]: r for r in a["results"]}
    by_b = {r["case"]: r for r in b["results"]}
    rows = []
    for case in list(by_a) + [c for c in by_b if c not in by_a]:
        ra, rb = by_a.get(case), by_b.get(case)
        if ra is None or rb is None:
            rows.append({"case": case, "verdict": "only in " + ("B" if ra is None else "A")})
            continue
        ta, tb = _fastdl_median(ra), _fastdl_median(rb)
        if ta is None or tb is None:
            rows.append({"case": case, "a_s": ta, "b_s": tb,
                         "verdict": f"not comparable ({ra.get('status')} -> {rb.get('status')})"})
            continue
        speedup = ta / tb
        verdict = "faster" if speedup > 1 + threshold else "slower" if speedup < 1 / (1 + threshold) else "same"
        da, db = derive(ra, a.get("peak")), derive(rb, b.get("peak"))
        peers = {p: (da["ratios"].get(p), db["ratios"].get(p)) for p in set(da["ratios"]) | set(db["ratios"])}
        rows.append({"case": case, "a_s": ta, "b_s": tb, "speedup": speedup, "verdict": verdict, "peers": peers})
    return rows


def machine_differences(a, b):
    ma, mb = a.get("machine", {}), b.get("machine", {})
    out = []
    for key in ("cpu_model", "isa", "threads", "device", "cores_available"):
        if ma.get(key) != mb.get(key):
            out.append(f"{key}: {ma.get(key)} -> {mb.get(key)}")
    va, vb = ma.get("versions", {}), mb.get("versions", {})
    for key in sorted(set(va) | set(vb)):
        if va.get(key) != vb.get(key):
            out.append(f"{key}: {va.get(key)} -> {vb.get(key)}")
    return out


def render_compare(a, b, rows, names=("A", "B"), threshold=0.05):
    header = ["case", "fastdl A", "fastdl B", "A/B", "verdict", "peer/fastdl A -> B"]
    table_rows = []
    for r in rows:
        peers = "; ".join(
            f"{p} {'-' if x is None else f'{x:.2f}x'} -> {'-' if y is None else f'{y:.2f}x'}"
            for p, (x, y) in sorted(r.get("peers", {}).items()))
        table_rows.append([r["case"], fmt_time(r.get("a_s")), fmt_time(r.get("b_s")),
                           f"{r['speedup']:.2f}x" if "speedup" in r else "-", r["verdict"], peers])
    lines = [f"A = {names[0]}", f"B = {names[1]}"]
    la, lb = (x.get("machine", {}).get("load_average") for x in (a, b))
    if la and lb:
        lines.append(f"load average when run: A {la[0]:.1f}, B {lb[0]:.1f} (times on a loaded machine move)")
    diff = machine_differences(a, b)
    if diff:
        lines.append("machines or versions differ (compare with care): " + ", ".join(diff))
    lines += ["", _table(header, table_rows, "lrrrll") if table_rows else "(no cases)", ""]
    count = lambda v: sum(r["verdict"] == v for r in rows)  # noqa: E731
    lines.append(f"{count('faster')} faster, {count('slower')} slower, {count('same')} within "
                 f"{100 * threshold:.0f}% (A/B = fastdl time in A / in B: above 1, B is faster)")
    return "\n".join(lines)
