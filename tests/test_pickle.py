"""pickle and copy.deepcopy of models, optimizers, schedules and callbacks: data only
(no kernel module or device handle in the payload), bit-identical predictions, and
training that continues exactly as the original's (same steps, dropout masks, shuffling)."""

import copy
import io
import pickle
import sys

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, Maxout, callbacks, optim, schedules


def data(n=96, k=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)).astype(np.float32), rng.integers(0, c, n)


def every_layer(seed=3):
    return fastdl.Sequential([Dropout(0.1), Dense(6, 8), fastdl.PReLU(), BatchNorm(8), Maxout(8, 4, pieces=2),
                              Dropout(0.2), Dense(4, 5, activation="elu", alpha=0.5, max_norm=2.0),
                              Dropout(0.3, scale_at_test=True), Dense(5, 3, activation="softmax")], seed=seed)


def plain(seed=3):
    return fastdl.Sequential([Dense(6, 16, activation="relu"), Dense(16, 3)], seed=seed)


OPTIMIZERS = {
    "sgd_nesterov": lambda: optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optim.Adam(3e-3, betas=(0.8, 0.95), weight_decay=1e-4),
    "adamw": lambda: optim.AdamW(3e-3),
    "rmsprop_centered": lambda: optim.RMSProp(1e-3, momentum=0.5, centered=True),
    "adagrad": lambda: optim.Adagrad(0.05, initial_accumulator_value=0.1),
    "adadelta": lambda: optim.Adadelta(),
}


def globals_in(payload):
    """The (module, name) pairs unpickling the payload imports."""
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(payload)).load()
    return found


def assert_same_model(a, b, x):
    assert a.get_config() == b.get_config()
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert a.training_state() == b.training_state()


ROUND_TRIPS = {"pickle": lambda m: pickle.loads(pickle.dumps(m)), "deepcopy": copy.deepcopy, "copy": copy.copy}


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_trained_model_round_trips_and_training_continues_identically(how, opt):
    x, y = data()
    m = every_layer()
    m.compile(OPTIMIZERS[opt](), loss="softmax_cross_entropy", metrics=["accuracy"])
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    r = ROUND_TRIPS[how](m)
    assert r is not m and r.flat_params is not m.flat_params
    assert_same_model(r, m, x)
    assert type(r.optimizer) is type(m.optimizer) and r.optimizer.get_config() == m.optimizer.get_config()
    assert r.optimizer.step_count == m.optimizer.step_count == 12
    for k in m.optimizer.state:
        np.testing.assert_array_equal(r.optimizer.state[k], m.optimizer.state[k])
    assert r.step_plan == m.step_plan and r.metrics == m.metrics
    assert r.history.history == m.history.history and r.history.model is r
    # the same next steps: dropout masks (step counter, dropout seed), shuffling, optimizer state
    h_m = m.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    h_r = r.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert h_m["loss"] == h_r["loss"] and h_m["accuracy"] == h_r["accuracy"]
    assert_same_model(r, m, x)


def test_the_copy_is_independent_of_the_original():
    x, y = data()
    m = plain().compile("adam")
    m.fit(x, y, epochs=1, verbose=0)
    before = m.flat_params.copy()
    r = copy.deepcopy(m)
    r.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(m.flat_params, before)
    assert not np.array_equal(r.flat_params, before)


@pytest.mark.parametrize("compiled", [False, True])
def test_unbuilt_models_round_trip_and_build_the_same_weights(compiled):
    x, y = data()
    m = fastdl.Sequential([Dense(16, activation="tanh"), Dropout(0.25), Dense(3)], seed=11)
    if compiled:
        m.compile("sgd")
    assert not m.built
    r = pickle.loads(pickle.dumps(m))
    assert not r.built and r.compiled == compiled and r.seed == m.seed
    if not compiled:
        m.compile("sgd")
        r.compile("sgd")
    m.fit(x, y, epochs=2, batch_size=32, verbose=0)
    r.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert_same_model(r, m, x)


def test_uncompiled_built_model_round_trips():
    x, _ = data()
    m = every_layer()
    r = pickle.loads(pickle.dumps(m))
    assert not r.compiled
    assert_same_model(r, m, x)


def test_the_payload_is_data_only():
    x, y = data()
    m = every_layer()
    m.compile("adam", metrics=["accuracy"])
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    payload = pickle.dumps(m)
    assert b"fastdl._C" not in payload
    imported = globals_in(payload)
    # the rebuild function and the class; numpy's array reconstruction
    assert {mod for mod, _ in imported} <= {"fastdl.model", "numpy", "numpy.core.multiarray",
                                            "numpy._core.multiarray", "numpy._core.numeric", "numpy.dtypes",
                                            "builtins", "_codecs"}, imported
    assert {name for mod, name in imported if mod == "fastdl.model"} == {"_rebuild", "Sequential"}


def test_the_optimizer_step_plan_is_kept():
    x, y = data()
    m = plain().compile("adam", optimizer_step="separate")
    assert m.step_plan.optimizer_step == "separate"
    r = pickle.loads(pickle.dumps(m))
    assert r.step_plan == m.step_plan
    m.fit(x, y, epochs=1, verbose=0)
    r.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(r.flat_params, m.flat_params)


