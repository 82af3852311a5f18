"""End to end on a small slice: train a few steps -> safetensors -> ONNX (validated) -> zoo -> parity."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import zoo
import zoo.registry
from export.build import export_model
from training.checkpoint import load_model, read_metadata
from training.recipes import RECIPES
from training.train import train


@pytest.mark.parametrize("name", ["cnn", "deformable-cnn"])
def test_train_export_load(name, cifar_root, tmp_path, monkeypatch, cifar_images):
    recipe = replace(RECIPES[name], data=str(cifar_root), epochs=1, lr=0.02, robustness=False)
    run_dir = train(recipe, out=tmp_path / "runs", limit=512, progress=False)
    checkpoint = run_dir / "model.safetensors"
    meta = read_metadata(checkpoint)
    assert meta["labels"][0] == "airplane" and len(meta["labels"]) == 10
    assert meta["data"]["fingerprint_train"] and meta["training"]["epochs_done"] == 1
    assert {"test_accuracy", "confusion_matrix", "history"} <= set(meta["metrics"])
    assert (run_dir / "curves.png").is_file() and (run_dir / "confusion.png").is_file()

    export_model(checkpoint, tmp_path / "models", data=str(cifar_root), portable=True)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "models"))
    assert zoo.registry.source(name) == zoo.registry.LOCAL  # the new export, not the package's model
    model = zoo.load(name, device="cpu")
    assert model.card.metrics["test_accuracy"] == meta["metrics"]["test_accuracy"]

    reference, _ = load_model(checkpoint, **({"deform_implementation": "torchvision"} if "deformable" in name else {}))
    inputs = model.prepare_batch(cifar_images)["image"]
    with torch.no_grad():
        expected = torch.softmax(reference(torch.from_numpy(inputs)), 1).numpy()
    got = np.array([[p.probs[label] for label in model.labels] for p in model.predict_batch(cifar_images)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    ops = model.card.provenance["export"]["graph_ops"]
    assert ("DeformConv" in ops["model.onnx"]) == ("deformable" in name)
    assert ("model-portable.onnx" in ops) == ("deformable" in name)


def test_an_interrupted_run_resumes_where_it_stopped(cifar_root, tmp_path, monkeypatch):
    import training.train as loop
    from training.checkpoint import load_tensors

    recipe = replace(RECIPES["cnn"], data=str(cifar_root), epochs=2, lr=0.02, robustness=False)
    straight = train(recipe, out=tmp_path / "straight", limit=256, progress=False)

    real_evaluate, calls = loop.evaluate_split, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session ends during epoch 2's evaluation
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_split", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out=tmp_path / "resumed", limit=256, progress=False)
    assert read_metadata(tmp_path / "resumed" / "cnn" / "last.safetensors")["training"]["epochs_done"] == 1
    monkeypatch.setattr(loop, "evaluate_split", real_evaluate)
    resumed = train(recipe, out=tmp_path / "resumed", limit=256, progress=False)

    history = read_metadata(resumed / "model.safetensors")["metrics"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    a, b = load_tensors(straight / "model.safetensors"), load_tensors(resumed / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_changer_train_export_load(cifar_root, tmp_path, monkeypatch):
    from training.train_changer import train_changer

    data_root = cifar_root.parent
    if not (data_root / "caltech101-subset").is_dir():
        pytest.skip("the Caltech-101 subset is not beside the CIFAR-10 folders")
    recipe = replace(RECIPES["changer"], data=str(data_root), epochs=1, lr=1e-3)
    run_dir = train_changer(recipe, out=tmp_path / "runs", limit=256, progress=False)
    meta = read_metadata(run_dir / "model.safetensors")
    assert meta["labels"][7] == "displacement+rotation+scaling"
    assert set(meta["metrics"]["test_by_source"]) == {"cifar10", "caltech101"}
    assert (run_dir / "pairs.png").is_file()

    export_model(run_dir / "model.safetensors", tmp_path / "models", data=str(data_root))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "models"))
    model = zoo.load("changer", device="cpu")
    photos = sorted((data_root / "caltech101-subset").glob("*/*.jpg"))[:3]
    prediction = model.predict(photos[0], photos[1])
    assert set(prediction.probs) == set(meta["labels"]) and prediction.label in prediction.probs
    assert set(prediction.changes) == {"displacement", "rotation", "scaling"}
    assert set(prediction.params) == {"shift_x", "shift_y", "angle", "scale"}
    assert sum(prediction.probs.values()) == pytest.approx(1.0, abs=1e-5)
    # The eight class probabilities are the products of the three change probabilities.
    c = prediction.changes
    assert prediction.probs["displacement+scaling"] == pytest.approx(
        c["displacement"] * (1 - c["rotation"]) * c["scaling"], abs=1e-6)
    batch = model.predict_batch([(photos[0], photos[1]), (photos[1], photos[2])])
    assert batch[0].probs == pytest.approx(prediction.probs, abs=1e-6)
    with pytest.raises(zoo.ImageError, match="2 image"):
        model.predict(photos[0])
    with pytest.raises(zoo.ImageError, match="missing an image"):
        model.predict_batch([(photos[0], None)])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_schedule_runs_for_any_number_of_steps(name):
    """One-cycle warm-up on short runs (--limit smoke tests): every step count gets a finite, positive rate."""
    from training.loop import make_optimizer

    model = torch.nn.Linear(4, 2)
    for total in range(1, 41):
        optimizer, schedule = make_optimizer(model, RECIPES[name], total)
        rates = []
        for _ in range(total):
            optimizer.step()
            rates.append(schedule.get_last_lr()[0])
            schedule.step()
        assert all(np.isfinite(rate) and rate > 0 for rate in rates), (total, rates)
        assert max(rates) <= RECIPES[name].lr * (1 + 1e-6)


def test_init_continues_from_a_checkpoint_and_records_it(cifar_root, tmp_path):
    """--init: training starts from the given weights (not from random) and the checkpoint names them."""
    from training.loop import warm_start
    from training.nets import build
    from zoo.runtime import sha256_file

    recipe = replace(RECIPES["cnn"], data=str(cifar_root), epochs=1, lr=0.02, robustness=False)
    first = train(recipe, out=tmp_path / "first", limit=256, progress=False) / "model.safetensors"
    # A learning rate too small to move anything: the continued run's weights are the ones it started from.
    second = train(replace(recipe, lr=1e-12, init=str(first)), out=tmp_path / "second", limit=256,
                   progress=False) / "model.safetensors"
    before, after = load_model(first)[0].state_dict(), load_model(second)[0].state_dict()
    for key, value in before.items():
        if value.is_floating_point() and "running_" not in key:  # batch-norm statistics do move
            torch.testing.assert_close(after[key], value, rtol=0, atol=1e-6)
    origin = read_metadata(second)["initialized_from"]
    assert origin["sha256"] == sha256_file(first) and origin["epochs_done"] == 1 and origin["name"] == "cnn"
    assert "initialized_from" not in read_metadata(first)

    other = build("small-cnn", {**RECIPES["cnn"].config, "widths": [8, 16], "num_classes": 10, "input_size": 32})
    with pytest.raises(ValueError, match="do not fit this network"):
        warm_start(other, str(first))
    with pytest.raises(FileNotFoundError, match="no such file"):
        warm_start(other, str(tmp_path / "missing.safetensors"))
