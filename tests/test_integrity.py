"""Damaged, tampered or misnamed model files give a ZooError naming the file, before any inference.

Every shipped model (the registry) is damaged in a private ZOO_HOME: the damaged file is copied,
the others are symbolic links to the shipped ones, so large models cost no copying.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import zoo
from zoo.registry import PACKAGE_MODELS
import zoo.model
from export.stamp_card import stamp_card_digest
from zoo.files import CARD_DIGEST_KEY
from zoo.runtime import onnx_metadata, sha256_file

SHIPPED = zoo.list()
SHIPPED_ROOT = PACKAGE_MODELS  # before any test points ZOO_HOME elsewhere
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped models")
#: The model with the fewest bytes: where the exhaustive card test runs.
SMALLEST = min(SHIPPED, key=lambda name: zoo.card(name).size_bytes) if SHIPPED else None


def _private_copy(name: str, root: Path, copied: tuple[str, ...]) -> Path:
    """A model folder under `root` whose `copied` files are real copies and every other file a link.

    onnxruntime refuses external data behind a link, so a test that opens a session on a copied
    model.onnx also copies model.safetensors (which holds the large models' weights).
    """
    source = SHIPPED_ROOT / name
    target = root / name
    for path in (p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if relative in copied:
            shutil.copyfile(path, destination)
        else:
            destination.symlink_to(path)
    return target


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    return tmp_path


def _refuse_session(*_: object) -> None:
    raise AssertionError("a runtime opened the model: the damage was not found before it")


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the model gets as far as a runtime (onnxruntime or OpenVINO)."""
    monkeypatch.setattr(zoo.model, "open_engine", _refuse_session)


def _flipped(data: bytes, position: int, mask: int) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


DAMAGE = {
    "first byte flipped": lambda data: _flipped(data, 0, 0xFF),
    "middle byte flipped": lambda data: _flipped(data, len(data) // 2, 0x01),
    "last byte flipped": lambda data: _flipped(data, len(data) - 1, 0x80),
    "truncated": lambda data: data[: len(data) - 1],
    "emptied": lambda data: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("filename", ["model.onnx", "model.safetensors"])
@pytest.mark.parametrize("name", SHIPPED)
def test_damaged_model_file_is_refused_before_any_session(home, no_session, name, filename, damage):
    path = _private_copy(name, home, (filename,)) / filename
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(zoo.ModelFileError, match=filename) as error:
        zoo.load(name)
    assert "card.json" in str(error.value) and "re-export" in str(error.value)


@pytest.mark.parametrize("filename", ["model.onnx", "model.safetensors"])
def test_missing_model_file_is_named(home, no_session, filename):
    folder = _private_copy(SMALLEST, home, ())
    (folder / filename).unlink()
    with pytest.raises(zoo.ModelFileError, match=f"{filename}.*missing"):
        zoo.load(folder)  # a folder of your own is never completed by a download


#: Models whose weights are split, with their shared weight file: model.safetensors keeps the rest.
SHARING = [(name, zoo.card(name).weight_files[1]) for name in SHIPPED if len(zoo.card(name).weight_files) > 1]


@pytest.mark.parametrize("damage", ["middle byte flipped", "truncated"])
@pytest.mark.parametrize("name, shared", SHARING)
def test_a_damaged_shared_weight_file_is_refused_before_any_session(home, no_session, name, shared, damage):
    path = _private_copy(name, home, (shared,)) / shared
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(zoo.ModelFileError, match=shared):
        zoo.load(name)


def _replace_once(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _other_hex(digit: str) -> str:
    return "0" if digit != "0" else "1"


#: Card edits that a flipped byte or a hand edit could make; all but the first two keep valid JSON.
CARD_EDITS = {
    "invalid UTF-8": lambda text, card: text.encode()[:100] + b"\xff" + text.encode()[101:],
    "cut short": lambda text, card: text.encode()[: len(text) // 2],
    "a label renamed": lambda text, card: _replace_once(text, f'"{card["labels"][0]}"', f'"{card["labels"][0]}x"'),
    "the input size": lambda text, card: _replace_once(text, '"height": ', '"height": 1'),
    "the task": lambda text, card: _replace_once(text, f'"task": "{card["task"]}"', '"task": "image-classificatioo"'),
    "model.onnx's sha256": lambda text, card: _replace_once(
        text, card["files"]["model.onnx"]["sha256"],
        card["files"]["model.onnx"]["sha256"][:-1] + _other_hex(card["files"]["model.onnx"]["sha256"][-1])),
    "a recorded size": lambda text, card: _replace_once(
        text, f'"bytes": {card["files"]["model.safetensors"]["bytes"]}',
        f'"bytes": {card["files"]["model.safetensors"]["bytes"] ^ 1}'),
    "a malformed entry": lambda text, card: _replace_once(
        text, f'"bytes": {card["files"]["model.safetensors"]["bytes"]}',
        f'"bytes": "{card["files"]["model.safetensors"]["bytes"]}"'),
    "a file outside the folder": lambda text, card: _replace_once(text, '"README.md": {', '"../README.md": {'),
    "model.onnx unlisted": lambda text, card: _replace_once(text, '"model.onnx": {', '"model.onnx.bak": {'),
    "re-indented, same content": lambda text, card: json.dumps(card, indent=1) + "\n",
}


@pytest.mark.parametrize("edit", sorted(CARD_EDITS))
@pytest.mark.parametrize("name", SHIPPED)
def test_edited_card_is_refused_naming_it(home, no_session, name, edit):
    card = _private_copy(name, home, ("card.json",)) / "card.json"
    text = card.read_text()
    edited = CARD_EDITS[edit](text, json.loads(text))
    edited = edited.encode() if isinstance(edited, str) else edited
    assert edited != text.encode()
    card.write_bytes(edited)
    with pytest.raises(zoo.ModelFileError, match="card.json"):
        zoo.load(name)


STAMPED_FILES = ("model.onnx", "model.safetensors", "card.json")


def _stamp(folder: Path) -> None:
    """What export does: the card's digest into model.onnx, then model.onnx's new hash into the card."""
    card = zoo.ModelCard.read(folder)
    onnx_path = folder / "model.onnx"
    stamp_card_digest(onnx_path, card)
    files = dict(card.files)
    files["model.onnx"] = {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}
    zoo.ModelCard.from_dict({**card.to_dict(), "files": files}).write(folder)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_stamped_model_loads_and_predicts_as_shipped(home, name):
    folder = _private_copy(name, home, STAMPED_FILES)
    _stamp(folder)
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert CARD_DIGEST_KEY in {entry.key for entry in graph.metadata_props}
    assert onnx_metadata(folder / "model.onnx") == {entry.key: entry.value for entry in graph.metadata_props}
    vectors = folder / "test_data_set_0"
    model = zoo.load(name, device="cpu")
    feeds = {spec.name: numpy_helper.to_array(onnx.load_tensor(str(vectors / f"input_{k}.pb")))
             for k, spec in enumerate(model.card.inputs)}
    for k, output in enumerate(model.session.run(None, feeds)):
        expected = numpy_helper.to_array(onnx.load_tensor(str(vectors / f"output_{k}.pb")))
        np.testing.assert_allclose(output, expected, rtol=1e-4, atol=model.card.tolerance)


def test_every_byte_change_of_a_stamped_card_is_refused(home, monkeypatch):
    """One bit flipped at 600 places spread over the card (ASCII bits, so most stay valid text)."""
    folder = _private_copy(SMALLEST, home, STAMPED_FILES)
    _stamp(folder)
    card = folder / "card.json"
    original = card.read_bytes()
    zoo.load(SMALLEST)  # the intact stamped copy loads
    monkeypatch.setattr(zoo.model, "open_engine", _refuse_session)
    positions = np.linspace(0, len(original) - 1, 600).astype(int)
    still_json = 0
    for k, position in enumerate(positions):
        flipped = bytearray(original)
        flipped[position] ^= 1 << (k % 7)
        card.write_bytes(bytes(flipped))
        try:
            json.loads(bytes(flipped))
            still_json += 1
        except ValueError:
            pass
        with pytest.raises(zoo.ModelFileError, match="card.json"):
            zoo.load(SMALLEST)
    assert still_json >= 100  # many flips were the hard case: valid JSON that only the digest can catch


@pytest.mark.parametrize("name", ["../cnn", "/etc/passwd", "cnn/../../x", "..", ".", "", "CNN", "cnn\n", " cnn",
                                  "~/models/cnn", "C:\\models\\cnn", "\\\\server\\share", "cnn/", "a" * 300, None, 3])
def test_path_like_names_are_refused_where_only_names_are_taken(name):
    with pytest.raises(zoo.UnknownModelError, match="not a model name"):
        zoo.load(name, registry_only=True)


@pytest.mark.parametrize("name", ["../cnn", "/etc/passwd", "cnn/../../x", "..", ".", "", "CNN", "cnn\n", " cnn",
                                  "~/models/cnn", "C:\\models\\cnn", "\\\\server\\share", "cnn/", "a" * 300, None, 3])
def test_names_that_are_no_model_or_model_folder_are_a_clear_error(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths name nothing here
    with pytest.raises((zoo.UnknownModelError, zoo.ModelFileError), match="not a model name|not a folder|no card.json"):
        zoo.load(name)
    with pytest.raises((zoo.UnknownModelError, zoo.ModelFileError), match="not a model name|not a folder|no card.json"):
        zoo.card(name)


def test_a_model_folder_of_your_own_loads_with_the_same_checks(tmp_path):
    folder = _private_copy(SMALLEST, tmp_path, ("model.onnx", "model.safetensors"))
    assert zoo.load(folder).predict(np.zeros((40, 40, 3), np.uint8)).label in zoo.card(SMALLEST).labels
    assert zoo.load(str(folder)).card == zoo.card(folder)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(zoo.ModelFileError, match="model.safetensors"):
        zoo.load(folder)


@pytest.mark.parametrize("key, edit", [("labels", lambda labels: json.dumps(list(reversed(json.loads(labels))))),
                                       ("name", lambda name: name + "-other")])
def test_a_card_that_disagrees_with_the_graphs_declarations_is_refused(home, no_session, key, edit):
    """A graph without the card's digest (an older export, or a folder of your own) is still checked against the
    card: its name, task, version, labels and input size as export wrote them into metadata_props."""
    folder = _private_copy("cnn", home, STAMPED_FILES)
    onnx_path = folder / "model.onnx"
    graph = onnx.load(str(onnx_path), load_external_data=False)
    kept = [entry for entry in graph.metadata_props if entry.key != CARD_DIGEST_KEY]
    del graph.metadata_props[:]
    for entry in kept:
        graph.metadata_props.add(key=entry.key, value=edit(entry.value) if entry.key == key else entry.value)
    onnx.save(graph, str(onnx_path))
    card = zoo.ModelCard.read(folder)
    files = {**card.files, "model.onnx": {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}}
    zoo.ModelCard.from_dict({**card.to_dict(), "files": files}).write(folder)
    with pytest.raises(zoo.ModelFileError, match=f"says {key} .* but model.onnx was exported with"):
        zoo.load("cnn")
