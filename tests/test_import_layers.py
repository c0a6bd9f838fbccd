"""The import graph stays one-directional: import-linter's contracts (pyproject.toml,
[tool.importlinter]) hold, and importing the kernels loads nothing of the network."""

import os
import shutil
import subprocess
import sys

import pytest

import fastdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastdl.__file__)))


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install fastdl[test])")
    p = subprocess.run([exe, "--no-cache", os.path.join(ROOT, "pyproject.toml")], capture_output=True, text=True,
                       env=_env(), cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_importing_the_kernels_loads_nothing_of_the_network():
    code = ("import sys, fastdl.kernels; "
            "print(sorted(m for m in sys.modules if m.startswith('fastdl')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    loaded = eval(p.stdout)
    for module in ("fastdl.network", "fastdl.model", "fastdl.training", "fastdl.callbacks", "fastdl.layers",
                   "fastdl.optim"):
        assert module not in loaded, loaded
    assert "fastdl.kernels" in loaded
