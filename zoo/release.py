"""What a release is: the distribution's name and version, where its model files are published, and the index.

A release publishes, beside the wheel, every model file once under its sha256 (a flat folder of
content-addressed files, so a GitHub release or any static host serves it as it is) and `index.json`,
which lists every model's files with their size and sha256. The wheel carries the same index, every
card and README, and the files of the models it embeds; zoo fetches the others from
`$ZOO_MODELS_URL/<sha256>` (`zoo.hub`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .card import ModelCard
from .errors import ModelFileError
from .files import CARD_FILE
from .runtime import file_entry

#: The name on PyPI (`pip install zoo-onnx`); the import name is `zoo`.
DISTRIBUTION = "zoo-onnx"
#: The package's version (PEP 440): MAJOR.MINOR.PATCH, MINOR raised when a model's files change.
VERSION = "0.2.0"
#: Where `python -m export release` output is published for this version; ZOO_MODELS_URL overrides it.
DEFAULT_MODELS_URL = f"https://github.com/zoo-onnx/zoo-onnx/releases/download/v{VERSION}/"
#: The index of every model file, in the package's models folder and at the root of a release.
INDEX_FILE = "index.json"
INDEX_FORMAT = 1


def build_index(models: Path, names: list[str]) -> dict[str, Any]:
    """The index of the models `names` in the folder `models`: each model's card and every file it lists."""
    entries = {}
    for name in names:
        card = ModelCard.read(models / name)
        entries[name] = {CARD_FILE: file_entry(models / name / CARD_FILE), **dict(sorted(card.files.items()))}
    return index_document(entries)


def index_document(models: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """An index file's content for `models` (name -> file -> {sha256, bytes}), as `read_index` reads it."""
    return {"format": INDEX_FORMAT, "distribution": DISTRIBUTION, "version": VERSION, "models": models}


def render_index(index: dict[str, Any]) -> str:
    return json.dumps(index, indent=1, sort_keys=True) + "\n"


def read_index(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The `models` of an index file: name -> file -> {sha256, bytes}; {} when there is no index."""
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
        if index.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {index.get('format')!r}, this zoo reads {INDEX_FORMAT}")
        return dict(index["models"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path} is unreadable or damaged ({exc}); reinstall the package.") from None
