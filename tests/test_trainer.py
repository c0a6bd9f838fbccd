"""The Keras-like trainer: fit/evaluate/predict, History, validation, reproducibility,
callbacks (EarlyStopping, ModelCheckpoint, LearningRateScheduler, CSVLogger), progress
output and augmentation."""

import csv
import io

import numpy as np
import pytest

import fastdl
from fastdl import Dense, Dropout, callbacks as C, schedules


def blobs(n=300, k=8, c=3, seed=0):
    """Well-separated Gaussian clusters: any working trainer gets them right."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, k)) * 4
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.standard_normal((n, k))).astype(np.float32)
    return x, y


def model(seed=0, dropout=0.0, **compile_kw):
    layers = [Dense(8, 16, activation="relu")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(16, 3))
    m = fastdl.Sequential(layers, seed=seed)
    compile_kw.setdefault("optimizer", fastdl.optim.Adam(lr=1e-2))
    m.compile(metrics=["accuracy"], **compile_kw)
    return m


def test_fit_learns_and_history_has_keras_keys():
    x, y = blobs()
    m = model()
    h = m.fit(x[:240], y[:240], epochs=8, batch_size=32, validation_data=(x[240:], y[240:]), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert h.epoch == list(range(8))
    assert all(len(v) == 8 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.95
    assert h.history["lr"] == [pytest.approx(1e-2)] * 8
    assert all(t > 0 for t in h.history["time"])
    loss, acc = m.evaluate(x[240:], y[240:])
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-6)
    assert acc == pytest.approx(h.history["val_accuracy"][-1])
    logs = m.evaluate(x[240:], y[240:], return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    pred = m.predict(x[240:], batch_size=7)
    assert pred.shape == (60, 3) and pred.dtype == np.float32
    assert np.mean(pred.argmax(1) == y[240:]) == pytest.approx(acc)
    proba = m.predict_proba(x[240:])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_training_loss_and_accuracy_are_sample_weighted_epoch_means():
    x, y = blobs(n=70)
    m = model(optimizer=fastdl.optim.SGD(lr=1e-30))  # updates below float32 resolution: fixed weights
    h = m.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    loss, acc = m.evaluate(x, y)
    assert h.history["loss"][0] == pytest.approx(loss, rel=1e-5)
    assert h.history["accuracy"][0] == pytest.approx(acc)


def test_same_seed_same_run_and_reshuffled_each_epoch():
    x, y = blobs()
    runs = []
    for _ in range(2):
        m = model(seed=7, dropout=0.3)
        m.fit(x, y, epochs=3, batch_size=16, verbose=0)
        runs.append(m.flat_params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    other = model(seed=8, dropout=0.3)
    other.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert not np.array_equal(runs[0], other.flat_params)
    # the order of the samples changes every epoch
    m = model(seed=7)
    orders = []
    rng_state = m.shuffle_rng.bit_generator.state
    for _ in range(2):
        orders.append(m.shuffle_rng.permutation(10))
    m.shuffle_rng.bit_generator.state = rng_state
    assert not np.array_equal(orders[0], orders[1])


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = blobs(n=100)
    m = model()
    seen = []

    class Spy(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["val_loss"])

    m.fit(x, y, epochs=1, batch_size=10, validation_split=0.2, callbacks=[Spy()], verbose=0)
    assert seen[0] == pytest.approx(m.evaluate(x[80:], y[80:])[0], rel=1e-6)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(x, y, validation_split=1.5, verbose=0)


def test_one_hot_targets_and_labels_train_the_same():
    x, y = blobs(n=64)
    a, b = model(seed=1), model(seed=1)
    a.fit(x, y, epochs=2, batch_size=16, verbose=0)
    b.fit(x, np.eye(3, dtype=np.float32)[y], epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-5, atol=1e-6)


# -- EarlyStopping ---------------------------------------------------------------------
class Scripted(C.Callback):
    """Replaces logs[monitor] with scripted values and records the weights each epoch."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key, self.weights = values, key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.flat_params.copy())


def run_scripted(values, **es_kwargs):
    x, y = blobs(n=40)
    m = model()
    script = Scripted(values)
    es = C.EarlyStopping(**es_kwargs)
    h = m.fit(x, y, epochs=len(values), batch_size=20, validation_split=0.25, callbacks=[script, es], verbose=0)
    return m, script, es, h


def test_early_stopping_patience_stops_after_patience_epochs_without_improvement():
    _, _, es, h = run_scripted([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6], patience=3)
    # best 0.8 at epoch 1; epochs 2, 3, 4 do not improve -> stop after epoch 4
    assert h.epoch == [0, 1, 2, 3, 4]
    assert es.stopped_epoch == 4 and es.best == 0.8 and es.best_epoch == 1


def test_early_stopping_min_delta_and_max_mode():
    _, _, es, h = run_scripted([1.0, 0.95, 0.92, 0.91, 0.5], patience=2, min_delta=0.1)
    assert h.epoch == [0, 1, 2]  # 0.95 and 0.92 are not better than 1.0 - 0.1
    _, _, es, h = run_scripted([0.1, 0.2, 0.3, 0.25, 0.28, 0.29], patience=2, mode="max")
    assert h.epoch == [0, 1, 2, 3, 4] and es.best == 0.3
    # "auto" picks max for accuracies
    assert C.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert C.EarlyStopping(monitor="val_loss").mode == "min"