def test_save_and_load_keep_the_step_plan_and_dropout_seed(tmp_path):
    x, y = data()
    m = every_layer().compile("adam", optimizer_step="separate")
    m.load_training_state(dict(m.training_state(), dropout_seed=12345))
    m.save(tmp_path / "m.fdl")
    r = fastdl.load(tmp_path / "m.fdl")
    assert r.step_plan == m.step_plan and r.training_state() == m.training_state()
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    r.fit(x, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(r.flat_params, m.flat_params)


class NumpySGD(optim.Optimizer):
    """A user's optimizer written in numpy (module level, so pickle finds the class)."""

    name = "numpy_sgd"

    def bind(self, size, device="cpu", decay_segments=None):
        self._size, self.state, self.step_count = int(size), {}, 0
        return self

    def _kernel_step(self, params, grads):
        params -= np.float32(self.lr) * grads


def test_a_users_optimizer_class_travels_as_itself():
    x, y = data()
    m = plain().compile(NumpySGD(0.1))
    m.fit(x, y, epochs=1, verbose=0)
    r = pickle.loads(pickle.dumps(m))
    assert type(r.optimizer) is NumpySGD and r.optimizer.step_count == m.optimizer.step_count
    m.fit(x, y, epochs=1, verbose=0)
    r.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(r.flat_params, m.flat_params)


def test_label_smoothing_and_bce_losses_round_trip():
    x, y = data()
    m = plain().compile("adam", loss=fastdl.losses.SoftmaxCrossEntropy(label_smoothing=0.2))
    r = copy.deepcopy(m)
    assert r.loss.label_smoothing == 0.2
    b = fastdl.Sequential([Dense(6, 4, activation="relu"), Dense(4, 1, activation="sigmoid")], seed=0)
    b.compile("adam", loss="binary_cross_entropy")
    rb = pickle.loads(pickle.dumps(b))
    assert rb.output_activation == "sigmoid"
    np.testing.assert_array_equal(rb.predict(x), b.predict(x))


# -- optimizers, schedules, callbacks on their own ----------------------------------------------
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_a_bound_optimizer_round_trips_with_its_state(opt):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(1000).astype(np.float32)
    g = rng.standard_normal(1000).astype(np.float32)
    o = OPTIMIZERS[opt]()
    o.step(p, g)
    o.step(p, g)
    for r in (pickle.loads(pickle.dumps(o)), copy.deepcopy(o)):
        assert r.get_config() == o.get_config() and r.step_count == 2
        pr, po = p.copy(), p.copy()
        r.step(pr, g)
        copy.deepcopy(o).step(po, g)
        np.testing.assert_array_equal(pr, po)
    assert b"fastdl._C" not in pickle.dumps(o)


def test_an_unbound_optimizer_round_trips():
    o = optim.Adam(2e-3)
    r = pickle.loads(pickle.dumps(o))
    assert r.get_config() == o.get_config() and r.state == {}


@pytest.mark.parametrize("sched", [schedules.StepDecay(3, 0.5), schedules.InverseSqrtDecay(),
                                   schedules.ExponentialDecay(0.9), schedules.CosineDecay(10, 1e-4)])
def test_schedules_round_trip(sched):
    sched.start(0.1)
    r = pickle.loads(pickle.dumps(sched))
    assert [r(t) for t in range(12)] == [sched(t) for t in range(12)]


def test_reduce_on_plateau_keeps_its_counters():
    s = schedules.ReduceLROnPlateau(patience=1)
    lr = 0.1
    for v in (1.0, 0.9, 0.95, 0.97):
        lr = s.update(v, lr)
    r = copy.deepcopy(s)
    assert (r.best, r.num_bad_epochs, r.cooldown_counter) == (s.best, s.num_bad_epochs, s.cooldown_counter)
    assert r.update(0.99, lr) == s.update(0.99, lr)


def test_callbacks_leave_their_model_and_open_files_behind(tmp_path):
    x, y = data()
    m = plain().compile("adam")
    stop = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    log = callbacks.CSVLogger(tmp_path / "log.csv")
    sched = callbacks.LearningRateScheduler(schedules.StepDecay(1, 0.5))
    m.fit(x, y, epochs=3, verbose=0, callbacks=[stop, log, sched])
    for cb in (stop, log, sched, callbacks.ProgressBar(stream=sys.stderr), callbacks.GradientMonitor()):
        r = pickle.loads(pickle.dumps(cb))
        assert r.model is None
    r = copy.deepcopy(stop)
    assert r.best == stop.best and r.wait == stop.wait
    assert pickle.loads(pickle.dumps(callbacks.ProgressBar(stream=sys.stderr))).stream is sys.stderr
    # a copied callback trains another model
    m2 = plain().compile("adam")
    m2.fit(x, y, epochs=2, verbose=0, callbacks=[pickle.loads(pickle.dumps(stop)),
                                                 pickle.loads(pickle.dumps(log))])
    assert (tmp_path / "log.csv").read_text().count("\n") == 3  # the header and two epochs


class ScaledMSE(fastdl.losses.MSE):
    """A user's loss class over fastdl's mse kernel (module level, so pickle finds it)."""

    name = "scaled_mse"

    def __init__(self, factor=2.0):
        self.factor = factor


def test_a_users_loss_class_travels_as_itself():
    x, _ = data()
    t = x[:, :3] * 0.5
    m = plain().compile("sgd", loss=ScaledMSE(3.0))
    m.fit(x, t, epochs=1, verbose=0)
    r = pickle.loads(pickle.dumps(m))
    assert type(r.loss) is ScaledMSE and r.loss.factor == 3.0
    m.fit(x, t, epochs=1, verbose=0)
    r.fit(x, t, epochs=1, verbose=0)
    np.testing.assert_array_equal(r.flat_params, m.flat_params)
