"""Where the shipped models live and which names exist.

Models are folders ``<root>/<name>/`` holding ``card.json``; the root is the package's own
``zoo/models`` unless ``ZOO_HOME`` points at another folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .files import CARD_FILE
from .errors import UnknownModelError

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
#: A plain folder name: no separators, no "..", no leading dot, short enough for any filesystem.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def models_root() -> Path:
    """The folder the zoo reads models from: $ZOO_HOME if set, else the package's models."""
    home = os.environ.get("ZOO_HOME")
    return Path(home).expanduser() if home else PACKAGE_MODELS


def list_models() -> list[str]:
    """Names of the models that can be loaded, sorted."""
    root = models_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / CARD_FILE).is_file())


def model_dir(name: str) -> Path:
    """The folder of model `name`; refuses names that are not plain model names."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UnknownModelError(
            f"{name!r:.120} is not a model name (up to 100 lower-case letters, digits, '-', '_', '.'; no paths). "
            f"Available: {', '.join(list_models()) or 'none'}."
        )
    folder = models_root() / name
    if not (folder / CARD_FILE).is_file():
        raise UnknownModelError(
            f"no model named {name!r} in {models_root()}. Available: {', '.join(list_models()) or 'none'}."
        )
    return folder
