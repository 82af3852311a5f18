"""Large JPEGs are decoded at a draft scale (a fraction of their size, in the DCT) before the resize: on real
photographs the models' answers stay those of full decoding, up to resampling noise."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.preprocess import fit_to_input, load_image, prepare

CALTECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "caltech101-subset"
PHOTOS = 500
MIN_AGREEMENT = 0.995
MAX_PROBABILITY_DIFF = 0.02


def test_bucket(root: Path, count: int) -> list[Path]:
    """`count` photos of the Caltech subset's test bucket (the last 15% by a hash of the relative path, as
    training splits it), in a fixed order."""
    def bucket(path: Path) -> int:
        return int(hashlib.sha256(str(path.relative_to(root)).encode()).hexdigest()[:8], 16) % 100
    return [p for p in sorted(root.rglob("*.jpg")) if bucket(p) >= 85][:count]


test_bucket.__test__ = False  # a helper, not a test


def one_model_per_input_size() -> list[str]:
    by_size: dict[tuple[int, int], str] = {}
    for name in zoo.list():
        card = zoo.card(name)
        if len(card.inputs) == 1 and "-int8" not in name:
            by_size.setdefault((card.inputs[0].height, card.inputs[0].width), name)
    return sorted(by_size.values())


@pytest.mark.skipif(not CALTECH.is_dir(), reason=f"the Caltech-101 subset is not at {CALTECH}")
@pytest.mark.parametrize("name", one_model_per_input_size())
def test_draft_decoding_keeps_the_answers_on_real_photos(name, tmp_path):
    model = zoo.load(name, device="cpu")
    spec = model.card.inputs[0]
    photos = test_bucket(CALTECH, PHOTOS)
    assert len(photos) == PHOTOS
    # Each photo also at 12 megapixels, so that every model's input is drafted from a large JPEG.
    large = []
    for k, photo in enumerate(photos[:100]):
        Image.open(photo).convert("RGB").resize((4000, 3000), Image.Resampling.BILINEAR).save(tmp_path / f"{k}.jpg", quality=90)
        large.append(tmp_path / f"{k}.jpg")
    inputs = photos + large
    drafted = np.stack([prepare(path, spec.height, spec.width, spec.resize) for path in inputs])
    full = np.stack([fit_to_input(load_image(path), spec.height, spec.width, spec.resize) for path in inputs])
    assert (drafted != full).any(), "no photo was drafted: the test would prove nothing"
    run = lambda feed: zoo.model.softmax(model.session.run(None, {spec.name: feed})[0].astype(np.float64))  # noqa: E731
    p_drafted, p_full = run(drafted), run(full)
    agreement = float((p_drafted.argmax(1) == p_full.argmax(1)).mean())
    difference = float(np.abs(p_drafted - p_full).max())
    print(f"\n{name}: {len(inputs)} photos, labels agree {agreement:.2%}, largest probability difference {difference:.4f}")
    assert agreement >= MIN_AGREEMENT
    assert difference <= MAX_PROBABILITY_DIFF
