"""The GPU goals, measured against PyTorch in the same process: every implementation is
validated first (against torch or a float64 reference), then the implementations are
timed interleaved, each call ending with a device synchronise, and the median sample is
reported (fastdl.benchmarking.timing). One group per invocation, so that the verification
run (tools/gpu_verify.py) gives each group its own process and time limit.

    python tools/gpu_goals.py {adam,train_steps,dense} --result FILE [--dry]

--dry: tiny shapes on Numba's CUDA simulator, torch on the CPU: the code paths run, the
figures mean nothing and no goal is judged. The result file is rewritten after every
case, so a group stopped at its time limit still reports the cases it finished.
"""

import argparse
import json
import sys
import time
import traceback

#: The goals, by key: what is judged (a ratio is torch's time / fastdl's; a rate is
#: fastdl's achieved figure) and the threshold (None: reported, not judged).
GOALS = {
    "adam": {"goal": "Adam over 100M parameters >= 2.6 TB/s effective", "judge": "rate", "unit": "TB/s",
             "at_least": 2.6},
    "narrow-fused": {"goal": "train_step 784-64x4-10 b256 >= 5x torch (the fused small-MLP step)",
                     "judge": "ratio", "at_least": 5.0},
    "narrow-sequential": {"goal": "train_step 784-64x4-10 b256 on Sequential's per-layer path (reported)",
                          "judge": "ratio", "at_least": None},
    "medium": {"goal": "train_step 784-1024x2-10 b128 >= 2x torch", "judge": "ratio", "at_least": 2.0},
    "wide": {"goal": "train_step 784-4096x3-10 b4096 FP32 >= 0.8x torch FP32", "judge": "ratio",
             "at_least": 0.8},
    "dense": {"goal": "dense relu forward+backward 4096^3 FP32 against cuBLAS FP32 (reported)",
              "judge": "rate", "unit": "TFLOP/s", "at_least": None},
    "gemm": {"goal": "GEMM 4096^3 FP32 against cuBLAS FP32 (reported)", "judge": "rate", "unit": "TFLOP/s",
             "at_least": None},
}

#: Tiny stand-ins on the simulator, where one launch takes a good part of a second:
#: the narrow network (the fused step) and one for Sequential's per-layer path; the
#: goals with the same code path as another are not run there.
DRY_NETWORKS = {"narrow-fused": ((12, 8, 8, 3), 4), "medium": ((12, 8, 3), 4)}
DRY_SAME_PATH = {"narrow-sequential": "medium", "wide": "medium"}

def cases(group, dry):
    """[(goal key, case)] of a group."""
    from fastdl.benchmarking import cuda_cases as cc

    if group == "adam":
        return [("adam", cc.adam_case(256 if dry else 100_000_000))]
    if group == "dense":
        n = 16 if dry else 4096
        return [("dense", cc.dense_fwd_bwd_case(n)), ("gemm", cc.gemm_case(n))]
    if group == "train_steps":
        (narrow, nb), (medium, mb), (wide, wb) = cc.TRAIN_STEP_GOALS
        out = [("narrow-fused", cc.train_step_case(narrow, nb, "fused")),
               ("narrow-sequential", cc.train_step_case(narrow, nb, "sequential")),
               ("medium", cc.train_step_case(medium, mb, "sequential")),
               ("wide", cc.train_step_case(wide, wb, "sequential"))]
        if dry:
            out = [(key, cc.train_step_case(*DRY_NETWORKS[key], "fused" if key == "narrow-fused" else "sequential")
                    if key in DRY_NETWORKS else None) for key, _ in out]
        return out
    raise ValueError(f"group: expected adam, train_steps or dense, got {group!r}")


