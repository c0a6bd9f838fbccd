"""Smoke test of an installed fastdl (a wheel), run from outside the source tree.

    python .ci/wheel-smoke.py SOURCE_ROOT [--bare]

SOURCE_ROOT: the checkout the wheel was built from; the test checks that the wheel holds
every file of the package there (a file the build left out fails here, not in a user's
hands). --bare: fastdl was installed alone, with its dependencies and no extras; then
numba and llvmlite must not be installed at all (they come with the `cuda` extra only).

Each check prints one line; the first failure ends the run with exit status 1. The C++
side (find_package(fastdl) against the wheel's CMake package) is .ci/cpp-example.sh.
"""

import argparse
import importlib
import importlib.metadata as metadata
import importlib.util
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: the packages of the GPU extra; the CPU package never imports them
GPU_ONLY = ("numba", "llvmlite", "numba_cuda")


def check(what):
    """Runs the decorated function as one named check, at definition time."""
    def run(fn):
        try:
            detail = fn()
        except Exception as e:  # any failure ends the smoke test with its message
            print(f"FAIL  {what}: {type(e).__name__}: {e}", flush=True)
            raise SystemExit(1) from None
        print(f"ok    {what}" + (f" ({detail})" if detail else ""), flush=True)
        return fn
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_root", type=Path)
    parser.add_argument("--bare", action="store_true", help="fastdl was installed without extras")
    args = parser.parse_args()
    source = args.source_root.resolve()
    # Run from a scratch directory, so that nothing of the checkout can be imported.
    os.chdir(tempfile.mkdtemp(prefix="fastdl-smoke-"))

    import fastdl

    package = Path(fastdl.__file__).resolve().parent

    @check("fastdl is imported from the installation, not the checkout")
    def _():
        assert source not in package.parents, f"{package} lies inside {source}"
        return str(package)

    @check("one version: fastdl.__version__ is the installed metadata's")
    def _():
        assert metadata.version("fastdl") == fastdl.__version__, (metadata.version("fastdl"), fastdl.__version__)
        return fastdl.__version__

    @check("license metadata (MIT) and the LICENSE file are installed")
    def _():
        meta = metadata.metadata("fastdl")
        assert meta.get("License-Expression") == "MIT", meta.get("License-Expression")
        licenses = [f for f in metadata.files("fastdl") if f.name == "LICENSE"]
        assert licenses, "no LICENSE among the installed files"
        text = licenses[0].locate().read_text()
        assert "MIT License" in text and text == (source / "LICENSE").read_text()
        return str(licenses[0])

    @check("the wheel holds every file of the package in the checkout")
    def _():
        # the Python files, the compiled module's stub (*.pyi) and PEP 561's py.typed
        wanted = [p.relative_to(source / "fastdl") for pattern in ("*.py", "*.pyi", "py.typed")
                  for p in (source / "fastdl").rglob(pattern) if "__pycache__" not in p.parts]
        wanted += [Path("include") / p.relative_to(source / "csrc" / "include")
                   for p in (source / "csrc" / "include" / "fastdl").glob("*.h")]
        missing = [str(p) for p in wanted if not (package / p).is_file()]
        assert not missing, f"missing from the installed package: {missing}"
        extension = list(package.glob("_C*" + (".pyd" if os.name == "nt" else ".so")))
        assert extension, "no compiled extension fastdl/_C*"
        return f"{len(wanted)} files and {extension[0].name}"

    @check("numba and llvmlite are not dependencies (the cuda extra brings them)")
    def _():
        requires = metadata.requires("fastdl") or []
        plain = [r for r in requires if "extra ==" not in r]
        assert all(not r.lower().startswith(GPU_ONLY) for r in plain), plain
        if args.bare:
            present = [m for m in GPU_ONLY if importlib.util.find_spec(m) is not None]
            assert not present, f"installed without extras, yet {present} are installed"
        return ", ".join(plain)

    @check("every kernel path this CPU runs gives the reference answer")
    def _():
        from fastdl import kernels

        rng = np.random.default_rng(0)
        x = rng.standard_normal((37, 29), dtype=np.float32)
        w = rng.standard_normal((29, 19), dtype=np.float32)
        b = rng.standard_normal(19, dtype=np.float32)
        want = np.maximum(x.astype(np.float64) @ w + b, 0)
        paths = [i for i in ("avx512", "avx2", "generic") if fastdl.cpu_supports(i)]
        previous = fastdl.get_isa()
        try:
            for isa in paths:
                fastdl.set_isa(isa)
                got = kernels.dense_forward(x, w, b, "relu")
                assert np.allclose(got, want, rtol=1e-4, atol=1e-4), f"{isa}: max error {np.abs(got - want).max()}"
        finally:
            fastdl.set_isa(previous)
        return "paths " + ", ".join(paths)

    @check("a short fit learns, and the model saves and loads")
    def _():
        rng = np.random.default_rng(1)
        centers = rng.standard_normal((3, 10)).astype(np.float32) * 3
        y = rng.integers(0, 3, 600)
        x = (centers[y] + rng.standard_normal((600, 10))).astype(np.float32)
        model = fastdl.Sequential([fastdl.Dense(32, activation="relu"), fastdl.Dense(3)], input_dim=10, seed=0)
        model.compile("adam", loss="softmax_cross_entropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
        loss, acc = model.evaluate(x, y)
        assert history.history["loss"][-1] < history.history["loss"][0] and acc > 0.9, (history.history, acc)
        model.save("model.fdl")
        again = fastdl.load("model.fdl")
        np.testing.assert_array_equal(again.predict(x), model.predict(x))
        return f"accuracy {acc:.3f}"

    @check("CPU work loaded none of the GPU extra's packages")
    def _():
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in GPU_ONLY)
        assert not loaded, loaded

    def command(*argv):
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{' '.join(argv)} exited {p.returncode}: {p.stderr[-2000:]}"
        return p.stdout.strip()

    @check("python -m fastdl --cmake-dir / --include-dir / --lib-dir point into the installation")
    def _():
        lines = command(sys.executable, "-m", "fastdl", "--cmake-dir", "--include-dir", "--lib-dir").splitlines()
        cmake_dir, include_dir, lib_dir = (Path(line) for line in lines)
        assert (cmake_dir / "fastdlConfig.cmake").is_file(), cmake_dir
        assert (include_dir / "fastdl" / "dense.h").is_file(), include_dir
        assert any(lib_dir.glob("*fastdl_kernels*")), lib_dir
        assert package in cmake_dir.parents, cmake_dir
        return str(cmake_dir)

    @check("the fastdl command: --version and the self-check")
    def _():
        script = Path(sys.executable).parent / ("fastdl.exe" if os.name == "nt" else "fastdl")
        assert script.is_file(), f"no console script {script}"
        version = command(str(script), "--version")
        assert version == f"fastdl {fastdl.__version__}", version
        report = command(str(script))
        assert "check ok" in report, report
        return report

    @check("every module imports, or names the optional package it lacks")
    def _():
        lacking = {}
        for info in pkgutil.walk_packages(fastdl.__path__, "fastdl."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as e:
                root = (e.name or "").split(".")[0]
                assert root and root != "fastdl", f"{info.name}: {e}"
                lacking.setdefault(root, []).append(info.name)
            except ImportError as e:  # fastdl's own "pip install 'fastdl[extra]'" errors
                assert "pip install" in str(e), f"{info.name}: {e}"
                lacking.setdefault("(extra)", []).append(info.name)
        return "; ".join(f"{k}: {len(v)} modules skipped" for k, v in sorted(lacking.items())) or "all"

    print(f"wheel smoke test: every check ok ({package})")


if __name__ == "__main__":
    main()
