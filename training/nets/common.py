"""Pieces every network shares: the in-graph input normalisation."""
from __future__ import annotations

import torch
from torch import Tensor, nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: ImageNet's statistics: the ResNet-50's convention, and the changer's for its photographs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageInput(nn.Module):
    """uint8 RGB NHWC -> normalised float NCHW, inside the graph, so every runtime sees raw pixels."""

    def __init__(self, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD) -> None:
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)), persistent=False)
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        x = image.permute(0, 3, 1, 2).float()
        return x * self.scale - self.shift
