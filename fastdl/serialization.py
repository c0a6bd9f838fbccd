"""model.save / fastdl.load: one file with the architecture, weights, optimizer state and
training counters.

The file is a numpy .npz archive (a zip) holding ``fastdl.json`` (format tag, version,
architecture and compile configuration) and arrays: the flat parameters, the BatchNorm
running statistics and the optimizer's state buffers. No pickle is written or read.

Saving is atomic: the archive is written to a temporary file in the target's folder,
flushed and fsync'ed, then renamed over the target (``os.replace``), and the folder is
fsync'ed — a crash or error mid-save leaves the previous file untouched.
"""

import io
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save", "load", "model_state", "model_from_state", "ModelFileError", "FORMAT", "VERSION"]

FORMAT = "fastdl.Sequential"
VERSION = 1


class ModelFileError(ValueError):
    """The file is not a fastdl model (corrupt, truncated, or another format)."""


def model_state(model):
    """(meta, arrays): a model as data -- ``meta`` JSON-able (format tag, version,
    architecture, compile configuration, training counters), ``arrays`` named 1-D
    float32 host arrays (the flat parameters, the BatchNorm running statistics, the
    optimizer's state). ``save`` writes this; pickling a model carries it, and
    ``model_from_state`` rebuilds the model from it. An unbuilt model has no arrays."""
    from fastdl import _device

    arrays = {}
    if model.built:
        arrays["params"] = _device.to_host(model.flat_params)
        for k, (mean, var) in enumerate(model.batchnorm_statistics()):
            arrays[f"bn{k}_running_mean"] = _device.to_host(mean)
            arrays[f"bn{k}_running_var"] = _device.to_host(var)
    state = model.training_state()
    meta = {"format": FORMAT, "version": VERSION, "model": model.get_config(), "step": state["step"],
            "shuffle_rng": state["shuffle_rng"], "dropout_seed": state["dropout_seed"], "compile": None}
    if model.optimizer is not None:
        sd = model.optimizer.state_dict()
        opt_arrays = {k: v for k, v in sd["state"].items() if k != "step"}
        for k, v in opt_arrays.items():
            arrays[f"optimizer/{k}"] = v
        meta["compile"] = {"optimizer": model.optimizer.get_config(), "optimizer_step": sd["state"]["step"],
                           "optimizer_state": sorted(opt_arrays), "loss": model.loss.get_config(),
                           "metrics": list(model.metrics), "weighted_metrics": list(model.weighted_metrics),
                           "optimizer_step_plan": model._optimizer_step}
    return meta, arrays


def model_from_state(meta, arrays, model_class, device="cpu", where="model", optimizer=None, loss=None):
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
                      weighted_metrics=comp.get("weighted_metrics"), optimizer_step=plan)
        state = {"step": comp["optimizer_step"]}
        state.update({k: arrays[f"optimizer/{k}"] for k in comp["optimizer_state"]})
        hyper = {k: v for k, v in comp["optimizer"].items() if k != "name"}
        model.optimizer.load_state_dict({"state": state, "param_groups": [hyper]})
    return model


def save(model, path):
    path = os.fspath(path)
    model._require_built("save")
    meta, arrays = model_state(model)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            payload = {"fastdl.json": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
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


def _read(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, not a fastdl model file") from None
    if not data.startswith(b"PK"):
        raise ModelFileError(f"{path}: not a fastdl model file (not a zip archive)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "fastdl.json" not in z.files:
                raise ModelFileError(f"{path}: not a fastdl model file (a zip/npz archive without fastdl.json)")
            raw = z["fastdl.json"]
            if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
                raise ModelFileError(f"{path}: not a fastdl model file (fastdl.json is not fastdl's metadata)")
            meta = json.loads(raw.tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "fastdl.json"}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: corrupt or truncated fastdl model file ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastdl model file (format tag {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: fastdl model format version {meta.get('version')!r}; this fastdl reads "
                             f"version {VERSION}")
    for k, a in arrays.items():  # save writes only 1-D float32 arrays
        if a.dtype != np.float32 or a.ndim != 1:
            raise ModelFileError(f"{path}: array {k!r} is {a.dtype} with shape {a.shape}; a fastdl model file "
                                 "holds 1-D float32 arrays only")
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
        sizes = {k: c.get(k) for k in ("in_features", "out_features", "num_features", "pieces") if c.get(k) is not None}
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


def load(path, model_class, device="cpu"):
    """Rebuilds a model saved with ``model.save(path)`` as a `model_class` (Sequential:
    ``fastdl.load``) on `device` ("cpu" or "cuda"), compiled with its optimizer (state
    included) when it was compiled."""
    path = os.fspath(path)
    meta, arrays = _read(path)
    try:
        _check_sizes(path, meta["model"]["layers"], arrays["params"].size)
        model = model_from_state(meta, arrays, model_class, device, where=path)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise ModelFileError(f"{path}: inconsistent fastdl model file ({type(e).__name__}: {e})") from e
    return model
