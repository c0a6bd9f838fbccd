"""`fastdl bench` (fastdl.benchmarking): report, JSON, compare and validation logic on
synthetic results, and one end-to-end run at toy sizes. No assertion depends on timing."""

import gzip
import json
import os
import sys

import numpy as np
import pytest

from fastdl import benchmarking
from fastdl.benchmarking import cases, cli, data, network, report, results, timing
from fastdl.benchmarking.sizes import TINY

PEAK = {"gemm_gflops": 100.0, "gemm_gflops_by_library": {"fastdl": 90.0, "numpy": 100.0}, "gemm_n": 64,
        "copy_gbs": 10.0, "copy_bytes": 1 << 20, "repeats": 1, "how": "synthetic"}
MACHINE = {"cpu_model": "Test CPU", "cores_available": 2, "load_average": [1.0, 1.0, 1.0], "isa": "avx2",
           "threads": 2, "device": "cpu", "versions": {"fastdl": "0.1.0", "numpy": "2.0"}}


def timed(median, metrics=None):
    return {"median_s": median, "min_s": median, "samples": [median], "number": 1, "metrics": metrics or {}}


def synthetic(fastdl_gemm=1e-3):
    return {
        "schema": results.SCHEMA, "machine": dict(MACHINE), "peak": dict(PEAK), "elapsed_s": 1.0,
        "results": [
            {"case": "gemm", "group": "gemm", "status": "ok", "unit": "GFLOP/s", "work": 5e7,
             "times": {"fastdl": timed(fastdl_gemm), "torch": timed(2e-3), "numpy": timed(0.5e-3)},
             "invalid": {}, "notes": ["a note"]},
            {"case": "ce", "group": "losses", "status": "ok", "unit": "GB/s", "work": 4e6,
             "times": {"fastdl": timed(1e-3)}, "invalid": {"torch": "torch: dlogits differs"}, "notes": []},
            {"case": "fit", "group": "fit", "status": "ok", "unit": None, "work": None,
             "times": {"fastdl": timed(1.0, {"accuracy": 0.97}), "sklearn": timed(6.0, {"accuracy": 0.96})},
             "invalid": {}, "notes": []},
            {"case": "adam", "group": "optim", "status": "skipped", "reason": "adam_step not in this build"},
            {"case": "broken", "group": "dense", "status": "invalid", "reason": "fastdl: y differs",
             "times": {}, "invalid": {"fastdl": "fastdl: y differs"}, "notes": []},
        ],
    }


# ---------------------------------------------------------------- report
def test_derive_ratios_rate_and_peak_fraction():
    r = report.derive(synthetic()["results"][0], PEAK)
    assert r["ratios"] == pytest.approx({"torch": 2.0, "numpy": 0.5})
    assert r["achieved"] == pytest.approx(50.0)  # 5e7 flops in 1 ms
    assert r["peak_fraction"] == pytest.approx(0.5)
    ce = report.derive(synthetic()["results"][1], PEAK)
    assert ce["achieved"] == pytest.approx(4.0) and ce["peak_fraction"] == pytest.approx(0.4)  # of copy GB/s


def test_table_rows_ratios_wrong_and_skips():
    rep = synthetic()
    text = report.render(rep)
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("case"))
    assert head.split() == ["case", "fastdl", "torch", "numpy", "sklearn", "torch/fastdl", "numpy/fastdl",
                            "sklearn/fastdl", "fastdl", "rate", "%", "peak"]
    gemm = next(line for line in lines if line.startswith("gemm "))
    assert gemm.split() == ["gemm", "1", "ms", "2", "ms", "500", "us", "-", "2.00x", "0.50x", "-", "50",
                            "GFLOP/s", "50%"]
    ce = next(line for line in lines if line.startswith("ce "))
    assert "WRONG" in ce.split()
    fit = next(line for line in lines if line.startswith("fit "))
    assert "6.00x" in fit.split()
    assert "skipped  adam: adam_step not in this build" in text
    assert "WRONG    broken: fastdl: y differs" in text
    assert "accuracy fit: fastdl 0.9700, sklearn 0.9600" in text
    assert "peak: GEMM 100 GFLOP/s (fastdl 90, numpy 100); copy 10.0 GB/s" in text
    assert "Test CPU" in text and "isa=avx2" in text and "threads=2" in text


