"""What `python -m training NAME` trains: architecture, data and schedule of every shipped model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recipe:
    name: str
    arch: str
    config: dict[str, Any]
    task: str
    description: str
    data: str = "../shared/data/cifar10-jpeg"
    epochs: int = 8
    batch_size: int = 256
    lr: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    optimizer: str = "sgd"  # or "adamw"
    warmup: float = 0.25  # fraction of the one-cycle schedule spent warming up
    steps_per_epoch: int = 0  # pair-generating recipes: steps between evaluations
    augment: dict[str, Any] = field(default_factory=lambda: {"crop_padding": 4, "flip": True})
    input_size: int = 32
    robustness: bool = False
    demo: str = "cifar10"  # which tab of app.py shows the model
    classes: tuple[str, ...] = ()  # train on these classes of the data set only (all when empty)
    backbone: str = ""  # where a pretrained backbone comes from: a zoo training run, "imagenet" or a file
    method: dict[str, Any] = field(default_factory=dict)  # variant settings (triplet margin, mining, loss weights)


# Both Q2 networks share one recipe so that the comparison is fair; only the convolution differs.
# Measured on this 2-core CPU: the deformable net trains at ~350 img/s, so 11 epochs fit in 30 minutes.
_Q2 = dict(arch="small-cnn", task="image-classification", epochs=11, lr=0.05, label_smoothing=0.1,
           augment={"crop_padding": 2, "flip": True}, robustness=True)

CIFAR8 = ("bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # CIFAR-10 without airplane, automobile

RECIPES: dict[str, Recipe] = {
    "cnn": Recipe(
        name="cnn",
        config={"widths": [64, 128], "pool": 3, "deformable": False},
        description="Two Conv2d -> BatchNorm -> ReLU -> MaxPool blocks and one linear layer (the report's Q2 CNN).",
        **_Q2,
    ),
    "deformable-cnn": Recipe(
        name="deformable-cnn",
        config={"widths": [64, 128], "pool": 3, "deformable": True},
        description="The same network with DeformConv2d in both blocks; a plain convolution predicts each block's offsets.",
        **_Q2,
    ),
    "changer": Recipe(
        name="changer",
        arch="changer",
        config={"widths": [32, 64, 128, 256], "blocks": [1, 1, 1, 1]},
        task="change-detection",
        description="Which geometric changes (shift, rotation, zoom) separate two views of a scene, and by how much.",
        data="../shared/data",
        epochs=16,  # 16 x 400 steps x 128 pairs: 36.5 minutes on this CPU
        steps_per_epoch=400,
        batch_size=128,
        optimizer="adamw",
        lr=2e-3,
        label_smoothing=0.0,  # unused by the pair loop: BCE on the changes + smooth L1 on the parameters
        augment={},  # the pair generator is the augmentation
        weight_decay=1e-4,
        warmup=0.1,
        input_size=64,
        demo="changer",
    ),
    # The backbone of the car/plane models, pretrained here because no machine can fetch ImageNet
    # weights: it never sees an airplane or an automobile. CIFAR images are upscaled to 64x64 (zoo's
    # resize) so that the last stage still has a 2x2 map; measured ~65 img/s training on this CPU.
    "resnet50-cifar8": Recipe(
        name="resnet50-cifar8",
        arch="resnet50",
        config={},
        task="image-classification",
        description="torchvision's ResNet-50 trained from scratch on the eight CIFAR-10 classes that are not airplane or automobile.",
        classes=CIFAR8,
        epochs=6,
        batch_size=128,
        lr=0.1,
        label_smoothing=0.1,
        augment={"crop_padding": 8, "flip": True},
        input_size=64,
        demo="",
    ),
}
