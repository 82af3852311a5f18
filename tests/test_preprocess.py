"""zoo.preprocess: every accepted input becomes uint8 RGB at the model size; everything else a clear ImageError.

The file and value cases run through every model in test_bad_input.py; here are the modes and properties.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile, ImageOps

import zoo
from zoo.preprocess import fit_to_input, load_image, prepare


def test_every_mode_becomes_rgb():
    base = Image.new("RGB", (20, 10), (200, 100, 50))
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"):
        converted = load_image(base.convert(mode) if mode != "I;16" else Image.new("I;16", (20, 10), 40000))
        assert converted.mode == "RGB" and converted.size == (20, 10), mode


def test_center_crop_keeps_aspect_and_size():
    wide = Image.new("RGB", (300, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (100, 0, 200, 100))  # white centre third
    out = fit_to_input(wide, 32, 32, "center-crop")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out.mean() > 250  # the crop is the white centre
    assert fit_to_input(wide, 16, 24, "stretch").shape == (16, 24, 3)


_SHAPES = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        hnp.arrays(np.uint8, _SHAPES),
        hnp.arrays(st.sampled_from([np.float32, np.float64]), _SHAPES, elements=st.floats(0, 1, width=32)),
    ),
    st.integers(1, 64),
    st.integers(1, 64),
)
def test_any_valid_array_becomes_a_model_input(array, height, width):
    out = prepare(array, height, width)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8


_ANY_SHAPE = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(hnp.scalar_dtypes(), _ANY_SHAPE))
def test_any_array_is_a_model_input_or_an_image_error(array):
    """Every dtype (complex, datetime, NaN-holding floats...) and shape: a valid input or ImageError, nothing else."""
    try:
        out = prepare(array, 8, 8)
    except zoo.ImageError as error:
        assert str(error)
    else:
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))))
def test_an_array_at_the_model_size_passes_unchanged(array):
    height, width = array.shape[:2]
    np.testing.assert_array_equal(prepare(array, height, width), array)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))), st.integers(1, 16), st.integers(1, 16))
def test_gray_float_and_uint8_forms_of_one_image_agree(gray, height, width):
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = prepare(rgb, height, width)
    for same in (gray, gray[:, :, None], rgb / 255.0, (rgb / 255.0).astype(np.float32)):
        np.testing.assert_array_equal(prepare(same, height, width), expected)


# Files whose data does not fill the size their header claims: Pillow's decoders make the rest up (libjpeg decodes
# missing blocks as grey, a PNG's early end leaves black rows), so zoo refuses them. More cases run through every
# model in test_bad_input.py.

EXAMPLES = Path(__file__).resolve().parents[1] / "zoo" / "examples"


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """`data`, a JPEG, with its frame header (SOF0/SOF2) edited to claim width x height."""
    edited = bytearray(data)
    at = max(edited.find(b"\xff\xc0"), edited.find(b"\xff\xc2"))
    edited[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(edited)


def _photo(width: int = 1200, height: int = 900) -> Image.Image:
    return Image.open(EXAMPLES / "photos" / "schooner.jpg").convert("RGB").resize((width, height))


@pytest.mark.parametrize("fit", [None, (32, 32), (64, 64)])
def test_a_cifar_thumbnail_claiming_7000x7000_is_refused_before_it_is_decoded(fit, tmp_path, monkeypatch):
    thumbnail = (EXAMPLES / "cifar10" / "horse.jpg").read_bytes()
    assert Image.open(io.BytesIO(thumbnail)).size == (32, 32)
    lying = tmp_path / "claims.jpg"
    lying.write_bytes(_claiming(thumbnail, 7000, 7000))

    def decoded(*_: object, **__: object) -> None:
        raise AssertionError("a header that lies by millions of pixels was decoded before it was refused")

    monkeypatch.setattr(zoo.preprocess, "_decoded_rgb", decoded)
    for given in (lying, lying.read_bytes()):
        with pytest.raises(zoo.ImageError, match="damaged or truncated: its data does not match its header"):
            load_image(given, fit)


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"restart_marker_blocks": 4},
                                     {"progressive": True, "restart_marker_rows": 1}])
@pytest.mark.parametrize("fit", [None, (32, 32)])  # (32, 32): decoded at a draft scale of 1/4
def test_a_large_jpeg_whose_data_ends_early_is_refused_at_any_scale(options, fit):
    progressive = options.get("progressive", False)
    data = _encoded(_photo(), "JPEG", **options)
    for lying in (_claiming(data, 1200, 1800), _claiming(data, 2400, 900), _claiming(data, 1200, 960)):
        with pytest.raises(zoo.ImageError, match="does not match its header"):
            load_image(lying, fit)
    if not progressive:  # a progressive file cut in its detail scans still holds every block (coarser)
        with pytest.raises(zoo.ImageError, match="does not match its header"):
            load_image(data[: len(data) // 2] + b"\xff\xd9", fit)


def test_cut_files_are_refused_even_where_pillow_is_told_to_load_them(monkeypatch):
    """ImageFile.LOAD_TRUNCATED_IMAGES (set by some other library) makes Pillow accept cut files: not zoo."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    photo = _photo(600, 450)
    for data in (_encoded(photo, "JPEG"), _encoded(photo, "JPEG", progressive=True), _encoded(photo, "PNG")):
        for fit in (None, (32, 32)):
            with pytest.raises(zoo.ImageError, match="damaged or truncated"):
                load_image(data[: len(data) * 2 // 3], fit)


def _real_images() -> list[tuple[str, bytes]]:
    from conftest import CIFAR

    photo = _photo(640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    images = [(str(path), path.read_bytes()) for path in sorted(EXAMPLES.rglob("*.jpg"))]
    images += [(str(path), path.read_bytes()) for path in sorted(CIFAR.glob("test/*/*.jpg"))[:300]]
    images += [("progressive", _encoded(photo, "JPEG", progressive=True)),
               ("progressive 4:4:4", _encoded(photo, "JPEG", progressive=True, subsampling=0)),
               ("exif-rotated", _encoded(photo, "JPEG", exif=exif.tobytes())),
               ("grey 128", _encoded(Image.new("RGB", (64, 48), (128, 128, 128)), "JPEG")),
               ("png", _encoded(photo, "PNG"))]
    return images


def test_real_images_decode_as_pillow_decodes_them():
    """Valid files are not touched by the checks: zoo's pixels are Pillow's own, at full and at draft scale."""
    for name, data in _real_images():
        for fit in (None, (32, 32)):
            with Image.open(io.BytesIO(data)) as reference:
                if fit and reference.format == "JPEG":
                    reference.draft(None, (8 * 32, 8 * 32))
                expected = ImageOps.exif_transpose(reference).convert("RGB")
            got = load_image(data, fit)
            assert got.size == expected.size and got.tobytes() == expected.tobytes(), (name, fit)
