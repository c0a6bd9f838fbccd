"""The training loop: the one epoch loop every ``fit`` runs, and the loops of ``evaluate``
and ``predict``, with Keras 3's arguments, callback hooks and logs.

The model supplies the steps (``step_if_finite``, ``test_batch``, ``predict_batch``)
and the state; the data comes from fastdl.training.data; a Strategy
(fastdl.training.strategy) spreads the loop over processes; the callbacks
(fastdl.callbacks) are called where Keras calls them. Differences from Keras are
deliberate and listed in docs/network.md.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from fastdl import _device, _signals, callbacks as callbacks_mod
from fastdl.inputs import as_sample_weight, class_weight_to_sample_weight
from fastdl.metrics import correct_counts
from fastdl.training.data import ArrayData, IterableData, is_batch_iterable, split_validation
from fastdl.training.strategy import Strategy

if TYPE_CHECKING:
    import numpy.typing as npt

    from fastdl._typing import AnyArray, Arrays, FloatArray, Inputs, Transform
    from fastdl.network import Network

__all__ = ["fit", "evaluate", "predict", "NonFiniteLossError", "NONFINITE_POLICIES"]

NONFINITE_POLICIES = ("raise", "skip")
#: evaluate's and predict's default batch size: larger than fit's, for fewer calls
INFERENCE_BATCH = 256


class NonFiniteLossError(FloatingPointError):
    """fit met a NaN or infinite training loss. epoch and step are 0-based; the message
    gives them 1-based, as the progress display does, with the step's samples (first to
    last, in this epoch's order). history: the epochs completed. loss_text says what the
    loss was when it was not this process's own (another MPI rank's)."""

    def __init__(self, epoch: int, step: int, first: int | None, last: int | None, loss: float,
                 history: callbacks_mod.History, loss_text: str | None = None) -> None:
        where = f"step {step + 1}" + (f" (samples {first} to {last} of this epoch's order)" if first is not None
                                      else "")
        super().__init__(
            f"fit: the training loss is {loss if loss_text is None else loss_text} at epoch {epoch + 1}, {where}; "
            "this step was not applied, so the model keeps the parameters of the last finite step. Lower the "
            "learning rate, check the data for NaN/Inf, or pass on_nonfinite_loss='skip' to drop such steps.")
        self.epoch, self.step, self.loss, self.history = epoch, step, loss, history


# -- argument checks ----------------------------------------------------------------------------
def _count(name: str, value: Any, minimum: int, none_ok: bool = False) -> Any:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"{name}: expected {kind}{' or None' if none_ok else ''}, got {value!r}")
    return int(value)


def _validation_freq(freq: Any) -> Callable[[int], bool]:
    if isinstance(freq, (list, tuple, set)):
        epochs = set()
        for e in freq:
            epochs.add(_count("validation_freq", e, 1))
        return lambda epoch: epoch + 1 in epochs
    freq = _count("validation_freq", freq, 1)
    return lambda epoch: (epoch + 1) % freq == 0


def _sample_weights(model: Network, y: AnyArray, sample_weight: npt.ArrayLike | None,
                    class_weight: Mapping[int, float] | None, n: int) -> FloatArray | None:
    if class_weight is not None and sample_weight is not None:
        raise ValueError("class_weight: cannot be combined with sample_weight (Keras's rule): fold the class "
                         "weights into the sample weights")
    if class_weight is not None:
        return class_weight_to_sample_weight(y, class_weight, model.output_dim)  # type: ignore[arg-type]  # built
    if sample_weight is not None:
        return as_sample_weight(sample_weight, n)
    return None


def _array_data(model: Network, x: Any, y: Any, sample_weight: Any, argname: str) -> Arrays:
    """(x, y, w) converted once, the model built from x's width if it was not."""
    if y is None:
        raise ValueError(f"y: fit/evaluate on arrays needs targets (or give {argname} as an iterable of "
                         "(x, y) batches)")
    xa = model.prepare_inputs(x, argname)
    ya = model.prepare_targets(y, "y" if argname == "x" else f"{argname}[1]")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"y: expected {xa.shape[0]} targets (one per sample of {argname}), got {ya.shape[0]}")
    w = None if sample_weight is None else as_sample_weight(sample_weight, xa.shape[0])
    return xa, ya, w


