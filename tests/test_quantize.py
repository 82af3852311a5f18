"""`python -m export quantize`: the weight folding it starts from, its bar, and one real run on `cnn`."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import zoo
from export import quantize

NAME = "cnn"


def test_folding_int8_weights_keeps_what_the_graph_computes():
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (3, 4), dtype=np.int8)
    scale = np.array([0.5, 0.25, 2.0, 1.0], np.float32)  # per output column (axis 1)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "w.scale"], ["w.float"], axis=1),
         helper.make_node("MatMul", ["x", "w.float"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(q, "w"), numpy_helper.from_array(scale, "w.scale")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    quantize.fold_weight_dequantization(proto)
    assert [node.op_type for node in proto.graph.node] == ["MatMul"]
    assert [tensor.name for tensor in proto.graph.initializer] == ["w.float"]
    out = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, x @ (q.astype(np.float32) * scale), rtol=1e-6)


def test_the_bar_names_every_shortfall():
    passing = {"speedup_b1": 1.6, "speedup_b64": 2.0, "accuracy_loss": 0.003}
    assert quantize.why_not(passing) == []
    # 6 of 2,000 answers lost, as the accuracies subtract in floats: on the bar, not over it.
    assert quantize.why_not(dict(passing, accuracy_loss=0.937 - 0.934)) == []
    reasons = quantize.why_not({"speedup_b1": 1.2, "speedup_b64": 2.0, "accuracy_loss": 0.004})
    assert len(reasons) == 2 and "batch 1" in reasons[0] and "accuracy" in reasons[1]


def test_a_variant_is_not_quantized_again():
    with pytest.raises(quantize.QuantizationError, match="quantize 'cnn'"):
        quantize.quantize_model("cnn-int8")


def test_quantizing_cnn_installs_a_variant_only_if_it_pays(tmp_path, monkeypatch, cifar_root):
    if NAME not in zoo.list():
        pytest.skip(f"{NAME} is not installed")
    report = quantize.quantize_model(NAME, tmp_path, rounds=1, calibration_inputs=128)
    assert report["test_inputs"] == zoo.card(NAME).metrics["test_images"]
    assert report["float32_test_accuracy"] == pytest.approx(zoo.card(NAME).headline_accuracy, abs=1e-3)
    variant = tmp_path / f"{NAME}-int8"
    assert variant.is_dir() == report["shipped"]
    if report["shipped"]:  # it loads through zoo's checks and answers like the float model on most images
        monkeypatch.setenv("ZOO_HOME", str(tmp_path))
        model = zoo.load(f"{NAME}-int8", device="cpu")
        assert model.card.metrics["test_accuracy"] == report["int8_test_accuracy"]
        assert "QuantizeLinear" in model.card.provenance["export"]["graph_ops"]["model.onnx"]
        assert "session_config" not in model.card.extra
