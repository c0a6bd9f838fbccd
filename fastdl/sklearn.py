"""scikit-learn estimators trained by fastdl: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's MLPClassifier / MLPRegressor parameters where they mean the
same, so an existing pipeline or grid search swaps the import and keeps its settings:

    from fastdl.sklearn import MLPClassifier          # was: from sklearn.neural_network
    clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=20, random_state=0).fit(x, y)
    clf.predict(x_test); clf.predict_proba(x_test); clf.score(x_test, y_test)

Same meaning as scikit-learn: hidden_layer_sizes, activation ('identity', 'logistic',
'tanh', 'relu', plus fastdl's 'leaky_relu', 'prelu', 'elu', 'silu', 'gelu', 'softplus',
'hard_tanh'), solver ('adam', 'sgd', plus 'adamw', 'rmsprop', 'adagrad', 'adadelta' or a
fastdl.optim.Optimizer), alpha (L2 penalty, as scikit-learn scales it: alpha / batch
size per step), batch_size ('auto': min(200, n_samples)), learning_rate (sgd:
'constant', 'invscaling', 'adaptive'), learning_rate_init, power_t, max_iter (epochs),
shuffle, random_state, tol, n_iter_no_change, early_stopping, validation_fraction,
verbose, warm_start, momentum, nesterovs_momentum, beta_1, beta_2, epsilon; fit,
partial_fit, predict, predict_proba, score; classes_, n_features_in_, loss_curve_,
best_loss_, validation_scores_, best_validation_score_, n_iter_, t_, coefs_,
intercepts_, n_layers_, n_outputs_, out_activation_.

fastdl's own: dropout (after each hidden layer), batch_norm (a BatchNorm after each
hidden layer), maxout_pieces (hidden layers of maxout units instead of Dense +
activation), max_norm, n_threads (fastdl's kernel threads while fitting and
predicting), device ("cpu" or "cuda"). The fitted network is ``model_`` (a
fastdl.Sequential: save it, export it, or go on training it).

Differences: no 'lbfgs' solver, no sparse input, no sample_weight; the float32 kernels
compute in single precision (predictions are returned as float64); a binary
classifier has one sigmoid output (as scikit-learn's), a multiclass one a softmax
output. Needs scikit-learn (``pip install fastdl[sklearn]``).
"""

from __future__ import annotations

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError:
    raise ImportError("fastdl.sklearn needs scikit-learn >= 1.6: pip install 'fastdl[sklearn]'") from None

import contextlib
import copy
import numbers
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

import fastdl
from fastdl import layers as L, optim
from fastdl.callbacks import Callback
from fastdl.model import Sequential

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Self

    from fastdl._typing import AnyArray, Logs

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names -> fastdl's
_SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_FASTDL_ACTIVATIONS = ("leaky_relu", "prelu", "elu", "silu", "gelu", "softplus", "hard_tanh", "sigmoid", "linear")
_SOLVERS = ("adam", "sgd", "adamw", "rmsprop", "adagrad", "adadelta")


def _check_number(name: str, value: Any, low: Any = None, high: Any = None, low_open: bool = False,
                  high_open: bool = False, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name}: expected a value {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name}: expected a value {'<' if high_open else '<='} {high}, got {value!r}")


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    previous = fastdl.get_num_threads()
    fastdl.set_num_threads(n)
    try:
        yield
    finally:
        fastdl.set_num_threads(previous)