def measure(key, case, dry, budget_s):
    """{case, status, notes, times: {impl: {...}}, ratio, ...} for one case."""
    from fastdl.benchmarking.cases import Context, Skip
    from fastdl.benchmarking.timing import ValidationError, time_interleaved, validate

    entry = {"goal_key": key, "case": case.name, "group": case.group}
    start = time.perf_counter()
    try:
        prepared = case.build(Context(sizes=None))
    except Skip as e:
        entry.update(status="skipped", reason=str(e))
        return entry
    entry["notes"] = list(prepared.notes)
    impls, invalid = [], {}
    for impl in prepared.impls:
        try:
            validate(impl)
            impls.append(impl)
        except ValidationError as e:
            invalid[impl.name] = str(e)
    entry["invalid"] = invalid
    if not impls:
        entry.update(status="failed", reason="no implementation passed its validation")
        return entry
    if dry:  # one call per sample, one sample: the code runs, the times mean nothing
        timings = time_interleaved(impls, rounds=1, target_s=0.0, max_number=1)
    else:
        timings = time_interleaved(impls, rounds=15, target_s=0.02, max_number=200, budget_s=budget_s)
    entry["times"] = {}
    for name, tm in timings.items():
        row = {"median_s": tm.median_s, "min_s": tm.min_s, "samples": len(tm.samples), "calls_per_sample": tm.number}
        if prepared.work:
            rate = prepared.work / tm.median_s / 1e9
            row[prepared.unit] = rate
            if prepared.unit == "GB/s":
                row["TB/s"] = rate / 1e3
            elif prepared.unit == "GFLOP/s":
                row["TFLOP/s"] = rate / 1e3
        entry["times"][name] = row
    if "fastdl" in timings and "torch" in timings:
        entry["torch_over_fastdl"] = timings["torch"].median_s / timings["fastdl"].median_s
    entry["status"] = "failed" if "fastdl" in invalid else "ok"
    if "fastdl" in invalid:
        entry["reason"] = invalid["fastdl"]
    entry["wall_s"] = time.perf_counter() - start
    return entry


def judge(results, dry):
    """The goals whose case ran in this group: each figure, its target, met or not."""
    out = []
    for r in results:
        goal = GOALS[r["goal_key"]]
        row = {"goal": goal["goal"], "case": r["case"], "target": None, "met": None}
        if goal["at_least"] is not None:
            unit = "x torch" if goal["judge"] == "ratio" else goal["unit"]
            row["target"] = f">= {goal['at_least']:g} {unit}"
        times = r.get("times", {})
        if goal["judge"] == "ratio":
            row["torch_over_fastdl"] = r.get("torch_over_fastdl")
            row["fastdl_ms"] = times["fastdl"]["median_s"] * 1e3 if "fastdl" in times else None
            row["torch_ms"] = times["torch"]["median_s"] * 1e3 if "torch" in times else None
            value = row["torch_over_fastdl"]
        else:
            unit = goal["unit"]
            row["fastdl_" + unit] = times.get("fastdl", {}).get(unit)
            row["torch_" + unit] = times.get("torch", {}).get(unit)
            value = row["fastdl_" + unit]
            if row["fastdl_" + unit] and row["torch_" + unit]:
                row["fastdl_over_torch"] = row["fastdl_" + unit] / row["torch_" + unit]
        if r.get("status") != "ok":
            row["met"] = False if not dry else None
            row["why"] = f"{r.get('status')}: {r.get('reason')}"
        elif dry:
            row["why"] = "dry mode: simulator figures mean nothing"
        elif goal["at_least"] is not None:
            row["met"] = value is not None and value >= goal["at_least"]
            if value is None:
                row["why"] = "no figure (a peer is missing)"
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("group", choices=("adam", "train_steps", "dense"))
    ap.add_argument("--result", required=True, help="JSON file for the results")
    ap.add_argument("--dry", action="store_true", help="tiny shapes on the simulator")
    ap.add_argument("--case-budget", type=float, default=20.0, help="seconds of timing per case")
    args = ap.parse_args(argv)
    results = []

    def write():
        with open(args.result, "w") as f:
            json.dump({"group": args.group, "dry": args.dry, "cases": results,
                       "goals": judge(results, args.dry)}, f, indent=1)

    write()
    failed = False
    for key, case in cases(args.group, args.dry):
        if case is None:
            results.append({"goal_key": key, "case": GOALS[key]["goal"], "status": "skipped",
                            "reason": f"dry mode: the same code path as {DRY_SAME_PATH[key]!r}"})
            write()
            continue
        print(f"== {case.name}", flush=True)
        try:
            entry = measure(key, case, args.dry, args.case_budget)
        except Exception as e:  # one broken case must not hide the others
            entry = {"goal_key": key, "case": case.name, "status": "error", "reason": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()[-4000:]}
        failed |= entry["status"] in ("failed", "error")
        print(json.dumps({k: v for k, v in entry.items() if k != "traceback"}), flush=True)
        if "traceback" in entry:
            print(entry["traceback"], file=sys.stderr, flush=True)
        results.append(entry)
        write()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
