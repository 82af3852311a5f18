"""Weights stored once: ONNX external data pointing into model.safetensors, int8 conv weights optional."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors import safe_open

from export.onnx_export import to_onnx
from export.weights import StoredWeights, round_conv_weights_to_int8
from zoo.files import WEIGHTS_FILE
from training.checkpoint import SCALE_SUFFIX, load_tensors
from training.nets import build


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build("small-cnn", {"widths": [8, 16]}).eval()
    for module in model.modules():  # batch norms that do something, so folding them would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("int8", [False, True])
def test_graph_reads_every_weight_from_the_safetensors_file(tmp_path, int8):
    model = small_cnn()
    scales = round_conv_weights_to_int8(model) if int8 else {}
    image = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    proto = to_onnx(model, (image[:2],), ["image"], ["logits"], optimize=False)
    weights = StoredWeights.write(model.state_dict(), tmp_path, scales, metadata={"name": "t"})
    weights.link(proto)
    onnx.save(proto, str(tmp_path / "model.onnx"))
    onnx.checker.check_model(str(tmp_path / "model.onnx"), full_check=True)

    # Every parameter and buffer the graph uses is a reference into model.safetensors, none inline.
    external = {t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    inline = [t.name for t in proto.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert {n for n in model.state_dict() if "num_batches" not in n} <= external
    assert weights.inline_bytes(proto) < 100, inline
    assert (tmp_path / "model.onnx").stat().st_size < 12_000  # the graph alone
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="np") as handle:
        stored = {k: handle.get_tensor(k) for k in handle.keys()}
    blob = (tmp_path / WEIGHTS_FILE).read_bytes()
    for tensor in proto.graph.initializer:
        if tensor.name in external:
            where = {e.key: e.value for e in tensor.external_data}
            assert where["location"] == WEIGHTS_FILE
            start, length = int(where["offset"]), int(where["length"])
            assert blob[start:start + length] == stored[tensor.name].tobytes()
    conv_weight = "blocks.0.0.weight"
    assert (stored[conv_weight].dtype == np.int8) == int8
    assert (conv_weight + SCALE_SUFFIX in stored) == int8

    # The graph computes what the (rounded) torch model computes, and the file loads back into torch.
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(image).numpy()
    np.testing.assert_allclose(session.run(None, {"image": image.numpy()})[0], expected, atol=1e-4)
    reloaded = load_tensors(tmp_path / WEIGHTS_FILE)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reloaded[name].to(value.dtype), value, rtol=1e-6, atol=1e-7)


def test_int8_rounding_is_per_output_channel_and_close():
    model = small_cnn()
    before = model.blocks[0][0].weight.detach().clone()
    scales = round_conv_weights_to_int8(model)
    after = model.blocks[0][0].weight.detach()
    scale = scales["blocks.0.0.weight"]
    assert scale.shape == (before.shape[0],)
    q = after / scale.view(-1, 1, 1, 1)
    torch.testing.assert_close(q, q.round(), atol=1e-4, rtol=0)  # integers
    assert q.abs().amax() <= 127.0001
    assert ((after - before).abs() <= scale.view(-1, 1, 1, 1) / 2 + 1e-7).all()  # rounded to the nearest step


def test_reexporting_int8_weights_carries_the_fidelity_their_card_measured(tmp_path):
    import json
    import shutil

    from export.build import earlier_int8_fidelity
    from export.validate import ExportValidationError
    from training.checkpoint import save_checkpoint
    from zoo.card import ModelCard
    from zoo.registry import model_dir

    installed = model_dir("resnet50-cifar8") / WEIGHTS_FILE
    card = json.loads((installed.parent / "card.json").read_text())
    carried = earlier_int8_fidelity(installed)
    assert carried["argmax_agreement"] == card["provenance"]["export"]["storage"]["int8_fidelity"]["argmax_agreement"]
    assert "first rounded" in carried["measured"]
    alone = tmp_path / WEIGHTS_FILE  # the same int8 weights with no card to vouch for them
    for weights in ModelCard.read(installed.parent).weight_files:  # model.safetensors and a shared file beside it
        shutil.copyfile(installed.parent / weights, tmp_path / weights)
    with pytest.raises(ExportValidationError, match="float32 checkpoint"):
        earlier_int8_fidelity(alone)
    float_checkpoint = tmp_path / "float.safetensors"
    save_checkpoint(float_checkpoint, build("small-cnn", {"widths": [4, 8]}), {"name": "x"})
    assert earlier_int8_fidelity(float_checkpoint) is None  # float weights: measured afresh at export
