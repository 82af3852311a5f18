"""Every gate that stands between a build and zoo/models refuses when it should, and then replaces nothing.

- export: an ONNX graph that disagrees with PyTorch, or int8-rounded weights that change the answers;
- quantize: an int8 variant that loses accuracy is not installed, and an earlier one stays as it was.
(The runtime's integrity gate, a damaged or tampered file refused before any session, is in test_integrity.)
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.registry import PACKAGE_MODELS
from export import build, quantize
from export.validate import ExportValidationError
from zoo.runtime import sha256_file

NAME = "cnn"
pytestmark = pytest.mark.skipif(NAME not in zoo.list(), reason=f"{NAME} is not shipped")


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A models folder holding a copy of the shipped model, as an earlier export left it."""
    shutil.copytree(PACKAGE_MODELS / NAME, tmp_path / "models" / NAME)
    return tmp_path / "models"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """The shipped model's own weights as a run's checkpoint (its metadata rebuilds the network)."""
    run = tmp_path / "runs" / NAME
    run.mkdir(parents=True)
    shutil.copyfile(PACKAGE_MODELS / NAME / "model.safetensors", run / "model.safetensors")
    return run / "model.safetensors"


def shifted_first_conv(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose first convolution's weights are moved: it no longer computes the same thing."""
    broken = copy.deepcopy(model)
    conv = next(m for m in broken.modules() if isinstance(m, torch.nn.Conv2d))
    conv.weight.data += 0.5
    return broken


def test_an_export_that_disagrees_with_pytorch_is_refused_and_replaces_nothing(installed, checkpoint, cifar_root,
                                                                               monkeypatch):
    before = folder_digest(installed / NAME)
    check_parity = build.check_parity
    # PyTorch's side of the comparison computes something else than the graph that was written.
    monkeypatch.setattr(build, "check_parity", lambda path, model, *rest: check_parity(path, shifted_first_conv(model), *rest))
    with pytest.raises(ExportValidationError, match=r"max \|output difference\| [0-9.e+-]+ > "):
        build.export_model(checkpoint, installed, str(cifar_root))
    assert folder_digest(installed / NAME) == before


def test_int8_weights_that_change_the_answers_are_refused_and_replace_nothing(installed, checkpoint, cifar_root,
                                                                              monkeypatch):
    before = folder_digest(installed / NAME)
    monkeypatch.setattr(build, "INT8_WEIGHT_ARCHS", {zoo.card(NAME).provenance["architecture"]["arch"]})

    round_conv_weights_to_int8 = build.round_conv_weights_to_int8

    def rounded_badly(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        scales = round_conv_weights_to_int8(model)
        shifted = shifted_first_conv(model)
        model.load_state_dict(shifted.state_dict())
        return scales

    monkeypatch.setattr(build, "round_conv_weights_to_int8", rounded_badly)
    with pytest.raises(ExportValidationError, match="int8 weights change"):
        build.export_model(checkpoint, installed, str(cifar_root))
    assert folder_digest(installed / NAME) == before


def test_an_int8_variant_that_loses_accuracy_is_not_installed(installed, monkeypatch):
    variant = installed / f"{NAME}{quantize.SUFFIX}"
    variant.mkdir()
    (variant / "earlier.txt").write_text("an earlier variant")
    labelled_inputs = quantize.labelled_inputs

    def flat_calibration(card, which, count, seed):  # noqa: ANN001, ANN202 - labelled_inputs' signature
        feeds, labels = labelled_inputs(card, which, count, seed)
        if which == "train":  # calibrated on flat grey images, the activation ranges fit no real image
            feeds = {key: np.full_like(value, 128) for key, value in feeds.items()}
        return feeds, labels

    monkeypatch.setattr(quantize, "labelled_inputs", flat_calibration)
    monkeypatch.setattr(quantize, "MIN_SPEEDUP", 0.0)  # only the accuracy bar decides here
    report = quantize.quantize_model(NAME, installed, threads=1, rounds=1, calibration_inputs=64)
    assert not report["shipped"]
    assert "loses" in report["why_not"] and report["accuracy_loss"] > quantize.MAX_INT8_ACCURACY_LOSS
    assert sorted(p.name for p in variant.iterdir()) == ["earlier.txt"]
