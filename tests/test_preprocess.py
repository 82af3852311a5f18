"""zoo.preprocess: every accepted input becomes uint8 RGB at the model size; everything else a clear ImageError."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import zoo
from zoo.preprocess import fit_to_input, load_image, prepare


def _png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_every_mode_becomes_rgb():
    base = Image.new("RGB", (20, 10), (200, 100, 50))
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "1", "I;16", "I", "F"):
        converted = load_image(base.convert(mode) if mode != "I;16" else Image.new("I;16", (20, 10), 40000))
        assert converted.mode == "RGB" and converted.size == (20, 10), mode


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = _png_bytes(image, "JPEG", exif=exif.tobytes())
    assert load_image(data).size == (20, 40)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    rgb = np.asarray(load_image(buffer.getvalue()))
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 50


def test_center_crop_keeps_aspect_and_size():
    wide = Image.new("RGB", (300, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (100, 0, 200, 100))  # white centre third
    out = fit_to_input(wide, 32, 32, "center-crop")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out.mean() > 250  # the crop is the white centre
    assert fit_to_input(wide, 16, 24, "stretch").shape == (16, 24, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not a readable image|damaged"),
        (np.zeros((0, 5, 3), np.uint8), "no pixels"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros(7, np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.full((4, 4, 3), np.nan), "NaN"),
        (np.full((4, 4, 3), np.inf, np.float32), "NaN or infinite"),
        (np.full((4, 4, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((4, 4, 3), complex), "complex"),
        (np.empty((4, 4, 3), object), "object"),
        (np.full((4, 4), 300, np.int32), "0..255"),
        (None, "NoneType"),
        (5, "int"),
        ({"a": 1}, "dict"),
        ("", "does not exist|directory"),
    ],
)
def test_bad_inputs_raise_zoo_errors(bad, message):
    with pytest.raises(zoo.ZooError, match=message):
        prepare(bad, 32, 32)


def test_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image at all")
    good = Image.new("RGB", (50, 40), (10, 20, 30))
    truncated = _png_bytes(good, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    for name, message in [("empty.png", "empty"), ("text.jpg", "not a readable image"),
                          ("truncated.jpg", "damaged or truncated"), ("missing.png", "does not exist")]:
        with pytest.raises(zoo.ImageError, match=message):
            prepare(tmp_path / name, 32, 32)
    with pytest.raises(zoo.ImageError, match="directory"):
        prepare(tmp_path, 32, 32)


def test_decompression_bomb_is_refused_before_decoding():
    header = Image.new("L", (1, 1))
    data = bytearray(_png_bytes(header))
    # Rewrite the IHDR width/height to 60000x60000, with a valid chunk CRC.
    data[16:24] = (60000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(zoo.ImageError, match="decompression bomb"):
        load_image(bytes(data))


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
