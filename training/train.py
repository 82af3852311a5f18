"""The training loop: resumable, checkpointed every epoch, bf16 autocast where the CPU has it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .checkpoint import save_checkpoint
from .data import Split, load_split
from .geometry import random_rotation_zoom, similarity_warp
from .loop import (FINAL, LAST, checkpoint_meta, make_optimizer, optimizer_state, per_class_accuracy, restore,
                   start_run, steps_per_epoch, warm_start)
from .nets import build
from .recipes import Recipe


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


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | Tensor, device: torch.device, bf16: bool = False,
                   batch_size: int = 500) -> Tensor:
    model.eval()
    outs = []
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(np.asarray(images[start:start + batch_size])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outs.append(model(batch).float().cpu())
    return torch.cat(outs)


def evaluate(model: nn.Module, split: Split, device: torch.device, bf16: bool = False) -> dict[str, float]:
    logits = predict_logits(model, split.images, device, bf16)
    labels = torch.as_tensor(split.labels)
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
    }


def perturbed_accuracy(model: nn.Module, split: Split, device: torch.device, kind: str, seed: int = 0) -> float:
    """Test accuracy after a random rotation (15-30°, either sign), zoom (1.2-1.6, in or out), or both."""
    generator = torch.Generator().manual_seed(seed)
    angle, zoom = random_rotation_zoom(len(split), generator)
    if kind == "rotation":
        zoom = torch.ones_like(zoom)
    elif kind == "zoom":
        angle = torch.zeros_like(angle)
    images = torch.as_tensor(np.asarray(split.images)).permute(0, 3, 1, 2).float()
    warped = similarity_warp(images, angle, zoom).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    logits = predict_logits(model, warped, device)
    return float((logits.argmax(1) == torch.as_tensor(split.labels)).float().mean())


def train(recipe: Recipe, out: Path = Path("runs"), resume: bool = True, limit: int | None = None,
          device: str = "auto", seed: int = 0, progress: bool = True) -> Path:
    """Train `recipe`; returns the run folder holding model.safetensors, metrics.json and plots."""
    dev, bf16, run_dir = start_run(recipe, out, device, seed)
    world = distributed.init(dev)

    train_split = load_split(recipe.data, "train", recipe.input_size)
    test_split = load_split(recipe.data, "test", recipe.input_size)
    if recipe.classes:
        train_split, test_split = train_split.only(recipe.classes), test_split.only(recipe.classes)
    if limit:
        pick = np.random.default_rng(seed).permutation(len(train_split))[:limit]
        train_split = train_split.subset(np.sort(pick))
        test_split = test_split.subset(np.arange(min(limit, len(test_split))))

    config = dict(recipe.config, num_classes=len(train_split.classes), input_size=recipe.input_size)
    if config.get("deformable"):  # torchvision's kernel on GPU; on CPU the sampled form (bench_deform)
        config["deform_implementation"] = "torchvision" if dev.type == "cuda" else "sampled"
    model = build(recipe.arch, config).to(dev).to(memory_format=torch.channels_last)
    origin = {"initialized_from": warm_start(model, recipe.init)} if recipe.init else {}
    net = distributed.wrap(model, world)
    per_epoch = steps_per_epoch(len(train_split), recipe.batch_size)
    optimizer, schedule = make_optimizer(model, recipe, recipe.epochs * per_epoch)
    last = run_dir / LAST
    start_epoch, train_seconds, history = (0, 0.0, [])
    if resume:
        start_epoch, train_seconds, history = restore(last, recipe, model, optimizer, schedule, per_epoch)

    images = torch.as_tensor(np.asarray(train_split.images))
    labels = torch.as_tensor(train_split.labels)
    data_meta = {"source": train_split.source, "fingerprint_train": train_split.fingerprint,
                 "fingerprint_test": test_split.fingerprint, "train_images": len(train_split),
                 "test_images": len(test_split)}

    def meta_for(epochs_done: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return checkpoint_meta(recipe, model, list(train_split.classes), epochs_done, train_seconds, dev, bf16, seed,
                               metrics, data_meta, **origin)

    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=generator)
        began = time.time()
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
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(target)
            correct += (logits.argmax(1) == target).sum()
            loss_sum += loss.detach() * len(target)
            if bar.n % 50 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}")
        seen, correct, loss_sum = world.sum(seen, float(correct), float(loss_sum))
        train_seconds += time.time() - began
        if not world.is_main:  # rank 0 evaluates and writes the run folder
            continue
        test = evaluate(model, test_split, dev, bf16)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "test_loss": test["loss"], "test_accuracy": test["accuracy"], "seconds": train_seconds})
        print(f"{recipe.name} epoch {epoch + 1}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f} | "
              f"test loss {test['loss']:.4f} acc {test['accuracy']:.4f} | {train_seconds:.0f}s", flush=True)
        save_checkpoint(last, model, meta_for(epoch + 1, {"history": history}), optimizer_state(optimizer))

    world.finish()
    if not world.is_main:
        return run_dir
    metrics = final_metrics(model, recipe, train_split, test_split, dev, seed)
    metrics["history"] = history
    metrics["train_seconds"] = train_seconds
    save_checkpoint(run_dir / FINAL, model, meta_for(recipe.epochs, metrics))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from .plots import write_plots

    write_plots(run_dir, metrics, list(train_split.classes))
    return run_dir


def final_metrics(model: nn.Module, recipe: Recipe, train_split: Split, test_split: Split, dev: torch.device,
                  seed: int) -> dict[str, Any]:
    """fp32 evaluation of the finished model: the figures its card reports."""
    from sklearn.metrics import confusion_matrix

    sample = np.random.default_rng(seed).permutation(len(train_split))[:10_000]
    train_eval = evaluate(model, train_split.subset(np.sort(sample)), dev)
    logits = predict_logits(model, test_split.images, dev)
    labels = torch.as_tensor(test_split.labels)
    predicted = logits.argmax(1)
    matrix = confusion_matrix(labels.numpy(), predicted.numpy(), labels=range(len(test_split.classes)))
    metrics: dict[str, Any] = {
        "test_accuracy": float((predicted == labels).float().mean()),
        "test_loss": float(F.cross_entropy(logits, labels)),
        "train_accuracy": train_eval["accuracy"],
        "train_loss": train_eval["loss"],
        "train_accuracy_note": f"{len(sample)} train images, no augmentation",
        "test_images": len(test_split),
        "per_class_accuracy": per_class_accuracy(matrix, test_split.classes),
        "confusion_matrix": matrix.tolist(),
    }
    if recipe.robustness:
        metrics["perturbed_test_accuracy"] = {
            kind: perturbed_accuracy(model, test_split, dev, kind, seed) for kind in ("rotation", "zoom", "rotation+zoom")
        }
    return metrics
