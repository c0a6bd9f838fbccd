"""Keras 3 parity of the trainer: every callback hook at the point Keras calls it,
validation_freq, iterable inputs, TerminateOnNaN / LambdaCallback, Sequential.add,
count_params, repr, Keras's spellings, output activations, building from data and the
step plan's visibility."""

import numpy as np
import pytest

import fastdl
from fastdl import BatchNorm, Dense, Dropout, callbacks as C


def blobs(n=120, k=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, k)) * 4
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.standard_normal((n, k))).astype(np.float32)
    return x, y


def model(seed=0, **compile_kw):
    m = fastdl.Sequential([Dense(8, 16, activation="relu"), Dense(16, 3)], seed=seed)
    compile_kw.setdefault("optimizer", fastdl.optim.Adam(lr=1e-2))
    m.compile(metrics=["accuracy"], **compile_kw)
    return m


class Recorder(C.Callback):
    """Records every hook call as (hook, argument) in order."""

    def __init__(self):
        self.calls = []

    def _rec(name):
        def hook(self, *args):
            self.calls.append((name,) + tuple(a for a in args[:1] if isinstance(a, int)))
        return hook

    for _name in C.HOOKS:
        if _name not in ("on_batch_begin", "on_batch_end"):
            locals()[_name] = _rec(_name)
    del _name


def test_fit_calls_every_training_and_validation_hook_where_keras_does():
    x, y = blobs(n=40)
    rec = Recorder()
    m = model()
    m.fit(x[:30], y[:30], epochs=2, batch_size=10, validation_data=(x[30:], y[30:]), validation_batch_size=6,
          callbacks=[rec], verbose=0)
    epoch = ([("on_train_batch_begin", b) if i == 0 else ("on_train_batch_end", b) for b in range(3)
              for i in range(2)] + [("on_test_begin",)]
             + [("on_test_batch_begin", 0), ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                ("on_test_batch_end", 1), ("on_test_end",)])
    expected = [("on_train_begin",)]
    for e in range(2):
        expected += [("on_epoch_begin", e)] + epoch + [("on_epoch_end", e)]
    expected += [("on_train_end",)]
    assert rec.calls == expected
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 3, "samples": 30}
    assert rec.model is m


def test_evaluate_and_predict_call_their_hooks_with_outputs():
    x, y = blobs(n=20)
    m = model()
    rec = Recorder()
    logs = m.evaluate(x, y, batch_size=8, callbacks=[rec], return_dict=True)
    assert rec.calls == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                         ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_batch_begin", 2),
                         ("on_test_batch_end", 2), ("on_test_end",)]
    assert set(logs) == {"loss", "accuracy"}
    outputs = []
    cb = C.LambdaCallback(on_predict_batch_end=lambda b, logs: outputs.append(logs["outputs"]),
                          on_predict_begin=lambda logs: outputs.append("begin"))
    pred = m.predict(x, batch_size=8, callbacks=[cb])
    assert outputs[0] == "begin" and len(outputs) == 4
    np.testing.assert_array_equal(np.concatenate(outputs[1:]), pred)


def test_on_batch_hooks_are_the_train_batch_hooks_default():
    x, y = blobs(n=30)
    seen = []

    class Old(C.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, round(logs["loss"], 6) > 0))

    model().fit(x, y, epochs=1, batch_size=10, callbacks=[Old()], verbose=0)
    assert seen == [("begin", 0), ("end", 0, True), ("begin", 1), ("end", 1, True), ("begin", 2), ("end", 2, True)]


