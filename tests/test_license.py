"""Every card names the licence of the model's code, weights and data; its README says the same; and
`python -m export restamp` re-stamps a card whose content changed without changing what the graph computes."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import zoo
from export.build import build_card
from export.errors import ExportError
from export.report import default_license, license_section, model_readme
from export.stamp_card import restamp, restamp_models
from training.checkpoint import read_metadata
from zoo.card import License, ModelCard
from zoo.files import CARD_DIGEST_KEY, GRAPH_FILE, WEIGHTS_FILE
from zoo.onnxfile import MODEL_METADATA_PROPS, fields, self_contained
from zoo.registry import PACKAGE_MODELS
from zoo.runtime import card_digest, onnx_metadata, sha256_file

SHIPPED = sorted(p.name for p in PACKAGE_MODELS.iterdir() if (p / "card.json").is_file())
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped models")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_card_names_the_license_of_its_code_weights_and_data(name):
    card = ModelCard.read(PACKAGE_MODELS / name)
    assert isinstance(card.license, License)
    assert card.license.code == "MIT"
    assert card.license.weights.startswith("MIT") and "trained by this project" in card.license.weights
    assert "no third-party pretrained weights" in card.license.weights  # no ImageNet weights anywhere
    assert "Krizhevsky" in card.license.data and "no license" in card.license.data
    assert ("Caltech-101" in card.license.data) == (card.task == "change-detection")
    assert (f"quantized by this project from `{card.quantized_from}`" in card.license.weights) == bool(card.quantized_from)
    assert ("backbone of `resnet50-cifar8`" in card.license.weights) == name.startswith("carplane-")
    assert card.license == default_license(card)  # as export writes it for a new model


@pytest.mark.parametrize("name", SHIPPED)
def test_the_readme_says_what_the_card_says(name):
    folder = PACKAGE_MODELS / name
    card = ModelCard.read(folder)
    readme = (folder / "README.md").read_text()
    assert readme == model_readme(card)  # rendered from the card as it is
    section = "\n".join(license_section(card))
    assert section in readme
    for value in (card.license.code, card.license.weights, card.license.data):
        assert value in section
    assert card.files["README.md"]["sha256"] == sha256_file(folder / "README.md")


def test_the_graph_vouches_for_the_card_with_its_license():
    for name in SHIPPED:
        content = json.loads((PACKAGE_MODELS / name / "card.json").read_text())
        assert "license" in content
        assert onnx_metadata(PACKAGE_MODELS / name / GRAPH_FILE)[CARD_DIGEST_KEY] == card_digest(content), name


@pytest.mark.parametrize("value, wrong", [("MIT", "license must be an object"),
                                          ({"code": "MIT", "weights": "MIT"}, "license must be an object"),
                                          ({"code": "MIT", "weights": "MIT", "data": 3}, "license.data"),
                                          ({"code": "", "weights": "MIT", "data": "x"}, "license.code"),
                                          ({"code": "MIT", "weights": "MIT", "data": "x", "url": "y"},
                                           "license must be an object")])
def test_a_malformed_license_is_refused_naming_it(tmp_path, value, wrong):
    shutil.copyfile(PACKAGE_MODELS / "cnn" / "card.json", tmp_path / "card.json")
    content = json.loads((tmp_path / "card.json").read_text())
    content["license"] = value
    (tmp_path / "card.json").write_text(json.dumps(content))
    with pytest.raises(zoo.ModelFileError, match=wrong):
        ModelCard.read(tmp_path)


def test_a_card_without_a_license_reads_and_writes_as_before(tmp_path):
    card = replace(ModelCard.read(PACKAGE_MODELS / "cnn"), license=None)
    assert "license" not in card.to_dict()
    card.write(tmp_path)
    assert ModelCard.read(tmp_path).license is None
    assert "- code: MIT" in model_readme(card)  # the README falls back to what the provenance says


def test_imagenet_weights_are_named_with_their_own_terms():
    card = ModelCard.read(PACKAGE_MODELS / "carplane-linear")
    imagenet = replace(card, provenance={**card.provenance, "backbone": {"source": "imagenet",
                                                                         "weights": "ResNet50_Weights.IMAGENET1K_V2"}})
    weights = default_license(imagenet).weights
    assert "ImageNet" in weights and "own terms apply" in weights and "no third-party" not in weights


def test_an_export_writes_the_license(tmp_path):
    meta = read_metadata(PACKAGE_MODELS / "cnn" / WEIGHTS_FILE)
    card = build_card(meta, ["image"], ["logits"], {}, {}, {}, "dynamo", {"weights": "float32"})
    assert card.license == ModelCard.read(PACKAGE_MODELS / "cnn").license


def _graph_without_metadata(path: Path) -> list[bytes]:
    return [bytes(f.raw) for f in fields(memoryview(self_contained(path))) if f.number != MODEL_METADATA_PROPS]


def test_restamping_a_changed_card_keeps_the_graph_and_loads(tmp_path, monkeypatch):
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "cnn")
    folder = tmp_path / "cnn"
    graph = _graph_without_metadata(folder / GRAPH_FILE)
    card = ModelCard.read(folder)
    changed = replace(card, license=replace(card.license, data=card.license.data + " (checked)"))
    assert sorted(restamp(folder, changed)) == ["README.md", "card.json", "model.onnx"]
    assert _graph_without_metadata(folder / GRAPH_FILE) == graph  # the same graph, other metadata
    assert "(checked)" in (folder / "README.md").read_text()
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert zoo.load("cnn", device="cpu").card.license.data.endswith("(checked)")  # files, card and digest agree
    assert restamp(folder) == []  # up to date: nothing written
    assert restamp_models(["all"], tmp_path) == {"cnn": []}


def test_a_damaged_file_is_not_restamped(tmp_path):
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "cnn")
    folder = tmp_path / "cnn"
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1])
    card_before = (folder / "card.json").read_bytes()
    card = ModelCard.read(folder)
    with pytest.raises(zoo.ModelFileError, match=WEIGHTS_FILE):
        restamp(folder, replace(card, description="changed"))
    assert (folder / "card.json").read_bytes() == card_before
    with pytest.raises(ExportError, match="no model 'nope'"):
        restamp_models(["nope"], tmp_path)


def test_restamping_fills_in_a_missing_license(tmp_path):
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "cnn")
    folder = tmp_path / "cnn"
    card = ModelCard.read(folder)
    restamp(folder, replace(card, license=None))
    assert ModelCard.read(folder).license is None
    restamp_models(["cnn"], tmp_path, fill_license=True)
    assert ModelCard.read(folder).license == card.license
    assert (folder / "README.md").read_bytes() == (PACKAGE_MODELS / "cnn" / "README.md").read_bytes()


def test_restamping_a_source_model_re_pins_its_quantized_variant(tmp_path, monkeypatch):
    for name in ("carplane-linear", "carplane-linear-int8"):
        shutil.copytree(PACKAGE_MODELS / name, tmp_path / name)
    first_pins = ModelCard.read(tmp_path / "carplane-linear-int8").provenance["export"]["storage"]["quantization"]
    source = ModelCard.read(tmp_path / "carplane-linear")
    restamp(tmp_path / "carplane-linear", replace(source, description=source.description + " Re-stamped."))
    now = ModelCard.read(tmp_path / "carplane-linear")
    quantization = ModelCard.read(tmp_path / "carplane-linear-int8").provenance["export"]["storage"]["quantization"]
    assert quantization["source_sha256"] == {f: now.files[f]["sha256"] for f in quantization["source_sha256"]}
    assert quantization["source_sha256"]["model.onnx"] != first_pins["source_sha256"]["model.onnx"]
    assert quantization["source_sha256_when_quantized"] == first_pins["source_sha256_when_quantized"]
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    for name in ("carplane-linear", "carplane-linear-int8"):
        zoo.load(name, device="cpu")