def test_time_and_ratio_formats():
    assert report.fmt_time(2.5) == "2.5 s"
    assert report.fmt_time(0.0123) == "12.3 ms"
    assert report.fmt_time(4.56e-6) == "4.56 us"
    assert report.fmt_time(5e-10) == "0.5 ns"
    assert report.fmt_ratio(1.234) == "1.23x" and report.fmt_ratio(12.34) == "12.3x"
    assert report.fmt_ratio(1234.5) == "1234x"


# ---------------------------------------------------------------- JSON and compare
def test_json_round_trip_and_foreign_files(tmp_path):
    rep = synthetic()
    path = tmp_path / "a.json"
    results.save(rep, str(path))
    assert results.load(str(path)) == json.loads(json.dumps(rep))
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="not a fastdl bench JSON file"):
        results.load(str(foreign))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="not a fastdl bench JSON file"):
        results.load(str(garbage))
    with pytest.raises(ValueError, match="no such file"):
        results.load(str(tmp_path / "missing.json"))


def test_compare_verdicts():
    a, b = synthetic(fastdl_gemm=1e-3), synthetic(fastdl_gemm=2e-3)  # gemm twice as slow in B
    b["results"][2]["times"]["fastdl"] = timed(0.5)  # fit twice as fast in B
    b["results"][1]["times"]["fastdl"] = timed(1.02e-3)  # ce within 5%
    b["results"].append({"case": "new", "group": "x", "status": "ok", "times": {"fastdl": timed(1.0)}})
    rows = {r["case"]: r for r in results.compare(a, b, threshold=0.05)}
    assert rows["gemm"]["verdict"] == "slower" and rows["gemm"]["speedup"] == pytest.approx(0.5)
    assert rows["gemm"]["peers"]["torch"] == pytest.approx((2.0, 1.0))
    assert rows["fit"]["verdict"] == "faster"
    assert rows["ce"]["verdict"] == "same"
    assert rows["new"]["verdict"] == "only in B"
    assert rows["adam"]["verdict"].startswith("not comparable")
    b["machine"]["isa"] = "avx512"
    text = results.render_compare(a, b, list(rows.values()))
    assert "1 faster, 1 slower, 1 within 5%" in text
    assert "isa: avx2 -> avx512" in text
    assert "load average when run: A 1.0, B 1.0" in text


