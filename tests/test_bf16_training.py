"""compile(precision="bf16") trains MNIST to the fp32 accuracy: the mean test accuracy of
five seeds within 0.3 points of fp32's, with the same seeds (initial weights, shuffles and
dropout masks), on the MNIST test set in ../shared/data/mnist (8,000 images to train on,
2,000 to score). One network trains through DenseStack (plain Dense layers), one through
the layer-by-layer stages (a Dropout between them)."""

import numpy as np
import pytest

import fastdl

from test_datasets import SHARED_MNIST

SEEDS = range(5)


@pytest.fixture(scope="module")
def mnist():
    if not SHARED_MNIST.is_dir():
        pytest.skip("../shared/data/mnist is not there")
    x, y = fastdl.datasets.mnist(SHARED_MNIST, split="test")
    return x[:8000], y[:8000], x[8000:], y[8000:]


def accuracy(data, precision, seed, dropout):
    xtr, ytr, xte, yte = data
    layers = [fastdl.Dense(784, 256, activation="relu")]
    layers += [fastdl.Dropout(0.2)] if dropout else []
    model = fastdl.Sequential(layers + [fastdl.Dense(256, 10)], seed=seed)
    model.compile(optimizer=fastdl.optim.Adam(lr=1e-3), loss="softmax_cross_entropy", metrics=["accuracy"],
                  precision=precision)
    assert model.precision == precision
    model.fit(xtr, ytr, epochs=6, batch_size=128, verbose=0)
    return model.evaluate(xte, yte)[1]


@pytest.mark.parametrize("dropout", [False, True], ids=["dense_stack", "dropout"])
def test_bf16_training_reaches_the_fp32_accuracy(mnist, dropout):
    fp32 = np.mean([accuracy(mnist, "fp32", s, dropout) for s in SEEDS])
    bf16 = np.mean([accuracy(mnist, "bf16", s, dropout) for s in SEEDS])
    assert fp32 > 0.94, fp32  # it learned at all
    assert abs(bf16 - fp32) <= 0.003, (bf16, fp32)


def test_precision_is_checked_and_shown():
    model = fastdl.Sequential([fastdl.Dense(4, 3)], seed=0)
    assert model.precision == "fp32"
    with pytest.raises(ValueError, match=r"precision: expected 'fp32' or 'bf16', got 'fp16'"):
        model.compile(precision="fp16")
    model.compile(precision="bf16")
    assert "precision=bf16" in model.summary(print_fn=None)
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    # bf16 runs in inference too: the prediction is the fp32 one within bf16 rounding.
    p_bf16 = model.predict(x)
    model.compile(precision="fp32")
    np.testing.assert_allclose(p_bf16, model.predict(x), rtol=0.02, atol=0.02)


def test_precision_travels_with_the_model(tmp_path):
    import pickle

    model = fastdl.Sequential([fastdl.Dense(6, 5, activation="relu"), fastdl.Dense(5, 3)], seed=1)
    model.compile(optimizer="adam", loss="softmax_cross_entropy", precision="bf16")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 6), dtype=np.float32), rng.integers(0, 3, 8)
    model.train_step(x, y)
    model.save(tmp_path / "m.fastdl")
    loaded, pickled = fastdl.load(tmp_path / "m.fastdl"), pickle.loads(pickle.dumps(model))
    expected = model.train_step(x, y)
    for copy in (loaded, pickled):
        assert copy.precision == "bf16"
        assert copy.train_step(x, y) == expected  # the same next step, in bf16
        np.testing.assert_array_equal(copy.flat_params, model.flat_params)
    with pytest.raises(ValueError, match="precision"):
        model.compile(precision=None)


def test_auto_never_steps_inside_the_bf16_gemms(monkeypatch):
    from fastdl import step_plan

    # A network large enough, on a cache small enough, that fp32 takes the step inside the
    # weight-gradient GEMMs.
    monkeypatch.setattr(step_plan, "separate_pass_leaves_cache", lambda weights, state: True)
    layers = [fastdl.Dense(1024, 1024, activation="relu"), fastdl.Dropout(0.1), fastdl.Dense(1024, 10)]
    fp32 = fastdl.Sequential(layers, seed=0).compile(optimizer="adam", loss="softmax_cross_entropy")
    assert fp32.step_plan.optimizer_step == "in_backward"
    layers = [fastdl.Dense(1024, 1024, activation="relu"), fastdl.Dropout(0.1), fastdl.Dense(1024, 10)]
    bf16 = fastdl.Sequential(layers, seed=0).compile(optimizer="adam", loss="softmax_cross_entropy",
                                                     precision="bf16")
    assert bf16.step_plan.optimizer_step == "separate"
    assert "bf16" in bf16.step_plan.reason
    # Asked for, it still runs there.
    bf16.compile(optimizer="adam", loss="softmax_cross_entropy", precision="bf16", optimizer_step="in_backward")
    assert bf16.step_plan.optimizer_step == "in_backward"