class _EpochRule(Callback):
    """scikit-learn's per-epoch bookkeeping inside fastdl's fit: loss_curve_, n_iter_,
    t_, the tol / n_iter_no_change stopping rule (on the training loss, or on the
    validation score with early_stopping), the best weights, the sgd schedules."""

    def __init__(self, est: Any, n_samples: int, validation: tuple[Any, Any] | None, incremental: bool) -> None:
        self.est, self.n_samples, self.validation, self.incremental = est, n_samples, validation, incremental
        self.stopped = False
        self.epochs = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        est, model = self.est, self.model
        optimizer: Any = model.optimizer  # compiled by _fit
        self.epochs += 1
        loss = est._loss_scale * float(logs["loss"]) + est._penalty(model)  # type: ignore[index]  # fit's logs
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        est.t_ += self.n_samples
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.validation is not None:
            score = est._score_model(*self.validation)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = model.get_flat_weights()
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            optimizer.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if self.incremental or est._no_improvement_count <= est.n_iter_no_change:
            return
        what = "Validation score" if self.validation is not None else "Training loss"
        msg = f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
        if sgd and est.learning_rate == "adaptive" and optimizer.lr > 1e-6:
            optimizer.lr = optimizer.lr / 5.0
            est._no_improvement_count = 0
            if est.verbose:
                print(f"{msg} Setting learning rate to {optimizer.lr:f}")
            return
        if est.verbose:
            print(msg + (" Learning rate too small." if sgd and est.learning_rate == "adaptive" else "") +
                  " Stopping.")
        self.stopped = True
        model.stop_training = True


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the network, fit."""

    #: set by _encode_targets
    _loss_scale: float
    _gradient_scale: float
    _loss_name: str
    _multilabel: bool
    n_outputs_: int

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu", *,
                 solver: str | optim.Optimizer = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001, power_t: float = 0.5,
                 max_iter: int = 200, shuffle: bool = True, random_state: int | np.random.RandomState | None = None,
                 tol: float = 1e-4, verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 dropout: float = 0.0, batch_norm: bool = False, maxout_pieces: int | None = None,
                 max_norm: float | None = None, n_threads: int | None = None, device: str = "cpu") -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.maxout_pieces = maxout_pieces
        self.max_norm = max_norm
        self.n_threads = n_threads
        self.device = device

    # -- parameters ------------------------------------------------------------------------
    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes: Any = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes: expected a tuple of positive integers, got {sizes!r}") from None
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"hidden_layer_sizes: expected positive integers, got {self.hidden_layer_sizes!r}")
        return tuple(int(s) for s in sizes)

    def _activation_name(self) -> str:
        act = self.activation
        if act in _SKLEARN_ACTIVATIONS:
            return _SKLEARN_ACTIVATIONS[act]
        if act in _FASTDL_ACTIVATIONS:
            return act
        raise ValueError(f"activation: expected one of {list(_SKLEARN_ACTIVATIONS) + list(_FASTDL_ACTIVATIONS[:-2])}, "
                         f"got {act!r}")

    def _validate_params(self) -> None:
        self._hidden_sizes()
        self._activation_name()
        if not (isinstance(self.solver, optim.Optimizer) or self.solver in _SOLVERS):
            extra = " (fastdl has no lbfgs: use 'adam')" if self.solver == "lbfgs" else ""
            raise ValueError(f"solver: expected one of {list(_SOLVERS)} or a fastdl.optim.Optimizer, got "
                             f"{self.solver!r}{extra}")
        _check_number("alpha", self.alpha, 0.0)
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, 1, integer=True)
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate: expected 'constant', 'invscaling' or 'adaptive', got "
                             f"{self.learning_rate!r}")
        _check_number("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        _check_number("power_t", self.power_t, 0.0)
        _check_number("max_iter", self.max_iter, 1, integer=True)
        _check_number("tol", self.tol, 0.0)
        _check_number("momentum", self.momentum, 0.0, 1.0)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0, low_open=True, high_open=True)
        _check_number("beta_1", self.beta_1, 0.0, 1.0, high_open=True)
        _check_number("beta_2", self.beta_2, 0.0, 1.0, high_open=True)
        _check_number("epsilon", self.epsilon, 0.0, low_open=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, 1, integer=True)
        _check_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        if self.maxout_pieces is not None:
            _check_number("maxout_pieces", self.maxout_pieces, 1, 255, integer=True)
        if self.max_norm is not None:
            _check_number("max_norm", self.max_norm, 0.0, low_open=True)
        if self.n_threads is not None:
            _check_number("n_threads", self.n_threads, 1, integer=True)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")

    # -- the network -------------------------------------------------------------------------
    def _layers(self, n_outputs: int) -> list[L.Layer]:
        act = self._activation_name()
        layers: list[L.Layer] = []
        for h in self._hidden_sizes():
            if self.maxout_pieces is not None:
                layers.append(L.Maxout(h, pieces=self.maxout_pieces, max_norm=self.max_norm))
            else:
                layers.append(L.Dense(h, activation=act, max_norm=self.max_norm))
            if self.batch_norm:
                layers.append(L.BatchNorm())
            if self.dropout:
                layers.append(L.Dropout(self.dropout))
        layers.append(L.Dense(n_outputs, max_norm=self.max_norm))
        return layers

    def _optimizer(self, batch_size: int) -> optim.Optimizer:
        if isinstance(self.solver, optim.Optimizer):
            return copy.deepcopy(self.solver)
        # scikit-learn adds alpha * W / batch size to the gradient of its loss, whose
        # scale may differ from fastdl's by _gradient_scale
        decay = self.alpha / batch_size / self._gradient_scale
        lr = self.learning_rate_init
        if self.solver == "adam":
            return optim.Adam(lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon, weight_decay=decay)
        if self.solver == "sgd":
            return optim.SGD(lr, momentum=self.momentum, weight_decay=decay,
                             nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return optim.get(self.solver, lr=lr, weight_decay=decay)

    def _penalty(self, model: Sequential) -> float:
        """scikit-learn's L2 term of the loss: 0.5 * alpha * ||W||^2 / batch size."""
        if not self.alpha:
            return 0.0
        flat = model.get_flat_weights()[0]
        # A float64 sum of squares, not np.dot: numpy's BLAS dot wakes its own thread pool,
        # whose threads spin on both cores long after (a fit's next epoch ran at a third of
        # its speed alongside them).
        sq = sum(float(np.square(flat[a:b], dtype=np.float64).sum()) for a, b in model.decay_segments)
        return 0.5 * self.alpha * sq / self._batch_size

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, X: Any, y: Any, incremental: bool = False, classes: Any = None) -> Self:
        self._validate_params()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = validate_data(self, X, y, reset=first, dtype=np.float32, multi_output=True,
                             y_numeric=not is_classifier(self))
        targets, y = self._encode_targets(y, first, classes, incremental)
        n = X.shape[0]
        batch: Any = min(200, n) if self.batch_size == "auto" else self.batch_size
        if batch > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          stacklevel=3)
            batch = n
        self._batch_size = batch
        rng = check_random_state(self.random_state)
        if first:
            seed = int(rng.randint(np.iinfo(np.int32).max))
            model = Sequential(self._layers(self.n_outputs_), seed=seed, device=self.device, input_dim=X.shape[1])
            model.compile(self._optimizer(batch), loss=self._loss_name)
            self.model_ = model
            self.n_iter_, self.t_ = 0, 0
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            self.n_layers_ = len(self._hidden_sizes()) + 2
        early = self.early_stopping and not incremental
        validation = None
        if early:
            stratify = y if (is_classifier(self) and not self._multilabel) else None
            X, X_val, targets, _, y, y_val = train_test_split(X, targets, y, random_state=rng, stratify=stratify,
                                                              test_size=self.validation_fraction)
            validation = (X_val, y_val)
            if first or not hasattr(self, "best_validation_score_") or self.validation_scores_ is None:
                self.validation_scores_: Any = []
                self.best_validation_score_: Any = -np.inf
            self.best_loss_: Any = None
        elif first or getattr(self, "best_loss_", None) is None:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
        rule = _EpochRule(self, X.shape[0], validation, incremental)
        epochs = 1 if incremental else self.max_iter
        self._best_weights: Any = None
        with _threads(self.n_threads):
            self.model_.fit(X, targets, batch_size=batch, epochs=epochs, shuffle=self.shuffle, verbose=0,
                            callbacks=[rule])
        self.model_.history = None  # the estimator keeps loss_curve_; the fit's History holds nothing more
        if early and self._best_weights is not None:
            self.model_.set_flat_weights(self._best_weights)
        self._best_weights = None
        if not incremental and not rule.stopped and rule.epochs == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        """Trains a new network on (X, y) for up to max_iter epochs (or goes on training
        the fitted one with warm_start=True). Returns self."""
        return self._fit(X, y)

    # -- inference ------------------------------------------------------------------------------
    def _outputs(self, X: Any) -> npt.NDArray[np.float64]:
        """The network's outputs (logits) for X, float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        with _threads(self.n_threads):
            return self.model_.predict(X).astype(np.float64)

    @property
    def coefs_(self) -> list[AnyArray]:
        """The weight matrices (in, out), layer by layer, as scikit-learn's coefs_ (copies)."""
        check_is_fitted(self, "model_")
        return [a for k, a in self.model_.state_dict(copy=True).items() if k.endswith(".w")]

    @property
    def intercepts_(self) -> list[AnyArray]:
        """The bias vectors, layer by layer, as scikit-learn's intercepts_ (copies)."""
        check_is_fitted(self, "model_")
        return [a for k, a in self.model_.state_dict(copy=True).items() if k.endswith(".b")]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