def _validation_set(model: Network, validation_data: Any, batch_size: int | None,
                    steps: int | None) -> Arrays | IterableData:
    """fit's validation_data as (x, y, w) arrays or an IterableData."""
    if is_batch_iterable(validation_data):
        return IterableData(validation_data, model, steps, argname="validation_data")
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data: expected a tuple (x_val, y_val) or (x_val, y_val, sample_weight_val), "
                         "or an iterable of such batches")
    xv = model.prepare_inputs(validation_data[0], "validation_data[0]")
    yv = model.prepare_targets(validation_data[1], "validation_data[1]")
    if xv.shape[0] != yv.shape[0]:
        raise ValueError("validation_data: x_val and y_val have different lengths")
    wv = None
    if len(validation_data) == 3 and validation_data[2] is not None:
        wv = as_sample_weight(validation_data[2], xv.shape[0], "validation_data[2]")
    return xv, yv, wv


# -- epoch sums ----------------------------------------------------------------------------------
class _Totals:
    """An epoch's (or an evaluation's) running sums: the loss weighted by batch size,
    the correct predictions, the weighted ones and the weight."""

    def __init__(self, model: Network) -> None:
        self.loss_fn = model.loss
        self.metrics = bool(model.metrics)
        self.weighted = bool(model.weighted_metrics)
        self.weighted_name = "weighted_accuracy" if self.metrics else "accuracy"
        self.loss = self.correct = self.wcorrect = self.weight = 0.0
        self.seen = 0

    def add(self, loss: float, out: Any, y: Any, w: FloatArray | None) -> None:
        m = y.shape[0]
        self.seen += m
        self.loss += loss * m
        if self.metrics or self.weighted:
            correct, wcorrect = correct_counts(self.loss_fn, _device.to_host(out), y,  # type: ignore[arg-type]
                                               w if self.weighted else None)
            self.correct += correct
            if self.weighted:
                if w is None:
                    self.wcorrect += correct
                    self.weight += m
                else:
                    self.wcorrect += wcorrect  # type: ignore[operator]  # given weights, a weighted count
                    self.weight += float(w.sum(dtype=np.float64))

    def values(self) -> list[float]:
        return [self.loss, self.correct, self.wcorrect, self.weight, self.seen]

    def logs(self, totals: Any = None) -> dict[str, float]:
        loss, correct, wcorrect, weight, seen = self.values() if totals is None else (float(t) for t in totals)
        logs = {"loss": loss / seen if seen else float("nan")}
        if self.metrics:
            logs["accuracy"] = correct / seen if seen else float("nan")
        if self.weighted:
            logs[self.weighted_name] = wcorrect / weight if weight else float("nan")
        return logs


