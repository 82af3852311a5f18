"""python -m bench.train [NAME ...] [--data DIR] [--json FILE]: training speed against this machine's ceiling.

Per model, a few optimizer steps exactly as its training loop takes them (the recipe's batch size,
augmentation or pair generator, bf16 autocast where the CPU has it, channels-last), after warm-up steps:
images per second, the GFLOP/s that implies (forward + backward counted as three forward passes) against
the measured fp32 and bf16 matmul ceilings, and the data-loading share of the step time: for the
classifiers the batch gather and augmentation the loop does in line, for the changer the time the loop
waits on its DataLoader worker generating pairs. The car/plane variants fine-tune the same ResNet-50 at
the same 64x64 input as resnet50-cifar8 (or train a head on cached embeddings), so that row stands for them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import zoo
from training.data import load_split
from training.loop import bf16_is_fast, make_optimizer
from training.nets import build
from training.recipes import RECIPES, Recipe

from .data import add_data_option, data_folder, relocated
from .goals import data_share_goal_met
from .tables import training_table
from .torch_engines import gflop_per_image, matmul_ceiling, torch_module

#: Models whose training loop this measures (the car/plane variants: see the module's docstring).
MEASURED = ("cnn", "deformable-cnn", "changer", "resnet50-cifar8")
#: The length of the learning-rate schedule the measured steps are taken on.
FULL_RUN_STEPS = 10_000
#: The tensors of one training batch, as the loss function takes them.
Batch = tuple[Tensor, ...]


def classifier_batches(recipe: Recipe, seed: int = 0) -> tuple[Iterator[Batch], int]:
    """(images, targets) as `training.train.train` draws them: a shuffled gather, then `augment`; and the class count."""
    from training.train import augment

    split = load_split(recipe.data, "train", recipe.input_size)
    if recipe.classes:
        split = split.only(recipe.classes)
    images, labels = torch.as_tensor(np.asarray(split.images)), torch.as_tensor(split.labels)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)

    def batches() -> Iterator[Batch]:
        for start in range(0, len(order) - recipe.batch_size + 1, recipe.batch_size):
            index = order[start:start + recipe.batch_size]
            yield augment(images[index], generator, **recipe.augment), labels[index]

    return batches(), len(split.classes)


def changer_batches(recipe: Recipe, steps: int, seed: int = 0) -> Iterator[Batch]:
    """(a, b, labels, params) from the changer's own PairStream behind a one-worker DataLoader, as it trains."""
    from training.changer_data import PairStream, source_images, source_sets

    sources = source_images(source_sets(recipe.data, "train"))
    stream = PairStream(sources, recipe.batch_size, recipe.input_size, seed, 0, steps)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1))


def step_function(recipe: Recipe, steps: int) -> tuple[Iterator[Batch], Callable[[Batch], Tensor], int]:
    """The model's batches, its loss on one batch, and the images one batch holds (a pair counts as one input)."""
    if recipe.task == "change-detection":
        from training.train_changer import changer_loss

        model = build(recipe.arch, dict(recipe.config, input_size=recipe.input_size))
        batches: Iterator[Batch] = changer_batches(recipe, steps)
        loss: Callable[..., Tensor] = lambda a, b, labels, params: changer_loss(model.raw, a, b, labels, params)[0]
    else:
        batches, classes = classifier_batches(recipe)
        config = dict(recipe.config, num_classes=classes, input_size=recipe.input_size)
        if config.get("deformable"):
            config["deform_implementation"] = "sampled"  # what it trains with on a CPU
        model = build(recipe.arch, config)
        loss = lambda images, target: F.cross_entropy(model(images).float(), target,
                                                      label_smoothing=recipe.label_smoothing)
    model = model.to(memory_format=torch.channels_last).train()
    # A schedule of a full run's length: it sets the learning rate, not what a step costs.
    optimizer, schedule = make_optimizer(model, recipe, max(steps, FULL_RUN_STEPS))
    bf16 = bf16_is_fast(torch.device("cpu"))

    def step(batch: Batch) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(*batch)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        return value.detach()

    return batches, step, recipe.batch_size


def measure_steps(recipe: Recipe, steps: int, warmup: int) -> dict[str, Any]:
    """Seconds spent getting batches and computing steps over `steps` steps after `warmup` untimed ones."""
    batches, step, images = step_function(recipe, warmup + steps)
    data_s = compute_s = 0.0
    for index in range(warmup + steps):
        began = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        float(step(batch))  # waits for the step to finish
        if index >= warmup:
            data_s += fetched - began
            compute_s += time.perf_counter() - fetched
    total = data_s + compute_s
    return {"batch_size": images, "steps": steps, "step_s": total / steps, "data_s_per_step": data_s / steps,
            "data_share": data_s / total, "train_ips": images * steps / total,
            "precision": "bf16-autocast" if bf16_is_fast(torch.device("cpu")) else "fp32"}


def gflop_per_input(name: str) -> float:
    """Forward GFLOP of one input, counted on the shipped model's network (its training form)."""
    card = zoo.card(name)
    deformable = card.provenance["architecture"]["config"].get("deformable")
    return gflop_per_image(torch_module(card, "sampled" if deformable else None), card)


def main(argv: list[str] | None = None) -> None:
    """Time the training steps of the models named on the command line and report."""
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"models (default: {' '.join(MEASURED)})")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: every CPU)")
    add_data_option(parser)
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MEASURED))
    if unknown:
        parser.error(f"no training loop measured for {unknown}; choose from {MEASURED}")
    data = data_folder(parser, args)
    ceilings = {"fp32": matmul_ceiling(args.threads, torch.float32),
                "bf16": matmul_ceiling(args.threads, torch.bfloat16)}
    print(f"matmul ceilings: fp32 {ceilings['fp32']:.1f}, bf16 {ceilings['bf16']:.1f} GFLOP/s", file=sys.stderr)
    rows = {}
    for name in args.names or MEASURED:
        print(f"  {name}", file=sys.stderr, flush=True)
        row = measure_steps(relocated(RECIPES[name], data), args.steps, args.warmup)
        row["gflop_per_input"] = gflop_per_input(name)
        row["train_gflops"] = 3 * row["gflop_per_input"] * row["train_ips"]
        row["ceiling_share"] = {key: row["train_gflops"] / value for key, value in ceilings.items()}
        row["data_share_goal_met"] = data_share_goal_met(row)
        rows[name] = row
    print(training_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "matmul_ceiling_gflops": ceilings,
                                         "load_average": os.getloadavg(), "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
