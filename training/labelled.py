"""A recipe's labelled inputs by split, as its graph takes them: what export validates, calibrates and
measures a trained model on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Split, load_split
from .recipes import Recipe


#: The seed of the held-out test pairs (the changer's) that export validates, quantizes and reports on: one draw,
#: so that every step measures the same pairs.
TEST_PAIRS_SEED = 12345


@dataclass
class LabelledInputs:
    """uint8 NHWC arrays in the graph's input order (one image, or the two views of a pair) and the true classes."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> "LabelledInputs":
        return LabelledInputs(tuple(np.ascontiguousarray(array[keep]) for array in self.inputs), self.labels[keep])


def classifier_split(recipe: Recipe, split: str) -> Split:
    """A classifier's split at its input size, restricted to the recipe's classes when it names some."""
    images = load_split(recipe.data, split, recipe.input_size)
    return images.only(recipe.classes) if recipe.classes else images
