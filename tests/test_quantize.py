"""`python -m export quantize`: the weight and input-scale folds it starts from, its bar, one real run on `cnn`."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import zoo
from export import quantize
from zoo.registry import model_dir

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


def normalised_stem(scale: np.ndarray, shift: np.ndarray, shift_op: str = "Sub"):
    """uint8 NHWC pixels -> Transpose -> Cast -> Mul(scale) -> Sub/Add(shift) -> Conv (3x3, padded) -> Relu,
    as the exporter writes a classifier's start."""
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("Cast", ["nchw"], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["pixels", "input.scale"], ["scaled"], name="mul"),
         helper.make_node(shift_op, ["scaled", "input.shift"], ["normalised"], name="shift"),
         helper.make_node("Conv", ["normalised", "conv.weight", "conv.bias"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["features"])],
        "stem", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8, 8, 8])],
        [numpy_helper.from_array(scale, "input.scale"), numpy_helper.from_array(shift, "input.shift"),
         numpy_helper.from_array(weights, "conv.weight"), numpy_helper.from_array(bias, "conv.bias")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def assert_folds_exactly(proto, feeds_shape, folds=1):
    """fold_input_scale removes `folds` Muls and the graph answers as before on random pixels, within 1e-5."""
    before = proto.SerializeToString()
    muls = sum(node.op_type == "Mul" for node in proto.graph.node)
    assert quantize.fold_input_scale(proto) == folds
    assert sum(node.op_type == "Mul" for node in proto.graph.node) == muls - folds
    name = proto.graph.input[0].name
    pixels = np.random.default_rng(2).integers(0, 256, feeds_shape, dtype=np.uint8)
    expected = ort.InferenceSession(before).run(None, {name: pixels})
    for got, want in zip(ort.InferenceSession(proto.SerializeToString()).run(None, {name: pixels}), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale_shape", [(1, 3, 1, 1), (3, 1, 1), ()])
@pytest.mark.parametrize("shift_op", ["Sub", "Add"])
def test_the_input_scale_folds_into_the_first_convolution_exactly(scale_shape, shift_op):
    per_channel = np.array([1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)], np.float32)
    scale = np.reshape(per_channel if scale_shape else per_channel[:1], scale_shape)
    shift = np.array([0.485 / 0.229, 0.456 / 0.224, 0.406 / 0.225], np.float32).reshape(1, 3, 1, 1)
    proto = normalised_stem(scale, shift, shift_op)
    assert_folds_exactly(proto, (4, 8, 8, 3))
    assert [node.op_type for node in proto.graph.node] == ["Transpose", "Cast", shift_op, "Conv", "Relu"]
    names = {tensor.name for tensor in proto.graph.initializer}
    assert "input.scale" not in names and "conv.weight" not in names  # nothing left unused


def test_a_shipped_models_input_scale_folds_exactly():
    proto = quantize.float_graph(model_dir("carplane-joint"))
    assert_folds_exactly(proto, (2, 64, 64, 3))
    first_conv = next(node for node in proto.graph.node if node.op_type == "Conv")
    assert not any(node.op_type == "Mul" and first_conv.input[0] in node.output for node in proto.graph.node)


SCALE, SHIFT = np.full((1, 3, 1, 1), 0.02, np.float32), np.full((1, 3, 1, 1), 2.0, np.float32)


def shift_minus_pixels():  # m - x*s: the pixels negated, not the pattern
    proto = normalised_stem(SCALE, SHIFT)
    proto.graph.node[3].input[:] = ["input.shift", "scaled"]
    return proto


def also_read_elsewhere():  # the normalised pixels also read by another node
    proto = normalised_stem(SCALE, SHIFT)
    proto.graph.node.append(helper.make_node("Identity", ["normalised"], ["also"]))
    proto.graph.output.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, None))
    return proto


def grouped():  # a depthwise convolution: one weight per group, not per input channel
    proto = normalised_stem(SCALE, SHIFT)
    proto.graph.node[4].attribute.append(helper.make_attribute("group", 3))
    proto.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.ones((9, 1, 3, 3), np.float32), "conv.weight"))
    return proto


@pytest.mark.parametrize("stem", [
    lambda: normalised_stem(np.full((1, 3, 8, 8), 0.02, np.float32), SHIFT),  # a per-pixel scale
    lambda: normalised_stem(np.array([0.02, 0.0, 0.02], np.float32).reshape(1, 3, 1, 1), SHIFT),  # a zero scale
    shift_minus_pixels, also_read_elsewhere, grouped],
    ids=["per-pixel", "zero-scale", "shift-minus-pixels", "read-elsewhere", "grouped"])
def test_a_graph_without_the_pattern_is_left_byte_identical(stem):
    proto = stem()
    before = proto.SerializeToString()
    assert quantize.fold_input_scale(proto) == 0
    assert proto.SerializeToString() == before


def test_the_scale_may_be_the_muls_first_operand():
    proto = normalised_stem(SCALE, SHIFT)
    proto.graph.node[2].input[:] = ["input.scale", "pixels"]
    assert_folds_exactly(proto, (2, 8, 8, 3))


def test_the_changer_is_left_byte_identical():
    proto = quantize.float_graph(model_dir("changer"))  # its normalised pixels go to a Concat, not a Conv
    before = proto.SerializeToString()
    assert quantize.fold_input_scale(proto) == 0
    assert proto.SerializeToString() == before


def test_a_scale_of_the_wrong_channel_count_is_an_error():
    proto = normalised_stem(np.full((1, 4, 1, 1), 0.02, np.float32), np.full((1, 3, 1, 1), 2.0, np.float32))
    with pytest.raises(quantize.QuantizationError, match="4 channels"):
        quantize.fold_input_scale(proto)


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
