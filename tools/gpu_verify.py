"""The GPU verification run: on a GPU machine without a package registry, install fastdl
from what the working tree carries, then run the GPU kernel tests (at the simulator's
sizes and at real ones), compute-sanitizer's memcheck over every kernel, and the GPU
goals against PyTorch, and write one JSON report and a short summary. docs/gpu.md,
"Verifying on a GPU", says how to prepare, run and read it.

    tools/gpu-verify.sh --prepare              # here: fill wheelhouse/ (registry access)
    tools/gpu-verify.sh [--out DIR]            # on the GPU machine
    tools/gpu-verify.sh --dry [--out DIR]      # anywhere: the simulator, tiny shapes (CI)

Every step runs in a process of its own with a time limit taken from the run's budget
(--budget seconds in all); a step that fails or runs out of time is recorded and the
next one runs. The report is rewritten after every step, so it is there whatever stops
the run. --only/--skip pick steps for a rerun.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
WHEELHOUSE = ROOT / "wheelhouse"
SOURCE_FILE = "SOURCE.json"
#: numba-cuda 0.30.4 fails to import with numpy 2.5 (the cuda extra's cap in pyproject.toml says so too).
NUMPY_SPEC = "numpy>=2.4,<2.5"
#: The GPU machine's Python (its PyTorch environment), which the carried wheels are for.
GPU_PYTHON = "3.12"
SCHEMA = "fastdl-gpu-verify/1"
REPORT, SUMMARY = "report.json", "summary.txt"
TAIL_CHARS = 3000


# ---------------------------------------------------------------- the tree and the wheels
def tree_hash(root=ROOT):
    """sha256 over the files a fastdl build is made of (pyproject.toml, CMakeLists.txt,
    cmake/, csrc/, fastdl/ without build outputs): a wheel built from another tree is
    stale."""
    root = Path(root)
    paths = [root / "pyproject.toml", root / "CMakeLists.txt"]
    for folder in ("cmake", "csrc", "fastdl"):
        paths += sorted(p for p in (root / folder).rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in paths:
        rel = p.relative_to(root).as_posix()
        if "__pycache__" in rel or p.suffix in (".so", ".pyc", ".pyd"):
            continue
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def wheel_tags(filename):
    """(name, version, python tag, abi tag, platform tag) of a wheel's file name."""
    parts = Path(filename).name[:-len(".whl")].split("-")
    if len(parts) < 5:
        raise ValueError(f"not a wheel file name: {filename}")
    return parts[0], parts[1], parts[-3], parts[-2], parts[-1]


def wheel_fits(filename, version_info=None, machine=None):
    """Whether a wheel installs on this interpreter: CPython of this version (or
    py3/abi3), Linux on this machine's architecture (any manylinux or linux tag)."""
    vi = version_info or sys.version_info
    machine = machine or platform.machine()
    _, _, py, abi, plat = wheel_tags(filename)
    cp = f"cp{vi[0]}{vi[1]}"
    py_ok = any(t in (cp, "py3", f"py{vi[0]}{vi[1]}") for t in py.split("."))
    abi_ok = any(t in (cp, "abi3", "none") for t in abi.split("."))
    plat_ok = plat == "any" or any(t.endswith(machine) and ("linux" in t) for t in plat.split("."))
    return py_ok and abi_ok and plat_ok


