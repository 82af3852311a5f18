"""python -m export share: tensors that models hold alike stored once, in a file that is the same in each folder.

Small synthetic models (a CIFAR-10 CNN and a copy with another classifier, each with a second graph reading the
weights) are installed as export installs them, shared, and then loaded through zoo and through PyTorch.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors import safe_open

import zoo
from export.build import install
from export.errors import ExportError
from export.onnx_export import set_metadata, to_onnx
from export.share import ShareError, safetensors_bytes, read_safetensors, share_weights
from export.validate import write_test_vectors
from export.weights import StoredWeights
from training.checkpoint import load_model, load_tensors, read_metadata, weight_files
from training.nets import build
from zoo.card import InputSpec, ModelCard
from zoo.files import SHARED_WEIGHTS_FILE, WEIGHTS_FILE
from zoo.onnxfile import self_contained
from zoo.registry import PACKAGE_MODELS
from zoo.runtime import sha256_file

LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CONFIG = {"widths": [8, 16]}
EXTRA_GRAPH = "offsets.onnx"  # a second graph reading the same weights, as deformable models have
IMAGES = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def network(seed: int, head_seed: int) -> torch.nn.Module:
    """The same convolutions for the same `seed`; the classifier drawn from `head_seed`."""
    torch.manual_seed(seed)
    model = build("small-cnn", CONFIG).eval()
    for module in model.modules():  # trained-looking norms: models of other seeds hold nothing alike
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.weight.data, module.bias.data, module.running_mean, module.running_var):
                tensor.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(seed)
    torch.manual_seed(head_seed)
    model.classifier.weight.data.normal_()
    model.classifier.bias.data.normal_()
    return model


@pytest.fixture(scope="module")
def graph() -> onnx.ModelProto:
    """The network's graph, exported once; each model links a copy to its own weights."""
    image = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
    return to_onnx(network(0, 0), (image,), ["image"], ["logits"], optimize=False)


def install_model(root: Path, name: str, model: torch.nn.Module, graph: onnx.ModelProto, **card_fields) -> Path:
    """`model` as `python -m export` installs one: weights, model.onnx (and a second graph), vectors, card."""
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=root.parent)) / name
    stage.mkdir()
    meta = {"name": name, "arch": "small-cnn", "config": CONFIG, "task": "image-classification"}
    weights = StoredWeights.write(model.state_dict(), stage, metadata=meta)
    proto = copy.deepcopy(graph)
    weights.link(proto)
    set_metadata(proto, {"name": name, "task": "image-classification", "version": "1.0", "labels": list(LABELS),
                         "input": {"height": 32, "width": 32, "resize": "center-crop"}})
    onnx.save(proto, str(stage / "model.onnx"))
    extra = copy.deepcopy(proto)
    del extra.metadata_props[:]
    onnx.save(extra, str(stage / EXTRA_GRAPH))
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    write_test_vectors(stage, stage / "model.onnx", {"image": images})
    card = ModelCard(name=name, task="image-classification", version="1.0", description="A test model.",
                     inputs=(InputSpec("image", 32, 32),), outputs=("logits",), labels=LABELS, files={},
                     provenance={"architecture": {"arch": "small-cnn", "config": CONFIG}}, **card_fields)
    return install(stage, card, root)


