"""python -m training.bench_deform: training speed of deformable-cnn with each deformable implementation.

Batch 256 of random uint8 images, three timed SGD steps after one warm-up. torchvision's CPU kernel
does not run under bf16 autocast (it wants float32 for every input), so it is timed in fp32.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .nets import build
from .recipes import RECIPES


def images_per_second(implementation: str, bf16: bool, batch: int = 256, steps: int = 3) -> float:
    torch.manual_seed(0)
    config = dict(RECIPES["deformable-cnn"].config, deform_implementation=implementation)
    net = build("small-cnn", config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))
    for step in range(steps + 1):
        if step == 1:
            began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - began)


if __name__ == "__main__":
    for implementation, bf16 in (("sampled", True), ("sampled", False), ("torchvision", False)):
        rate = images_per_second(implementation, bf16)
        print(f"{implementation:<12} {'bf16' if bf16 else 'fp32'}  {rate:7.0f} images/s", flush=True)
