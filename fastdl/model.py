"""fastdl.Sequential: the Keras-style model -- a Network (layers, flat buffers, steps)
with the training loops of fastdl.training and persistence.

    model = fastdl.Sequential([Dense(784, 256, activation="relu"), Dropout(0.5), Dense(10)], seed=0)
    model.compile(optimizer="adam", loss="softmax_cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=128, validation_split=0.1)
    model.evaluate(x_test, y_test); model.predict(x_test); model.save("model.fdl")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fastdl import _graph, callbacks, layers as L, losses as losses_mod, optim, outputs, serialization, training
from fastdl import weights_file
from fastdl.network import Network

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Self

    from fastdl._typing import FloatArray, Inputs, PathLike, Transform
    from fastdl.state import IncompatibleKeys

__all__ = ["Sequential", "load"]


class Sequential(Network):
    """A stack of layers trained with one fused optimizer step.

    layers: fastdl layers and/or activation names, e.g.
    ``[Dense(784, 256, activation="relu"), Dropout(0.5), Dense(256, 10)]`` (or none, then
    ``add``). device: "cpu" or "cuda" (the GPU kernels, ``pip install fastdl[cuda]``).
    seed: fixes the initial weights, the shuffling of mini-batches and the dropout
    masks; the same seed gives the same run. None draws one (kept in ``model.seed``).
    input_dim: needed only when no layer states its input size and you want the
    parameters before the first fit/predict (Keras builds from the first data too).
    """

    def add(self, layer: L.Layer | str) -> Self:
        """Appends a layer (Keras's Sequential.add). On a built model the parameters of
        the layers already there are kept; a compiled model's optimizer starts over."""
        layer = L.get(layer, len(self.layers))
        built = self._graph is not None
        old = dict(self.named_parameters()) if built else {}
        old_stats = self.batchnorm_statistics() if built else []
        input_dim = self.input_dim
        self.layers.append(layer)
        if not built and _graph.input_dim_of(self.layers) is None:
            return self
        # Built again from the seed, so that adding layers one by one gives the weights
        # the whole list would have; what the old layers learned is copied back.
        self._graph = None
        self._sizes.clear()
        self.build(input_dim)
        for name, view in self.named_parameters():
            if name in old and tuple(old[name].shape) == tuple(view.shape):
                self._backend.copy(view, old[name])
        for (mean, var), (old_mean, old_var) in zip(self.batchnorm_statistics(), old_stats):
            self._backend.copy(mean, old_mean)
            self._backend.copy(var, old_var)
        return self

    # -- the loops (fastdl.training) ----------------------------------------------------------
    def fit(self, x: Inputs | None = None, y: npt.ArrayLike | None = None, batch_size: int | None = None,
            epochs: int = 1, verbose: int | str = "auto",
            callbacks: Sequence[callbacks.Callback] | callbacks.Callback | None = None, validation_split: float = 0.0,
            validation_data: Sequence[Any] | Inputs | None = None, shuffle: bool = True,
            class_weight: Mapping[int, float] | None = None, sample_weight: npt.ArrayLike | None = None,
            initial_epoch: int = 0, steps_per_epoch: int | None = None, validation_steps: int | None = None,
            validation_batch_size: int | None = None, validation_freq: int | Sequence[int] = 1,
            augment: Sequence[Transform] | None = None, distributed: str | training.Strategy | None = None,
            on_nonfinite_loss: str = "raise") -> callbacks.History:
        """Trains for `epochs` passes over the data; returns a History (Keras 3's fit).

        x, y: arrays (anything numpy reads; y labels, one-hot rows or targets), or x an
        iterable of (x, y) / (x, y, sample_weight) batches (a generator, a DataLoader)
        with y None. batch_size: 32 for arrays. sample_weight (N,) / class_weight
        {class: weight}: each sample's loss is scaled by its weight and the batch's sum
        divided by the batch size (Keras); ``weighted_metrics`` use them too.
        validation_split takes the *last* fraction of x/y (before any shuffling), as
        Keras does -- shuffle first if the data is sorted. validation_data: (x, y) or
        (x, y, w), or an iterable of batches; validation_freq: validate every N epochs
        or at the listed (1-based) epochs. Mini-batches are reshuffled every epoch from
        the model's seed. steps_per_epoch: batches per epoch (iterables; for arrays, the
        first steps of each epoch's order). augment: fastdl.augment transforms applied
        to each training batch. distributed="mpi": data-parallel training when started
        under mpirun (docs/distributed.md); a fastdl.training.Strategy also works.
        verbose: 0 silent, 1 progress bar (on a terminal; one line per epoch otherwise),
        2 one line per epoch, "auto" (1 on a terminal, 2 otherwise).
        on_nonfinite_loss: what a NaN or infinite mini-batch loss does. "raise" (default)
        stops with NonFiniteLossError naming the epoch and step (unless a callback such
        as TerminateOnNaN stops training first); "skip" drops that step and goes on (the
        count is in the epoch's logs as "skipped_steps"). Either way the step changes
        nothing: its update is not applied and batch-norm running statistics are put
        back. A network with BatchNorm trains a one-sample last batch merged into the
        batch before it. Ctrl-C stops at the end of the current step."""
        strategy: training.Strategy | None = None
        if distributed is not None:
            if distributed == "mpi":
                from fastdl import distributed as mpi  # needs mpi4py (the mpi extra)

                strategy = mpi.MPIStrategy()
            elif isinstance(distributed, training.Strategy):
                strategy = distributed
            else:
                raise ValueError(f"distributed: expected None, 'mpi' or a fastdl.training.Strategy, got "
                                 f"{distributed!r}")
            if augment is not None and strategy.needs_gradients:
                raise ValueError("augment: not supported with distributed='mpi' yet")
        return training.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                            class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                            augment=augment, on_nonfinite_loss=on_nonfinite_loss, strategy=strategy)

    def evaluate(self, x: Inputs | None = None, y: npt.ArrayLike | None = None, batch_size: int | None = None,
                 verbose: int = 0, sample_weight: npt.ArrayLike | None = None, steps: int | None = None,
                 callbacks: Sequence[callbacks.Callback] | None = None, return_dict: bool = False) -> Any:
        """Mean loss (and metrics) over (x, y) with inference behaviour (no dropout,
        BatchNorm running statistics), in batches of 256 by default. Returns the loss,
        or [loss, accuracy] when compiled with metrics (Keras' convention); a dict with
        return_dict=True. x may be an iterable of (x, y[, w]) batches."""
        return training.evaluate(self, x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight,
                                 steps=steps, callbacks=callbacks, return_dict=return_dict)

    def predict(self, x: Inputs, batch_size: int | None = None, verbose: int = 0, steps: int | None = None,
                callbacks: Sequence[callbacks.Callback] | None = None) -> FloatArray:
        """The network's outputs for x, in batches of 256 by default: logits for a linear
        last layer, probabilities where the last layer ends in softmax (or sigmoid with
        the binary cross-entropy). x may be an iterable of batches."""
        return training.predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    __call__ = predict

    def predict_proba(self, x: Inputs, batch_size: int | None = None) -> FloatArray:
        """Class probabilities: softmax (cross-entropy) or sigmoid (binary cross-entropy)
        of the outputs, whatever the last layer's activation."""
        self._require_compiled("predict_proba", build=False)
        out = self.predict(x, batch_size)
        if self.output_activation is not None:
            return out
        if isinstance(self.loss, losses_mod.SoftmaxCrossEntropy):
            return outputs.apply(out, "softmax")
        if isinstance(self.loss, losses_mod.BinaryCrossEntropy):
            return outputs.apply(out, "sigmoid")
        return out

    def train_on_batch(self, x: npt.ArrayLike, y: npt.ArrayLike | None = None,
                       sample_weight: npt.ArrayLike | None = None, class_weight: Mapping[int, float] | None = None,
                       return_dict: bool = False) -> Any:
        """Keras's train_on_batch: one ``train_step``; returns the loss (a dict with
        return_dict=True)."""
        if class_weight is not None:
            from fastdl.inputs import class_weight_to_sample_weight

            if sample_weight is not None:
                raise ValueError("class_weight: cannot be combined with sample_weight")
            targets = self.prepare_targets(y)  # type: ignore[arg-type]  # y None: prepare_targets names it
            sample_weight = class_weight_to_sample_weight(targets, class_weight,
                                                          self._require_built("class_weight").output_dim)
        loss = self.train_step(x, y, sample_weight)  # type: ignore[arg-type]  # y None: train_step names it
        return {"loss": loss} if return_dict else loss

    def test_on_batch(self, x: npt.ArrayLike, y: npt.ArrayLike | None = None,
                      sample_weight: npt.ArrayLike | None = None, return_dict: bool = False) -> Any:
        """Keras's test_on_batch: ``evaluate`` on one batch."""
        return self.evaluate(x, y, batch_size=max(1, len(x)),  # type: ignore[arg-type]  # len() names bad x
                             sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x: npt.ArrayLike) -> FloatArray:
        """Keras's predict_on_batch: ``predict`` on one batch."""
        return self.predict(x, batch_size=max(1, len(x)))  # type: ignore[arg-type]  # len() names bad x

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Writes architecture, weights, optimizer and training state to one file,
        atomically: a crash mid-save leaves any previous file at `path` intact."""
        serialization.save(self, path)

    def save_weights(self, path: PathLike) -> None:
        """Writes ``state_dict()`` to `path` in the safetensors format (atomically), under
        its names ("dense_0.w", ...): PyTorch, JAX and the Hugging Face tools open it
        without fastdl. Weights only; ``save`` keeps the whole model. Needs the
        safetensors package (``pip install fastdl[safetensors]``)."""
        weights_file.save(self, path)

    def load_weights(self, path: PathLike, strict: bool = True) -> IncompatibleKeys:
        """Loads weights written by ``save_weights`` (or any safetensors file with the
        ``state_dict()`` names and shapes) into this model: ``load_state_dict``'s checks
        and `strict`."""
        return weights_file.load(self, path, strict=strict)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy.deepcopy carry the model as the .fdl file holds it
        # (serialization.model_state: JSON-able meta and float32 arrays), never the
        # kernel module or a device handle; unpickling rebuilds it on the same device.
        meta, arrays = serialization.model_state(self)
        extras: dict[str, Any] = {}
        if self.optimizer is not None:
            opt, loss = self.optimizer, self.loss
            if not _registered(opt, optim.get):  # a user's optimizer class: travels as itself
                extras["optimizer"] = opt
            if not _registered(loss, losses_mod.get):
                extras["loss"] = (type(loss), {k: v for k, v in vars(loss).items() if k != "_kernel"})
        if self.history is not None and hasattr(self.history, "history"):
            extras["history"] = {"history": self.history.history, "epoch": self.history.epoch}
        return _rebuild, (type(self), self.device, meta, arrays, extras)


def _registered(obj: Any, get: Any) -> bool:
    """Whether `obj` is the class fastdl builds for its name (so its config rebuilds it)."""
    try:
        return type(get(obj.name)) is type(obj)
    except (TypeError, ValueError):
        return False


def _rebuild(model_class: type[Sequential], device: str, meta: dict[str, Any], arrays: Any,
             extras: dict[str, Any]) -> Sequential:
    """Unpickles what Sequential.__reduce__ wrote."""
    loss = extras.get("loss")
    if loss is not None:
        cls, attributes = loss
        loss = cls.__new__(cls)
        loss.__dict__.update(attributes)
    model = serialization.model_from_state(meta, arrays, model_class, device, where="pickled model",
                                           optimizer=extras.get("optimizer"), loss=loss)
    if "history" in extras:
        model.history = callbacks.History()
        model.history.history, model.history.epoch = extras["history"]["history"], extras["history"]["epoch"]
        model.history.set_model(model)
    return model


def load(path: PathLike, device: str = "cpu") -> Sequential:
    """Rebuilds a model saved with ``model.save(path)`` on `device` ("cpu" or "cuda"),
    compiled with its optimizer (state included) when it was compiled. A corrupt,
    truncated or foreign file raises fastdl.ModelFileError."""
    return serialization.load(path, Sequential, device)
