"""zoo: load a shipped model in one line and run it with onnxruntime; no torch needed.

    >>> import zoo
    >>> zoo.list()
    >>> zoo.load("cnn").predict("photo.jpg")
"""
from __future__ import annotations

from .card import InputSpec, ModelCard
from .errors import DeviceError, ImageError, ModelFileError, UnknownModelError, ZooError
from .model import Model, Prediction, load, save_onnx
from .registry import list_models as list
from .registry import models_root

__all__ = [
    "DeviceError",
    "ImageError",
    "InputSpec",
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
__version__ = "0.1.0"


def card(name: str) -> ModelCard:
    """The card of model `name`, without loading the model."""
    from .registry import model_dir

    return ModelCard.read(model_dir(name))
