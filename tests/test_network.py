"""fastdl.Sequential: layout of the flat buffers, fusion, initializers, whole-network
gradients against float64 finite differences, inference behaviour and bad input."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import Dense, Dropout, BatchNorm, Maxout
from fastdl._stages import DropoutStage

import network_reference as NR


def data(n=12, k=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(np.float32)
    y = rng.integers(0, c, n)
    return x, y


# -- layout -----------------------------------------------------------------------------
def test_flat_buffer_views_and_decay_segments():
    m = fastdl.Sequential([Dense(4, 3, activation="prelu"), BatchNorm(3), Dense(3, 2)], seed=1)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["dense_0.w", "dense_0.b", "dense_0.alpha", "batchnorm_0.gamma", "batchnorm_0.beta",
                     "dense_1.w", "dense_1.b"]
    assert m.num_params == 12 + 3 + 3 + 3 + 3 + 6 + 2
    # every parameter is a view into the one flat buffer, in order, without gaps
    offset = 0
    for _, view in m.named_parameters():
        assert np.shares_memory(view, m.flat_params)
        assert view.__array_interface__["data"][0] == m.flat_params.__array_interface__["data"][0] + 4 * offset
        offset += view.size
    assert offset == m.num_params
    # only the weight matrices are decayed: not biases, PReLU slopes, gamma or beta
    np.testing.assert_array_equal(m.decay_segments, [[0, 12], [24, 30]])
    w = m.parameters()[0]
    w[0, 0] = 42.0
    assert m.flat_params[0] == 42.0
    assert m.flat_grads.shape == m.flat_params.shape and m.flat_grads.dtype == np.float32


def test_activation_layers_fuse_into_dense_and_dropout_into_its_epilogue():
    m = fastdl.Sequential([Dropout(0.2), Dense(8, 6), "relu", Dropout(0.5), Dense(6, 4), fastdl.Tanh(),
                           Dense(4, 2)], seed=0)
    kinds = [type(s).__name__ for s in m._graph.stages]
    assert kinds == ["DropoutStage", "DenseStage", "DenseStage", "DenseStage"]
    assert m._graph.stages[1].act == "relu" and m._graph.stages[1].p == 0.5
    assert m._graph.stages[2].act == "tanh" and m._graph.stages[2].p == 0.0
    # backward stops at the first stage with parameters, which computes no dx
    assert m._graph.bwd_stages[-1] is m._graph.stages[1] and not m._graph.stages[1].need_dx and m._graph.stages[2].need_dx
    # each dropout has its own Philox stream
    assert m._graph.stages[0].stream != m._graph.stages[1].stream
    text = m.summary(print_fn=None)
    assert "dense_dropout" in text and f"{m.num_params:,}" in text


def test_activation_layer_given_an_activation_layer_keeps_its_activation():
    a = fastdl.layers.Activation(fastdl.LeakyReLU(0.2))
    assert a.activation == "leaky_relu" and a.get_config()["activation"] == "leaky_relu"
    assert fastdl.layers.Activation(fastdl.ReLU()).activation == "relu"


def test_default_initializers_glorot_and_he():
    m = fastdl.Sequential([Dense(400, 300, activation="relu"), Dense(300, 200, activation="tanh"),
                           Dense(200, 10, bias_init=0.1)], seed=3)
    p = dict(m.named_parameters())
    he = math.sqrt(2) * math.sqrt(3 / 400)
    glorot = math.sqrt(6 / (300 + 200))
    assert np.abs(p["dense_0.w"]).max() <= he and np.abs(p["dense_0.w"]).max() > 0.95 * he
    assert np.abs(p["dense_1.w"]).max() <= glorot and np.abs(p["dense_1.w"]).max() > 0.95 * glorot
    assert np.std(p["dense_0.w"]) == pytest.approx(he / math.sqrt(3), rel=0.02)
    assert not p["dense_0.b"].any() and not p["dense_1.b"].any()
    np.testing.assert_array_equal(p["dense_2.b"], np.float32(0.1))


@pytest.mark.parametrize("name,std", [("glorot_normal", math.sqrt(2 / (500 + 300))), ("he_normal", math.sqrt(2 / 500)),
                                      ("uniform", 1 / math.sqrt(500) / math.sqrt(3)),
                                      ("he_uniform", math.sqrt(2) * math.sqrt(3 / 500) / math.sqrt(3))])
def test_named_initializers(name, std):
    m = fastdl.Sequential([Dense(500, 300, init=name)], seed=0)
    assert np.std(m.parameters()[0]) == pytest.approx(std, rel=0.02)


def test_same_seed_same_weights_different_seed_different():
    layers = lambda: [Dense(10, 8, activation="relu"), Dense(8, 3)]  # noqa: E731
    a, b, c = (fastdl.Sequential(layers(), seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


def test_input_dim_inferred_for_dense_without_in_features():
    m = fastdl.Sequential([Dense(6, 4, activation="relu"), Dense(3), Dense(2)], seed=0)
    assert [s.layer.in_features for s in m._graph.stages] == [6, 4, 3]
    assert m.output_dim == 2


# -- gradients of whole networks vs float64 finite differences ---------------------------
NETS = {
    "relu-linear": lambda: [Dense(5, 6, activation="relu"), Dense(6, 3)],
    "tanh-sigmoid-gelu": lambda: [Dense(5, 4, activation="tanh"), Dense(4, 4, activation="sigmoid"),
                                  Dense(4, 4, activation="gelu"), Dense(4, 3)],
    "prelu-layer": lambda: [Dense(5, 6), fastdl.PReLU(), Dense(6, 3)],
    "leaky-elu-silu-softplus": lambda: [Dense(5, 4, activation="leaky_relu", alpha=0.2),
                                        Dense(4, 4, activation="elu"), Dense(4, 4, activation="silu"),
                                        Dense(4, 4, activation="softplus"), Dense(4, 3)],
    "maxout": lambda: [Maxout(5, 4, pieces=3), Dense(4, 3)],
    "batchnorm": lambda: [Dense(5, 6, activation="relu"), BatchNorm(6), Dense(6, 3)],
    "no-bias-hardtanh": lambda: [Dense(5, 6, activation="hard_tanh", use_bias=False), Dense(6, 3)],
}


@pytest.mark.parametrize("net", sorted(NETS))
def test_network_gradients_match_float64_finite_differences(net):
    x, y = data()
    m = fastdl.Sequential(NETS[net](), seed=11)
    m.compile(optimizer="sgd", loss="softmax_cross_entropy")
    loss = m.compute_gradients(x, y)
    ref = NR.finite_difference_grads(m, x, y)
    assert loss == pytest.approx(NR.forward_loss(m, m.flat_params.astype(np.float64), x, y), rel=1e-5)
    np.testing.assert_allclose(m.flat_grads, ref, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_network_gradients_other_losses(loss):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.random((10, 2)).astype(np.float32)
    m = fastdl.Sequential([Dense(4, 5, activation="tanh"), Dense(5, 2)], seed=4)
    m.compile(optimizer="sgd", loss=loss)
    m.compute_gradients(x, y)
    np.testing.assert_allclose(m.flat_grads, NR.finite_difference_grads(m, x, y, loss), rtol=2e-3, atol=2e-5)


def test_compute_gradients_does_not_update_and_apply_gradients_does():
    x, y = data()
    m = fastdl.Sequential([Dense(5, 4, activation="relu"), Dense(4, 3)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD(lr=0.1))
    before = m.flat_params.copy()
    m.compute_gradients(x, y)
    np.testing.assert_array_equal(m.flat_params, before)
    m.apply_gradients()
    np.testing.assert_allclose(m.flat_params, before - 0.1 * m.flat_grads, rtol=1e-6, atol=1e-7)


# -- dropout and inference --------------------------------------------------------------
def test_dropout_fresh_masks_each_step_and_none_at_inference():
    x = np.ones((16, 32), np.float32)
    m = fastdl.Sequential([Dropout(0.5), Dense(32, 32, init="zeros", bias_init=1.0, activation="relu"),
                           Dropout(0.5), Dense(32, 2)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD())
    drop_in, dense = m._graph.stages[0], m._graph.stages[1]
    m.compute_gradients(x, np.zeros(16, np.int64))
    y1, mask1 = dense.y.copy(), drop_in.mask.copy()
    m.compute_gradients(x, np.zeros(16, np.int64))
    assert not np.array_equal(mask1, drop_in.mask)
    assert not np.array_equal(y1, dense.y)
    # inverted dropout: kept units are scaled by 1/(1-p), dropped are 0
    assert set(np.unique(dense.y)) <= {0.0, 2.0}
    assert 0.3 < np.mean(dense.y == 0) < 0.7
    # inference: identity dropout, deterministic
    np.testing.assert_array_equal(m.predict(x), m.predict(x))
    out = dense.forward_eval(x)
    np.testing.assert_array_equal(out, np.ones((16, 32), np.float32))


def test_scale_at_test_dropout_multiplies_by_keep_probability_at_inference():
    x = np.ones((4, 8), np.float32)
    m = fastdl.Sequential([Dense(8, 8, init="zeros", bias_init=1.0, activation="relu"),
                           Dropout(0.25, scale_at_test=True), Dense(8, 2)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD())
    m.compute_gradients(x, np.zeros(4, np.int64))
    assert set(np.unique(m._graph.stages[0].y)) <= {0.0, 1.0}  # no scaling in training
    np.testing.assert_allclose(m._graph.stages[0].forward_eval(x), 0.75)
    # input dropout in the same formulation
    m2 = fastdl.Sequential([Dropout(0.5, scale_at_test=True), Dense(8, 2)], seed=0)
    np.testing.assert_allclose(m2._graph.stages[0].forward_eval(x), 0.5)
    assert isinstance(m2._graph.stages[0], DropoutStage)


def test_batchnorm_uses_running_statistics_at_inference():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 3)) * 3 + 5).astype(np.float32)
    m = fastdl.Sequential([BatchNorm(3, momentum=1.0), Dense(3, 2)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD())
    m.compute_gradients(x, np.zeros(64, np.int64))
    bn = m._graph.stages[0]
    np.testing.assert_allclose(bn.running_mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, x.var(0, ddof=1), rtol=1e-4)
    y = bn.forward_eval(x[:5])
    np.testing.assert_allclose(y, (x[:5] - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + 1e-5), rtol=1e-4, atol=1e-5)


def test_max_norm_caps_each_units_incoming_weights():
    x, y = data()
    m = fastdl.Sequential([Dense(5, 4, activation="relu", init=fastdl.initializers.Constant(3.0), max_norm=1.5),
                           Dense(4, 3)], seed=0)
    m.compile(optimizer=fastdl.optim.SGD(lr=0.01))
    m.train_step(x, y)
    norms = np.linalg.norm(m.parameters()[0], axis=0)
    np.testing.assert_allclose(norms, 1.5, rtol=1e-5)
    assert np.linalg.norm(m.parameters()[2], axis=0).max() > 0  # the other layer is untouched by it


# -- bad input --------------------------------------------------------------------------
def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="activation"):
        Dense(3, 4, activation="relux")
    with pytest.raises(ValueError, match="out_features"):
        Dense(3, 0)
    with pytest.raises(ValueError, match="p:"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="pieces"):
        Maxout(3, 4, pieces=0)
    with pytest.raises(ValueError, match="in_features=5"):
        fastdl.Sequential([Dense(4, 3), Dense(5, 2)])
    with pytest.raises(ValueError, match="input_dim"):  # built from data (Keras) or input_dim, not before
        fastdl.Sequential([Dense(3)]).num_params
    with pytest.raises(ValueError, match="must follow a Dense"):
        fastdl.Sequential([Dense(4, 3), BatchNorm(3), "relu"])
    with pytest.raises(ValueError, match="already applies"):
        fastdl.Sequential([Dense(4, 3, activation="tanh"), "relu"])
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        fastdl.Sequential([Dense(4, 3), 42])
    with pytest.raises(ValueError, match="device"):
        fastdl.Sequential([Dense(4, 3)], device="tpu")
    with pytest.raises(ValueError, match="seed"):
        fastdl.Sequential([Dense(4, 3)], seed=-1)
    with pytest.raises(ValueError, match="init"):
        Dense(4, 3, init="glorious")
    m = fastdl.Sequential([Dense(4, 3)], seed=0)
    with pytest.raises(RuntimeError, match="compile"):
        m.train_step(np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"x: expected an array of shape \(N, 4\)"):
        m.predict(np.zeros((2, 5)))
    m.compile()
    with pytest.raises(TypeError, match="x: expected real numbers, got complex"):
        m.train_step(np.zeros((2, 4), np.complex64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="label 7"):
        m.evaluate(np.zeros((2, 4)), np.array([0, 7]))


def test_cuda_device_without_gpu_is_a_clear_error(monkeypatch):
    from fastdl import _device

    monkeypatch.delitem(_device._BACKENDS, "cuda", raising=False)
    try:
        import fastdl.cuda as fc

        if fc.is_available():
            pytest.skip("a GPU (or the CUDA simulator) is available here")
    except ImportError:
        pass
    with pytest.raises((RuntimeError, ImportError), match=r"fastdl\[cuda\]|cuda"):
        fastdl.Sequential([Dense(4, 3)], device="cuda")

