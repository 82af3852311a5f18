"""The classifiers' training loop: augmented batches, cross-entropy, bf16 autocast where the CPU has it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .data import Split, random_pick
from .evaluate import classifier_metrics, evaluate_split, perturbed_accuracy, predict_logits
from .labelled import classifier_split
from .loop import make_optimizer, optimizer_step, splits_meta, start_run, steps_per_epoch, warm_start
from .nets import build
from .recipes import Recipe
from .run import Run


def augment(batch: Tensor, generator: torch.Generator, crop_padding: int = 0, flip: bool = False) -> Tensor:
    """Random reflect-padded crops and horizontal flips of a uint8 NHWC batch, on the batch's device.

    The random draws come from the CPU `generator` whatever the device, so a GPU run augments
    exactly as a CPU run with the same seed.
    """
    n, h, w, _ = batch.shape
    device = batch.device
    if crop_padding:
        p = crop_padding
        padded = F.pad(batch.permute(0, 3, 1, 2).float(), (p, p, p, p), mode="reflect")
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        rows = (dy.view(n, 1) + torch.arange(h, device=device)).view(n, 1, h, 1).expand(n, 3, h, w + 2 * p)
        padded = padded.gather(2, rows)
        cols = (dx.view(n, 1) + torch.arange(w, device=device)).view(n, 1, 1, w).expand(n, 3, h, w)
        batch = padded.gather(3, cols).to(torch.uint8).permute(0, 2, 3, 1)
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(device)
        batch = torch.where(flipped.view(n, 1, 1, 1), batch.flip(2), batch)
    return batch.contiguous()


def train(recipe: Recipe, out: Path = Path("runs"), resume: bool = True, limit: int | None = None,
          device: str = "auto", seed: int = 0, progress: bool = True) -> Path:
    """Train `recipe`; returns the run folder holding model.safetensors, metrics.json and plots."""
    dev, bf16, run_dir = start_run(recipe, out, device, seed)
    world = distributed.init(dev)

    train_split, test_split = classifier_split(recipe, "train"), classifier_split(recipe, "test")
    if limit:
        train_split = train_split.subset(random_pick(len(train_split), limit, seed))
        test_split = test_split.subset(np.arange(min(limit, len(test_split))))

    config = dict(recipe.config, num_classes=len(train_split.classes), input_size=recipe.input_size)
    if config.get("deformable"):  # torchvision's kernel on GPU; on CPU the sampled form (bench.deform)
        config["deform_implementation"] = "torchvision" if dev.type == "cuda" else "sampled"
    model = build(recipe.arch, config).to(dev).to(memory_format=torch.channels_last)
    origin = {"initialized_from": warm_start(model, recipe.init)} if recipe.init else {}
    net = distributed.wrap(model, world)
    per_epoch = steps_per_epoch(len(train_split), recipe.batch_size)
    optimizer, schedule = make_optimizer(model, recipe, recipe.epochs * per_epoch)
    run = Run(recipe, run_dir, model, list(train_split.classes), dev, bf16, seed,
              splits_meta(train_split, test_split), origin)
    images = torch.as_tensor(np.asarray(train_split.images))
    labels = torch.as_tensor(train_split.labels)

    def train_epoch(epoch: int) -> list[float]:
        """One pass over the shuffled training images; returns (images seen, correct, loss sum) over all ranks."""
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=generator)
        seen = 0
        # Running sums stay on the device: reading them every step would stall a GPU once per batch.
        correct, loss_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
        bar = tqdm(range(per_epoch), desc=f"{recipe.name} epoch {epoch + 1}/{recipe.epochs}",
                   disable=not (progress and world.is_main), mininterval=5)
        for step in bar:
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            # Every rank augments the whole global batch (same random draws as one process) and keeps its share.
            batch = world.shard(augment(images[index].to(dev), generator, **recipe.augment))
            target = world.shard(labels[index]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(batch)
                loss = F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
            optimizer_step(loss, optimizer, schedule)
            seen += len(target)
            correct += (logits.argmax(1) == target).sum()
            loss_sum += loss.detach() * len(target)
            if bar.n % 50 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}")
        return world.sum(seen, float(correct), float(loss_sum))

    def record_epoch(epoch: int, sums: list[float], seconds: float) -> dict[str, Any]:
        seen, correct, loss_sum = sums
        test = evaluate_split(model, test_split, dev, bf16)
        print(f"{recipe.name} epoch {epoch + 1}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f} | "
              f"test loss {test['loss']:.4f} acc {test['accuracy']:.4f} | {seconds:.0f}s", flush=True)
        return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                "test_loss": test["loss"], "test_accuracy": test["accuracy"], "seconds": seconds}

    seconds, history = run.epochs(optimizer, schedule, per_epoch, resume, train_epoch, record_epoch, world)
    if not world.is_main:
        return run_dir
    from .plots import write_plots

    metrics = {**final_metrics(model, recipe, train_split, test_split, dev, seed), "history": history,
               "train_seconds": seconds}
    return run.end(metrics, lambda final: write_plots(run_dir, final, list(train_split.classes)))


def final_metrics(model: nn.Module, recipe: Recipe, train_split: Split, test_split: Split, dev: torch.device,
                  seed: int) -> dict[str, Any]:
    """fp32 evaluation of the finished model: the figures its card reports."""
    sample = train_split.subset(random_pick(len(train_split), 10_000, seed))
    metrics = classifier_metrics(predict_logits(model, test_split.images, dev), torch.as_tensor(test_split.labels),
                                 predict_logits(model, sample.images, dev), torch.as_tensor(sample.labels),
                                 test_split.classes, f"{len(sample)} train images, no augmentation")
    if recipe.robustness:
        metrics["perturbed_test_accuracy"] = {
            kind: perturbed_accuracy(model, test_split, dev, kind, seed) for kind in ("rotation", "zoom", "rotation+zoom")
        }
    return metrics
