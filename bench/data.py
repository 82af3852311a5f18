"""The data folder measurements read real images from: `--data DIR`, or the environment variable ZOO_DATA."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image

from training.data import HASH_SPLITS, hash_bucket

if TYPE_CHECKING:
    from training.recipes import Recipe
    from zoo.card import ModelCard

#: The environment variable `--data` defaults to.
DATA_ENVIRONMENT_VARIABLE = "ZOO_DATA"
#: The data folder as training recipes (and the model cards that record them) name it, relative to the checkout.
RECIPE_DATA_FOLDER = Path("../shared/data")
#: The CIFAR-10 JPEG test split and the Caltech-101 subset, inside the data folder.
CIFAR_TEST_SPLIT = Path("cifar10-jpeg") / "test"
CALTECH_SUBSET = Path("caltech101-subset")
#: Width and height of the 12-megapixel JPEGs made from real photos, and their JPEG quality.
TWELVE_MEGAPIXELS = (4000, 3000)
LARGE_JPEG_QUALITY = 90


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """`--data DIR`, defaulting to $ZOO_DATA; `data_folder` turns it into a path or a usage error."""
    parser.add_argument("--data", type=Path, default=os.environ.get(DATA_ENVIRONMENT_VARIABLE),
                        help=f"the data folder, holding cifar10-jpeg/ and caltech101-subset/ "
                             f"(default: ${DATA_ENVIRONMENT_VARIABLE})")


def data_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """The data folder given by `--data` or $ZOO_DATA; with neither, exits with a usage error saying what to pass."""
    if args.data is None:
        parser.error(f"no data folder: pass --data DIR (the folder holding cifar10-jpeg/) "
                     f"or set {DATA_ENVIRONMENT_VARIABLE}=DIR")
    return args.data


def relocated(recipe: Recipe, data: Path) -> Recipe:
    """The recipe with its data source moved into `data`: "../shared/data/cifar10-jpeg" becomes data/cifar10-jpeg
    and "../shared/data" becomes data; a source outside the recipes' data folder (e.g. "cifar10") is kept."""
    try:
        return dataclasses.replace(recipe, data=str(data / Path(recipe.data).relative_to(RECIPE_DATA_FOLDER)))
    except ValueError:
        return recipe


def caltech_test_bucket(root: Path, count: int) -> list[Path]:
    """The first `count` photos of the Caltech subset's test bucket (no model trained on them), in sorted order."""
    low, high = HASH_SPLITS["test"]
    return [path for path in sorted(root.rglob("*.jpg")) if low <= hash_bucket(path, root) < high][:count]


def spread(files: Sequence[Path], count: int) -> list[Path]:
    """`count` of `files` taken at even steps, so that a sorted class-per-folder list gives every class."""
    return list(files[:: max(1, len(files) // count)][:count])


def twelve_megapixel_set(data: Path, out: Path, count: int) -> list[Path]:
    """`count` 12-megapixel JPEGs in `out`, made from the Caltech subset's first test-bucket photos (bilinear
    upscale to 4000x3000, quality 90): real photo content at the size a phone camera writes. Files already in
    `out` are reused."""
    root = data / CALTECH_SUBSET
    photos = caltech_test_bucket(root, count)
    if len(photos) < count:
        raise FileNotFoundError(f"{root} has {len(photos)} test-bucket photos; {count} are needed")
    out.mkdir(parents=True, exist_ok=True)
    large = []
    for index, photo in enumerate(photos):
        target = out / f"{index:04d}-{photo.parent.name}-{photo.stem}.jpg"
        if not target.exists():
            partial = target.with_suffix(".partial")  # an interrupted run leaves no truncated JPEG behind
            with Image.open(photo) as image:
                image.convert("RGB").resize(TWELVE_MEGAPIXELS, Image.Resampling.BILINEAR).save(
                    partial, format="JPEG", quality=LARGE_JPEG_QUALITY)
            os.replace(partial, target)
        large.append(target)
    return large


Item = Any  # a file path, or a tuple of paths for a model with several inputs


def items_for(card: ModelCard, files: Sequence[Path]) -> list[Item]:
    """What the model predicts from `files`: each file, or for a two-input model each file paired with the next."""
    paths = [str(path) for path in files]
    if len(card.inputs) == 1:
        return paths
    return [tuple(paths[(index + k) % len(paths)] for k in range(len(card.inputs))) for index in range(len(paths))]


def arguments(item: Item) -> tuple[Any, ...]:
    """`item` as the arguments of `Model.predict`."""
    return item if isinstance(item, tuple) else (item,)
