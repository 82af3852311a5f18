"""One training run, whatever the loop trains: its epochs, checkpoints and run end.

Every loop resumes from last.safetensors, rewrites it after each epoch (so an interrupted run loses one
epoch at most) and ends the same way: model.safetensors, then metrics.json, then the plots.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn

from .checkpoint import save_checkpoint
from .distributed import World
from .loop import FINAL, LAST, checkpoint_meta, optimizer_state, restore
from .recipes import Recipe

#: What one epoch's training hands to its evaluation (running sums, counts).
Trained = TypeVar("Trained")


@dataclass
class Run:
    """The run folder of `model` and what its checkpoints record about it."""

    recipe: Recipe
    folder: Path
    model: nn.Module
    labels: list[str]
    device: torch.device
    bf16: bool
    seed: int
    data: dict[str, Any]  # the checkpoint's description of the training data
    extra_meta: dict[str, Any] = field(default_factory=dict)  # more checkpoint metadata (origin, backbone, ...)

    def save(self, path: Path, epochs_done: int, seconds: float, metrics: dict[str, Any],
             tensors: dict[str, Tensor] | None = None) -> None:
        meta = checkpoint_meta(self.recipe, self.model, self.labels, epochs_done, seconds, self.device, self.bf16,
                               self.seed, metrics, self.data, **self.extra_meta)
        save_checkpoint(path, self.model, meta, tensors)

    def epochs(self, optimizer: torch.optim.Optimizer, schedule, steps_per_epoch: int, resume: bool,
               train_epoch: Callable[[int], Trained], record_epoch: Callable[[int, Trained, float], dict[str, Any]],
               world: World = World()) -> tuple[float, list[dict[str, Any]]]:
        """The recipe's epochs, after those last.safetensors holds when `resume` and it is this recipe's.

        `train_epoch(epoch)` trains one epoch; only it is timed, so the run's seconds are training time.
        `record_epoch(epoch, what train_epoch returned, seconds so far)` evaluates on rank 0 and returns the
        epoch's history entry. Returns (training seconds, history) once every rank is done.
        """
        last = self.folder / LAST
        start, seconds, history = (restore(last, self.recipe, self.model, optimizer, schedule, steps_per_epoch)
                                   if resume else (0, 0.0, []))
        for epoch in range(start, self.recipe.epochs):
            self.model.train()
            began = time.time()
            trained = train_epoch(epoch)
            seconds += time.time() - began
            if not world.is_main:  # rank 0 evaluates and writes the run folder
                continue
            history.append(record_epoch(epoch, trained, seconds))
            self.save(last, epoch + 1, seconds, {"history": history}, optimizer_state(optimizer))
        world.finish()
        return seconds, history

    def end(self, metrics: dict[str, Any], plots: Callable[[dict[str, Any]], object]) -> Path:
        """model.safetensors with the final `metrics` (history and train_seconds included), then metrics.json,
        then `plots(metrics)`; returns the run folder."""
        self.save(self.folder / FINAL, self.recipe.epochs, metrics["train_seconds"], metrics)
        (self.folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plots(metrics)
        return self.folder
