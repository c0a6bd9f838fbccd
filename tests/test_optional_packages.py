"""The optional packages stay optional: without them the rest of fastdl works, and what
needs them raises an ImportError that says what to install."""

import importlib
import re
import sys

import numpy as np
import pytest

import fastdl


def hide(monkeypatch, package):
    """Makes `package` (and its submodules) unimportable for the test."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


@pytest.mark.parametrize("module, package, hint", [
    ("fastdl.onnx", "onnx", "pip install 'fastdl[onnx]'"),
    ("fastdl.sklearn", "sklearn", "pip install 'fastdl[sklearn]'"),
    ("fastdl.interop", "torch", "needs PyTorch"),
])
def test_modules_name_what_to_install(monkeypatch, module, package, hint):
    hide(monkeypatch, package)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=re.escape(hint)):
        importlib.import_module(module)


def test_save_weights_names_the_extra(monkeypatch, tmp_path):
    hide(monkeypatch, "safetensors")
    m = fastdl.Sequential([fastdl.Dense(3, 2)], seed=0)
    for call in (lambda: m.save_weights(tmp_path / "w.safetensors"),
                 lambda: m.load_weights(tmp_path / "w.safetensors")):
        with pytest.raises(ImportError, match=re.escape("pip install 'fastdl[safetensors]'")):
            call()
    # everything else works without them
    m.compile("adam")
    m.fit(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    m.save(tmp_path / "m.fdl")
    assert fastdl.load(tmp_path / "m.fdl").get_config() == m.get_config()