def outputs(folder: Path, graph_file: str = "model.onnx") -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(self_contained(folder / graph_file), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": IMAGES})[0]


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def models(tmp_path: Path, graph: onnx.ModelProto) -> Path:
    """Models `a` and `b` (the same convolutions, another classifier) and `c` (nothing alike)."""
    root = tmp_path / "models"
    install_model(root, "a", network(0, 1), graph)
    install_model(root, "b", network(0, 2), graph)
    install_model(root, "c", network(5, 5), graph)
    return root


def test_shared_tensors_are_stored_once_and_every_graph_computes_what_it_did(models, monkeypatch):
    before = {name: {graph: outputs(models / name, graph) for graph in ("model.onnx", EXTRA_GRAPH)} for name in "ab"}
    state = {name: load_tensors(models / name / WEIGHTS_FILE) for name in "ab"}
    metadata = {name: read_metadata(models / name / WEIGHTS_FILE) for name in "ab"}
    sharing = share_weights(["a", "b"], models)

    assert sharing.changed and sharing.tensors == 12  # every tensor but the classifier's weight and bias
    shared = {name: (models / name / SHARED_WEIGHTS_FILE).read_bytes() for name in "ab"}
    assert shared["a"] == shared["b"]  # byte for byte: one download serves both
    with safe_open(str(models / "a" / SHARED_WEIGHTS_FILE), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(k for k in state["a"] if not k.startswith("classifier."))
        assert json.loads(handle.metadata()["shared_by"]) == ["a", "b"]
    for name in "ab":
        folder = models / name
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
            assert sorted(handle.keys()) == ["classifier.bias", "classifier.weight"]
        assert read_metadata(folder / WEIGHTS_FILE) == metadata[name]  # the checkpoint's metadata as it was
        card = ModelCard.read(folder)
        assert card.weight_files == (WEIGHTS_FILE, SHARED_WEIGHTS_FILE)
        assert card.files[SHARED_WEIGHTS_FILE] == {"sha256": hashlib.sha256(shared[name]).hexdigest(),
                                                   "bytes": len(shared[name])}
        for graph_file in ("model.onnx", EXTRA_GRAPH):  # every graph repointed, computing what it did
            proto = onnx.load(str(folder / graph_file), load_external_data=False)
            locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
            assert locations == {WEIGHTS_FILE, SHARED_WEIGHTS_FILE}
            np.testing.assert_array_equal(outputs(folder, graph_file), before[name][graph_file])
        assert "backbone.safetensors" in (folder / "README.md").read_text()
        # PyTorch sees every tensor by name, from both files.
        assert weight_files(folder / WEIGHTS_FILE) == [folder / WEIGHTS_FILE, folder / SHARED_WEIGHTS_FILE]
        reloaded = load_tensors(folder / WEIGHTS_FILE)
        assert reloaded.keys() == state[name].keys()
        for key, value in state[name].items():
            torch.testing.assert_close(reloaded[key], value, rtol=0, atol=0)
        load_model(folder / WEIGHTS_FILE)
    monkeypatch.setenv("ZOO_HOME", str(models))  # zoo checks every file, the shared one included, and loads
    for name in "ab":
        session = zoo.load(name, device="cpu").session
        np.testing.assert_allclose(session.run(None, {"image": IMAGES})[0], before[name]["model.onnx"], atol=1e-5)
    # Again: nothing to do, nothing written.
    after = {name: snapshot(models / name) for name in "ab"}
    assert not share_weights(["b", "a"], models).changed
    assert {name: snapshot(models / name) for name in "ab"} == after


def test_a_damaged_shared_file_is_refused_by_zoo(models, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(models))
    share_weights(["a", "b"], models)
    path = models / "a" / SHARED_WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.ModelFileError, match=SHARED_WEIGHTS_FILE):
        zoo.load("a", device="cpu")
    with pytest.raises(zoo.ModelFileError, match=SHARED_WEIGHTS_FILE):  # nor is it spread to another folder
        share_weights(["a", "b"], models)


def test_models_with_nothing_alike_are_refused_and_nothing_changes(models):
    before = {name: snapshot(models / name) for name in "abc"}
    with pytest.raises(ShareError, match="no tensor with the same name, dtype, shape and bytes"):
        share_weights(["a", "c"], models)
    with pytest.raises(ShareError, match="two models or more"):
        share_weights(["a", "a"], models)
    with pytest.raises(ShareError, match="no model 'd'"):
        share_weights(["a", "d"], models)
    assert issubclass(ShareError, ExportError)
    assert {name: snapshot(models / name) for name in "abc"} == before


def test_a_tensor_that_differs_in_one_byte_is_not_shared(tmp_path, graph):
    root = tmp_path / "models"
    install_model(root, "a", network(0, 1), graph)
    changed = network(0, 1)
    changed.blocks[0][0].weight.data[0, 0, 0, 0] = torch.nextafter(changed.blocks[0][0].weight.data[0, 0, 0, 0],
                                                                  torch.tensor(1.0))
    install_model(root, "b", changed, graph)
    sharing = share_weights(["a", "b"], root)
    with safe_open(str(root / "a" / SHARED_WEIGHTS_FILE), framework="pt") as handle:
        assert "blocks.0.0.weight" not in handle.keys() and "classifier.weight" in handle.keys()
    assert sharing.tensors == 13
    np.testing.assert_array_equal(load_tensors(root / "b" / WEIGHTS_FILE)["blocks.0.0.weight"],
                                  changed.blocks[0][0].weight.data)


def test_a_shared_file_held_by_a_model_left_out_is_not_rewritten(models, graph):
    share_weights(["a", "b"], models)
    install_model(models, "d", network(0, 3), graph)
    with pytest.raises(ShareError, match="also b's.*share them together"):
        share_weights(["a", "d"], models)
    sharing = share_weights(["a", "b", "d"], models)
    assert sharing.changed
    shared = {(models / name / SHARED_WEIGHTS_FILE).read_bytes() for name in "abd"}
    assert len(shared) == 1


def test_reexporting_a_shared_model_shares_again(models, graph):
    share_weights(["a", "b"], models)
    after = {name: snapshot(models / name) for name in "ab"}
    install_model(models, "a", network(0, 1), graph)  # the same weights, exported again: written whole, then shared
    assert snapshot(models / "b") == after["b"]
    assert snapshot(models / "a")[SHARED_WEIGHTS_FILE] == after["a"][SHARED_WEIGHTS_FILE]
    assert ModelCard.read(models / "a").weight_files == (WEIGHTS_FILE, SHARED_WEIGHTS_FILE)
    install_model(models, "a", network(7, 1), graph)  # other convolutions: nothing alike any more
    assert ModelCard.read(models / "a").weight_files == (WEIGHTS_FILE,)
    assert ModelCard.read(models / "b").weight_files == (WEIGHTS_FILE, SHARED_WEIGHTS_FILE)
    np.testing.assert_array_equal(load_tensors(models / "b" / WEIGHTS_FILE)["classifier.weight"],
                                  network(0, 2).classifier.weight.data)


def test_a_quantized_variant_pinning_the_source_files_is_pinned_to_the_new_ones(models, graph, monkeypatch):
    source = ModelCard.read(models / "a")
    pinned = {f: source.files[f]["sha256"] for f in ("model.onnx", WEIGHTS_FILE)}
    quantization = {"source": "a", "source_sha256": pinned, "method": "test", "calibration_inputs": 4,
                    "int8_test_accuracy": 0.5, "float32_test_accuracy": 0.5, "speedup_b1": 2.0, "speedup_b64": 2.0,
                    "onnxruntime": "test"}
    install_model(models, "a-int8", network(9, 9), graph, extra={"quantized_from": "a"},
                  metrics={"test_accuracy": 0.5})
    variant = ModelCard.read(models / "a-int8")
    provenance = {**variant.provenance, "export": {"storage": {"weights": "int8", "quantization": quantization}}}
    from export.stamp_card import restamp

    restamp(models / "a-int8", replace(variant, provenance=provenance))
    sharing = share_weights(["a", "b"], models)
    assert sharing.updated_variants == ["a-int8"]
    repinned = ModelCard.read(models / "a-int8").provenance["export"]["storage"]["quantization"]
    now = ModelCard.read(models / "a")
    assert repinned["source_sha256"] == {f: now.files[f]["sha256"] for f in ("model.onnx", *now.weight_files)}
    assert repinned["source_sha256_when_quantized"] == pinned
    monkeypatch.setenv("ZOO_HOME", str(models))
    zoo.load("a-int8", device="cpu")  # re-stamped: the card's digest is the graph's


def test_the_writer_is_deterministic_and_safetensors_reads_it(tmp_path):
    from export.share import Tensor

    tensors = {"z": Tensor("I8", (3,), memoryview(b"\x01\x02\x03")),
               "a": Tensor("F32", (2,), memoryview(np.array([1.5, -2], np.float32).tobytes())),
               "n": Tensor("I64", (), memoryview(np.int64(7).tobytes()))}
    metadata = {"second": "2", "first": "1"}
    data = safetensors_bytes(tensors, metadata)
    assert data == safetensors_bytes(dict(reversed(list(tensors.items()))), metadata)
    (tmp_path / "t.safetensors").write_bytes(data)
    with safe_open(str(tmp_path / "t.safetensors"), framework="np") as handle:
        assert handle.metadata() == metadata
        np.testing.assert_array_equal(handle.get_tensor("a"), [1.5, -2])
        assert handle.get_tensor("n") == 7 and handle.get_tensor("z").tolist() == [1, 2, 3]
    read, meta = read_safetensors(data)
    assert list(meta) == ["second", "first"] and all(read[k].same_as(tensors[k]) for k in tensors)


SHARING = [("resnet50-cifar8", "carplane-linear")]


@pytest.mark.parametrize("names", SHARING)
def test_the_shipped_models_share_their_backbone(names):
    """The shipped pair: one backbone.safetensors, the same in both folders, which sharing again leaves as it is."""
    if not all((PACKAGE_MODELS / name).is_dir() for name in names):
        pytest.skip("not shipped")
    cards = [ModelCard.read(PACKAGE_MODELS / name) for name in names]
    assert all(card.weight_files == (WEIGHTS_FILE, SHARED_WEIGHTS_FILE) for card in cards)
    assert len({json.dumps(card.files[SHARED_WEIGHTS_FILE]) for card in cards}) == 1
    own = {card.name: card.size_bytes - card.files[SHARED_WEIGHTS_FILE]["bytes"] for card in cards}
    assert all(size < 1e6 for size in own.values()), own  # each model's own files: well under a megabyte


@pytest.mark.parametrize("names", SHARING)
def test_sharing_the_shipped_models_again_changes_nothing(tmp_path, names):
    if not all((PACKAGE_MODELS / name).is_dir() for name in names):
        pytest.skip("not shipped")
    for name in names:
        shutil.copytree(PACKAGE_MODELS / name, tmp_path / name)
    before = {name: snapshot(tmp_path / name) for name in names}
    assert not share_weights(list(names), tmp_path).changed
    assert {name: snapshot(tmp_path / name) for name in names} == before
