"""python -m bench.deform: training speed of deformable-cnn with each deformable implementation.

Batch 256 of random uint8 images, three timed SGD steps after one warm-up. torchvision's CPU kernel
does not run under bf16 autocast (it wants float32 for every input), so it is timed in fp32.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from training.nets import build
from training.recipes import RECIPES

#: Each implementation with the precisions it is timed in (bf16: under autocast).
IMPLEMENTATIONS = (("sampled", True), ("sampled", False), ("torchvision", False))


def images_per_second(implementation: str, bf16: bool, batch: int = 256, steps: int = 3) -> float:
    """Training images per second of deformable-cnn's network with `implementation`, over `steps` SGD steps."""
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


def main(argv: list[str] | None = None) -> None:
    """Print the training images per second of each implementation and precision."""
    argparse.ArgumentParser(prog="python -m bench.deform", description=__doc__.split("\n\n")[0]).parse_args(argv)
    for implementation, bf16 in IMPLEMENTATIONS:
        rate = images_per_second(implementation, bf16)
        print(f"{implementation:<12} {'bf16' if bf16 else 'fp32'}  {rate:7.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
