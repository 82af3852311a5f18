"""The shipped changer through zoo, on held-out pairs made by the generator from test-split photos."""
from __future__ import annotations

import numpy as np
import pytest

import zoo

pytestmark = pytest.mark.skipif("changer" not in zoo.list(), reason="the changer is not shipped")


@pytest.fixture(scope="module")
def test_pairs(cifar_root):
    from training.data import load_hashed_split
    from training.pairs import make_pairs
    from training.changer_data import PHOTO_SIZE

    photos = load_hashed_split(cifar_root.parent / "caltech101-subset", "test", PHOTO_SIZE)
    return make_pairs(photos.images, 240, zoo.card("changer").inputs[0].height, seed=2024)


def test_accuracy_and_parameters_on_held_out_photo_pairs(test_pairs):
    card = zoo.card("changer")
    model = zoo.load("changer", device="cpu")
    predictions = model.predict_batch(list(zip(test_pairs.a, test_pairs.b)))
    labels = np.array([card.labels.index(p.label) for p in predictions])
    accuracy = float((labels == test_pairs.labels).mean())
    reported = card.metrics["test_by_source"]["caltech101"]["accuracy"]
    assert accuracy >= reported - 0.06  # 240 pairs against the card's 4,000
    angle = np.array([p.params["angle"] for p in predictions])
    rotated = test_pairs.params[:, 2] != 0
    assert np.median(np.abs(angle - test_pairs.params[:, 2])[rotated]) <= 2 * card.metrics["test_by_source"]["caltech101"]["median_angle_error_deg"] + 0.5


def test_images_of_different_sizes(cifar_root):
    photos = sorted((cifar_root.parent / "caltech101-subset").glob("*/*.jpg"))[:2]
    from PIL import Image

    small = Image.open(photos[1]).resize((50, 80))
    prediction = zoo.load("changer", device="cpu").predict(photos[0], small)
    assert prediction.label in prediction.probs
    assert set(prediction.params) == {"shift_x", "shift_y", "angle", "scale"}


def test_identical_views_are_unchanged(test_pairs):
    model = zoo.load("changer", device="cpu")
    unchanged = [model.predict(a, a) for a in test_pairs.a[:20]]
    assert np.mean([p.label == "unchanged" for p in unchanged]) >= 0.9
