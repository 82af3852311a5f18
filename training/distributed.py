"""Data-parallel training: the same `python -m training NAME` under `torchrun --nproc-per-node N`.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; with more than one process the loops wrap the network
in DistributedDataParallel (gloo on CPU, nccl on GPU), each process computes its share of every global
batch (the recipe's batch size stays the global batch, so the schedule and the result match one
process's, up to batch-norm statistics per share and summation order), and only rank 0 evaluates,
prints and writes the run folder. Without torchrun nothing changes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's share of a global batch (every rank holds the same global batch)."""
        return batch if self.size == 1 else batch[self.rank::self.size]

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (running counts of a training epoch)."""
        if self.size == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()

    def finish(self) -> None:
        if self.size > 1:
            dist.destroy_process_group()


def init(device: torch.device) -> World:
    """Join the process group torchrun describes, if any; on GPU, each local rank takes its own device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


class _Method(nn.Module):
    """One method of a network as `forward`, so that DistributedDataParallel synchronises its gradients."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *inputs: Tensor):
        return getattr(self.model, self.method)(*inputs)


def wrap(model: nn.Module, world: World, method: str = "forward") -> Callable[..., object]:
    """What the training step calls: `model.<method>`, under DistributedDataParallel when there are several ranks."""
    if world.size == 1:
        return model if method == "forward" else getattr(model, method)
    device_ids = [torch.cuda.current_device()] if next(model.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(_Method(model, method), device_ids=device_ids)
