"""`python -m export triton OUTDIR`: a Triton model repository whose configs describe the shipped graphs."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import zoo
from export.triton import LABELS_FILE, MAX_BATCH_SIZE, write_repository

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton")
    subprocess.run([sys.executable, "-m", "export", "triton", str(out)], cwd=ROOT, check=True, timeout=300)
    return out


#: One `key: value` line of config.pbtxt: a quoted string, a [ list ] or a bare word.
FIELD = re.compile(r'(\w+): (?:"([^"]*)"|\[ ([^\]]*) \]|(\w+))')


def parse_tensors(config: str, section: str) -> list[dict[str, str]]:
    """name, data_type, dims and label_filename of each entry of the `input` or `output` block."""
    block = re.search(rf"^{section} \[\n(.*?)^\]", config, re.S | re.M).group(1)
    return [{key: quoted or listed or word for key, quoted, listed, word in FIELD.findall(entry)}
            for entry in re.findall(r"\{(.*?)\}", block, re.S)]


def test_one_folder_per_model_with_graph_weights_labels_and_config(repository):
    assert sorted(p.name for p in repository.iterdir()) == zoo.list()
    for name in zoo.list():
        folder = repository / name
        assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]
        assert (folder / LABELS_FILE).read_text().splitlines() == list(zoo.card(name).labels)
        config = (folder / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config
        assert 'platform: "onnxruntime_onnx"' in config and 'backend: "onnxruntime"' in config
        assert f"max_batch_size: {MAX_BATCH_SIZE}" in config and "dynamic_batching {" in config


def test_inputs_and_outputs_are_the_cards_names_dtypes_and_item_shapes(repository):
    for name in zoo.list():
        card = zoo.card(name)
        config = (repository / name / "config.pbtxt").read_text()
        inputs, outputs = parse_tensors(config, "input"), parse_tensors(config, "output")
        assert [(i["name"], i["data_type"], i["dims"]) for i in inputs] == \
            [(s.name, "TYPE_UINT8", f"{s.height}, {s.width}, 3") for s in card.inputs]
        assert [o["name"] for o in outputs] == list(card.outputs)
        assert all(o["data_type"] == "TYPE_FP32" for o in outputs)
        assert outputs[0]["dims"] == str(len(card.labels)) and outputs[0]["label_filename"] == LABELS_FILE


@pytest.mark.parametrize("name", ["cnn", "deformable-cnn"])
def test_the_graph_runs_from_a_moved_copy_and_matches_the_zoo(repository, tmp_path, name):
    """The graph holds its weights: a copy of the version folder runs anywhere and answers as zoo does."""
    model = zoo.load(name, device="cpu")
    moved = shutil.copytree(repository / name, tmp_path / name)
    session = ort.InferenceSession(str(moved / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {s.name: np.random.default_rng(0).integers(0, 256, (3, s.height, s.width, 3), dtype=np.uint8)
             for s in model.card.inputs}
    np.testing.assert_allclose(session.run(None, feeds)[0], model.session.run(None, feeds)[0], rtol=1e-5, atol=1e-5)


def test_writing_again_replaces_a_model_folder(tmp_path):
    name = zoo.list()[0]
    (tmp_path / name / "2").mkdir(parents=True)
    write_repository(tmp_path, [name])
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["1", "config.pbtxt", LABELS_FILE]
