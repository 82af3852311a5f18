"""zoo: load a shipped model in one line and run it with onnxruntime; no torch needed.

    >>> import zoo
    >>> zoo.list()
    >>> zoo.load("cnn").predict("photo.jpg")
"""
from __future__ import annotations

import os
from pathlib import Path

from .card import InputSpec, License, ModelCard
from .errors import DeviceError, ImageError, ModelFileError, UnknownModelError, ZooError
from .model import Model, load, save_onnx
from .registry import list_models as list
from .registry import models_root
from .release import VERSION as __version__
from .tasks import Prediction

#: Example images: CIFAR-10 test images, a changer pair and two photos (README.md inside says where from).
EXAMPLES = Path(__file__).resolve().parent / "examples"

__all__ = [
    "DeviceError",
    "EXAMPLES",
    "ImageError",
    "InputSpec",
    "License",
    "Model",
    "ModelCard",
    "ModelFileError",
    "Prediction",
    "UnknownModelError",
    "ZooError",
    "card",
    "list",
    "load",
    "models_root",
    "save_onnx",
]


def card(name: str | os.PathLike[str]) -> ModelCard:
    """The card of model `name` (a registry name or a model folder), without loading or downloading the model."""
    from .registry import card_dir, is_path, model_folder

    return ModelCard.read(model_folder(name) if is_path(name) else card_dir(name))
