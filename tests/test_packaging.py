"""What a plain `pip install fastdl` brings: numpy and nothing heavy. numba (with llvmlite)
is the `cuda` extra's and CPU work never imports it; the GPU path says to install that
extra; one version, one license (MIT)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastdl
from fastdl import _device

from test_datasets import write_mnist
from test_optional_packages import hide

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(fastdl.__file__).resolve().parent.parent
GPU_ONLY = ("numba", "llvmlite", "numba_cuda")


def pyproject():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# Everything a CPU user does, in a fresh interpreter; then which GPU packages it loaded.
CPU_WORK = r"""
import json, sys
import numpy as np
import fastdl
from fastdl import benchmarking, cli

folder, mnist = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 8), dtype=np.float32)
y = rng.integers(0, 3, 64)
model = fastdl.Sequential([fastdl.Dense(16, activation="relu"), fastdl.Dropout(0.1), fastdl.Dense(3)],
                          input_dim=8, seed=0)
model.compile("adam", loss="softmax_cross_entropy", metrics=["accuracy"])
model.fit(x, y, epochs=2, batch_size=16, verbose=0)
model.save(folder + "/m.fdl")
fastdl.load(folder + "/m.fdl").predict(x)
assert cli.main(["train", "--mnist", mnist, "--hidden", "8", "--epochs", "1", "--verbose", "0",
                 "--out", folder + "/run"]) == 0
assert benchmarking.main(["--sizes", "tiny", "--threads", "1", "--filter", "gemm"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (GPU_ONLY,)


def test_cpu_work_never_imports_numba(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=40, n_test=10)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    p = subprocess.run([sys.executable, "-c", CPU_WORK, str(tmp_path), str(tmp_path / "mnist")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []


def test_gpu_request_without_numba_names_the_cuda_extra(monkeypatch):
    for package in GPU_ONLY:
        hide(monkeypatch, package)
    monkeypatch.delitem(_device._BACKENDS, "cuda", raising=False)
    import fastdl.cuda as fcuda

    hint = re.escape("pip install 'fastdl[cuda]'")
    with pytest.raises(ImportError, match=r"numba-cuda, which is not installed: .*" + hint):
        fcuda.require()
    with pytest.raises(ImportError, match=r"device='cuda' needs numba-cuda: .*" + hint):
        fastdl.Sequential([fastdl.Dense(3, 2)], device="cuda")
    assert not fcuda.is_available()


def test_dependencies_are_numpy_alone_and_numba_is_the_cuda_extras():
    project = pyproject()["project"]
    assert project["dependencies"] == ["numpy>=1.23"]  # no upper bound for CPU users
    cuda = project["optional-dependencies"]["cuda"]
    assert any(r.startswith("numba-cuda") for r in cuda)
    # numba-cuda's import breaks on numpy 2.5: the cap lives with it, in the extra
    assert "numpy<2.5" in cuda
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "cuda":
            assert not any(r.startswith(GPU_ONLY) for r in requirements), extra


def test_one_version_and_the_license():
    config = pyproject()
    assert "version" not in config["project"] and config["project"]["dynamic"] == ["version"]
    assert config["tool"]["scikit-build"]["metadata"]["version"]["input"] == "fastdl/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", fastdl.__version__)
    assert config["project"]["license"] == "MIT" and config["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the fastdl developers" in text


def test_installed_metadata_matches_the_package():
    from importlib import metadata

    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        pytest.skip(f"fastdl imported from a source tree ({PACKAGE_ROOT}): no installed metadata")
    assert metadata.version("fastdl") == fastdl.__version__
    meta = metadata.metadata("fastdl")
    assert meta["License-Expression"] == "MIT"
    plain = [r for r in metadata.requires("fastdl") if "extra ==" not in r]
    assert not any(r.startswith(GPU_ONLY) for r in plain), plain