def test_early_stopping_restores_best_weights_when_stopping():
    m, script, es, h = run_scripted([1.0, 0.5, 0.9, 0.8, 0.7], patience=2, restore_best_weights=True)
    assert h.epoch == [0, 1, 2, 3]
    np.testing.assert_array_equal(m.flat_params, script.weights[1])


def test_early_stopping_restores_best_weights_even_when_it_never_fired():
    m, script, es, h = run_scripted([1.0, 0.4, 0.6, 0.7], patience=10, restore_best_weights=True)
    assert es.stopped_epoch == 0 and h.epoch == [0, 1, 2, 3]
    np.testing.assert_array_equal(m.flat_params, script.weights[1])
    assert not np.array_equal(script.weights[1], script.weights[3])


def test_early_stopping_start_from_epoch_and_baseline():
    _, _, es, h = run_scripted([0.1, 0.5, 0.6, 0.7, 0.8, 0.9], patience=1, start_from_epoch=2)
    assert h.epoch == [0, 1, 2, 3]  # epochs 0-1 ignored: best 0.6 at epoch 2, epoch 3 worse
    values = [1.0, 0.9, 0.95, 0.97, 0.99, 0.99]
    _, _, es, h = run_scripted(values, patience=2)
    assert h.epoch == [0, 1, 2, 3]
    _, _, es, h = run_scripted(values, patience=2, baseline=0.5)
    assert h.epoch == [0, 1, 2]  # the improvements never beat the baseline: wait was never reset


def test_early_stopping_missing_monitor_is_a_clear_error():
    x, y = blobs(n=40)
    with pytest.raises(KeyError, match="val_loss"):
        model().fit(x, y, epochs=2, callbacks=[C.EarlyStopping()], verbose=0)


def test_early_stopping_on_real_validation_loss_keeps_the_best_model():
    x, y = blobs(n=200)
    m = model(optimizer=fastdl.optim.SGD(lr=0.5))
    es = C.EarlyStopping(patience=2, restore_best_weights=True)
    h = m.fit(x[:150], y[:150], epochs=30, batch_size=16, validation_data=(x[150:], y[150:]), callbacks=[es],
              verbose=0)
    best = min(h.history["val_loss"])
    assert m.evaluate(x[150:], y[150:])[0] == pytest.approx(best, rel=1e-6)


# -- other callbacks --------------------------------------------------------------------
def test_learning_rate_scheduler_with_schedules_and_functions():
    x, y = blobs(n=40)
    m = model()
    h = m.fit(x, y, epochs=5, batch_size=20, verbose=0,
              callbacks=[C.LearningRateScheduler(schedules.StepDecay(2, gamma=0.5))])
    assert h.history["lr"] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3])
    m = model()
    h = m.fit(x, y, epochs=3, batch_size=20, verbose=0,
              callbacks=[C.LearningRateScheduler(lambda epoch, lr: lr * 0.1 if epoch else lr)])
    assert h.history["lr"] == pytest.approx([1e-2, 1e-3, 1e-4])
    m = model()
    m.fit(x, y, epochs=1, batch_size=10, verbose=0,
          callbacks=[C.LearningRateScheduler(schedules.InverseSqrtDecay(), per="step")])
    assert m.optimizer.lr == pytest.approx(1e-2 / np.sqrt(4 + 1))


def test_reduce_lr_on_plateau_callback():
    x, y = blobs(n=40)
    m = model()
    script = Scripted([1.0, 1.0, 1.0, 1.0, 1.0])
    h = m.fit(x, y, epochs=5, batch_size=20, validation_split=0.25, verbose=0,
              callbacks=[script, C.ReduceLROnPlateau(patience=1, factor=0.5)])
    # bad epochs 1, 2 -> reduce after epoch 2; 3, 4 -> reduce after epoch 4
    assert h.history["lr"] == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3])
    assert m.optimizer.lr == pytest.approx(2.5e-3)