def pick_wheel(folder, name, version_info=None, machine=None):
    """The newest-named wheel of `name` in folder that fits this interpreter, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    fits = [p for p in folder.glob("*.whl")
            if wheel_tags(p.name)[0].lower() == name.lower() and wheel_fits(p.name, version_info, machine)]
    return sorted(fits)[-1] if fits else None


def git_commit(root=ROOT):
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------- --prepare
def find_python(version):
    """An interpreter of `version` (e.g. "3.12") that runs: $FASTDL_WHEEL_PYTHON,
    pythonX.Y on the PATH, or a pyenv installation (pyenv's shim on the PATH may
    refuse to run a version that is not selected)."""
    candidates = [os.environ.get("FASTDL_WHEEL_PYTHON"), shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted((pyenv_root / "versions").glob(f"{version}.*/bin/python{version}"),
                                          reverse=True)]
    for py in candidates:
        if not py:
            continue
        try:
            out = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return py
    return None


def prepare(args):
    """Fills wheelhouse/ with a numpy 2.4 wheel and a fastdl wheel for the GPU machine's
    Python, and SOURCE.json naming the tree the wheel was built from."""
    WHEELHOUSE.mkdir(exist_ok=True)
    version = args.python_version
    tag = "cp" + version.replace(".", "")
    for old in list(WHEELHOUSE.glob("fastdl-*.whl")) + list(WHEELHOUSE.glob("numpy-*.whl")):
        old.unlink()
    print(f"== numpy ({NUMPY_SPEC}) for CPython {version}, manylinux x86_64", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", version, "--implementation", "cp", "--abi", tag,
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(WHEELHOUSE), NUMPY_SPEC], check=True)
    source = {"tree_hash": tree_hash(), "git_commit": git_commit(), "python": version,
              "prepared_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    py = find_python(version)
    if py is None:
        print(f"no Python {version} here (set FASTDL_WHEEL_PYTHON): the GPU run will build fastdl from the "
              "tree instead (about a minute of device time)", flush=True)
    else:
        print(f"== the fastdl wheel, built by {py}", flush=True)
        env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        subprocess.run([py, "-m", "pip", "wheel", "--no-deps", "-w", str(WHEELHOUSE), str(ROOT)], check=True,
                       env=env)
    wheels = sorted(p.name for p in WHEELHOUSE.glob("*.whl"))
    source["wheels"] = wheels
    (WHEELHOUSE / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
    size = sum(p.stat().st_size for p in WHEELHOUSE.iterdir())
    print(f"wheelhouse/: {', '.join(wheels)} ({size / 2**20:.1f} MiB), tree {source['tree_hash'][:12]}")
    if size > 48 * 2**20:
        print("warning: the wheelhouse is large; the device tool carries at most 64 MiB with the tree")
    return 0


# ---------------------------------------------------------------- running one step
@dataclass
class Outcome:
    returncode: int = None
    timed_out: bool = False
    wall_s: float = 0.0
    tail: str = ""


def run_command(cmd, *, env, cwd, limit_s, log_path, header):
    """Runs cmd in a process group of its own (so a timeout ends its children too),
    appending its output to log_path; returns an Outcome."""
    log_path = Path(log_path)
    with open(log_path, "a") as log:
        log.write(f"\n===== {header}\n$ {' '.join(map(str, cmd))}\n")
        log.flush()
        start = time.perf_counter()
        offset = log.tell()
        try:
            proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=str(cwd), start_new_session=True)
        except OSError as e:
            log.write(f"could not start: {e}\n")
            return Outcome(returncode=127, wall_s=0.0, tail=f"could not start: {e}")
        timed_out = False
        try:
            rc = proc.wait(timeout=max(limit_s, 1))
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
            rc = proc.returncode
        wall = time.perf_counter() - start
        log.write(f"\n===== {header}: {'timed out after' if timed_out else f'exit {rc} after'} {wall:.1f} s\n")
    with open(log_path, "rb") as f:
        f.seek(max(offset, log_path.stat().st_size - 8 * TAIL_CHARS))
        tail = f.read().decode(errors="replace")[-TAIL_CHARS:]
    return Outcome(rc, timed_out, wall, tail)


def _stop(proc):
    """SIGTERM to the process group, SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def junit_summary(path):
    """{tests, failures, errors, skipped, failed: [names]} of a pytest JUnit XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": []}
    for s in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            out[key] += int(s.get(key, 0))
        for case in s.iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                msg = (bad.get("message") or "").splitlines()[0][:300] if bad.get("message") else ""
                out["failed"].append(f"{case.get('classname')}::{case.get('name')}: {msg}")
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


# ---------------------------------------------------------------- the steps
@dataclass
class Run:
    """What the steps share: mode, folders, environment for the step processes."""

    dry: bool
    out: Path
    work: Path
    python: str
    budget_s: float
    started: float
    pytest_args: list
    site: Path = None
    env_extra: dict = field(default_factory=dict)

    def env(self, **extra):
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.dry:
            env["NUMBA_ENABLE_CUDASIM"] = "1"
        else:
            env.pop("NUMBA_ENABLE_CUDASIM", None)
        if self.site is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.site)] + [p for p in [env.get("PYTHONPATH")] if p])
        env.update(self.env_extra)
        env.update(extra)
        return env

    def remaining(self):
        return self.budget_s - (time.perf_counter() - self.started)


def step_environment(run, limit, log):
    result = run.work / "environment.json"
    o = run_command([run.python, TOOLS / "gpu_verify.py", "_environment", "--result", result], env=run.env(),
                    cwd=run.work, limit_s=limit, log_path=log, header="environment")
    data = _read_json(result)
    return o, data, ([] if o.returncode == 0 and data else ["could not read the machine's description"])


def step_install(run, limit, log):
    """Installs the numpy 2.4 wheel and fastdl (its wheel when it is of this tree and
    this Python, else built from the tree) into a folder of their own, which the later
    steps put first on PYTHONPATH."""
    if run.dry:
        return None, {"skipped": "dry mode: the steps use the fastdl this Python imports"}, []
    site = run.work / "site"
    site.mkdir(exist_ok=True)
    info, problems = {"site": str(site)}, []
    numpy_wheel = pick_wheel(WHEELHOUSE, "numpy")
    fastdl_wheel = pick_wheel(WHEELHOUSE, "fastdl")
    source = _read_json(WHEELHOUSE / SOURCE_FILE) or {}
    here = tree_hash()
    info.update(numpy_wheel=numpy_wheel and numpy_wheel.name, tree_hash=here, wheelhouse_source=source)
    pip = [run.python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--disable-pip-version-check",
           "--target", site]
    outcomes = []
    if numpy_wheel is not None:
        outcomes.append(run_command(pip + [numpy_wheel], env=run.env(), cwd=run.work, limit_s=limit / 3,
                                    log_path=log, header="install: numpy"))
    else:
        info["numpy_note"] = (f"no {NUMPY_SPEC} wheel for this Python in wheelhouse/ (tools/gpu-verify.sh "
                              "--prepare): the installed numpy is used")
    run.site = site
    left = lambda: max(10, limit - sum(o.wall_s for o in outcomes))  # noqa: E731
    why = None
    if fastdl_wheel is None:
        why = "no fastdl wheel for this Python in wheelhouse/"
    elif source.get("tree_hash") != here:
        why = f"the wheel was built from another tree ({str(source.get('tree_hash'))[:12]}, this one {here[:12]})"
    else:
        info["fastdl_from"] = f"wheel {fastdl_wheel.name}"
        outcomes.append(run_command(pip + [fastdl_wheel], env=run.env(), cwd=run.work, limit_s=left(), log_path=log,
                                    header="install: fastdl wheel"))
        # the extension built elsewhere must load here (its C++ and OpenMP runtimes)
        check = run_command([run.python, "-c", "import fastdl._C"], env=run.env(), cwd=run.work, limit_s=60,
                            log_path=log, header="install: the wheel's extension loads")
        if check.returncode != 0:
            why = f"the wheel's extension does not load here: {check.tail.strip().splitlines()[-1:]}"
            shutil.rmtree(site / "fastdl", ignore_errors=True)
            for meta in site.glob("fastdl-*.dist-info"):
                shutil.rmtree(meta, ignore_errors=True)
    if why is not None:
        info["fastdl_from"] = f"built from the tree ({why})"
        env = run.env(CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 4))
        outcomes.append(run_command(pip + ["--no-build-isolation", ROOT], env=env, cwd=run.work, limit_s=left(),
                                    log_path=log, header="install: fastdl from the tree"))
    for o in outcomes:
        if o.timed_out or o.returncode != 0:
            problems.append(f"pip install failed (exit {o.returncode}{', timed out' if o.timed_out else ''}): "
                            f"{o.tail[-500:]}")
    total = Outcome(returncode=0 if not problems else 1, timed_out=any(o.timed_out for o in outcomes),
                    wall_s=sum(o.wall_s for o in outcomes), tail=outcomes[-1].tail if outcomes else "")
    return total, info, problems


def step_import(run, limit, log):
    result = run.work / "import.json"
    args = ["--result", result] + (["--expect-under", run.site] if run.site else [])
    o = run_command([run.python, TOOLS / "gpu_verify.py", "_import"] + args, env=run.env(), cwd=run.work,
                    limit_s=limit, log_path=log, header="import")
    data = _read_json(result)
    problems = [] if o.returncode == 0 else [(data or {}).get("error") or f"exit {o.returncode}"]
    return o, data, problems


def _goal_step(group):
    def step(run, limit, log):
        result = run.work / f"goals-{group}.json"
        cmd = [run.python, TOOLS / "gpu_goals.py", group, "--result", result,
               "--case-budget", str(max(2.0, min(20.0, limit / 8)))] + (["--dry"] if run.dry else [])
        o = run_command(cmd, env=run.env(), cwd=run.work, limit_s=limit, log_path=log, header=f"goals: {group}")
        data = _read_json(result)
        problems = [f"{c['case']}: {c.get('status')}: {c.get('reason')}" for c in (data or {}).get("cases", [])
                    if c.get("status") in ("failed", "error")]
        if data is None:
            problems.append(f"no result (exit {o.returncode})")
        elif o.returncode != 0 and not problems:
            problems.append(f"exit {o.returncode}")
        return o, data, problems
    return step


def _pytest_step(name, files, *, real_sizes):
    def step(run, limit, log):
        xml = run.work / f"{name}.xml"
        extra = {"FASTDL_CUDA_REAL_SIZES": "1"} if real_sizes else {}
        if run.dry:
            # The simulator's CI run covers every test; here the command and its
            # parsing run on a few, and the real-size cases are only collected.
            args = ["--collect-only"] if real_sizes else ["-k", "max_norm or optimizer_errors"]
            chosen = files if real_sizes else ["test_cuda_optim.py"]
        else:
            args = ["-n", "4" if real_sizes else "6"]
            chosen = files
        cmd = ([run.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"] + args
               + run.pytest_args + chosen)
        o = run_command(cmd, env=run.env(**extra), cwd=ROOT / "tests", limit_s=limit, log_path=log,
                        header=name + (" (FASTDL_CUDA_REAL_SIZES=1)" if real_sizes else ""))
        data = junit_summary(xml) or {}
        if run.dry and real_sizes:
            m = re.search(r"(\d+) tests? collected", o.tail)
            data["collected"] = int(m.group(1)) if m else None
        problems = list(data.get("failed", []))
        if o.returncode not in (0,) and not problems:
            problems.append(f"pytest exit {o.returncode}{' (timed out)' if o.timed_out else ''}")
        return o, data, problems
    return step


def find_sanitizer():
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for pattern in ("/usr/local/cuda/bin/compute-sanitizer", "/usr/local/cuda-*/bin/compute-sanitizer",
                    "/opt/nvidia/*/compute-sanitizer", "/opt/nvidia/*/*/compute-sanitizer",
                    "/usr/local/cuda*/compute-sanitizer/compute-sanitizer"):
        hits = sorted(Path("/").glob(pattern.lstrip("/")))
        if hits:
            return str(hits[-1])
    return None


def step_sanitizer(run, limit, log):
    result = run.work / "exercise.json"
    exercise = [run.python, TOOLS / "gpu_exercise.py", "--result", result]
    info, problems = {}, []
    if run.dry:
        info["compute_sanitizer"] = "skipped: dry mode (the exercise runs on the simulator without it)"
        cmd = exercise + ["--dry"]
    else:
        sanitizer = find_sanitizer()
        if sanitizer is None:
            return None, {"error": "compute-sanitizer not found"}, ["compute-sanitizer not found on the PATH "
                                                                     "or under /usr/local/cuda*"]
        sanitizer_log = run.work / "sanitizer.txt"
        info["compute_sanitizer"] = sanitizer
        cmd = [sanitizer, "--tool", "memcheck", "--error-exitcode", "86", "--print-limit", "50",
               "--log-file", sanitizer_log] + exercise
    o = run_command(cmd, env=run.env(), cwd=run.work, limit_s=limit, log_path=log,
                    header="compute-sanitizer memcheck" if not run.dry else "exercise (dry)")
    data = _read_json(result) or {}
    info.update(exercise=data)
    if not run.dry:
        text = (run.work / "sanitizer.txt").read_text(errors="replace") if (run.work / "sanitizer.txt").exists() else ""
        with open(log, "a") as f:
            f.write("----- compute-sanitizer's log\n" + text[-200_000:] + "\n")
        m = re.search(r"ERROR SUMMARY: (\d+) error", text)
        info["memcheck_errors"] = int(m.group(1)) if m else None
        if o.returncode == 86 or (m and int(m.group(1))):
            problems.append(f"memcheck reported {m.group(1) if m else 'some'} errors: "
                            + " | ".join(re.findall(r"=========\s+(Invalid .*|.*out of bounds.*)", text)[:5]))
    if data.get("error"):
        problems.append(f"the exercise failed: {data['error']}")
    if data.get("missing_kernels"):
        problems.append(f"kernels not exercised: {', '.join(data['missing_kernels'])}")
    if not data:
        problems.append(f"no result from the exercise (exit {o.returncode})")
    elif o.returncode not in (0, 86) and not problems:
        problems.append(f"exit {o.returncode}")
    return o, info, problems


CUDA_TEST_FILES = sorted(p.name for p in (ROOT / "tests").glob("test_cuda_*.py"))

#: (name, log file, limit in seconds on a GPU, in dry mode, function, parallel group)
STEPS = [
    ("environment", "log-setup.txt", 30, 60, step_environment, None),
    ("install", "log-setup.txt", 180, 10, step_install, None),
    ("import", "log-setup.txt", 90, 60, step_import, None),
    ("goals-adam", "log-goals.txt", 90, 60, _goal_step("adam"), None),
    ("goals-train-steps", "log-goals.txt", 200, 120, _goal_step("train_steps"), None),
    ("goals-dense", "log-goals.txt", 90, 60, _goal_step("dense"), None),
    ("tests", "log-tests.txt", 300, 90, _pytest_step("tests", CUDA_TEST_FILES, real_sizes=False), "checks"),
    ("tests-real-sizes", "log-tests-real.txt", 300, 60,
     _pytest_step("tests-real-sizes", ["test_cuda_real_sizes.py"], real_sizes=True), "checks"),
    ("sanitizer", "log-sanitizer.txt", 300, 120, step_sanitizer, "checks"),
]
STEP_NAMES = [s[0] for s in STEPS]


# ---------------------------------------------------------------- the report
def build_report(run, results, finished=False):
    env = next((r["result"] for r in results if r["name"] == "environment" and r.get("result")), {}) or {}
    imp = next((r["result"] for r in results if r["name"] == "import" and r.get("result")), {}) or {}
    goals = []
    for r in results:
        if r["name"].startswith("goals-") and r.get("result"):
            goals += r["result"].get("goals", [])
    failures = [f"{r['name']}: {p}" for r in results for p in r.get("problems", [])]
    return {
        "schema": SCHEMA,
        "mode": "dry" if run.dry else "gpu",
        "finished": finished,
        "started_at": run.started_at,
        "wall_s": round(time.perf_counter() - run.started, 1),
        "budget_s": run.budget_s,
        "command": sys.argv,
        "tree": {"hash": tree_hash(), "git_commit": git_commit()},
        "machine": {**env, "device": imp.get("device"), "compute_capability": imp.get("compute_capability"),
                    "fastdl_file": imp.get("fastdl_file")},
        "steps": results,
        "goals": goals,
        "failures": failures,
        "ok": finished and not failures and all(r["status"] in ("passed", "skipped") for r in results),
    }


def summary_text(report):
    m = report["machine"]
    gpu = m.get("gpu") or {}
    lines = [f"fastdl GPU verification ({report['mode']} mode), {report['wall_s']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget{'' if report['finished'] else ' (INCOMPLETE: the run was stopped)'}",
             f"device: {m.get('device') or gpu.get('name') or '?'}; driver {gpu.get('driver_version', '?')}; "
             f"python {m.get('python', '?')}; " + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()
                                                           if v and k in ("numpy", "numba-cuda", "torch")),
             "", "steps:"]
    for r in report["steps"]:
        detail = r.get("reason") or ""
        res = r.get("result") or {}
        if "collected" in res:
            detail = f"{res['collected']} tests collected (not run: dry mode)"
        elif "passed" in res and "tests" in res:
            detail = f"{res['passed']} passed, {res['failures'] + res['errors']} failed, {res['skipped']} skipped"
        elif "exercise" in res:
            ex = res["exercise"]
            detail = (f"{len(ex.get('called', {}))} entry points, {ex.get('launches')} launches of "
                      f"{len(ex.get('kernels_launched', {}))} kernels")
            if res.get("memcheck_errors") is not None:
                detail += f"; memcheck: {res['memcheck_errors']} errors"
            elif "dry" in str(res.get("compute_sanitizer")):
                detail += "; compute-sanitizer skipped: dry mode"
        lines.append(f"  {r['name']:<18} {r['status']:<8} {r.get('wall_s', 0):7.1f} s  {detail}")
    lines += ["", "goals:"]
    for g in report["goals"]:
        if "torch_over_fastdl" in g:
            ratio = g.get("torch_over_fastdl")
            fig = (f"torch/fastdl {ratio:.2f}x (fastdl {g.get('fastdl_ms') or float('nan'):.3f} ms, torch "
                   f"{g.get('torch_ms') or float('nan'):.3f} ms)" if ratio else "no ratio")
        else:
            unit = next((k[len("fastdl_"):] for k in g if k.startswith("fastdl_") and k != "fastdl_over_torch"), "")
            fd, tc = g.get("fastdl_" + unit), g.get("torch_" + unit)
            fig = f"fastdl {fd:.3g} {unit}" if fd else "no figure"
            if tc:
                fig += f", torch {tc:.3g} {unit}"
        verdict = {True: "MET", False: "NOT MET", None: "reported"}[g.get("met")]
        lines.append(f"  {g['goal']}: {fig} -> {verdict}" + (f" ({g['why']})" if g.get("why") else ""))
    lines += ["", "failures:" if report["failures"] else "failures: none"]
    lines += [f"  {f[:400]}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def write_report(run, results, finished=False):
    report = build_report(run, results, finished)
    for name, text in ((REPORT, json.dumps(report, indent=1, default=str)), (SUMMARY, summary_text(report))):
        tmp = run.out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(run.out / name)
    return report


def verify(args):
    chosen = set(STEP_NAMES)
    if args.only:
        chosen = set(args.only.split(","))
    if args.skip:
        chosen -= set(args.skip.split(","))
    unknown = (set((args.only or "").split(",")) | set((args.skip or "").split(","))) - set(STEP_NAMES) - {""}
    if unknown:
        print(f"--only/--skip: unknown step(s) {sorted(unknown)}; the steps are {', '.join(STEP_NAMES)}",
              file=sys.stderr)
        return 2
    out = Path(args.out or os.environ.get("OUT") or "gpu-verify-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in [REPORT, SUMMARY] + sorted({s[1] for s in STEPS}):
        (out / name).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fastdl-gpu-verify-"))
    budget = args.budget if args.budget is not None else (300.0 if args.dry else 420.0)
    run = Run(dry=args.dry, out=out, work=work, python=sys.executable, budget_s=budget, started=time.perf_counter(),
              pytest_args=list(args.pytest_arg or []))
    run.started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = []
    write_report(run, results)
    print(f"fastdl GPU verification ({'dry' if args.dry else 'gpu'} mode): report in {out}", flush=True)

    import threading

    lock = threading.Lock()  # the checks run side by side and record from their threads

    def record(name, status, *, reason=None, outcome=None, data=None, problems=(), limit=None, log=None):
        entry = {"name": name, "status": status, "reason": reason, "limit_s": limit and round(limit, 1),
                 "wall_s": round(outcome.wall_s, 1) if outcome else 0.0, "log": log,
                 "returncode": outcome.returncode if outcome else None, "result": data, "problems": list(problems)}
        if outcome is not None and (status != "passed" or problems):
            entry["output_tail"] = outcome.tail
        with lock:
            results.append(entry)
            results.sort(key=lambda r: STEP_NAMES.index(r["name"]))
            print(f"  {name}: {status}{f' ({reason})' if reason else ''}"
                  + (f" in {outcome.wall_s:.1f} s" if outcome else ""), flush=True)
            write_report(run, results)

    def launch(spec):
        name, log, gpu_limit, dry_limit, fn, _ = spec
        if name not in chosen:
            record(name, "skipped", reason="not selected (--only/--skip)")
            return
        limit = min(dry_limit if args.dry else gpu_limit, run.remaining() - 5)
        if limit < 10:
            record(name, "skipped", reason=f"out of the run's time budget ({budget:.0f} s)")
            return
        try:
            outcome, data, problems = fn(run, limit, out / log)
        except Exception as e:  # a broken step must not stop the run
            import traceback

            record(name, "error", reason=f"{type(e).__name__}: {e}", problems=[traceback.format_exc()[-1500:]],
                   limit=limit, log=log)
            return
        if outcome is None:
            status = "failed" if problems else "skipped"
            reason = (data or {}).get("skipped") if not problems else None
        elif outcome.timed_out:
            status, reason = "timeout", f"stopped at its limit of {limit:.0f} s"
        else:
            status, reason = ("failed" if problems else "passed"), None
        record(name, status, reason=reason, outcome=outcome, data=data, problems=problems, limit=limit, log=log)

    groups = {}
    for spec in STEPS:
        if spec[5] is None:
            launch(spec)
        else:
            groups.setdefault(spec[5], []).append(spec)
            if spec is STEPS[-1] or STEPS[STEPS.index(spec) + 1][5] != spec[5]:
                _launch_together(groups.pop(spec[5]), launch, args.dry)
    report = write_report(run, results, finished=True)
    print(summary_text(report), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if report["ok"] else 1


def _launch_together(specs, launch, dry):
    """The checks run side by side on a GPU (their time is mostly compiling kernels on
    the CPU's cores), one after the other on the simulator (CPU-bound throughout)."""
    if dry:
        for spec in specs:
            launch(spec)
        return
    import threading

    threads = [threading.Thread(target=launch, args=(spec,)) for spec in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---------------------------------------------------------------- step programs
def _environment(args):
    """The machine, as the report's "machine" entry: GPU (nvidia-smi), tools and versions."""
    from importlib import metadata

    info = {"hostname": platform.node(), "python": platform.python_version(), "python_executable": sys.executable,
            "platform": platform.platform(), "cpus": os.cpu_count()}
    packages = {}
    for name in ("numpy", "numba", "numba-cuda", "llvmlite", "cuda-bindings", "torch", "cupy-cuda13x", "cupy-cuda12x",
                 "pytest", "pytest-xdist", "pytest-benchmark", "scikit-build-core", "pybind11", "cmake", "ninja"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    info["packages"] = packages
    query = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,pci.bus_id"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20).stdout.strip().splitlines()
            info["gpu"] = dict(zip(query.split(","), (v.strip() for v in out[0].split(",")))) if out else None
            info["gpus"] = len(out)
        except (OSError, subprocess.SubprocessError) as e:
            info["gpu"] = {"error": str(e)}
    else:
        info["gpu"] = None
    for tool, flag in (("nvcc", "--version"), ("compute-sanitizer", "--version")):
        path = shutil.which(tool) or (find_sanitizer() if tool == "compute-sanitizer" else None)
        if path:
            try:
                text = subprocess.run([path, flag], capture_output=True, text=True, timeout=20).stdout
                info[tool] = {"path": path, "version": text.strip().splitlines()[-1] if text.strip() else ""}
            except (OSError, subprocess.SubprocessError) as e:
                info[tool] = {"path": path, "error": str(e)}
        else:
            info[tool] = None
    with open(args.result, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    return 0


def _import(args):
    """fastdl and numba-cuda import, the GPU is usable, one kernel runs and is right."""
    info = {}
    try:
        t0 = time.perf_counter()
        import numpy as np
        from numba import cuda

        import fastdl
        import fastdl._C  # noqa: F401
        import fastdl.cuda as fcuda

        info.update(numpy=np.__version__, fastdl=fastdl.__version__, fastdl_file=fastdl.__file__,
                    simulator=fcuda.is_simulator())
        fcuda.require()
        if not fcuda.is_simulator():
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            info.update(device=name, compute_capability=".".join(map(str, dev.compute_capability)))
        else:
            info["device"] = "Numba CUDA simulator"
        if args.expect_under and not Path(fastdl.__file__).resolve().is_relative_to(Path(args.expect_under).resolve()):
            raise RuntimeError(f"fastdl was imported from {fastdl.__file__}, not from the copy installed in "
                               f"{args.expect_under}")
        from fastdl.cuda import kernels as G

        rng = np.random.default_rng(0)
        a = rng.standard_normal((70, 33)).astype(np.float32)
        b = rng.standard_normal((33, 65)).astype(np.float32)
        c = G.matmul(cuda.to_device(a), cuda.to_device(b)).copy_to_host()
        np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
        info["first_kernel_s"] = time.perf_counter() - t0
    except Exception as e:
        info["error"] = f"{type(e).__name__}: {e}"
    with open(args.result, "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    return 1 if "error" in info else 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("_environment", "_import"):
        ap = argparse.ArgumentParser()
        ap.add_argument("--result", required=True)
        ap.add_argument("--expect-under")
        sub = ap.parse_args(argv[1:])
        return (_environment if argv[0] == "_environment" else _import)(sub)
    ap = argparse.ArgumentParser(description="fastdl's GPU verification run (docs/gpu.md)")
    ap.add_argument("--prepare", action="store_true", help="fill wheelhouse/ here (needs the package registry)")
    ap.add_argument("--python-version", default=GPU_PYTHON, help="the GPU machine's Python, for --prepare")
    ap.add_argument("--dry", action="store_true", help="the simulator, tiny shapes, no sanitizer or torch CUDA")
    ap.add_argument("--out", help="folder for report.json, summary.txt and the logs (default: $OUT)")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default 420; 300 dry)")
    ap.add_argument("--only", help=f"comma-separated steps to run ({', '.join(STEP_NAMES)})")
    ap.add_argument("--skip", help="comma-separated steps to leave out")
    ap.add_argument("--pytest-arg", action="append", help="an extra argument for the pytest steps (repeatable)")
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare(args)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
