"""model.save / fastdl.load: one file with the architecture, weights, optimizer state and
training counters.

The file is a numpy .npz archive (a zip) holding ``fastdl.json`` (format tag, version,
architecture and compile configuration) and arrays: the flat parameters, the BatchNorm
running statistics and the optimizer's state buffers. No pickle is written or read.

Saving is atomic: the archive is written to a temporary file in the target's folder,
flushed and fsync'ed, then renamed over the target (``os.replace``), and the folder is
fsync'ed — a crash or error mid-save leaves the previous file untouched.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    from fastdl._typing import FloatArray, PathLike
    from fastdl.losses import Loss
    from fastdl.network import Network
    from fastdl.optim import Optimizer

#: the model class a file is loaded as (fastdl.Sequential)
ModelT = TypeVar("ModelT", bound="Network")

__all__ = ["save", "load", "model_state", "model_from_state", "ModelFileError", "FORMAT", "VERSION"]

FORMAT = "fastdl.Sequential"
VERSION = 1


class ModelFileError(ValueError):
    """The file is not a fastdl model (corrupt, truncated, or another format)."""


def model_state(model: Network) -> tuple[dict[str, Any], dict[str, FloatArray]]:
    """(meta, arrays): a model as data -- ``meta`` JSON-able (format tag, version,
    architecture, compile configuration, training counters), ``arrays`` named 1-D
    float32 host arrays (the flat parameters, the BatchNorm running statistics, the
    optimizer's state). ``save`` writes this; pickling a model carries it, and
    ``model_from_state`` rebuilds the model from it. An unbuilt model has no arrays."""
    from fastdl import _device

    arrays: dict[str, FloatArray] = {}
    if model.built:
        arrays["params"] = _device.to_host(model.flat_params)
        for k, (mean, var) in enumerate(model.batchnorm_statistics()):
            arrays[f"bn{k}_running_mean"] = _device.to_host(mean)
            arrays[f"bn{k}_running_var"] = _device.to_host(var)
    state = model.training_state()
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": model.get_config(),
                            "step": state["step"], "shuffle_rng": state["shuffle_rng"],
                            "dropout_seed": state["dropout_seed"], "compile": None}
    if model.optimizer is not None:
        sd = model.optimizer.state_dict()
        opt_arrays = {k: v for k, v in sd["state"].items() if k != "step"}
        for k, v in opt_arrays.items():
            arrays[f"optimizer/{k}"] = v
        meta["compile"] = {"optimizer": model.optimizer.get_config(), "optimizer_step": sd["state"]["step"],
                           "optimizer_state": sorted(opt_arrays),
                           "loss": model.loss.get_config(),  # type: ignore[union-attr]  # compiled
                           "metrics": list(model.metrics), "weighted_metrics": list(model.weighted_metrics),
                           "optimizer_step_plan": model._optimizer_step,
                           "precision": getattr(model, "precision", "fp32")}
    return meta, arrays


def model_from_state(meta: dict[str, Any], arrays: dict[str, FloatArray], model_class: type[ModelT],
                     device: str = "cpu", where: str = "model", optimizer: Optimizer | None = None,
                     loss: Loss | None = None) -> ModelT:
    """The `model_class` that ``model_state`` described, on `device`: architecture,
    weights, training counters and (when it was compiled) the optimizer with its state.
    optimizer / loss: objects to compile with instead of the configurations in meta
    (their state still comes from meta and arrays). A parameter array that does not fit
    the architecture raises ModelFileError naming `where`."""
    from fastdl import layers as L

    cfg = meta["model"]
    model = model_class([L.from_config(c) for c in cfg["layers"]], device=device, seed=cfg["seed"],
                        input_dim=cfg["input_dim"])
    if model.built:
        if "params" not in arrays or arrays["params"].shape != (model.num_params,):
            shape = arrays["params"].shape if "params" in arrays else "no"
            raise ModelFileError(f"{where}: {shape} parameters do not fit the saved architecture "
                                 f"({model.num_params})")
        weights = [arrays["params"]]
        for k in range(len(model.batchnorm_statistics())):
            weights += [arrays[f"bn{k}_running_mean"], arrays[f"bn{k}_running_var"]]
        model.set_flat_weights(weights)
    training = dict(model.training_state(), step=meta["step"], shuffle_rng=meta["shuffle_rng"])
    dropout_seed = meta.get("dropout_seed")  # files from before it was saved derive it from the seed
    if dropout_seed is not None:
        if isinstance(dropout_seed, bool) or not isinstance(dropout_seed, int) or not 0 <= dropout_seed < 2 ** 64:
            raise ValueError(f"dropout_seed: expected an integer in [0, 2**64), got {dropout_seed!r}")
        training["dropout_seed"] = dropout_seed
    model.load_training_state(training)
    comp = meta.get("compile")
    if comp:
        plan = comp.get("optimizer_step_plan", "auto")
        if model.device != "cpu" and plan in ("in_backward", "in_stack"):  # CPU-only plans; all give the same steps
            plan = "auto"
        model.compile(optimizer=comp["optimizer"] if optimizer is None else optimizer,
                      loss=comp["loss"] if loss is None else loss, metrics=comp["metrics"],
                      weighted_metrics=comp.get("weighted_metrics"), optimizer_step=plan,
                      precision=comp.get("precision", "fp32") if model.device == "cpu" else "fp32")
        state = {"step": comp["optimizer_step"]}
        state.update({k: arrays[f"optimizer/{k}"] for k in comp["optimizer_state"]})
        hyper = {k: v for k, v in comp["optimizer"].items() if k != "name"}
        model.optimizer.load_state_dict({"state": state, "param_groups": [hyper]})  # type: ignore[union-attr]
    return model


def _umask() -> int:
    """The process's umask, read without changing it where the system says it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic with other threads)
    os.umask(mask)
    return mask


def _file_mode(path: str) -> int:
    """The mode the saved file gets: an existing file's, else what open() would give a
    new file (0o666 less the umask). The temporary file starts at mkstemp's 0o600."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def save(model: Network, path: PathLike) -> None:
    """Writes `model` to `path` (see ``Sequential.save``), atomically."""
    path = os.fspath(path)
    model._require_built("save")
    meta, arrays = model_state(model)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"cannot save the model: the folder {folder} does not exist",
                                path) from None
    except OSError as e:  # the temporary file's name would only confuse: name the target
        raise type(e)(e.errno, f"cannot save the model into {folder}: {e.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            payload: dict[str, Any] = {"fastdl.json": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
            payload.update(arrays)
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems/platforms cannot fsync a directory
        pass


# -- reading: every size is checked against the metadata before anything is inflated --
MAX_META_BYTES = 16 * 1024 * 1024  # the JSON metadata (a large network's is ~100 KB)
MAX_NPY_HEADER = 4096  # np.save writes ~128 bytes for a 1-D array
# DEFLATE cannot compress by more than about 1032:1; an entry declaring more is a lie.
MAX_DEFLATE_RATIO = 1032
_NPY_MAGIC = b"\x93NUMPY"
# Errors the zip, zlib, npy and JSON readers raise for damaged input (flipped bytes,
# foreign compression methods, the encryption flag, nesting past the recursion limit).
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, RuntimeError,
           RecursionError, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError, SyntaxError,
           OverflowError, TypeError, struct.error)


def _entry_name(info):
    return info.filename[:-4] if info.filename.endswith(".npy") else info.filename


def _check_entry(path, info, limit):
    """Refuses an entry by what the archive declares, before reading it: encryption, a
    compression method numpy does not write, more than `limit` bytes, or more than its
    compressed bytes can hold."""
    name = _entry_name(info)
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{path}: entry {name!r} is encrypted; fastdl model files are not")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{path}: entry {name!r} uses zip compression method {info.compress_type}; "
                             "fastdl model files are stored or deflated")
    if info.file_size > limit:
        raise ModelFileError(f"{path}: entry {name!r} declares {info.file_size} bytes; the metadata allows at "
                             f"most {limit}")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
    if info.file_size > ratio * info.compress_size + MAX_NPY_HEADER:
        raise ModelFileError(f"{path}: entry {name!r} declares {info.file_size} bytes from {info.compress_size} "
                             "compressed bytes, more than the compression can produce")


def _read_npy(path, zf, info, dtype, max_count):
    """The 1-D array of `dtype` in entry `info`, its npy header checked (dtype, rank,
    at most max_count elements, sizes agreeing with the zip's) before the data is read."""
    name = _entry_name(info)

    def bad(what):
        return ModelFileError(f"{path}: entry {name!r}: {what}")

    with zf.open(info) as f:
        magic = f.read(8)
        if len(magic) != 8 or magic[:6] != _NPY_MAGIC or magic[6] not in (1, 2, 3):
            raise bad("not an npy array")
        size_bytes = 2 if magic[6] == 1 else 4
        header_len = int.from_bytes(f.read(size_bytes), "little")
        if header_len > MAX_NPY_HEADER:
            raise bad(f"an npy header of {header_len} bytes (numpy writes ~128)")
        header = f.read(header_len)
        try:
            d = ast.literal_eval(header.decode("utf8" if magic[6] == 3 else "latin1"))
            got = np.dtype(d["descr"])
            shape, fortran = d["shape"], d["fortran_order"]
        except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            raise bad("an unreadable npy header") from None
        if got != dtype or not isinstance(shape, tuple) or len(shape) != 1 or fortran is not False:
            raise bad(f"{got} with shape {shape}; a fastdl model file holds 1-D {dtype} arrays only")
        count = shape[0]
        if not isinstance(count, int) or count < 0 or count > max_count:
            raise bad(f"declares {count} elements; the metadata allows at most {max_count}")
        if 8 + size_bytes + header_len + count * dtype.itemsize != info.file_size:
            raise bad(f"{count} elements of {dtype} do not fill its {info.file_size} bytes")
        a = np.empty(count, dtype)
        # an ndarray is a buffer (numpy's stubs say so from Python 3.12 on only)
        view, done = memoryview(cast(Any, a)).cast("B"), 0
        while done < a.nbytes:
            n = f.readinto(view[done:])
            if not n:
                raise bad("truncated")
            done += n
        if f.read(1):  # reading to the end also checks the CRC
            raise bad("longer than declared")
    return a


def _params_bound(path, meta):
    """An upper bound on the parameters the saved architecture has, from the metadata
    alone: every entry of the file is at most this long (BatchNorm statistics, optimizer
    state and the parameters themselves)."""
    model = meta.get("model")
    layer_configs = model.get("layers") if isinstance(model, dict) else None
    if not isinstance(layer_configs, list):
        raise ModelFileError(f"{path}: inconsistent fastdl model file (no list of layers)")
    dim = model.get("input_dim")
    total = 0
    for i, c in enumerate(layer_configs):
        if not isinstance(c, dict):
            raise ModelFileError(f"{path}: inconsistent fastdl model file (layers[{i}] is not a layer config)")
        cls = c.get("class")
        keys = {"Dense": ("in_features", "out_features"), "Maxout": ("in_features", "out_features", "pieces"),
                "BatchNorm": ("num_features",)}.get(cls, ())  # type: ignore[arg-type]  # any JSON value
        sizes = {}
        for k in keys:
            v = c.get(k, 1 if k == "pieces" else None)
            if v is None and k in ("in_features", "num_features"):
                v = dim
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelFileError(f"{path}: inconsistent fastdl model file (layers[{i}].{k} = {v!r})")
            sizes[k] = v
        if cls in ("Dense", "Maxout"):
            cols = sizes["out_features"] * sizes.get("pieces", 1)
            total += sizes["in_features"] * cols + 2 * cols  # w, b and prelu's slopes
            dim = sizes["out_features"]
        elif cls == "BatchNorm":
            total += 2 * sizes["num_features"]
        elif cls == "Activation" and isinstance(dim, int):
            total += dim  # a PReLU layer's slopes
    return total


def _read(path):
    """(metadata, arrays) of a model file, checked: the metadata first (bounded), then
    each entry's declared size against what the metadata says the model needs, before
    anything is inflated."""
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, not a fastdl model file") from None
    with f:
        if f.read(2) != b"PK":
            raise ModelFileError(f"{path}: not a fastdl model file (not a zip archive)")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                return _read_archive(path, zf)
        except ModelFileError:
            raise
        except _DAMAGE as e:
            raise ModelFileError(f"{path}: corrupt or truncated fastdl model file ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None


def _read_archive(path, zf):
    infos = {}
    for info in zf.infolist():
        name = _entry_name(info)
        if name in infos:
            raise ModelFileError(f"{path}: entry {name!r} appears twice")
        infos[name] = info
    if "fastdl.json" not in infos:
        raise ModelFileError(f"{path}: not a fastdl model file (a zip/npz archive without fastdl.json)")
    _check_entry(path, infos["fastdl.json"], MAX_META_BYTES)
    try:
        raw = _read_npy(path, zf, infos["fastdl.json"], np.dtype(np.uint8), MAX_META_BYTES)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: not a fastdl model file (fastdl.json is not fastdl's metadata: {e})") from None
    try:
        meta = json.loads(raw.tobytes().decode())
    except RecursionError:
        raise ModelFileError(f"{path}: corrupt fastdl model file (the metadata is nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastdl model file (format tag "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: fastdl model format version {meta.get('version')!r}; this fastdl reads "
                             f"version {VERSION}")
    bound = _params_bound(path, meta)
    expected = {"params"} | {f"bn{k}_running_{s}" for k, c in enumerate(
        [c for c in meta["model"]["layers"] if c.get("class") == "BatchNorm"]) for s in ("mean", "var")}
    comp = meta.get("compile")
    if comp:
        names = comp.get("optimizer_state") if isinstance(comp, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelFileError(f"{path}: inconsistent fastdl model file (compile.optimizer_state is not a list "
                                 "of names)")
        expected |= {f"optimizer/{n}" for n in names}
    present = set(infos) - {"fastdl.json"}
    if present != expected:
        extra, missing = sorted(present - expected), sorted(expected - present)
        raise ModelFileError(f"{path}: inconsistent fastdl model file (entries {extra} not described by the "
                             f"metadata, {missing} missing)")
    arrays = {}
    for name in sorted(expected):
        _check_entry(path, infos[name], MAX_NPY_HEADER + 4 * bound)
        arrays[name] = _read_npy(path, zf, infos[name], np.dtype("<f4"), bound)
    return meta, arrays


def _check_sizes(path, layer_configs, n_params):
    """Refuses layer sizes the parameter array cannot hold, before anything is allocated:
    a tampered width (10**12 units) must be an error, not a huge allocation."""
    if not isinstance(layer_configs, list):
        raise ModelFileError(f"{path}: inconsistent fastdl model file (layers is not a list)")
    weights = 0
    for i, c in enumerate(layer_configs):
        if not isinstance(c, dict):
            raise ModelFileError(f"{path}: inconsistent fastdl model file (layers[{i}] is not a layer config)")
        sizes: dict[str, Any] = {k: c.get(k) for k in ("in_features", "out_features", "num_features", "pieces")
                                 if c.get(k) is not None}
        for k, v in sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= max(n_params, 1):
                raise ModelFileError(f"{path}: inconsistent fastdl model file (layers[{i}].{k} = {v!r} with "
                                     f"{n_params} parameters saved)")
        cls = c.get("class")
        if cls == "Dense":
            weights += sizes.get("in_features", 0) * sizes.get("out_features", 0)
        elif cls == "Maxout":
            weights += sizes.get("in_features", 0) * sizes.get("out_features", 0) * sizes.get("pieces", 1)
        elif cls == "BatchNorm":
            weights += 2 * sizes.get("num_features", 0)
    if weights > n_params:
        raise ModelFileError(f"{path}: inconsistent fastdl model file (the layers need at least {weights} "
                             f"parameters, {n_params} saved)")


# The model's step count numbers its dropout masks, a 32-bit counter in the kernels.
MAX_MODEL_STEP = 2 ** 32 - 1


def _counter(path, meta, key, largest):
    """A training counter of the file: an int in [0, largest] (not a bool, not a float),
    else a ModelFileError naming it; checked at load, not left to fail in a kernel."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ModelFileError(f"{path}: inconsistent fastdl model file ({key} = {value!r}; expected a count in "
                             f"[0, {largest}])")
    return value


def load(path: PathLike, model_class: type[ModelT], device: str = "cpu") -> ModelT:
    """Rebuilds a model saved with ``model.save(path)`` as a `model_class` (Sequential:
    ``fastdl.load``) on `device` ("cpu" or "cuda"), compiled with its optimizer (state
    included) when it was compiled."""
    from fastdl import optim

    path = os.fspath(path)
    meta, arrays = _read(path)
    _counter(path, meta, "step", MAX_MODEL_STEP)
    comp = meta.get("compile")
    if comp and not isinstance(comp, dict):
        raise ModelFileError(f"{path}: inconsistent fastdl model file (compile is not a dict)")
    if comp:
        _counter(path, comp, "optimizer_step", optim.MAX_STEP)
    try:
        _check_sizes(path, meta["model"]["layers"], arrays["params"].size)
        model = model_from_state(meta, arrays, model_class, device, where=path)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise ModelFileError(f"{path}: inconsistent fastdl model file ({type(e).__name__}: {e})") from e
    return model