# -- fit ----------------------------------------------------------------------------------------
def fit(model: Network, x: Inputs | None = None, y: npt.ArrayLike | None = None, batch_size: int | None = None,
        epochs: int = 1, verbose: int | str = "auto",
        callbacks: Sequence[callbacks_mod.Callback] | callbacks_mod.Callback | None = None,
        validation_split: float = 0.0, validation_data: Sequence[Any] | Inputs | None = None, shuffle: bool = True,
        class_weight: Mapping[int, float] | None = None, sample_weight: npt.ArrayLike | None = None,
        initial_epoch: int = 0, steps_per_epoch: int | None = None, validation_steps: int | None = None,
        validation_batch_size: int | None = None, validation_freq: int | Sequence[int] = 1,
        augment: Sequence[Transform] | None = None, on_nonfinite_loss: str = "raise",
        strategy: Strategy | None = None) -> callbacks_mod.History:
    """Trains `model` (see Sequential.fit for the arguments); returns the History."""
    strategy = strategy or Strategy()
    if on_nonfinite_loss not in NONFINITE_POLICIES:
        raise ValueError(f"on_nonfinite_loss: expected 'raise' or 'skip', got {on_nonfinite_loss!r}")
    model._require_compiled("fit", build=False)
    epochs = _count("epochs", epochs, 0)
    initial_epoch = _count("initial_epoch", initial_epoch, 0)
    batch_size = _count("batch_size", batch_size, 1, none_ok=True)
    steps_per_epoch = _count("steps_per_epoch", steps_per_epoch, 1, none_ok=True)
    validation_steps = _count("validation_steps", validation_steps, 1, none_ok=True)
    validation_batch_size = _count("validation_batch_size", validation_batch_size, 1, none_ok=True)
    should_validate = _validation_freq(validation_freq)
    augment = list(augment or [])
    data: ArrayData | IterableData
    if is_batch_iterable(x):
        if y is not None or sample_weight is not None:
            raise ValueError("y: give the targets (and sample weights) inside x's batches when x is an iterable")
        if validation_split:
            raise ValueError("validation_split: only for arrays; give validation_data with an iterable x")
        if strategy.needs_gradients:
            raise ValueError("x: data-parallel training reads arrays (every rank the same), not an iterable")
        data = IterableData(x, model, steps_per_epoch, class_weight, augment=augment)  # type: ignore[arg-type]
        val = None
        if validation_data is not None:
            val = _validation_set(model, validation_data, batch_size, validation_steps)
        samples = None
    else:
        xa, ya, _ = _array_data(model, x, y, None, "x")
        w = _sample_weights(model, ya, sample_weight, class_weight, xa.shape[0])
        (xa, ya, w), split = split_validation(xa, ya, w, validation_split)
        val = _validation_set(model, validation_data, batch_size, validation_steps) if validation_data is not None \
            else split
        merge_single = bool(model.batchnorm_statistics())  # built from x by now
        data = ArrayData(xa, ya, w, batch_size or 32, shuffle, model.shuffle_rng, merge_single, augment)
        if steps_per_epoch is not None and steps_per_epoch < data.steps:
            data.bounds = data.bounds[:steps_per_epoch]
            data.steps = steps_per_epoch
        samples = xa.shape[0]
    try:
        strategy.begin_fit(model, data, val, (epochs, batch_size, initial_epoch, bool(shuffle)))
    except BaseException as e:
        strategy.failed(e)
        raise
    history = callbacks_mod.History()
    # a single Callback goes through as it is, for CallbackList to name the mistake
    user = strategy.callbacks(list(callbacks or []) if not isinstance(callbacks, callbacks_mod.Callback)
                              else callbacks)  # type: ignore[arg-type]
    cbs = callbacks_mod.CallbackList(user, model, verbose if strategy.is_writer else 0, epochs, data.steps,
                                     history, samples=samples)
    model.stop_training = False
    model.history = history
    try:
        with _signals.step() as interrupts:  # Ctrl-C is raised between steps (fastdl/_signals.py)
            _epochs(model, data, val, cbs, strategy, epochs, initial_epoch, should_validate,
                    validation_batch_size or batch_size or 32, on_nonfinite_loss, history, interrupts)
    except BaseException as e:
        strategy.failed(e)
        raise
    finally:
        strategy.end_fit(model)
    return history


