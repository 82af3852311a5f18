"""python -m training NAME|all [--data PATH|cifar10] [--epochs N] [--batch-size N] [--lr X] [--label-smoothing X] [--init FILE] [--out runs] [--fresh]"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .recipes import RECIPES
from .tasks import TRAINING_TASKS
from .train_carplane import train_carplane


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train the zoo's models.")
    parser.add_argument("name", choices=[*RECIPES, "all"], help="model to train, or all of them")
    parser.add_argument("--data", help="ImageFolder root with train/ and test/, or 'cifar10' to download")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size (e.g. larger on a GPU)")
    parser.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    parser.add_argument("--label-smoothing", type=float, help="override the recipe's label smoothing")
    parser.add_argument("--init", help="continue from these weights (a model.safetensors of the same network, e.g. "
                                       "zoo/models/NAME/model.safetensors) instead of a random start")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="where run folders go (default: runs/)")
    parser.add_argument("--fresh", action="store_true", help="ignore a checkpoint left by an interrupted run")
    parser.add_argument("--limit", type=int, help="train on this many images only (smoke tests)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs)")
    parser.add_argument("--backbone", help="car/plane models: 'imagenet' (torchvision's weights), a .safetensors "
                                           "file, or a run name (default: the recipe's, resnet50-cifar8)")
    args = parser.parse_args(argv)
    for name in RECIPES if args.name == "all" else [args.name]:
        recipe = RECIPES[name]
        if args.init and (recipe.method or recipe.task != "image-classification"):
            parser.error(f"--init continues a classifier's own training; {name} does not take it"
                         + (" (use --backbone)" if recipe.method else ""))
        overrides = {k: v for k, v in (("data", args.data), ("epochs", args.epochs), ("batch_size", args.batch_size),
                                       ("lr", args.lr), ("label_smoothing", args.label_smoothing), ("init", args.init))
                     if v is not None}
        options = dict(out=args.out, resume=not args.fresh, limit=args.limit, device=args.device,
                       progress=not args.no_progress)
        if recipe.method:
            run_dir = train_carplane(replace(recipe, **overrides), backbone=args.backbone, **options)
        else:
            run_dir = TRAINING_TASKS[recipe.task].loop(replace(recipe, **overrides), **options)
        print(f"{name}: wrote {run_dir}")


if __name__ == "__main__":
    main()
