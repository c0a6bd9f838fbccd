"""`import fastdl` and `python -m fastdl` run from the root of a checkout whose extension
is not built: ./fastdl shadows the installed package, and the error must say so and what
to do, not "cannot import name '_C' from partially initialized module ... (most likely
due to a circular import)"."""

import os
import shutil
import subprocess
import sys

import pytest

import fastdl

PACKAGE = os.path.dirname(os.path.abspath(fastdl.__file__))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A checkout's layout without the built extension: fastdl/ (Python, and the
    compiled module's stub _C.pyi), csrc/, CMakeLists.txt."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(PACKAGE, root / "fastdl", ignore=shutil.ignore_patterns("_C*.so", "_C*.pyd", "__pycache__"))
    (root / "csrc").mkdir()
    (root / "CMakeLists.txt").write_text("project(fastdl)\n")
    return root


def _run(root, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("-c", "import fastdl"), ("-m", "fastdl")], ids=["import", "python-m"])
def test_the_source_tree_without_its_extension_says_what_to_do(checkout, args):
    r = _run(checkout, *args)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastdl: Python found fastdl's source tree"), r.stderr
    assert str(checkout / "fastdl") in last and "tools/dev-build.sh" in last and "pip install" in last
    assert "circular import" not in last


def test_a_package_without_the_extension_outside_a_checkout_keeps_the_original_error(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "fastdl", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    r = _run(tmp_path, "-c", "import fastdl")
    assert r.returncode != 0 and "source tree" not in r.stderr and "_C" in r.stderr
