"""The report's Q2 networks: two [Conv2d | DeformConv2d] -> BatchNorm -> ReLU -> MaxPool blocks and one linear layer."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from ..deform import DeformConv2d
from .common import ImageInput


@dataclass
class SmallCNNConfig:
    num_classes: int = 10
    widths: tuple[int, int] = (128, 256)
    kernel_size: int = 3
    deformable: bool = False
    deform_implementation: str = "sampled"
    input_size: int = 32
    pool: int = 2  # max-pool window (stride 2); 3 overlaps neighbouring windows

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)  # JSON brings lists back


class SmallCNN(nn.Module):
    def __init__(self, config: SmallCNNConfig) -> None:
        super().__init__()
        self.config = config
        self.input = ImageInput()
        blocks = []
        in_channels = 3
        for width in config.widths:
            pad = config.kernel_size // 2
            if config.deformable:
                conv = DeformConv2d(in_channels, width, config.kernel_size, padding=pad, bias=False,
                                    implementation=config.deform_implementation)
            else:
                conv = nn.Conv2d(in_channels, width, config.kernel_size, padding=pad, bias=False)
            blocks.append(nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                        nn.MaxPool2d(config.pool, 2, padding=(config.pool - 1) // 2)))
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        side = config.input_size // 2 ** len(config.widths)
        self.classifier = nn.Linear(in_channels * side * side, config.num_classes)

    def forward(self, image: Tensor) -> Tensor:
        """uint8 NHWC images -> class logits."""
        return self.classifier(self.blocks(self.input(image)).flatten(1))

    def config_dict(self) -> dict:
        return asdict(self.config)
