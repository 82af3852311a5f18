"""Architectures, each built from (arch, config) so that a checkpoint's metadata rebuilds it."""
from __future__ import annotations

from typing import Any

from torch import nn

from .changer import Changer, ChangerConfig
from .cnn import SmallCNN, SmallCNNConfig
from .resnet import ResNet50, ResNet50Config

ARCHITECTURES: dict[str, tuple[type, type]] = {
    "small-cnn": (SmallCNN, SmallCNNConfig),
    "changer": (Changer, ChangerConfig),
    "resnet50": (ResNet50, ResNet50Config),
}


def build(arch: str, config: dict[str, Any]) -> nn.Module:
    """The network `arch` with constructor arguments `config` (as stored in a checkpoint)."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    module_class, config_class = ARCHITECTURES[arch]
    return module_class(config_class(**config))
