"""The C++ package an installed fastdl ships: headers, static library, fastdlConfig.cmake.

These tests need an installed fastdl (the README's test command installs one). Run
against a source checkout (an in-place build imported from the repository), there is no
installed C++ package and the locators raise FileNotFoundError: the tests then skip,
saying why, rather than fail. An installed fastdl without its C++ package fails them.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fastdl
from fastdl import _paths

PACKAGE_DIR = Path(fastdl.__file__).resolve().parent
# A checkout has pyproject.toml and csrc/ beside the package; an installed fastdl does not.
FROM_SOURCE_TREE = (PACKAGE_DIR.parent / "pyproject.toml").is_file() and (
    PACKAGE_DIR.parent / "csrc").is_dir()
REPO_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cpp"

installed = pytest.mark.skipif(
    FROM_SOURCE_TREE, reason=f"fastdl imported from a source tree ({PACKAGE_DIR}): no installed "
                             "C++ package (pip install the project to test it)")


def _cxx():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CMAKE = shutil.which("cmake")
CXX = _cxx()
needs_toolchain = pytest.mark.skipif(CMAKE is None or CXX is None,
                                     reason="needs cmake and a C++ compiler on PATH")


@installed
def test_get_include_holds_the_public_headers():
    include = Path(fastdl.get_include())
    assert include.is_dir()
    for header in ("dense.h", "gemm.h", "activation.h", "runtime.h"):
        assert (include / "fastdl" / header).is_file(), header


@installed
def test_get_cmake_dir_holds_the_package_config():
    cmake_dir = Path(fastdl.get_cmake_dir())
    for name in ("fastdlConfig.cmake", "fastdlConfigVersion.cmake", "fastdlTargets.cmake"):
        assert (cmake_dir / name).is_file(), name
    assert "fastdl::kernels" in (cmake_dir / "fastdlTargets.cmake").read_text()
    # The CMake package's version is the Python package's.
    version = (cmake_dir / "fastdlConfigVersion.cmake").read_text()
    assert re.search(r'PACKAGE_VERSION "%s"' % re.escape(fastdl.__version__), version)


@installed
def test_static_library_is_installed():
    assert (Path(_paths.get_library_dir()) / "libfastdl_kernels.a").is_file()


@installed
def test_print_paths(capsys):
    assert _paths.print_paths(["--cmake-dir", "--include-dir"]) is True
    assert capsys.readouterr().out.splitlines() == [fastdl.get_cmake_dir(), fastdl.get_include()]
    assert _paths.print_paths([]) is False
    assert _paths.print_paths(["--something-else"]) is False
    assert capsys.readouterr().out == ""


@installed
@needs_toolchain
@pytest.mark.parametrize("header", sorted(
    p.name for p in (PACKAGE_DIR / "include" / "fastdl").glob("*.h")) or ["dense.h"])
def test_each_installed_header_compiles_on_its_own(header):
    """Every installed header is self-contained C++17 (includes what it uses)."""
    subprocess.run([CXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-x", "c++",
                    "-I", fastdl.get_include(), "-"],
                   input=f"#include <fastdl/{header}>\n", text=True, check=True,
                   capture_output=True)


@installed
@needs_toolchain
def test_cpp_example_builds_against_the_package_and_trains(tmp_path):
    """examples/cpp: find_package(fastdl) + fastdl::kernels; trains XOR, checks itself."""
    if not (REPO_EXAMPLE / "CMakeLists.txt").is_file():
        pytest.skip(f"examples/cpp not found at {REPO_EXAMPLE}")
    build = tmp_path / "build"
    cmd = [CMAKE, "-S", str(REPO_EXAMPLE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
           f"-Dfastdl_DIR={fastdl.get_cmake_dir()}", f"-DCMAKE_CXX_COMPILER={CXX}"]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]

    def run(args):
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout

    run(cmd)
    run([CMAKE, "--build", str(build)])
    exe = build / "xor_mlp"
    out = run([str(exe)])
    assert "PASSED" in out
    # The ISA dispatch works from C++ too: the portable path trains as well.
    env = dict(os.environ, FASTDL_ISA="generic")
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "isa=generic" in r.stdout, r.stdout + r.stderr


def test_locators_raise_clearly_without_an_installed_package(tmp_path, monkeypatch):
    monkeypatch.setattr(_paths, "_PACKAGE_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="C\\+\\+ package is not installed"):
        _paths.get_cmake_dir()
    with pytest.raises(FileNotFoundError, match="C\\+\\+ package is not installed"):
        _paths.get_include()
