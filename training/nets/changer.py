"""The report's Q3 "changer": which geometric changes (shift, rotation, zoom) separate two images.

The two views meet as stacked channels (early fusion), so every layer can compare them pixel by
pixel; a residual trunk follows, in which a 1x1 convolution (padding 0, out-channels = the block's
out-channels) projects the shortcut whenever the channel count or stride changes. The head keeps
the final 4x4 layout (no global pooling: where things moved matters) and predicts the three
change probabilities and the four parameters; the eight class probabilities follow from the
three changes, so `probs` and `changes` always agree.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..pairs import CLASS_CHANGES, SCALE_RANGE, SHIFT_RANGE, ANGLE_RANGE
from .common import IMAGENET_MEAN, IMAGENET_STD, ImageInput

#: Regression targets are divided by these so that each is ~1 at the edge of its range.
SHIFT_UNIT = SHIFT_RANGE[1]
ANGLE_UNIT = ANGLE_RANGE[1]
LOG_SCALE_UNIT = math.log(SCALE_RANGE[1])


@dataclass
class ChangerConfig:
    input_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    hidden: int = 512

    def __post_init__(self) -> None:
        self.widths, self.blocks = tuple(self.widths), tuple(self.blocks)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, padding=0, bias=False), nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Changer(nn.Module):
    def __init__(self, config: ChangerConfig) -> None:
        super().__init__()
        self.config = config
        self.input = ImageInput(IMAGENET_MEAN, IMAGENET_STD)
        stem = config.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(6, stem, 5, 2, 2, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        layers, channels = [], stem
        for stage, (width, count) in enumerate(zip(config.widths, config.blocks)):
            for index in range(count):
                layers.append(ResidualBlock(channels, width, 2 if index == 0 and stage > 0 else 1))
                channels = width
        self.trunk = nn.Sequential(*layers)
        side = config.input_size // 2 ** len(config.widths)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * side * side, config.hidden), nn.ReLU(inplace=True),
            nn.Linear(config.hidden, 3 + 4),
        )
        self.register_buffer("class_changes", torch.tensor(CLASS_CHANGES, dtype=torch.float32), persistent=False)

    def raw(self, image_a: Tensor, image_b: Tensor) -> tuple[Tensor, Tensor]:
        """(change logits (N, 3), normalised parameters (N, 4)) for uint8 NHWC views."""
        x = torch.cat([self.input(image_a), self.input(image_b)], dim=1)
        out = self.head(self.trunk(self.stem(x))).float()
        return out[:, :3], out[:, 3:]

    def forward(self, image_a: Tensor, image_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(class probabilities (N, 8), change probabilities (N, 3), [shift_x, shift_y, angle°, scale] (N, 4))."""
        logits, normalised = self.raw(image_a, image_b)
        changes = torch.sigmoid(logits)
        present = changes.unsqueeze(1)
        probs = (present * self.class_changes + (1 - present) * (1 - self.class_changes)).prod(dim=2)
        return probs, changes, denormalise(normalised)

    def config_dict(self) -> dict:
        return asdict(self.config)


def normalise(params: Tensor) -> Tensor:
    """[shift_x, shift_y, angle°, scale] -> the regression targets."""
    return torch.stack([params[:, 0] / SHIFT_UNIT, params[:, 1] / SHIFT_UNIT, params[:, 2] / ANGLE_UNIT,
                        torch.log(params[:, 3]) / LOG_SCALE_UNIT], dim=1)


def denormalise(values: Tensor) -> Tensor:
    return torch.stack([values[:, 0] * SHIFT_UNIT, values[:, 1] * SHIFT_UNIT, values[:, 2] * ANGLE_UNIT,
                        torch.exp(values[:, 3] * LOG_SCALE_UNIT)], dim=1)
