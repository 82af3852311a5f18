"""The changer's data: source photographs by split, and the pairs generated from them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from .data import Split, load_hashed_split, load_split
from .distributed import World
from .pairs import Pairs, make_pairs

CIFAR_SIZE = 32
PHOTO_SIZE = 160  # Caltech photographs are cached as 160x160 centre crops; views are ~50 px of them


def source_sets(data_root: str, split: str) -> dict[str, Split]:
    """Source images of one split, by origin. CIFAR's train split gives train (19/20) and val (1/20)."""
    root = Path(data_root)
    cifar = load_split(str(root / "cifar10-jpeg"), "test" if split == "test" else "train", CIFAR_SIZE)
    if split != "test":
        keep = (np.arange(len(cifar)) % 20 == 0) == (split == "val")
        cifar = cifar.subset(keep)
    return {"cifar10": cifar, "caltech101": load_hashed_split(root / "caltech101-subset", split, PHOTO_SIZE)}


def source_images(sets: dict[str, Split]) -> dict[str, np.ndarray]:
    return {origin: split.images for origin, split in sets.items()}


def mixed_pairs(sources: dict[str, np.ndarray], n: int, size: int, seed: int) -> Pairs:
    """`n` pairs, an equal share from each source set (deterministic by seed)."""
    return Pairs.concat([make_pairs(images, n // len(sources), size, [seed, k])
                         for k, images in enumerate(sources.values())])


class PairStream(torch.utils.data.IterableDataset):
    """Endless training batches; each (epoch, step) has its own seed, so a resumed run sees the same data.

    Under data parallelism each rank generates its own share of every global batch, from its own seeds.
    """

    def __init__(self, sources: dict[str, np.ndarray], batch: int, size: int, seed: int, epoch: int, steps: int,
                 world: World = World()):
        self.sources, self.size, self.seed, self.epoch, self.steps = sources, size, seed, epoch, steps
        self.batch, self.world = batch // world.size, world

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        torch.set_num_threads(1)
        for step in range(self.steps):
            seed = (self.seed * 10**9 + self.epoch * 10**5 + step) * self.world.size + self.world.rank
            pairs = mixed_pairs(self.sources, self.batch, self.size, seed)
            yield (torch.from_numpy(pairs.a), torch.from_numpy(pairs.b), torch.from_numpy(pairs.labels),
                   torch.from_numpy(pairs.params).float())
