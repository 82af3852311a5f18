"""export/offsets.py: offsets.onnx computes exactly the first DeformConv's offsets inside model.onnx."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import zoo
from zoo.registry import PACKAGE_MODELS
from zoo.preprocess import prepare

onnx = pytest.importorskip("onnx")
offsets = pytest.importorskip("export.offsets")
DEFORMABLE = [name for name in zoo.list() if "DeformConv" in json.dumps(zoo.card(name).provenance.get("export", {}))]
pytestmark = pytest.mark.skipif(not DEFORMABLE, reason="no model with a DeformConv is installed")


def run(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([output], feeds)[0]


def test_offsets_graph_matches_the_tensor_inside_the_model(cifar_images):
    name = DEFORMABLE[0]
    card = zoo.card(name)
    model = onnx.load(str(PACKAGE_MODELS / name / "model.onnx"))
    part = offsets.offsets_model(model)
    deform = next(node for node in model.graph.node if node.op_type == "DeformConv")
    spec = card.inputs[0]
    feeds = {spec.name: np.stack([prepare(path, spec.height, spec.width, spec.resize) for path in cifar_images])}
    # The same tensor read from inside the full model, exposed as an extra output.
    model.graph.output.append(onnx.helper.make_tensor_value_info(deform.input[2], onnx.TensorProto.FLOAT, None))
    inside = run(model, feeds, deform.input[2])
    np.testing.assert_array_equal(run(part, feeds, part.graph.output[0].name), inside)
    assert np.abs(inside).max() > 0  # trained offsets, not the zero initialisation
    geometry = json.loads({p.key: p.value for p in part.metadata_props}[offsets.GEOMETRY_KEY])
    kernel = card.provenance["architecture"]["config"]["kernel_size"]
    assert geometry["kernel"] == [kernel, kernel] and inside.shape[1] == 2 * kernel * kernel * geometry["offset_group"]
    assert {"DeformConv", "BatchNormalization", "Gemm"}.isdisjoint(node.op_type for node in part.graph.node)


def test_models_without_deformconv_get_no_offsets_file(tmp_path):
    plain = sorted((name for name in zoo.list() if name not in DEFORMABLE), key=lambda name: zoo.card(name).size_bytes)
    if not plain:
        pytest.skip("no model without DeformConv installed")
    out = tmp_path / offsets.OFFSETS_FILE
    assert not offsets.write_offsets_model(PACKAGE_MODELS / plain[0] / "model.onnx", out)
    assert not out.exists()
