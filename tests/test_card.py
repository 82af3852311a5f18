"""The typed card: what zoo reads from a card is declared, and a card whose declared fields have the wrong
type is refused with a message naming the field."""
from __future__ import annotations

import json
import shutil

import pytest

import zoo
from zoo.registry import PACKAGE_MODELS
from zoo.card import EXTRA_FIELDS, ModelCard

SHIPPED = zoo.list()
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped models")


def test_every_shipped_extra_key_is_declared():
    for name in SHIPPED:
        assert set(zoo.card(name).extra) <= set(EXTRA_FIELDS), name


def test_a_change_detector_names_its_changes_and_parameters():
    for name in SHIPPED:
        card = zoo.card(name)
        if card.task == "change-detection":
            assert card.changes and card.param_names
            assert card.test_images and card.test_images > 0


@pytest.mark.parametrize("key, value", [("session_config", ["not", "a", "dict"]), ("session_config", {"a": 1}),
                                         ("changes", "displacement"), ("demo", 3), ("quantized_from", {})])
def test_a_declared_field_of_the_wrong_type_is_refused(tmp_path, key, value):
    folder = tmp_path / "card"
    folder.mkdir()
    shutil.copyfile(PACKAGE_MODELS / SHIPPED[0] / "card.json", folder / "card.json")
    content = json.loads((folder / "card.json").read_text())
    content["extra"][key] = value
    (folder / "card.json").write_text(json.dumps(content))
    with pytest.raises(zoo.ModelFileError, match=f"extra.{key}"):
        ModelCard.read(folder)