def _epochs(model: Network, data: ArrayData | IterableData, val: Any, cbs: callbacks_mod.CallbackList,
            strategy: Strategy, epochs: int, initial_epoch: int, should_validate: Callable[[int], bool],
            val_batch: int, policy: str, history: callbacks_mod.History, interrupts: Any) -> None:
    fill_gradients = cbs.reads_gradients() or strategy.needs_gradients
    totals = _Totals(model)
    batch_begin = cbs.calls("on_train_batch_begin")
    logs: dict[str, float] = {}
    cbs.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        cbs.on_epoch_begin(epoch)
        t0 = time.perf_counter()
        totals.__init__(model)  # type: ignore[misc]  # the epoch's sums start again
        skipped = 0
        steps = 0
        for batch in data.batches(strategy.shard):
            b = batch.index
            if batch_begin:
                cbs.on_train_batch_begin(b, {})
            loss, applied = strategy.train_batch(model, batch, fill_gradients)
            interrupts.check()
            steps += 1
            if not applied:
                bad = dict(totals.logs(), loss=loss if not math.isfinite(loss) else float("nan"))
                cbs.on_train_batch_end(b, bad)
                if policy == "skip":
                    skipped += 1
                    continue
                if model.stop_training:  # TerminateOnNaN: stop here, quietly
                    break
                cbs.on_train_end(logs)
                raise NonFiniteLossError(epoch, b, batch.first, batch.last, loss, history,
                                         "not finite on another rank" if math.isfinite(loss) else None)
            if batch.x is not None:
                totals.add(loss, model.last_output, batch.y, batch.w)
            cbs.on_train_batch_end(b, totals.logs())
            if model.stop_training and strategy.stops_mid_epoch:
                break
        if getattr(data, "ran_out", False) and steps == 0:
            data.warn_ran_out()  # type: ignore[union-attr]  # an IterableData
            break
        logs = totals.logs(strategy.sum_scalars(totals.values()))
        if policy == "skip":
            logs["skipped_steps"] = skipped
        strategy.end_epoch(model, epoch)
        if val is not None and should_validate(epoch):
            vlogs = _test_loop(model, val, val_batch, cbs, strategy)
            logs.update({f"val_{k}": v for k, v in vlogs.items()})
        logs["lr"] = model.optimizer.lr  # type: ignore[union-attr]  # compiled
        logs["time"] = time.perf_counter() - t0
        cbs.on_epoch_end(epoch, logs)
        model.stop_training = strategy.agree_stop(model.stop_training)
        if getattr(data, "ran_out", False):
            data.warn_ran_out()  # type: ignore[union-attr]  # an IterableData
            break
        if model.stop_training:
            break
    cbs.on_train_end(logs)


# -- evaluate -----------------------------------------------------------------------------------
def _test_batches(val: Arrays | IterableData, batch_size: int,
                  strategy: Strategy) -> Iterator[tuple[Any, Any, Any]]:
    """Batches (x, y, w) of an evaluation set: an IterableData's, or slices of this
    process's shard of arrays."""
    if isinstance(val, IterableData):
        for batch in val.batches():
            yield batch.x, batch.y, batch.w
        return
    x, y, w = val
    lo, hi = strategy.eval_shard(x.shape[0])
    for s in range(lo, hi, batch_size):
        e = min(s + batch_size, hi)
        yield x[s:e], y[s:e], None if w is None else w[s:e]


def _test_loop(model: Network, val: Arrays | IterableData, batch_size: int, cbs: callbacks_mod.CallbackList,
               strategy: Strategy) -> dict[str, float]:
    totals = _Totals(model)
    begin, end = cbs.calls("on_test_batch_begin"), cbs.calls("on_test_batch_end")
    cbs.on_test_begin()
    for b, (xb, yb, wb) in enumerate(_test_batches(val, batch_size, strategy)):
        if begin:
            cbs.on_test_batch_begin(b, {})
        loss, out = model.test_batch(xb, yb, wb)
        totals.add(loss, out, yb, wb)
        if end:
            cbs.on_test_batch_end(b, totals.logs())
    logs = totals.logs(strategy.sum_scalars(totals.values()))
    cbs.on_test_end(logs)
    return logs


