"""Large JPEGs are decoded at a draft scale (a fraction of their size, in the DCT) before the resize: on real
photographs the models' answers stay those of full decoding, up to resampling noise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zoo
from bench.data import CALTECH_SUBSET, caltech_test_bucket, twelve_megapixel_set
from conftest import CIFAR
from zoo.preprocess import fit_to_input, load_image, prepare

DATA = CIFAR.parent
CALTECH = DATA / CALTECH_SUBSET
PHOTOS = 500
LARGE_PHOTOS = 100
#: What zoo/preprocess.py's DRAFT_MARGIN comment states: no label moves, probabilities by at most 0.006 (measured:
#: 0.0048 for carplane-joint, 0.0056 for cnn); a little room for other Pillow builds' rounding.
MIN_AGREEMENT = 1.0
MAX_PROBABILITY_DIFF = 0.008


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory) -> list[Path]:
    """The first test-bucket photos at 12 megapixels, so that every model's input is drafted from a large JPEG."""
    return twelve_megapixel_set(DATA, tmp_path_factory.mktemp("12mp"), LARGE_PHOTOS)


def one_model_per_input_size() -> list[str]:
    by_size: dict[tuple[int, int], str] = {}
    for name in zoo.list():
        card = zoo.card(name)
        if len(card.inputs) == 1 and "-int8" not in name:
            by_size.setdefault((card.inputs[0].height, card.inputs[0].width), name)
    return sorted(by_size.values())


@pytest.mark.skipif(not CALTECH.is_dir(), reason=f"the Caltech-101 subset is not at {CALTECH}")
@pytest.mark.parametrize("name", one_model_per_input_size())
def test_draft_decoding_keeps_the_answers_on_real_photos(name, large_photos):
    model = zoo.load(name, device="cpu")
    spec = model.card.inputs[0]
    photos = caltech_test_bucket(CALTECH, PHOTOS)
    assert len(photos) == PHOTOS
    inputs = photos + large_photos
    drafted = np.stack([prepare(path, spec.height, spec.width, spec.resize) for path in inputs])
    full = np.stack([fit_to_input(load_image(path), spec.height, spec.width, spec.resize) for path in inputs])
    assert (drafted != full).any(), "no photo was drafted: the test would prove nothing"
    run = lambda feed: zoo.tasks.softmax(model.session.run(None, {spec.name: feed})[0].astype(np.float64))  # noqa: E731
    p_drafted, p_full = run(drafted), run(full)
    agreement = float((p_drafted.argmax(1) == p_full.argmax(1)).mean())
    difference = float(np.abs(p_drafted - p_full).max())
    print(f"\n{name}: {len(inputs)} photos, labels agree {agreement:.2%}, largest probability difference {difference:.4f}")
    assert agreement >= MIN_AGREEMENT
    assert difference <= MAX_PROBABILITY_DIFF
