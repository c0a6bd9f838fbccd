"""fastdl's GPU kernels, written in Numba CUDA (the ``cuda`` extra: ``pip install 'fastdl[cuda]'``).

The kernels are reached through :mod:`fastdl.kernels` (the device is chosen by the array
passed in) or directly from :mod:`fastdl.cuda.kernels`. They take any array exposing
``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, PyTorch CUDA tensors)
without copying and return Numba device arrays. Converting a foreign array costs time on
every call, so hot loops should convert once (:func:`as_device`) and pass the results.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported)
the same code runs on the CPU, slowly: that is how the tests run without a GPU.
"""

from __future__ import annotations

from typing import Any

#: what every "numba-cuda is missing" error says to do (fastdl/_device.py, fastdl bench --device cuda)
INSTALL_HINT = "install the GPU extra: pip install 'fastdl[cuda]' (numba-cuda)"


def _numba_cuda() -> Any:
    """numba.cuda, or None when it cannot be imported (require() says why)."""
    try:
        from numba import cuda
    except ImportError:
        return None
    return cuda


def is_available() -> bool:
    """True when the GPU kernels can run: numba-cuda is installed and a GPU (or the
    simulator, NUMBA_ENABLE_CUDASIM=1) is usable."""
    cuda = _numba_cuda()
    if cuda is None:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver install reports through exceptions
        return False


def is_simulator() -> bool:
    """True when Numba runs CUDA kernels on its CPU simulator."""
    cuda = _numba_cuda()
    if cuda is None:
        return False
    try:
        from numba.cuda.core import config
    except ImportError:  # older numba-cuda
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def require() -> Any:
    """Returns numba.cuda, or raises ImportError/RuntimeError saying what to install."""
    cuda = _numba_cuda()
    if cuda is None:
        import importlib.util

        if importlib.util.find_spec("numba") is None:
            raise ImportError(f"fastdl's GPU kernels need numba-cuda, which is not installed: {INSTALL_HINT}")
        try:  # installed but broken, e.g. a numpy too new for it: show numba's own error
            from numba import cuda  # type: ignore[no-redef]  # noqa: F401
        except ImportError as e:
            raise ImportError(f"fastdl's GPU kernels need numba.cuda, which failed to import ({e}): "
                              f"{INSTALL_HINT}, which brings versions that work together") from e
    if not is_available():
        raise RuntimeError(
            "fastdl's GPU kernels found no usable CUDA GPU (numba.cuda.is_available() is False): "
            f"check the NVIDIA driver, {INSTALL_HINT}, or set NUMBA_ENABLE_CUDASIM=1 before "
            "importing numba to run them on the CPU simulator")
    return cuda


_LAZY = {"kernels": ("fastdl.cuda.kernels", None), "as_device": ("fastdl.cuda.arrays", "as_device"),
         "FusedMLP": ("fastdl.cuda.fused_mlp", "FusedMLP"),
         "FusedMLPStep": ("fastdl.cuda.fused_step", "FusedMLPStep")}


def __getattr__(name: str) -> Any:
    # `fastdl.cuda.kernels` and friends load numba.cuda only when first used.
    if name not in _LAZY:
        raise AttributeError(f"module 'fastdl.cuda' has no attribute {name!r}")
    import importlib

    require()
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = ["is_available", "is_simulator", "require", "kernels", "as_device", "FusedMLP", "FusedMLPStep",
           "INSTALL_HINT"]
