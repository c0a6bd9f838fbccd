"""fastdl.onnx.export: the exported graph, run in onnxruntime, computes what
model.predict does (within 1e-5 relative) for every activation and layer type, at any
batch size."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install fastdl[onnx])")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastdl[onnx])")

import fastdl  # noqa: E402
import fastdl.onnx as fonnx  # noqa: E402
from fastdl import BatchNorm, Dense, Dropout, Maxout  # noqa: E402
from fastdl.activations import NAMES  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def inputs(n=64, k=6, scale=8.0, seed=0):
    # wide inputs: pre-activations beyond softplus's threshold 20 and hard_tanh's clamps
    return (np.random.default_rng(seed).standard_normal((n, k)) * scale).astype(np.float32)


def trained(layers, loss="softmax_cross_entropy", classes=3):
    m = fastdl.Sequential(layers, seed=0)
    m.compile("adam", loss=loss)
    x = inputs(scale=1.0, seed=1)
    y = np.random.default_rng(2).integers(0, classes, len(x))
    if loss == "binary_cross_entropy":
        y = (y.reshape(-1, 1) % 2).astype(np.float32)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)  # moves PReLU slopes and BatchNorm statistics
    return m


def run(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x})[0]


def check(m, x, **kwargs):
    proto = fonnx.export(m, **kwargs)
    got = run(proto, x)
    assert got.dtype == np.float32 and got.shape == (len(x), m.output_dim)
    np.testing.assert_allclose(got, m.predict(x), rtol=RTOL, atol=ATOL)
    return proto


@pytest.mark.parametrize("act", NAMES)
def test_every_activation(act):
    alpha = {"leaky_relu": 0.2, "elu": 0.7}.get(act)
    m = trained([Dense(6, 16, activation=act, alpha=alpha), Dense(16, 3)])
    proto = check(m, inputs())
    ops = [n.op_type for n in proto.graph.node]
    expected = {"linear": [], "relu": ["Relu"], "sigmoid": ["Sigmoid"], "tanh": ["Tanh"], "leaky_relu": ["LeakyRelu"],
                "prelu": ["PRelu"], "elu": ["Elu"], "silu": ["Sigmoid", "Mul"], "gelu": ["Erf"],
                "softplus": ["Greater", "Softplus", "Where"], "hard_tanh": ["Clip"]}[act]
    assert all(op in ops for op in expected), ops


def test_softplus_threshold_and_hard_tanh_clamps_are_reached():
    x = inputs()
    for act in ("softplus", "hard_tanh"):
        m = fastdl.Sequential([Dense(6, 16, activation=act)], seed=0)
        z = x @ m.state_dict()["dense_0.w"] + m.state_dict()["dense_0.b"]
        assert (z > 20).any() and (z < -1).any()
        check(m, x)


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_every_layer_type(opset):
    m = trained([Dropout(0.1), Dense(6, 12, activation="relu"), Dropout(0.3), BatchNorm(12),
                 Maxout(12, 5, pieces=3), Dropout(0.2, scale_at_test=True), Dense(5, 7, use_bias=False,
                                                                                   activation="prelu"),
                 Dropout(0.4, scale_at_test=True), BatchNorm(7, eps=1e-3), Dense(7, 3)])
    proto = check(m, inputs(scale=1.0), opset=opset)
    assert proto.opset_import[0].version == opset
    ops = [n.op_type for n in proto.graph.node]
    for op in ("Gemm", "MatMul", "BatchNormalization", "Reshape", "ReduceMax", "PRelu", "Mul"):
        assert op in ops
    assert "Dropout" not in ops  # inference: the identity, or a Mul by 1 - p
    names = {i.name for i in proto.graph.initializer}
    assert {k for k in m.state_dict()} <= names


def test_the_batch_dimension_is_dynamic():
    m = trained([Dense(6, 8, activation="tanh"), Maxout(8, 4, pieces=2), Dense(4, 3)])
    proto = fonnx.export(m)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 6
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 7, 300):
        x = inputs(n=n, scale=1.0, seed=n)
        np.testing.assert_allclose(run(proto, x), m.predict(x), rtol=RTOL, atol=ATOL)


def test_output_activations_and_probabilities():
    x = inputs(scale=1.0)
    soft = trained([Dense(6, 8, activation="relu"), Dense(8, 3, activation="softmax")])
    proto = check(soft, x)
    assert proto.graph.node[-2].op_type == "Softmax"
    logits = trained([Dense(6, 8, activation="relu"), Dense(8, 3)])
    assert "Softmax" not in [n.op_type for n in check(logits, x).graph.node]
    np.testing.assert_allclose(run(fonnx.export(logits, probabilities=True), x), logits.predict_proba(x),
                               rtol=RTOL, atol=ATOL)
    binary = trained([Dense(6, 8, activation="relu"), Dense(8, 1, activation="sigmoid")],
                     loss="binary_cross_entropy")
    assert binary.output_activation == "sigmoid"
    check(binary, x)
    bce_logits = trained([Dense(6, 8, activation="relu"), Dense(8, 1)], loss="binary_cross_entropy")
    np.testing.assert_allclose(run(fonnx.export(bce_logits, probabilities=True), x), bce_logits.predict_proba(x),
                               rtol=RTOL, atol=ATOL)


def test_the_file_is_written_and_checks(tmp_path):
    m = trained([Dense(6, 8, activation="gelu"), Dense(8, 3)])
    path = tmp_path / "m.onnx"
    proto = fonnx.export(m, path)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.SerializeToString() == proto.SerializeToString()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = inputs(scale=1.0)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], m.predict(x), rtol=RTOL, atol=ATOL)
    assert loaded.producer_name == "fastdl" and loaded.opset_import[0].version == fonnx.DEFAULT_OPSET


def test_bad_arguments():
    m = fastdl.Sequential([Dense(6, 3)], seed=0)
    with pytest.raises(ValueError, match="probabilities: a model trained with 'mse'"):
        fonnx.export(fastdl.Sequential([Dense(6, 3)], seed=0).compile("adam", loss="mse"), probabilities=True)
    np.testing.assert_allclose(run(fonnx.export(m, probabilities=True), inputs()).sum(axis=1), 1.0, rtol=1e-6)
    for bad in (12, 10_000, "17", 17.0, True):
        with pytest.raises(ValueError, match="opset: expected an integer from 13"):
            fonnx.export(m, opset=bad)
    with pytest.raises(fastdl.network.NotBuiltError, match="export"):
        fonnx.export(fastdl.Sequential([Dense(3)]))
