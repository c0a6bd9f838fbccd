"""The code blocks of the docs run: each ```python block of docs/interop.md, in order,
in one namespace, in a temporary folder. A block whose first line is
``# needs: pkg, ...`` is skipped when a package is missing (so are the ones after it
that use what it made: blocks only use what the blocks without needs made)."""

import importlib.util
import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page):
    text = (DOCS / page).read_text()
    out = []
    for m in BLOCK.finditer(text):
        code = m.group(1)
        line = text[:m.start()].count("\n") + 2
        first = code.split("\n", 1)[0]
        needs = [n.strip() for n in first[len("# needs:"):].split(",")] if first.startswith("# needs:") else []
        out.append((line, needs, code))
    return out


def missing(packages):
    def absent(name):
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a package hidden as None in sys.modules
            return True

    return [p for p in packages if absent(p)]


def test_blocks_needing_a_missing_package_are_skipped(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    needs = [needs for _, needs, _ in blocks("interop.md") if needs]
    assert ["onnx", "onnxruntime"] in needs and missing(["onnx", "numpy"]) == ["onnx"]


@pytest.mark.parametrize("page", ["interop.md"])
def test_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    found = blocks(page)
    assert len(found) >= 8
    namespace, ran, skipped = {"__name__": "__docs__"}, 0, []
    for line, needs, code in found:
        absent = missing(needs)
        if absent:
            skipped.append((line, absent))
            continue
        try:
            with warnings.catch_warnings():  # the examples train for few epochs on purpose
                warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")
                exec(compile(code, f"{DOCS / page}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"docs/{page}, the block at line {line} failed: {type(e).__name__}: {e}") from e
        ran += 1
    assert ran >= 3  # the blocks that need nothing optional
    if skipped:
        print(f"skipped (missing packages): {skipped}")