def _softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-z))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier (scikit-learn's MLPClassifier, trained by
    fastdl): a softmax output for multiclass targets, one sigmoid output for binary
    ones, one sigmoid per label for multilabel indicator targets, each trained with the
    matching cross-entropy. See the module's docstring for the parameters."""

    _gradient_scale = 1.0

    def _encode_targets(self, y: Any, first: bool, classes: Any, incremental: bool) -> tuple[AnyArray, Any]:
        if first:
            check_classification_targets(y)
            self._multilabel = type_of_target(y) == "multilabel-indicator"
            if self._multilabel:
                self.classes_ = np.arange(y.shape[1])
                self._label_dtype = y.dtype
            else:
                y = column_or_1d(y, warn=True)
                if incremental:
                    if classes is None:
                        raise ValueError("classes: must be passed on the first call to partial_fit")
                    self.classes_ = unique_labels(classes)
                    if not np.all(np.isin(np.unique(y), self.classes_)):
                        raise ValueError(f"y: has classes not in classes={self.classes_.tolist()}")
                else:
                    self.classes_ = unique_labels(y)
                if len(self.classes_) < 2:
                    raise ValueError(f"y: only one class ({self.classes_[0]!r}) in the data; a classifier needs "
                                     "at least 2 classes")
            k = len(self.classes_)
            self.n_outputs_ = k if (self._multilabel or k > 2) else 1
            self.out_activation_ = "logistic" if self.n_outputs_ == 1 or self._multilabel else "softmax"
            self._loss_name = "binary_cross_entropy" if self.out_activation_ == "logistic" else "softmax_cross_entropy"
            # scikit-learn's binary log-loss sums over the labels (fastdl's averages)
            self._loss_scale = float(k) if self._multilabel else 1.0
            self._gradient_scale = self._loss_scale
        else:
            check_classification_targets(y)
            if self._multilabel:
                if type_of_target(y) != "multilabel-indicator" or y.shape[1] != len(self.classes_):
                    raise ValueError(f"y: expected a multilabel indicator matrix with {len(self.classes_)} columns")
            else:
                y = column_or_1d(y, warn=True)
                unseen = np.setdiff1d(np.unique(y), self.classes_)
                if unseen.size:
                    raise ValueError(f"y: classes {unseen.tolist()} were not in the first fit's classes "
                                     f"{self.classes_.tolist()} (warm_start and partial_fit keep the classes)")
        if self._multilabel:
            return np.ascontiguousarray(y, dtype=np.float32), y
        index = np.searchsorted(self.classes_, y)
        if self.n_outputs_ == 1:
            return index.astype(np.float32).reshape(-1, 1), y
        return index.astype(np.int64), y

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike, classes: npt.ArrayLike | None = None) -> Self:
        """One epoch over (X, y), continuing from the last call (the first call builds the
        network and needs classes=, every class y will ever hold). Returns self."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _score_model(self, X: Any, y: Any) -> float:
        return self.score(X, y)

    def predict_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Class probabilities (n_samples, n_classes) as float64; for multilabel targets,
        each label's probability (n_samples, n_labels)."""
        z = self._outputs(X)
        if self._multilabel:
            return _sigmoid(z)
        if self.n_outputs_ == 1:
            p = _sigmoid(z[:, 0])
            return np.column_stack([1.0 - p, p])
        return _softmax(z)

    def predict_log_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The log of predict_proba."""
        return np.log(self.predict_proba(X))

    def predict(self, X: npt.ArrayLike) -> AnyArray:
        """The most probable class of each sample (for multilabel targets, the labels
        whose probability exceeds 0.5, as an indicator matrix)."""
        z = self._outputs(X)
        if self._multilabel:
            return (z > 0).astype(self._label_dtype)
        if self.n_outputs_ == 1:
            return self.classes_[(z[:, 0] > 0).astype(np.intp)]
        return self.classes_[np.argmax(z, axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor (scikit-learn's MLPRegressor, trained by
    fastdl) with an identity output and the squared error; y may have several columns.
    See the module's docstring for the parameters."""

    _multilabel = False

    def _encode_targets(self, y: Any, first: bool, classes: Any, incremental: bool) -> tuple[AnyArray, Any]:
        targets = np.asarray(y)
        if targets.ndim == 1:
            targets = targets.reshape(-1, 1)
        if first:
            self.n_outputs_ = targets.shape[1]
            self.out_activation_ = "identity"
            self._loss_name = "mse"
            # scikit-learn's loss is half the mean squared error; its gradient that of the
            # sum over the outputs of half the squared error, averaged over samples
            self._loss_scale = 0.5
            self._gradient_scale = self.n_outputs_ / 2.0
        elif targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y: {targets.shape[1]} target columns; the network was fitted with {self.n_outputs_}")
        return np.ascontiguousarray(targets, dtype=np.float32), y

    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        """One epoch over (X, y), continuing from the last call. Returns self."""
        return self._fit(X, y, incremental=True)

    def _score_model(self, X: Any, y: Any) -> float:
        return self.score(X, y)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predictions (n_samples,) for one target column, else (n_samples, n_outputs),
        float64."""
        z = self._outputs(X)
        return z.ravel() if z.shape[1] == 1 else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