def test_compare_command(tmp_path, capsys):
    a, b = synthetic(1e-3), synthetic(2e-3)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    results.save(a, str(pa))
    results.save(b, str(pb))
    assert benchmarking.main(["compare", str(pa), str(pb)]) == 0
    assert "slower" in capsys.readouterr().out
    assert benchmarking.main(["compare", str(pa), str(pb), "--fail-slower"]) == 1
    assert benchmarking.main(["compare", str(pb), str(pa), "--fail-slower"]) == 0
    assert benchmarking.main(["compare", str(pa), str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    assert benchmarking.main(["compare", str(pa)]) == 2  # B missing: argparse usage error
    assert "required" in capsys.readouterr().err


# ---------------------------------------------------------------- validation and timing
def test_validate_catches_a_wrong_result():
    good = timing.Impl("fastdl", lambda: 2.0, check=lambda r: np.testing.assert_allclose(r, 2.0))
    bad = timing.Impl("fastdl", lambda: 2.1, check=lambda r: np.testing.assert_allclose(r, 2.0))
    assert timing.validate(good) == {}
    with pytest.raises(timing.ValidationError, match="^fastdl: "):
        timing.validate(bad)


def test_wrong_fastdl_kernel_is_reported_not_timed(monkeypatch):
    real = cases.K.dense_forward
    calls = []

    def wrong(x, w, b, activation, out=None):  # right shape, slightly wrong numbers
        calls.append(1)
        y = real(x, w, b, activation, out=out)
        y[-1, -1] += 0.5
        return y

    monkeypatch.setattr(cases.K, "dense_forward", wrong)
    ctx = cases.Context(sizes=TINY)
    res = cli.run_case(cases.dense_forward_case((8, 16, 24)), ctx)
    assert res["status"] == "invalid"
    assert res["reason"].startswith("fastdl:") and "differs from the float64 reference" in res["reason"]
    assert res["times"] == {} and len(calls) == 1  # validated once, never timed


def test_wrong_peer_is_dropped_and_fastdl_still_timed():
    def build(ctx):
        return cases.Prepared([timing.Impl("fastdl", lambda: 1, check=lambda r: None),
                               timing.Impl("numpy", lambda: 0, check=lambda r: np.testing.assert_equal(r, 1))],
                              1e3, "GB/s")

    res = cli.run_case(cases.Case("toy", "toy", build), cases.Context(sizes=TINY))
    assert res["status"] == "ok" and set(res["times"]) == {"fastdl"}
    assert res["invalid"]["numpy"].startswith("numpy:")


def test_case_that_cannot_be_built_is_an_error_result():
    def build(ctx):
        raise KeyError("boom")

    res = cli.run_case(cases.Case("toy", "toy", build), cases.Context(sizes=TINY))
    assert res["status"] == "error" and "KeyError" in res["reason"]


def test_missing_kernel_skips_with_a_note(monkeypatch):
    monkeypatch.delattr(cases.K, "softmax_cross_entropy", raising=False)
    res = cli.run_case(cases.softmax_ce_case((4, 3)), cases.Context(sizes=TINY))
    assert res["status"] == "skipped"
    assert res["reason"] == "fastdl.kernels.softmax_cross_entropy is not in this build"


def test_interleaving_rotates_and_counts():
    order = []
    impls = [timing.Impl(n, lambda n=n: order.append(n)) for n in ("a", "b", "c")]
    ticks = iter(range(10**6))
    out = timing.time_interleaved(impls, rounds=3, target_s=0, clock=lambda: next(ticks))
    assert set(out) == {"a", "b", "c"}
    assert all(len(t.samples) == 3 and t.number == 1 for t in out.values())
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # after one calibration call each
    with pytest.raises(ValueError):
        timing.time_interleaved(impls, rounds=0)


def test_case_budget_cuts_rounds_but_keeps_the_minimum():
    impls = [timing.Impl(n, lambda: None) for n in ("a", "b")]
    ticks = iter(range(10**6))  # every clock read advances one "second"
    out = timing.time_interleaved(impls, rounds=7, target_s=0, clock=lambda: next(ticks), budget_s=5,
                                  min_rounds=3)
    assert [len(t.samples) for t in out.values()] == [3, 3]
    ticks = iter(range(10**6))
    out = timing.time_interleaved(impls, rounds=7, target_s=0, clock=lambda: next(ticks), budget_s=10**6)
    assert [len(t.samples) for t in out.values()] == [7, 7]


def test_per_run_check_failure_names_the_implementation():
    impl = timing.Impl("sklearn", lambda: 0.1, check=lambda acc: np.testing.assert_array_less(0.5, acc),
                       per_run_check=True)
    with pytest.raises(timing.ValidationError, match="^sklearn: "):
        timing.time_interleaved([impl], rounds=1)


def test_a_fit_that_scores_too_low_is_wrong_and_the_others_are_kept():
    runs = []

    def build(ctx):
        acc = lambda a: {"accuracy": a}  # noqa: E731
        check = lambda a: np.testing.assert_array_less(0.5, a)  # noqa: E731
        return cases.Prepared([
            timing.Impl("fastdl", lambda: runs.append("f") or 0.9, check, acc, per_run_check=True),
            timing.Impl("sklearn", lambda: runs.append("s") or 0.1, check, acc, per_run_check=True)], rounds=1)

    res = cli.run_case(cases.Case("fit", "fit", build), cases.Context(sizes=TINY))
    assert res["status"] == "ok" and set(res["times"]) == {"fastdl"}
    assert res["times"]["fastdl"]["metrics"] == {"accuracy": 0.9}
    assert res["invalid"]["sklearn"].startswith("sklearn: ")
    assert sorted(runs) == ["f", "s"]  # each fit ran once: nothing re-run after the failure


def test_training_step_validation_needs_the_loss_to_fall():
    losses = iter(np.linspace(2.0, 0.5, 30))
    network.learns(lambda: next(losses))
    with pytest.raises(AssertionError, match="loss went"):
        network.learns(lambda: 1.0)


# ---------------------------------------------------------------- data
def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_reader(tmp_path):
    images = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    x, y, what = data.load_mnist(str(tmp_path))
    assert x.shape == (5, 784) and x.dtype == np.float32 and x.max() <= 1.0
    np.testing.assert_array_equal(y, np.arange(5))
    assert str(tmp_path) in what
    with pytest.raises(FileNotFoundError, match="--mnist"):
        data.load_mnist(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01x")
    (tmp_path / "bad" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x01")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        data.load_mnist(str(tmp_path / "bad"))


# ---------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    argv = ["--quick", "--sizes", "tiny", "--threads", "1", "--json", str(out / "r.json"), "--plot", str(out / "r.png")]
    capture = pytest.MonkeyPatch()
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        rc = benchmarking.main(argv)
    finally:
        capture.undo()
    return rc, stdout.getvalue(), stderr.getvalue(), out


def test_quick_run_end_to_end(tiny_run):
    rc, out, err, folder = tiny_run
    assert rc == 0, out + err
    assert "ratio = peer time / fastdl time" in out
    assert "dense fwd relu 8x16x24" in out and "gemm 48^3" in out
    rep = results.load(str(folder / "r.json"))
    assert rep["profile"] == "tiny" and rep["machine"]["threads"] == 1
    assert rep["machine"]["isa"] and rep["machine"]["cpu_model"] and rep["machine"]["versions"]["numpy"]
    assert rep["peak"]["gemm_gflops"] > 0 and rep["peak"]["copy_gbs"] > 0
    ok = [r for r in rep["results"] if r["status"] == "ok"]
    assert {r["case"] for r in ok} >= {"dense fwd relu 8x16x24", "dense bwd relu 8x16x24", "gemm 48^3"}
    for r in ok:
        rounds = TINY.fit_rounds if r["case"].startswith("fit ") else TINY.rounds  # a whole fit runs fit_rounds
        assert r["times"]["fastdl"]["median_s"] > 0 and len(r["times"]["fastdl"]["samples"]) == rounds
    assert all(r["status"] in ("ok", "skipped") for r in rep["results"]), [
        (r["case"], r.get("reason")) for r in rep["results"] if r["status"] not in ("ok", "skipped")]
    assert (folder / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_and_filter(capsys):
    assert benchmarking.main(["--sizes", "tiny", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "dense fwd relu 8x16x24" in listed and "fit MLP" in listed
    assert benchmarking.main(["--sizes", "tiny", "--list", "--filter", "GEMM"]) == 0
    assert capsys.readouterr().out.split() == ["gemm", "gemm", "48^3"]


@pytest.mark.parametrize("argv, message", [
    (["--threads", "0"], "expected a positive integer, got 0"),
    (["--threads", "two"], "expected a positive integer, got 'two'"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--filter", "no-such-case"], "matches no case"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["compare", "a.json", "b.json", "--threshold", "-1"], "--threshold must be >= 0"),
])
def test_bad_arguments(argv, message, capsys):
    assert benchmarking.main(argv) == 2
    assert message in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert benchmarking.main(["--sizes", "tiny", "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot needs matplotlib, which is not installed: pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    try:
        import fastdl.cuda as fcuda
    except ImportError:
        fcuda = None
    if fcuda is not None and fcuda.is_available():
        pytest.skip("a GPU (or the simulator) is usable here")
    assert benchmarking.main(["--sizes", "tiny", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda:" in err and ("fastdl.cuda is missing" in err or "numba-cuda" in err or "GPU" in err)


# ---------------------------------------------------------------- network cases, on a stand-in network
class FakeDense:
    def __init__(self, n_in, n_out, activation="linear"):
        self.shape, self.activation = (n_in, n_out), activation


class FakeAdam:
    def __init__(self, lr):
        self.lr = lr


class FakeSequential:
    """A numpy MLP with the issue-5 API the network cases call; the cases' own code
    (validation, timing, accuracy) runs unchanged against it."""

    def __init__(self, layers, seed=0):
        rng = np.random.default_rng(seed)
        self.params = []
        for layer in layers:
            i, o = layer.shape
            self.params += [rng.standard_normal((i, o)).astype(np.float32) * np.float32(np.sqrt(2 / i)),
                            np.zeros(o, np.float32)]

    def compile(self, optimizer, loss):
        assert loss == "softmax_cross_entropy"
        self.lr, self.t = optimizer.lr, 0
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def _forward(self, x):
        acts = [x]
        for j in range(0, len(self.params), 2):
            z = acts[-1] @ self.params[j] + self.params[j + 1]
            acts.append(np.maximum(z, 0) if j + 2 < len(self.params) else z)
        return acts

    def predict(self, x):
        return self._forward(x)[-1]

    def train_step(self, x, y):
        acts = self._forward(x)
        z = acts[-1] - acts[-1].max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
        d = p
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        self.t += 1
        for j in range(len(self.params) - 2, -1, -2):
            grads = (acts[j // 2].T @ d, d.sum(0))
            d = (d @ self.params[j].T) * (acts[j // 2] > 0)
            for k, g in zip((j, j + 1), grads):
                self.m[k] = 0.9 * self.m[k] + 0.1 * g
                self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
                mh, vh = self.m[k] / (1 - 0.9**self.t), self.v[k] / (1 - 0.999**self.t)
                self.params[k] -= (self.lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        return float(loss)

    def fit(self, x, y, epochs, batch_size, shuffle=True, verbose=0):
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for i in range(0, len(x), batch_size):
                self.train_step(x[order[i:i + batch_size]], y[order[i:i + batch_size]])


@pytest.fixture
def fake_network(monkeypatch):
    import types

    import fastdl

    monkeypatch.setattr(fastdl, "Sequential", FakeSequential, raising=False)
    monkeypatch.setattr(fastdl, "Dense", FakeDense, raising=False)
    monkeypatch.setattr(fastdl, "optim", types.SimpleNamespace(Adam=FakeAdam), raising=False)


def test_train_step_case_runs_on_the_network_api(fake_network):
    res = cli.run_case(network.train_step_case("t", (20, 16, 16, 4), 8), cases.Context(sizes=TINY))
    assert res["status"] == "ok", res.get("reason")
    assert "fastdl" in res["times"] and res["work"] == network.step_flops((20, 16, 16, 4), 8)


def test_train_step_that_does_not_learn_is_wrong(fake_network):
    FakeAdam_lr0 = type("FakeAdam0", (), {"__init__": lambda self, lr: setattr(self, "lr", 0.0)})
    import fastdl

    fastdl.optim.Adam = FakeAdam_lr0
    res = cli.run_case(network.train_step_case("t", (20, 16, 4), 8), cases.Context(sizes=TINY))
    assert res["status"] == "invalid" and "loss went" in res["reason"]


def test_fit_case_times_and_scores_every_library(fake_network, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 600)
    images = rng.integers(0, 60, (600, 28, 28))
    for c in range(10):  # a bright bar per class: easy to learn, so the accuracy floor holds
        images[labels == c, 2 * c + 3, 4:24] = 255
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    res = cli.run_case(network.fit_case(TINY), cases.Context(sizes=TINY, mnist=str(tmp_path)))
    assert res["status"] == "ok", res.get("reason")
    assert str(tmp_path) in res["notes"][0] and "300 train / 200 test" in res["notes"][0]
    for name, t in res["times"].items():
        assert t["metrics"]["accuracy"] >= TINY.fit_min_accuracy, name
    assert "fastdl" in res["times"] and not res["invalid"]


def test_cuda_set_on_the_simulator(tmp_path):
    """The GPU set's code paths, on Numba's CUDA simulator (times mean nothing there)."""
    import os
    import subprocess
    from pathlib import Path

    import fastdl

    try:
        import fastdl.cuda  # noqa: F401
    except ImportError:
        pytest.skip("this build has no fastdl.cuda")
    pytest.importorskip("numba")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(Path(fastdl.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "fastdl.benchmarking", "--device", "cuda", "--sizes", "tiny",
                           "--json", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simulator" in proc.stderr
    rep = results.load(str(path))
    assert rep["machine"]["device"] == "cuda" and rep["peak"]["gemm_gflops"] > 0
    status = {r["case"]: r["status"] for r in rep["results"]}
    assert status["cuda dense fwd relu 8x16x24"] == "ok" and status["cuda gemm 16^3"] == "ok", status
    assert set(status.values()) <= {"ok", "skipped"}, [(r["case"], r.get("reason")) for r in rep["results"]]


def test_console_command_restarts_with_quiet_blas_threads(tmp_path):
    # `python -m fastdl bench` re-executes itself with OPENBLAS_THREAD_TIMEOUT set, so
    # numpy's spinning threads do not slow the next library timed; the header says so
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "FASTDL_BENCH_KEEP_ENV")}
    proc = subprocess.run([sys.executable, "-m", "fastdl", "bench", "--quick", "--sizes", "tiny", "--threads", "1",
                           "--filter", "gemm"], env=env, capture_output=True, text=True, timeout=300)
    assert "environment: OPENBLAS_THREAD_TIMEOUT=4" in proc.stdout, proc.stdout + proc.stderr
    kept = subprocess.run([sys.executable, "-m", "fastdl", "bench", "--quick", "--sizes", "tiny", "--threads", "1",
                           "--filter", "gemm"], env={**env, "FASTDL_BENCH_KEEP_ENV": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert "OPENBLAS_THREAD_TIMEOUT=unset" in kept.stdout, kept.stdout + kept.stderr