def test_a_stop_asked_for_after_a_batch_ends_the_epoch_there():
    x, y = blobs(n=50)

    class StopAfterTwo(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    m = model()
    h = m.fit(x, y, epochs=3, batch_size=10, callbacks=[StopAfterTwo()], verbose=0)
    assert h.epoch == [0] and m.optimizer.step_count == 2


@pytest.mark.parametrize("freq,validated", [(2, [1, 3]), ([1, 4], [0, 3]), (1, [0, 1, 2, 3])])
def test_validation_freq(freq, validated):
    x, y = blobs(n=40)
    h = model().fit(x, y, epochs=4, batch_size=10, validation_split=0.25, validation_freq=freq, verbose=0)
    # History keeps val_loss only for the epochs that validated (Keras leaves them out)
    assert len(h.history["val_loss"]) == len(validated)
    with pytest.raises(ValueError, match="validation_freq"):
        model().fit(x, y, validation_freq=0, verbose=0)


# -- iterable inputs ---------------------------------------------------------------------
def test_a_list_of_batches_trains_like_the_arrays_in_that_order():
    x, y = blobs(n=60)
    a, b = model(seed=3), model(seed=3)
    batches = [(x[s:s + 20], y[s:s + 20]) for s in range(0, 60, 20)]
    ha = a.fit(batches, epochs=2, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=20, shuffle=False, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert ha.history["loss"] == hb.history["loss"]
    assert a.evaluate(batches) == pytest.approx(b.evaluate(x, y))
    np.testing.assert_array_equal(a.predict(batches), a.predict(x))


def test_a_generator_with_steps_per_epoch_and_one_that_runs_out():
    x, y = blobs(n=60)

    def gen():
        while True:
            for s in range(0, 60, 15):
                yield x[s:s + 15], y[s:s + 15]

    m = model()
    h = m.fit(gen(), steps_per_epoch=4, epochs=3, verbose=0)
    assert h.epoch == [0, 1, 2] and m.optimizer.step_count == 12
    once = ((x[s:s + 15], y[s:s + 15]) for s in range(0, 60, 15))
    m = model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(once, epochs=3, verbose=0)
    assert h.epoch == [0] and m.optimizer.step_count == 4


def test_batches_may_carry_sample_weights_and_bad_batches_are_named():
    x, y = blobs(n=20)
    m = model()
    with pytest.raises(ValueError, match="batch 1"):
        m.fit([(x[:10], y[:10]), (x[10:], y[10:15])], verbose=0)
    with pytest.raises(ValueError, match=r"x: batch 0: expected a tuple \(x, y\)"):
        m.fit(iter([x]), verbose=0)
    with pytest.raises(ValueError, match="y: give the targets"):
        m.fit([(x, y)], y, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit([(x, y)], validation_split=0.2, verbose=0)


def test_a_torch_dataloader():
    torch = pytest.importorskip("torch")
    x, y = blobs(n=64)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False)
    a, b = model(seed=5), model(seed=5)
    a.fit(loader, epochs=2, verbose=0)
    b.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert a.evaluate(loader, return_dict=True) == pytest.approx(b.evaluate(x, y, return_dict=True))


# -- callbacks ----------------------------------------------------------------------------
def test_terminate_on_nan_stops_quietly_keeping_the_last_finite_step(capsys):
    x, y = blobs(n=40)
    x[25] = np.nan
    m = model()
    h = m.fit(x, y, epochs=3, batch_size=10, shuffle=False, callbacks=[C.TerminateOnNaN()], verbose=0)
    assert h.epoch == [0] and m.optimizer.step_count == 2
    assert np.isfinite(m.flat_params).all()
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(fastdl.NonFiniteLossError):
        model().fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)


def test_lambda_callback_hooks_and_refusals():
    x, y = blobs(n=30)
    log = []
    cb = C.LambdaCallback(on_epoch_end=lambda e, logs: log.append(("epoch", e, "loss" in logs)),
                          on_train_begin=lambda logs: log.append("begin"),
                          on_test_end=lambda logs: log.append(("test", round(logs["loss"], 3) >= 0)))
    model().fit(x, y, epochs=2, batch_size=10, validation_split=0.2, callbacks=[cb], verbose=0)
    assert log == ["begin", ("test", True), ("epoch", 0, True), ("test", True), ("epoch", 1, True)]
    with pytest.raises(TypeError, match="unknown hook"):
        C.LambdaCallback(on_nothing=print)
    with pytest.raises(TypeError, match="on_epoch_end: expected a function"):
        C.LambdaCallback(on_epoch_end=3)


# -- the model ------------------------------------------------------------------------------
def test_add_gives_the_weights_of_the_whole_list_and_keeps_trained_ones():
    full = fastdl.Sequential([Dense(8, 16, activation="relu"), Dropout(0.1), Dense(16, 3)], seed=4)
    m = fastdl.Sequential(seed=4)
    m.add(Dense(8, 16, activation="relu")).add(Dropout(0.1))
    m.add(Dense(3))
    np.testing.assert_array_equal(m.flat_params, full.flat_params)
    assert m.count_params() == full.count_params() == 8 * 16 + 16 + 16 * 3 + 3
    x, y = blobs(n=30)
    m.compile(optimizer="adam")
    m.fit(x, y, epochs=1, verbose=0)
    trained = dict((k, v.copy()) for k, v in m.named_parameters())
    m.add("softmax")  # a Keras output activation on the last Dense layer
    for name, view in m.named_parameters():
        np.testing.assert_array_equal(view, trained[name])
    np.testing.assert_allclose(m.predict(x).sum(axis=1), 1.0, rtol=1e-5)
    assert m.optimizer.step_count == 0  # the optimizer starts over on the new layout


def test_built_from_the_first_data_as_keras_does():
    m = fastdl.Sequential([Dense(16, activation="relu"), Dense(3)], seed=1)
    assert not m.built and m.input_dim is None
    with pytest.raises(ValueError, match="not built yet"):
        m.flat_params
    assert "not built yet" in m.summary(print_fn=None)
    m.compile(optimizer="adam", metrics=["accuracy"])
    x, y = blobs(n=30)
    m.fit(x, y, epochs=1, verbose=0)
    assert m.built and m.input_dim == 8
    ref = fastdl.Sequential([Dense(8, 16, activation="relu"), Dense(3)], seed=1)
    ref.compile(optimizer="adam")
    ref.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(m.flat_params, ref.flat_params)
    images = fastdl.Sequential([Dense(4)], seed=0)
    assert images.predict(np.zeros((2, 3, 5))).shape == (2, 4) and images.input_dim == 15


def test_repr_is_readable():
    m = fastdl.Sequential([Dense(784, 64, activation="relu"), Dropout(0.2), Dense(10)], seed=0)
    assert repr(m) == ("Sequential([Dense(in_features=784, out_features=64, activation='relu'), Dropout(p=0.2), "
                       "Dense(in_features=64, out_features=10)], input_dim=784, device='cpu', seed=0)")
    m.compile(optimizer="adam")
    assert repr(m).endswith("compiled: Adam, softmax_cross_entropy, optimizer_step='separate')")


def test_keras_spellings():
    a = Dense(units=16, activation="relu", kernel_initializer="he_normal", bias_initializer="ones", input_dim=8)
    assert (a.in_features, a.out_features, a.init, a.bias_init) == (8, 16, "he_normal", "ones")
    assert Dense(16, input_dim=8).in_features == 8
    assert Dropout(rate=0.3).p == 0.3
    assert fastdl.optim.Adam(learning_rate=0.02).lr == 0.02
    assert fastdl.optim.get("sgd", learning_rate=0.5).learning_rate == 0.5
    m = fastdl.Sequential([a, Dense(3)], seed=0)
    np.testing.assert_array_equal(m.named_parameters()[1][1], 1.0)
    with pytest.raises(TypeError, match="units: the Keras spelling of out_features"):
        Dense(8, 16, units=4)
    with pytest.raises(TypeError, match="kernel_initializer"):
        Dense(8, 4, init="zeros", kernel_initializer="ones")
    with pytest.raises(TypeError, match="rate"):
        Dropout(0.2, rate=0.3)
    with pytest.raises(TypeError, match="learning_rate"):
        fastdl.optim.Adam(0.1, learning_rate=0.2)


def test_softmax_on_the_last_layer_is_fused_and_predict_returns_probabilities():
    x, y = blobs(n=60)
    probs = fastdl.Sequential([Dense(8, 16, activation="relu"), Dense(16, 3, activation="softmax")], seed=2)
    logits = fastdl.Sequential([Dense(8, 16, activation="relu"), Dense(16, 3)], seed=2)
    for m in (probs, logits):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ha = probs.fit(x, y, epochs=2, batch_size=16, verbose=0)
    hb = logits.fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(probs.flat_params, logits.flat_params)
    assert ha.history["loss"] == hb.history["loss"] and ha.history["accuracy"] == hb.history["accuracy"]
    p = probs.predict(x)
    np.testing.assert_allclose(p, logits.predict_proba(x), rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert probs.output_activation == "softmax" and "softmax" in probs.summary(print_fn=None)
    with pytest.raises(ValueError, match="softmax is fused into softmax_cross_entropy"):
        probs.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="only on the last layer"):
        fastdl.Sequential([Dense(8, 4, activation="softmax"), Dense(3)])


def test_sigmoid_on_the_last_layer_with_binary_cross_entropy_is_fused():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    a = fastdl.Sequential([Dense(5, 8, activation="tanh"), Dense(8, 2, activation="sigmoid")], seed=0)
    b = fastdl.Sequential([Dense(5, 8, activation="tanh"), Dense(8, 2)], seed=0)
    for m in (a, b):
        m.compile(optimizer="adam", loss="binary_crossentropy")
        m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_allclose(a.predict(x), 1 / (1 + np.exp(-b.predict(x).astype(np.float64))), rtol=1e-6)
    a.compile(optimizer="adam", loss="mse")  # not fused: the kernel's sigmoid again
    assert a.output_activation is None
    np.testing.assert_allclose(a.predict(x), 1 / (1 + np.exp(-b.predict(x).astype(np.float64))), rtol=1e-6)


def test_the_step_plan_is_visible():
    small = model()
    assert small.step_plan.optimizer_step == "in_stack" and small.step_plan.execution == "dense_stack"
    assert "Optimizer step: in_stack" in small.summary(print_fn=None)
    bn = fastdl.Sequential([Dense(8, 6), BatchNorm(6), Dense(6, 3)], seed=0)
    bn.compile(optimizer="adam", optimizer_step="separate")
    assert bn.step_plan.optimizer_step == "separate" and bn.step_plan.execution == "layers"
    assert "asked for" in bn.step_plan.reason
    with pytest.raises(ValueError, match="in_stack.*DenseStack"):
        bn.compile(optimizer="adam", optimizer_step="in_stack")
