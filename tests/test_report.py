"""The model READMEs and the README's tables count every run a model's weights had (training --init chains)."""
from __future__ import annotations

from dataclasses import replace

import zoo
from export.report import model_readme, training_seconds


def test_a_continued_model_counts_and_names_every_run_it_continued():
    card = zoo.card("cnn")
    first = {"name": "cnn", "source": "runs/cnn/model.safetensors", "sha256": "ab" * 32, "code_version": "1111111",
             "epochs_done": 3, "seconds": 120.0, "test_accuracy": 0.5, "recipe": {"lr": 0.1, "label_smoothing": 0.1},
             "initialized_from": None}
    second = dict(first, source="zoo/models/cnn/model.safetensors", seconds=60.0, test_accuracy=0.6,
                  initialized_from=first)
    continued = replace(card, provenance={**card.provenance, "initialized_from": second})
    own = card.provenance["training"]["seconds"]
    assert training_seconds(card.provenance) == own
    assert training_seconds(continued.provenance) == own + 180.0
    text = model_readme(continued)
    assert text.count("- continued from `cnn`") == 2
    assert "zoo/models/cnn/model.safetensors" in text and "test accuracy 50.00%" in text
    assert f"- training in all: {(own + 180.0) / 60:.1f} min" in text
    assert "continued from" not in model_readme(card)


def test_every_model_readme_names_its_license_data_and_references():
    for name in zoo.list():
        card = zoo.card(name)
        text = model_readme(card)
        license_part = text.split("## License", 1)[1].split("## References", 1)[0]
        references = text.split("## References", 1)[1].split("## Files", 1)[0]
        assert "MIT" in license_part and "Krizhevsky, Learning Multiple Layers" in license_part, name
        assert ("Fei-Fei, R. Fergus, P. Perona" in license_part) == (name == "changer"), name
        assert "course report" in references, name
        assert ("He, X. Zhang" in references) == (card.provenance["architecture"]["arch"] == "resnet50"), name
        assert ("Deformable Convolutional Networks" in references) == (name == "deformable-cnn"), name
        triplet = name.removesuffix("-int8") in ("carplane-triplet", "carplane-joint")
        assert ("Schroff" in references and "Hermans" in references) == triplet, name
