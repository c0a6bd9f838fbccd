"""``fastdl bench``: runs the curated cases and prints one comparison table.

    fastdl bench [--quick] [--threads N] [--device cpu|cuda] [--json PATH] [--plot PATH]
                 [--filter TEXT] [--list] [--mnist DIR]
    fastdl bench compare A.json B.json [--threshold 0.05] [--fail-slower]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Sequence

from fastdl._argparse import HelpFormatter, parse_args, positive_int, usage_error

from . import machine, peers, report, results
from .cases import Context, Skip
from .suite import cpu_cases
from .sizes import PROFILES
from .timing import ValidationError, time_interleaved, validate


class UsageError(Exception):
    """A bad argument or an impossible request: printed as `fastdl bench: error: ...`."""


def run_parser(prog="fastdl bench"):
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter, description="Times fastdl's kernels, training step and whole fit against PyTorch, numpy "
        "and scikit-learn on this machine and prints one table (ratio = peer time / fastdl time). "
        "`%(prog)s compare A.json B.json` shows what got faster or slower between two --json runs.")
    p.add_argument("--quick", action="store_true", help="a ~30-second smoke run with smaller sizes")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for fastdl and every peer (default: the cores available)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the GPU set (needs fastdl[cuda] and a GPU)")
    p.add_argument("--json", metavar="PATH", help="write raw results and machine info as JSON")
    p.add_argument("--plot", metavar="PATH", help="bar chart of the ratios (needs matplotlib)")
    p.add_argument("--filter", metavar="TEXT", action="append", default=[],
                   help="run only cases whose name contains TEXT (repeatable)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--mnist", metavar="DIR", help="folder with the MNIST t10k IDX files for the whole-fit case")
    p.add_argument("--sizes", choices=sorted(PROFILES), help=argparse.SUPPRESS)  # internal: tests use "tiny"
    return p


def compare_parser(prog="fastdl bench compare"):
    p = argparse.ArgumentParser(prog=prog, formatter_class=HelpFormatter, description="Compares two `fastdl bench --json` files: fastdl's "
                                "time per case in A and in B, and how the ratios to the peers moved.")
    p.add_argument("a", metavar="A.json", help="the earlier run (fastdl bench --json A.json)")
    p.add_argument("b", metavar="B.json", help="the later run")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="relative change below which a case counts as the same")
    p.add_argument("--fail-slower", action="store_true", help="exit with status 1 when any case got slower")
    return p


def run_case(case, ctx, log=None):
    """Builds, validates and times one case; returns its result dict (never raises for
    a failing case: the failure is the result)."""
    res = {"case": case.name, "group": case.group, "status": "ok", "times": {}, "invalid": {}, "notes": []}
    t0 = time.perf_counter()
    try:
        prep = case.build(ctx)
    except Skip as e:
        res.update(status="skipped", reason=str(e))
        return res
    except Exception as e:  # a case that cannot be built is reported, the run goes on
        res.update(status="error", reason=f"{type(e).__name__}: {e}")
        return res
    res.update(unit=prep.unit, work=prep.work, notes=list(prep.notes))
    good, metrics = [], {}
    for impl in prep.impls:
        try:
            metrics[impl.name] = validate(impl)
            good.append(impl)
        except ValidationError as e:
            res["invalid"][impl.name] = str(e)
        except Exception as e:
            res["invalid"][impl.name] = f"{impl.name}: {type(e).__name__}: {e}"
    if "fastdl" in res["invalid"]:
        res.update(status="invalid", reason=res["invalid"]["fastdl"])
        return res
    failures: dict = {}  # per-run checks (whole fits) that failed while timing
    timings = time_interleaved(good, prep.rounds or ctx.sizes.rounds, ctx.sizes.target_s,
                               budget_s=ctx.sizes.case_budget_s, failures=failures)
    res["invalid"].update(failures)
    if "fastdl" in failures:
        res.update(status="invalid", reason=failures["fastdl"], times={})
        return res
    for name, t in timings.items():
        m = dict(metrics.get(name) or {})
        m.update(t.metrics)
        res["times"][name] = {"median_s": t.median_s, "min_s": t.min_s, "samples": t.samples,
                              "number": t.number, "metrics": m}
    if log:
        log(f"  {case.name}: {time.perf_counter() - t0:.1f} s")
    return res


def select(cases, filters):
    if not filters:
        return cases
    chosen = [c for c in cases if any(f.lower() in c.name.lower() for f in filters)]
    if not chosen:
        raise UsageError(f"--filter {' '.join(filters)!r} matches no case; `--list` shows them")
    return chosen


def run(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    start = time.perf_counter()
    sizes = PROFILES[args.sizes or ("quick" if args.quick else "default")]
    if args.plot:
        from .plot import require_matplotlib

        try:
            require_matplotlib()
        except RuntimeError as e:
            raise UsageError(str(e)) from None
    if args.device == "cuda":
        from .cuda_cases import cuda_cases

        case_list = cuda_cases(sizes)
    else:
        case_list = cpu_cases(sizes)
    case_list = select(case_list, args.filter)
    if args.list:
        for c in case_list:
            print(f"{c.group:<11} {c.name}", file=out)
        return 0
    if args.device == "cuda":
        from .cuda_cases import require_gpu

        try:
            cuda, gk = require_gpu()
        except RuntimeError as e:
            raise UsageError(str(e)) from None
    threads = args.threads or machine.available_cores()
    pin_note = peers.set_threads(threads)
    log = lambda msg: print(msg, file=err, flush=True)  # noqa: E731
    info = machine.info(threads, args.device)
    if args.device == "cuda":
        from .cuda_cases import gpu_name

        info["gpu"] = gpu_name(cuda)
    log(f"fastdl bench: {sizes.name} sizes, {len(case_list)} cases, {threads} threads; measuring peak ...")
    if args.device == "cuda":
        from .cuda_cases import gpu_peak

        peak = gpu_peak(cuda, gk, sizes.gpu_gemm_n, sizes.gpu_copy_bytes, sizes.peak_repeats)
    else:
        peak = machine.measure_cpu_peak(sizes.peak_gemm_n, sizes.copy_bytes, sizes.peak_repeats)
    ctx = Context(sizes=sizes, mnist=args.mnist)
    res = [report.derive(run_case(c, ctx, log), peak) for c in case_list]
    rep = {"schema": results.SCHEMA, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": "fastdl bench " + " ".join(args.argv), "profile": sizes.name, "machine": info, "peak": peak,
           "results": res, "elapsed_s": time.perf_counter() - start}
    if pin_note:
        rep["notes"] = [pin_note]
    print(report.render(rep), file=out)
    if pin_note:
        print(pin_note, file=out)
    if args.json:
        results.save(rep, args.json)
        print(f"wrote {args.json}", file=out)
    if args.plot:
        from .plot import plot_ratios

        plot_ratios(rep, args.plot)
        print(f"wrote {args.plot}", file=out)
    bad = [r["case"] for r in res if r["status"] in ("invalid", "error")]
    if bad:
        print(f"fastdl bench: {len(bad)} case(s) failed: {', '.join(bad)}", file=err)
        return 1
    return 0


def run_compare(args, out=None):
    out = out or sys.stdout
    if args.threshold < 0:
        raise UsageError(f"--threshold must be >= 0, got {args.threshold}")
    try:
        a, b = results.load(args.a), results.load(args.b)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = results.compare(a, b, args.threshold)
    print(results.render_compare(a, b, rows, (args.a, args.b), args.threshold), file=out)
    if args.fail_slower and any(r["verdict"] == "slower" for r in rows):
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "fastdl bench") -> int:
    """Entry point of `fastdl bench ...`; returns the exit status (0 ok, 1 a case failed,
    --fail-slower tripped or a file could not be written, 2 bad arguments or an
    impossible request: the usage and the message printed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        parser, runner, argv = compare_parser(prog + " compare"), run_compare, argv[1:]
    else:
        parser, runner = run_parser(prog), run
    args, status = parse_args(parser, argv)
    if args is None:  # --help, or a usage error argparse printed
        return status
    args.argv = argv
    try:
        return runner(args)
    except UsageError as e:
        return usage_error(parser, e)
    except OSError as e:  # --json or --plot could not be written
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
