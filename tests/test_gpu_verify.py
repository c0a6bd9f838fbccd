"""tools/gpu_verify.py, the GPU verification run: its dry mode end to end on Numba's CUDA
simulator (so that a broken run is found here, before device time is spent on it), and
the parts a GPU machine depends on that the dry mode skips (choosing the carried wheels,
noticing a stale one, stopping a step at its limit, going on after a broken step)."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "gpu_verify.py"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gv = _load("gpu_verify", TOOL)


def _has_numba_cuda():
    return importlib.util.find_spec("numba") is not None and importlib.util.find_spec("numba_cuda") is not None


def _env_for_subprocess():
    import fastdl

    # the same fastdl as this process (the installed one in CI, the tree in development)
    path = os.pathsep.join(p for p in [str(Path(fastdl.__file__).parents[1]), os.environ.get("PYTHONPATH")] if p)
    return dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=path)


@pytest.mark.skipif(not _has_numba_cuda(), reason="numba-cuda is not installed (pip install fastdl[cuda])")
def test_the_dry_run_runs_every_step_and_reports_it(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), "--dry", "--out", str(tmp_path)], env=_env_for_subprocess(),
                          capture_output=True, text=True, timeout=900)
    summary = (tmp_path / "summary.txt").read_text() if (tmp_path / "summary.txt").exists() else ""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:] + summary
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == gv.SCHEMA and report["mode"] == "dry"
    assert report["finished"] and report["ok"] and report["failures"] == []
    assert report["tree"]["hash"] == gv.tree_hash()
    assert report["machine"]["python"] and report["machine"]["packages"]["numpy"]
    assert report["machine"]["device"] == "Numba CUDA simulator"

    steps = {s["name"]: s for s in report["steps"]}
    assert [s["name"] for s in report["steps"]] == gv.STEP_NAMES
    for s in report["steps"]:
        assert s["status"] in ("passed", "skipped"), s
        if s["status"] == "skipped":
            assert "dry mode" in s["reason"], s
        assert s["name"] in summary
    assert steps["install"]["status"] == "skipped"

    # the goals: every one reported, each case run or skipped as the same code path as another
    goals_by_name = {g["goal"] for g in report["goals"]}
    gg = _load("gpu_goals", ROOT / "tools" / "gpu_goals.py")
    assert goals_by_name == {g["goal"] for g in gg.GOALS.values()}
    for g in report["goals"]:
        assert g["met"] is None and "dry mode" in g["why"], g
    for name in ("goals-adam", "goals-train-steps", "goals-dense"):
        for case in steps[name]["result"]["cases"]:
            assert case["status"] == "ok" or (case["status"] == "skipped" and "dry mode" in case["reason"]), case
            if case["status"] == "ok":  # validated, then timed against torch (on the CPU here)
                assert case["invalid"] == {} and set(case["times"]) == {"fastdl", "torch"}, case
    train = {c["goal_key"]: c for c in steps["goals-train-steps"]["result"]["cases"]}
    assert train["narrow-fused"]["status"] == "ok" and "FusedMLPStep" in train["narrow-fused"]["case"]

    # the tests: a few run, the real-size cases collected
    assert steps["tests"]["result"]["passed"] >= 1 and steps["tests"]["result"]["failures"] == 0
    assert steps["tests-real-sizes"]["result"]["collected"] >= 10

    # the exercise that runs under compute-sanitizer on a GPU: every kernel called
    sanitizer = steps["sanitizer"]["result"]
    assert sanitizer["compute_sanitizer"].startswith("skipped: dry mode")
    exercise = sanitizer["exercise"]
    assert exercise["missing_kernels"] == [] and exercise["error"] is None
    launched = exercise["kernels_launched"]
    for kernel in ("_adam", "_sgd", "_weight_grads", "final_sum_and_flag", "_scale", "_softmax_xent_rows"):
        assert kernel in launched, sorted(launched)
    for log in {spec[1] for spec in gv.STEPS}:
        assert (tmp_path / log).exists(), log


def test_a_broken_step_is_recorded_and_the_next_ones_still_run(tmp_path, monkeypatch):
    def broken(run, limit, log):
        raise RuntimeError("this step is broken")

    steps = [("environment", "log-setup.txt", 30, 60, broken, None)] + [
        (name, log, 30, 30, gv.STEPS[0][4], None) for name, log, *_ in gv.STEPS[1:3]]
    monkeypatch.setattr(gv, "STEPS", steps)
    monkeypatch.setattr(gv, "STEP_NAMES", [s[0] for s in steps])
    rc = gv.main(["--dry", "--out", str(tmp_path), "--skip", steps[2][0]])
    assert rc == 1
    report = json.loads((tmp_path / "report.json").read_text())
    status = {s["name"]: (s["status"], s["reason"]) for s in report["steps"]}
    assert status["environment"][0] == "error" and "this step is broken" in status["environment"][1]
    assert status[steps[1][0]][0] == "passed"  # ran after the broken one
    assert status[steps[2][0]] == ("skipped", "not selected (--only/--skip)")
    assert not report["ok"] and report["failures"][0].startswith("environment: ")
    assert "failures:" in (tmp_path / "summary.txt").read_text()


def test_unknown_steps_are_refused(tmp_path, capsys):
    assert gv.main(["--dry", "--out", str(tmp_path), "--only", "tests,benchmarks"]) == 2
    assert "unknown step(s) ['benchmarks']" in capsys.readouterr().err


def test_a_step_past_its_limit_is_stopped_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); "
              "time.sleep(60)")
    start = time.perf_counter()
    o = gv.run_command([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path, limit_s=2,
                       log_path=tmp_path / "log.txt", header="sleeper")
    assert o.timed_out and time.perf_counter() - start < 30
    assert "started" in o.tail and "timed out" in (tmp_path / "log.txt").read_text()
    child = int(pid_file.read_text())
    for _ in range(50):  # the child went with its group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the step's child process outlived the step")


@pytest.mark.parametrize("name,version,machine,fits", [
    ("numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", (3, 12), "x86_64", True),
    ("numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", (3, 11), "x86_64", False),
    ("numpy-2.4.6-cp312-cp312-manylinux_2_28_aarch64.whl", (3, 12), "x86_64", False),
    ("fastdl-0.1.0-cp312-cp312-linux_x86_64.whl", (3, 12), "x86_64", True),
    ("pure-1.0-py3-none-any.whl", (3, 12), "x86_64", True),
    ("abi-1.0-cp39-abi3-manylinux2014_x86_64.whl", (3, 12), "x86_64", False),
])
def test_wheel_fits_this_interpreter(name, version, machine, fits):
    assert gv.wheel_fits(name, version, machine) is fits


def test_pick_wheel_takes_the_newest_that_fits(tmp_path):
    for name in ("fastdl-0.1.0-cp311-cp311-linux_x86_64.whl", "fastdl-0.1.0-cp312-cp312-linux_x86_64.whl",
                 "fastdl-0.2.0-cp312-cp312-linux_x86_64.whl", "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).write_bytes(b"")
    assert gv.pick_wheel(tmp_path, "fastdl", (3, 12), "x86_64").name == "fastdl-0.2.0-cp312-cp312-linux_x86_64.whl"
    assert gv.pick_wheel(tmp_path, "numpy", (3, 11), "x86_64") is None
    assert gv.pick_wheel(tmp_path / "absent", "numpy", (3, 12), "x86_64") is None
    with pytest.raises(ValueError, match="not a wheel file name"):
        gv.wheel_tags("fastdl.whl")


def test_tree_hash_sees_sources_not_build_outputs(tmp_path):
    for rel, text in (("pyproject.toml", "x"), ("CMakeLists.txt", "y"), ("csrc/a.cpp", "int a;"),
                      ("fastdl/__init__.py", "v = 1"), ("cmake/c.cmake", "")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    before = gv.tree_hash(tmp_path)
    (tmp_path / "fastdl" / "_C.cpython-312-x86_64-linux-gnu.so").write_bytes(b"\0")
    (tmp_path / "fastdl" / "__pycache__").mkdir()
    (tmp_path / "fastdl" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "gpu.md").write_text("docs are not built")
    assert gv.tree_hash(tmp_path) == before
    (tmp_path / "fastdl" / "__init__.py").write_text("v = 2")
    assert gv.tree_hash(tmp_path) != before


def test_junit_summary_counts_and_names_failures(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
                   '<testcase classname="test_x" name="test_a"/>'
                   '<testcase classname="test_x" name="test_b"><failure message="assert 1 == 2&#10;more"/></testcase>'
                   '<testcase classname="test_x" name="test_c"><skipped/></testcase></testsuite></testsuites>')
    s = gv.junit_summary(xml)
    assert (s["tests"], s["passed"], s["failures"], s["skipped"]) == (3, 1, 1, 1)
    assert s["failed"] == ["test_x::test_b: assert 1 == 2"]
    assert gv.junit_summary(tmp_path / "missing.xml") is None


@pytest.mark.parametrize("errors", [0, 2])
def test_the_sanitizer_step_reads_memcheck_and_the_exercise(tmp_path, monkeypatch, errors):
    # A stand-in compute-sanitizer (writes memcheck's summary to --log-file, runs the
    # program) and a stand-in exercise: the GPU-only branch of the step, parsed as there.
    bin_dir, tools = tmp_path / "bin", tmp_path / "tools"
    bin_dir.mkdir()
    tools.mkdir()
    report = (f"========= Invalid __global__ write of size 4 bytes\\n" * errors
              + f"========= ERROR SUMMARY: {errors} errors\\n")
    sanitizer = bin_dir / "compute-sanitizer"
    sanitizer.write_text("#!/usr/bin/env bash\n"
                         "while [ \"$1\" != \"--log-file\" ]; do shift; done; log=$2; shift 2\n"
                         f"\"$@\"; rc=$?; printf '{report}' > \"$log\"\n"
                         f"if [ {errors} -gt 0 ]; then exit 86; fi; exit $rc\n")
    sanitizer.chmod(0o755)
    (tools / "gpu_exercise.py").write_text(
        "import json, sys\n"
        "json.dump({'called': {'adam_step': 1}, 'missing_kernels': [], 'launches': 3,\n"
        "           'kernels_launched': {'_adam': 3}, 'error': None}, open(sys.argv[sys.argv.index('--result') + 1], 'w'))\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gv, "TOOLS", tools)
    run = gv.Run(dry=False, out=tmp_path, work=tmp_path, python=sys.executable, budget_s=60,
                 started=time.perf_counter(), pytest_args=[])
    outcome, info, problems = gv.step_sanitizer(run, 30, tmp_path / "log.txt")
    assert info["compute_sanitizer"] == str(sanitizer)
    assert info["memcheck_errors"] == errors
    assert info["exercise"]["kernels_launched"] == {"_adam": 3}
    if errors:
        assert outcome.returncode == 86
        assert problems and problems[0].startswith("memcheck reported 2 errors: Invalid __global__ write")
    else:
        assert outcome.returncode == 0 and problems == []
    assert "ERROR SUMMARY" in (tmp_path / "log.txt").read_text()