def test_model_checkpoint_saves_every_epoch_or_the_best(tmp_path):
    x, y = blobs(n=40)
    m = model()
    m.fit(x, y, epochs=3, batch_size=20, verbose=0, callbacks=[C.ModelCheckpoint(tmp_path / "ep{epoch:02d}.fdl")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep01.fdl", "ep02.fdl", "ep03.fdl"]
    np.testing.assert_array_equal(fastdl.load(tmp_path / "ep03.fdl").flat_params, m.flat_params)
    script = Scripted([0.5, 0.3, 0.4])
    best = tmp_path / "best.fdl"
    m.fit(x, y, epochs=3, batch_size=20, validation_split=0.25, verbose=0,
          callbacks=[script, C.ModelCheckpoint(best, save_best_only=True)])
    np.testing.assert_array_equal(fastdl.load(best).flat_params, script.weights[1])


def test_csv_logger(tmp_path):
    x, y = blobs(n=40)
    path = tmp_path / "log.csv"
    model().fit(x, y, epochs=3, batch_size=20, verbose=0, validation_split=0.25, callbacks=[C.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert float(rows[2]["loss"]) > 0


# -- progress output ------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def run_progress(stream, verbose):
    x, y = blobs(n=64)
    m = model()
    cbs = C.CallbackList(None, m, verbose, 2, 4, C.History(), stream=stream)
    # drive the callbacks as fit does
    cbs.on_train_begin()
    for epoch in range(2):
        cbs.on_epoch_begin(epoch)
        for b in range(4):
            cbs.on_train_batch_end(b, {"loss": 0.5, "accuracy": 0.75})
        cbs.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.75, "lr": 1e-3, "time": 0.01})
    cbs.on_train_end()
    return stream.getvalue()


def test_progress_never_writes_carriage_returns_to_a_file():
    for verbose in (1, 2, "auto"):
        out = run_progress(io.StringIO(), verbose)
        assert "\r" not in out
        assert out.count("Epoch ") == 2 and "loss: 0.5000 - accuracy: 0.7500" in out
        assert len(out.strip().splitlines()) == 4
    assert run_progress(io.StringIO(), 0) == ""


def test_progress_bar_on_a_terminal():
    out = run_progress(FakeTTY(), 1)
    assert "\r" in out and "4/4" in out and "━" in out and "ms/step" in out
    out2 = run_progress(FakeTTY(), 2)
    assert "\r" not in out2


class NarrowTTY(io.TextIOWrapper):
    """A terminal whose encoding is given (ascii, cp1252...)."""

    def __init__(self, encoding):
        super().__init__(io.BytesIO(), encoding=encoding, write_through=True)

    def isatty(self):
        return True

    def getvalue(self):
        return self.buffer.getvalue().decode(self.encoding)


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
@pytest.mark.parametrize("verbose", [1, 2])
def test_progress_on_a_stream_without_the_bar_glyphs(encoding, verbose):
    # An ASCII or cp1252 console (PYTHONIOENCODING=ascii, older Windows consoles) cannot
    # encode the box-drawing bar: fit must not die of UnicodeEncodeError mid-epoch.
    out = run_progress(NarrowTTY(encoding), verbose)
    assert out.count("Epoch ") == 2 and "4/4 " + "=" * C.ProgressBar.BAR in out
    assert ("\r" in out) == (verbose == 1)


def test_fit_prints_one_line_per_epoch_when_not_a_terminal(capsys):
    x, y = blobs(n=64)
    model().fit(x, y, epochs=2, batch_size=16)  # verbose="auto", pytest's stdout is not a tty
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("Epoch ") == 2 and "samples/s" in out


# -- augmentation -----------------------------------------------------------------------
def test_augmentation_helpers():
    rng = np.random.default_rng(0)
    imgs = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 12)
    flipped = fastdl.augment.HorizontalFlip((3, 4), p=1.0)(imgs.copy(), rng)
    np.testing.assert_array_equal(flipped.reshape(2, 3, 4), imgs.reshape(2, 3, 4)[:, :, ::-1])
    same = fastdl.augment.HorizontalFlip((3, 4), p=0.0)(imgs.copy(), rng)
    np.testing.assert_array_equal(same, imgs)
    x = np.zeros((1000, 20), np.float32)
    noisy = fastdl.augment.GaussianNoise(0.5)(x, rng)
    assert noisy is x and np.std(x) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError, match="image_shape"):
        fastdl.augment.HorizontalFlip((3,))
    with pytest.raises(ValueError, match="std"):
        fastdl.augment.GaussianNoise(-1)


def test_fit_applies_augmentation_per_batch_without_touching_the_data():
    x, y = blobs(n=64)
    keep = x.copy()
    seen = []

    class Record:
        def __call__(self, xb, rng):
            seen.append(xb.copy())
            xb += 100.0

    m = model()
    m.fit(x, y, epochs=1, batch_size=16, verbose=0, augment=[Record()])
    np.testing.assert_array_equal(x, keep)
    assert len(seen) == 4 and all(s.shape == (16, 8) for s in seen)


# -- bad input --------------------------------------------------------------------------
def test_fit_argument_errors():
    x, y = blobs(n=20)
    m = model()
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        m.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="y: expected 20 targets"):
        m.fit(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        m.fit(x, y, verbose=3)
    with pytest.raises(ValueError, match="validation_data"):
        m.fit(x, y, validation_data=(x,), verbose=0)
    with pytest.raises(TypeError, match="callbacks"):
        m.fit(x, y, callbacks=[object()], verbose=0)
    with pytest.raises(ValueError, match="metrics"):
        m.compile(metrics=["f1"])
    with pytest.raises(ValueError, match="loss"):
        m.compile(loss="hinge")
    with pytest.raises(ValueError, match="optimizer"):
        m.compile(optimizer="lbfgs")
    unc = fastdl.Sequential([Dense(8, 3)])
    with pytest.raises(RuntimeError, match="compile"):
        unc.fit(x, y)
