"""fastdl.sklearn: scikit-learn's estimator checks in full, pipelines, grid search in
worker processes, cross-validation, and scikit-learn's parameter meanings."""

import io
import pickle
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install fastdl[sklearn])")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastdl  # noqa: E402
from fastdl.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# The tests train for a few epochs (the estimator checks with max_iter=100, as
# scikit-learn's own test suite does for its MLP), stopping before convergence: the
# warning is expected; the tests that are about it catch it themselves.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=300, centers=3, seed=0):
    x, y = make_blobs(n_samples=n, centers=centers, random_state=seed)
    return StandardScaler().fit_transform(x).astype(np.float32), y


def test_parameters_are_scikit_learns_where_they_mean_the_same():
    ours, theirs = MLPClassifier().get_params(), SkMLPClassifier().get_params()
    shared = set(ours) & set(theirs)
    assert set(theirs) - shared == {"max_fun"}  # lbfgs only
    for name in shared:
        assert ours[name] == theirs[name], name
    assert set(ours) - shared == {"dropout", "batch_norm", "maxout_pieces", "max_norm", "n_threads", "device"}
    assert MLPRegressor().get_params() == ours


def test_fit_predict_and_fitted_attributes():
    x, y = blobs()
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=60, random_state=0, tol=0.0).fit(x, labels)
    assert list(clf.classes_) == ["ant", "bee", "cat"] and clf.n_features_in_ == 2
    assert clf.n_iter_ == 60 and len(clf.loss_curve_) == 60 and clf.t_ == 60 * 300
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.score(x, labels) > 0.9
    proba = clf.predict_proba(x)
    assert proba.dtype == np.float64 and proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(x), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(x), np.log(proba))
    # scikit-learn's shapes for the weights, and the network underneath
    assert [c.shape for c in clf.coefs_] == [(2, 32), (32, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (3,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert isinstance(clf.model_, fastdl.Sequential)
    np.testing.assert_allclose(clf.predict_proba(x), clf.model_.predict_proba(x), rtol=1e-6)


def test_binary_classifier_has_one_logistic_output_as_scikit_learns():
    x, y = blobs(centers=2)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(x, y)
    sk = SkMLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    sk.fit(x, y)
    assert [c.shape for c in clf.coefs_] == [c.shape for c in sk.coefs_] == [(2, 8), (8, 1)]
    assert clf.out_activation_ == sk.out_activation_ == "logistic"
    p = clf.predict_proba(x)
    assert p.shape == (300, 2)
    np.testing.assert_array_equal(clf.predict(x), clf.classes_[(p[:, 1] > 0.5).astype(int)])


def test_multilabel_and_multioutput_regression():
    x, y = make_multilabel_classification(n_samples=200, n_classes=4, random_state=0)
    x = StandardScaler().fit_transform(x)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0).fit(x, y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    assert clf.predict(x).shape == (200, 4) and clf.predict(x).dtype == y.dtype
    np.testing.assert_array_equal(clf.predict(x), clf.predict_proba(x) > 0.5)
    assert clf.score(x, y) > 0.45  # subset accuracy (scikit-learn's MLPClassifier: 0.61)
    xr, yr = make_regression(n_samples=200, n_features=5, n_targets=3, random_state=0, noise=1.0)
    reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=300, learning_rate_init=0.01, random_state=0)
    reg.fit(xr, yr / yr.std())
    assert reg.predict(xr).shape == (200, 3) and reg.predict(xr).dtype == np.float64
    assert reg.score(xr, yr / yr.std()) > 0.9
    one = MLPRegressor(max_iter=5, random_state=0).fit(xr, yr[:, :1])
    assert one.predict(xr).shape == (200,)  # one target column: 1-D, as scikit-learn


def test_same_random_state_same_model_and_pickle_round_trip():
    x, y = blobs()
    a = MLPClassifier(max_iter=5, random_state=3).fit(x, y)
    b = MLPClassifier(max_iter=5, random_state=3).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    assert a.loss_curve_ == b.loss_curve_
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.predict_proba(x), a.predict_proba(x))
    d = clone(a)
    assert not hasattr(d, "model_") and d.get_params() == a.get_params()


def test_pipeline_grid_search_in_two_processes_and_cross_val_score():
    x, y = blobs(200)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, learning_rate_init=0.01, random_state=0))
    pipe.fit(x, y)
    assert pipe.score(x, y) > 0.85
    # n_jobs=2: joblib's default (loky) backend starts worker processes, each of which
    # unpickles the estimator
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
    grid.fit(x, y)
    assert grid.best_score_ > 0.9 and len(grid.cv_results_["params"]) == 4
    assert isinstance(grid.best_estimator_[-1], MLPClassifier)
    scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01,
                                          random_state=0), x, x[:, 0] * 2 - x[:, 1], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_tol_and_n_iter_no_change_stop_as_scikit_learn():
    x, y = blobs()
    clf = MLPClassifier(max_iter=500, tol=0.05, n_iter_no_change=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopped by the rule: no warning
        clf.fit(x, y)
    assert clf.n_iter_ < 500
    # the rule: stop after n_iter_no_change + 1 epochs not better than best - tol
    curve, best, bad = clf.loss_curve_, np.inf, 0
    for k, loss in enumerate(curve):
        bad = bad + 1 if loss > best - 0.05 else 0
        best = min(best, loss)
        if bad > 3:
            assert k == len(curve) - 1
            break
    else:
        pytest.fail("the rule never fired")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(max_iter=3, random_state=0).fit(x, y)


def test_early_stopping_keeps_the_best_validation_weights():
    x, y = blobs(400)
    clf = MLPClassifier(max_iter=200, early_stopping=True, validation_fraction=0.2, n_iter_no_change=4,
                        random_state=0).fit(x, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the weights kept are those of the best epoch: refit the same split to that epoch
    best_epoch = int(np.argmax(clf.validation_scores_)) + 1
    again = MLPClassifier(max_iter=best_epoch, early_stopping=True, validation_fraction=0.2,
                          n_iter_no_change=10 ** 6, tol=0.0, random_state=0)
    again.fit(x, y)
    for a, b in zip(clf.coefs_, again.coefs_):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_and_warm_start_continue_the_same_network():
    x, y = blobs()
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes: must be passed on the first call"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:100], y[:100], classes=[0, 1, 2])
    model = clf.model_
    for _ in range(3):
        clf.partial_fit(x, y)
    assert clf.model_ is model and clf.n_iter_ == 4 and len(clf.loss_curve_) == 4
    with pytest.raises(ValueError, match=r"classes \[7\] were not in"):
        clf.partial_fit(x[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 2"):
        clf.partial_fit(np.zeros((4, 3)), [0, 1, 2, 0])
    # partial_fit's epochs equal one fit of as many epochs on the same data
    a = MLPClassifier(random_state=1, shuffle=False)
    for _ in range(3):
        a.partial_fit(x, y, classes=[0, 1, 2])
    b = MLPClassifier(random_state=1, shuffle=False, max_iter=3)
    b.fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    warm = MLPClassifier(max_iter=2, warm_start=True, random_state=0)
    warm.fit(x, y)
    first = warm.model_
    warm.fit(x, y)
    assert warm.model_ is first and warm.n_iter_ == 4
    reg = MLPRegressor(random_state=0)
    reg.partial_fit(x, x[:, 0])
    reg.partial_fit(x, x[:, 0])
    assert reg.n_iter_ == 2


def test_alpha_is_scikit_learns_l2_scaled_by_the_batch():
    x, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(16,), alpha=0.5, batch_size=50, max_iter=3, random_state=0,
                        shuffle=False)
    clf.fit(x, y)
    opt = clf.model_.optimizer
    assert isinstance(opt, fastdl.optim.Adam) and opt.weight_decay == pytest.approx(0.5 / 50)
    # the same network trained by hand with that weight decay gives the same weights
    m = fastdl.Sequential([fastdl.Dense(2, 16, activation="relu"), fastdl.Dense(16, 3)], seed=clf.model_.seed)
    m.compile(fastdl.optim.Adam(1e-3, weight_decay=0.01), loss="softmax_cross_entropy")
    m.fit(x, y, batch_size=50, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_array_equal(m.flat_params, clf.model_.flat_params)
    # the loss curve is the epoch's mean loss plus scikit-learn's penalty term
    w = np.concatenate([c.ravel() for c in clf.coefs_]).astype(np.float64)
    assert clf.loss_curve_[-1] == pytest.approx(m.history.history["loss"][-1] + 0.5 * 0.5 * np.dot(w, w) / 50)


@pytest.mark.parametrize("solver", ["adam", "sgd", "adamw", "rmsprop", "adagrad", "adadelta"])
def test_solvers(solver):
    x, y = blobs()
    kw = {"learning_rate_init": 1.0} if solver == "adadelta" else {"learning_rate_init": 0.01}
    clf = MLPClassifier(solver=solver, max_iter=60, random_state=0, **kw)
    clf.fit(x, y)
    assert clf.model_.optimizer.name == solver and clf.score(x, y) > 0.85


def test_an_optimizer_instance_is_copied_not_changed():
    x, y = blobs()
    opt = fastdl.optim.SGD(0.05, momentum=0.9)
    clf = MLPClassifier(solver=opt, max_iter=5, random_state=0)
    clf.fit(x, y)
    assert clf.solver is opt and opt.step_count == 0 and clf.model_.optimizer is not opt
    assert clf.model_.optimizer.step_count == 5 * 2


def test_sgd_learning_rate_schedules():
    x, y = blobs()
    inv = MLPClassifier(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1, power_t=0.5,
                        max_iter=4, random_state=0)
    inv.fit(x, y)
    assert inv.model_.optimizer.lr == pytest.approx(0.1 / (4 * 300 + 1) ** 0.5)
    out = io.StringIO()
    ada = MLPClassifier(solver="sgd", learning_rate="adaptive", learning_rate_init=0.1, tol=10.0,
                        n_iter_no_change=1, max_iter=12, random_state=0, verbose=True)
    with redirect_stdout(out):
        ada.fit(x, y)
    text = out.getvalue()
    assert "Iteration 1, loss = " in text and "Setting learning rate to 0.020000" in text
    assert ada.model_.optimizer.lr < 0.1


def test_fastdl_options_build_the_network_they_say():
    x, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(12, 6), dropout=0.2, batch_norm=True, maxout_pieces=3, max_norm=2.0,
                        max_iter=3, random_state=0)
    clf.fit(x, y)
    kinds = [c["class"] for c in clf.model_.get_config()["layers"]]
    assert kinds == ["Maxout", "BatchNorm", "Dropout", "Maxout", "BatchNorm", "Dropout", "Dense"]
    assert [c.shape for c in clf.coefs_] == [(2, 36), (12, 18), (6, 3)]
    act = MLPClassifier(hidden_layer_sizes=(4,), activation="logistic", max_iter=1)
    act.fit(x, y)
    assert act.model_.get_config()["layers"][0]["activation"] == "sigmoid"


def test_n_threads_is_set_while_working_and_restored(monkeypatch):
    x, y = blobs()
    seen = []
    fit, predict = fastdl.Sequential.fit, fastdl.Sequential.predict

    def recording(method):
        def wrapper(self, *args, **kwargs):
            seen.append(fastdl.get_num_threads())
            return method(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(fastdl.Sequential, "fit", recording(fit))
    monkeypatch.setattr(fastdl.Sequential, "predict", recording(predict))
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(2)
    try:
        clf = MLPClassifier(max_iter=1, n_threads=1, random_state=0).fit(x, y)
        assert fastdl.get_num_threads() == 2
        clf.predict(x)
        assert seen == [1, 1] and fastdl.get_num_threads() == 2
    finally:
        fastdl.set_num_threads(before)


@pytest.mark.parametrize("param, value, match", [
    ("hidden_layer_sizes", (10, 0), "hidden_layer_sizes: expected positive integers"),
    ("activation", "swish", "activation: expected one of"),
    ("solver", "lbfgs", "fastdl has no lbfgs"),
    ("alpha", -1.0, "alpha: expected a value >= 0"),
    ("batch_size", 0, "batch_size: expected a value >= 1"),
    ("learning_rate", "cyclic", "learning_rate: expected 'constant'"),
    ("learning_rate_init", 0.0, "learning_rate_init: expected a value > 0"),
    ("max_iter", 0, "max_iter: expected a value >= 1"),
    ("validation_fraction", 1.0, "validation_fraction: expected a value < 1"),
    ("beta_1", 1.0, "beta_1: expected a value < 1"),
    ("dropout", 1.0, "dropout: expected a value < 1"),
    ("maxout_pieces", 0, "maxout_pieces: expected a value >= 1"),
    ("n_threads", 1.5, "n_threads: expected an integer"),
    ("device", "tpu", "device: expected 'cpu' or 'cuda'"),
])
def test_bad_parameters_are_named_at_fit(param, value, match):
    clf = MLPClassifier(**{param: value})  # scikit-learn's convention: __init__ stores, fit checks
    x, y = blobs(20)
    with pytest.raises(ValueError, match=match):
        clf.fit(x, y)


def test_errors_before_fit_and_for_one_class():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="only one class"):
        MLPClassifier().fit(np.zeros((4, 2)), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(np.zeros((4, 2)), [0.5, 1.5, 2.5, 3.1])


def test_fit_stays_off_numpys_blas(monkeypatch):
    """numpy's BLAS calls (np.dot, @ on float64) wake OpenBLAS's own thread pool, whose
    threads keep spinning on the cores the kernels' threads need: a fit with an L2 penalty
    and weighted metrics must not make any."""
    from fastdl.sklearn import MLPClassifier

    def refuse(*args, **kwargs):
        raise AssertionError("numpy BLAS call during fit")

    rng = np.random.default_rng(0)
    x, y = rng.random((60, 5), dtype=np.float32), rng.integers(0, 3, 60)
    monkeypatch.setattr(np, "dot", refuse)
    monkeypatch.setattr(np, "vdot", refuse)
    MLPClassifier(hidden_layer_sizes=(4,), alpha=1e-3, max_iter=3, random_state=0).fit(x, y)
    model = fastdl.Sequential([fastdl.Dense(5, 3)], seed=0)
    model.compile(loss="softmax_cross_entropy", weighted_metrics=["accuracy"])
    model.fit(x, y, sample_weight=rng.random(60), epochs=1, verbose=0)
