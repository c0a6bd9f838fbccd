"""model.save_weights / model.load_weights: the model's ``state_dict()`` in the
safetensors format (https://huggingface.co/docs/safetensors), under its names
("dense_0.w" stored (in, out), "dense_0.b", "batchnorm_0.running_mean", ...), so the
weights open in PyTorch (``safetensors.torch.load_file``), JAX and the Hugging Face
tools without fastdl. The file's metadata holds the architecture (``get_config()`` as
JSON, under "fastdl.config") for whoever wants to rebuild it; loading reads the tensors
only. Whole models (optimizer state, training counters) go in ``model.save``'s .fdl file.

Needs the safetensors package (``pip install fastdl[safetensors]``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from fastdl._files import write_atomic

if TYPE_CHECKING:
    from fastdl._typing import PathLike
    from fastdl.network import Network
    from fastdl.state import IncompatibleKeys

__all__ = ["save", "load"]

EXTRA_HINT = "pip install 'fastdl[safetensors]'"


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError(f"save_weights / load_weights need the safetensors package: {EXTRA_HINT}") from None
    return st


def save(model: Network, path: PathLike) -> None:
    """Writes model.state_dict() to path (safetensors, float32, atomically)."""
    st = _safetensors_numpy()
    path = os.fspath(path)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.state_dict(copy=True).items()}
    metadata = {"format": "np", "producer": "fastdl", "fastdl.config": json.dumps(model.get_config())}
    write_atomic(path, st.save(tensors, metadata=metadata))


def load(model: Network, path: PathLike, strict: bool = True) -> IncompatibleKeys:
    """Loads a safetensors file's tensors into model (``load_state_dict``); returns its
    (missing_keys, unexpected_keys)."""
    st = _safetensors_numpy()
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path} is a folder, not a safetensors file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no file {path}")
    try:
        tensors = st.load_file(path)
    except Exception as e:  # safetensors raises its own error types (SafetensorError, ...) on bad files
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    for name, arr in tensors.items():
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{path}: tensor {name!r} is {arr.dtype}; expected floating-point weights")
    return model.load_state_dict(tensors, strict=strict)
