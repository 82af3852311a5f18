"""zoo.preprocess: every accepted input becomes uint8 RGB at the model size; everything else a clear ImageError.

The file and value cases run through every model in test_bad_input.py; here are the modes and properties.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

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
