"""The data folder measurements read real images from: `--data DIR`, or the environment variable ZOO_DATA."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.recipes import Recipe

#: The environment variable `--data` defaults to.
DATA_ENVIRONMENT_VARIABLE = "ZOO_DATA"
#: The data folder as training recipes (and the model cards that record them) name it, relative to the checkout.
RECIPE_DATA_FOLDER = Path("../shared/data")


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