def evaluate(model: Network, x: Inputs | None = None, y: npt.ArrayLike | None = None, batch_size: int | None = None,
             verbose: int = 0, sample_weight: npt.ArrayLike | None = None, steps: int | None = None,
             callbacks: Sequence[callbacks_mod.Callback] | None = None, return_dict: bool = False,
             strategy: Strategy | None = None) -> Any:
    """Sequential.evaluate: the mean loss (and metrics) over (x, y) with inference
    behaviour. Returns the loss, [loss, metrics...] when compiled with metrics, or a
    dict with return_dict=True."""
    strategy = strategy or Strategy()
    model._require_compiled("evaluate", build=False)
    batch_size = _count("batch_size", batch_size, 1, none_ok=True) or INFERENCE_BATCH
    steps = _count("steps", steps, 1, none_ok=True)
    val: Any
    if is_batch_iterable(x):
        if y is not None or sample_weight is not None:
            raise ValueError("y: give the targets (and sample weights) inside x's batches when x is an iterable")
        val = IterableData(x, model, steps)  # type: ignore[arg-type]  # an iterable of batches
    else:
        val = _array_data(model, x, y, sample_weight, "x")
        if val[0].shape[0] == 0:
            raise ValueError("x: no samples to evaluate")
        if steps is not None:
            n = min(val[0].shape[0], steps * batch_size)
            val = tuple(None if a is None else a[:n] for a in val)
    cbs = callbacks_mod.CallbackList(strategy.callbacks(list(callbacks or [])), model, 0, None,
                                     None if isinstance(val, IterableData) else -(-val[0].shape[0] // batch_size))
    logs = _test_loop(model, val, batch_size, cbs, strategy)
    if isinstance(val, IterableData) and not math.isfinite(logs["loss"]) and getattr(val, "ran_out", False):
        raise ValueError("x: the iterable gave no batches to evaluate")
    if verbose and strategy.is_writer:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
    if return_dict:
        return logs
    if len(logs) == 1:
        return logs["loss"]
    return list(logs.values())


# -- predict ---------------------------------------------------------------------------------
def predict(model: Network, x: Inputs, batch_size: int | None = None, verbose: int = 0, steps: int | None = None,
            callbacks: Sequence[callbacks_mod.Callback] | None = None) -> FloatArray:
    """Sequential.predict: the outputs for x (with the output activation: probabilities
    for a softmax last layer, logits for a linear one), batch by batch."""
    batch_size = _count("batch_size", batch_size, 1, none_ok=True) or INFERENCE_BATCH
    steps = _count("steps", steps, 1, none_ok=True)
    source: Iterator[FloatArray]
    if is_batch_iterable(x):
        def batches() -> Iterator[FloatArray]:
            for k, item in enumerate(x):  # type: ignore[arg-type]  # an iterable of batches
                if steps is not None and k >= steps:
                    return
                xb = item[0] if isinstance(item, (tuple, list)) else item
                yield model.prepare_inputs(xb, f"x: batch {k}")
        source, total = batches(), None
    else:
        xa = model.prepare_inputs(x)  # type: ignore[arg-type]  # not an iterable of batches: arrays
        if steps is not None:
            xa = xa[:steps * batch_size]
        source = (xa[s:s + batch_size] for s in range(0, xa.shape[0], batch_size))
        total = xa
    cbs = callbacks_mod.CallbackList(list(callbacks or []), model, 0, None, None)
    begin, end = cbs.calls("on_predict_batch_begin"), cbs.calls("on_predict_batch_end")
    cbs.on_predict_begin()
    outs = []
    if total is not None:
        out = np.empty((total.shape[0], model.output_dim), np.float32)  # type: ignore[type-var]  # built
    pos = 0
    for b, xb in enumerate(source):
        if begin:
            cbs.on_predict_batch_begin(b, {})
        yb = model.predict_batch(xb)
        if total is not None:
            out[pos:pos + yb.shape[0]] = yb
            yb = out[pos:pos + yb.shape[0]]
        else:
            yb = yb.copy()
            outs.append(yb)
        pos += yb.shape[0]
        if end:
            cbs.on_predict_batch_end(b, {"outputs": yb})
    cbs.on_predict_end()
    if verbose:
        print(f"predicted {pos} samples")
    if total is None:
        if not outs:
            raise ValueError("x: the iterable gave no batches to predict")
        return np.concatenate(outs)
    return out
