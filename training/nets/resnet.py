"""torchvision's ResNet-50, unchanged, behind the in-graph input normalisation, with a separate head.

The backbone keeps torchvision's parameter names (`backbone.conv1.weight`, ...) so that ImageNet
weights (`--backbone imagenet`) or a project checkpoint drop into it; its `fc` is replaced by the
head so the 2048-d embedding stays reachable for triplet training and projections.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchvision
from torch import Tensor, nn

from .common import IMAGENET_MEAN, IMAGENET_STD, ImageInput

EMBEDDING_SIZE = 2048


@dataclass
class ResNet50Config:
    num_classes: int = 8
    input_size: int = 64
    # One logit trained with binary cross-entropy. The graph outputs [0, z]: its softmax is exactly
    # (1 - sigmoid(z), sigmoid(z)), so the runtime treats it like any classifier.
    binary: bool = False


class ResNet50(nn.Module):
    def __init__(self, config: ResNet50Config) -> None:
        super().__init__()
        self.config = config
        self.input = ImageInput(IMAGENET_MEAN, IMAGENET_STD)
        # zero_init_residual: each block starts as the identity, which helps short schedules.
        self.backbone = torchvision.models.resnet50(zero_init_residual=True)
        self.backbone.fc = nn.Identity()
        self.head = nn.Linear(EMBEDDING_SIZE, 1 if config.binary else config.num_classes)

    def embed(self, image: Tensor) -> Tensor:
        """uint8 NHWC images -> 2048-d embeddings (after global average pooling)."""
        return self.backbone(self.input(image))

    def classify(self, embedding: Tensor) -> Tensor:
        logits = self.head(embedding)
        return torch.cat([torch.zeros_like(logits), logits], 1) if self.config.binary else logits

    def forward(self, image: Tensor) -> Tensor:
        """uint8 NHWC images -> class logits."""
        return self.classify(self.embed(image))

    def config_dict(self) -> dict:
        return asdict(self.config)
