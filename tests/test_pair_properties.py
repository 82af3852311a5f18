"""Property tests (hypothesis) of the changer's pair generator over its parameters, not only sampled ones.

test_pairs.py checks the definition on chosen cases and sampled parameters; here any shift, angle,
scale, view and centre within the generator's ranges must obey the same convention exactly.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.pairs import (ANGLE_RANGE, CHANGE_LABELS, SCALE_RANGE, SHIFT_RANGE, VIEW_RANGE, labels_from_params,
                            make_pairs, place_views, sample_params, sampling_grids)

_SHIFT = st.tuples(st.floats(*SHIFT_RANGE), st.floats(0, 2 * math.pi)).map(
    lambda polar: (polar[0] * math.cos(polar[1]), polar[0] * math.sin(polar[1])))
_ANGLE = st.floats(*ANGLE_RANGE).flatmap(lambda a: st.sampled_from([a, -a]))
_SCALE = st.floats(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])).flatmap(
    lambda log_s: st.sampled_from([math.exp(log_s), math.exp(-log_s)]))
#: One parameter row [shift_x, shift_y, angle, scale], each change present or exactly absent.
_PARAMS = st.tuples(st.one_of(st.just((0.0, 0.0)), _SHIFT), st.one_of(st.just(0.0), _ANGLE),
                    st.one_of(st.just(1.0), _SCALE)).map(lambda p: [p[0][0], p[0][1], p[1], p[2]])


def _source_points(grid) -> np.ndarray:
    """grid_sample's [-1, 1] grid -> unit-square source coordinates, (size * size, 2)."""
    return ((grid.numpy().astype(np.float64) + 1) / 2).reshape(-1, 2)


@settings(max_examples=120, deadline=None)
@given(_PARAMS, st.floats(*VIEW_RANGE), st.tuples(st.floats(0.3, 0.7), st.floats(0.3, 0.7)), st.integers(2, 24))
def test_every_pixel_of_b_shows_the_point_of_a_that_the_convention_maps_there(row, view, centre, size):
    """A point p of A shows in B at s R(theta) p + t: B's pixel q samples A's point R(theta)^-1 (q - t) / s."""
    params = np.array([row])
    grid_a, grid_b = sampling_grids(params, np.array([view]), np.array([centre]), size)
    ticks = (np.arange(size) + 0.5) / size - 0.5
    gx, gy = np.meshgrid(ticks, ticks)
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)  # view fractions, x right, y down
    p_a = (_source_points(grid_a) - centre) / view
    np.testing.assert_allclose(p_a, pixels, atol=1e-5)
    p = (_source_points(grid_b) - centre) / view  # the point of A that each pixel of B shows
    theta = math.radians(row[2])
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    shown_at = row[3] * p @ rotation.T + np.array(row[:2])
    np.testing.assert_allclose(shown_at, pixels, atol=1e-5 / view)


@settings(max_examples=120, deadline=None)
@given(st.lists(_PARAMS, min_size=1, max_size=8), st.integers(0, 2**32 - 1))
def test_any_admissible_parameters_get_views_inside_the_source(rows, seed):
    params = np.array(rows)
    view, centre = place_views(params, np.random.default_rng(seed))
    assert np.all((view > 0) & (view <= VIEW_RANGE[1]))
    for grid in sampling_grids(params, view, centre, 6):
        assert grid.abs().max() <= 1.0  # grid_sample's [-1, 1] is the source's extent


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(CHANGE_LABELS) - 1), min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_sampled_parameters_hold_exactly_the_changes_of_their_class(labels, seed):
    labels = np.array(labels)
    params = sample_params(labels, np.random.default_rng(seed))
    np.testing.assert_array_equal(labels_from_params(params), labels)
    shift, angle, zoom = np.hypot(params[:, 0], params[:, 1]), np.abs(params[:, 2]), np.abs(np.log(params[:, 3]))
    present = shift > 0, angle > 0, zoom > 0
    for value, low_high, on in zip((shift, angle, zoom), (SHIFT_RANGE, ANGLE_RANGE, np.log(SCALE_RANGE)), present):
        assert np.all((value[on] >= low_high[0] - 1e-9) & (value[on] <= low_high[1] + 1e-9))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(4, 40), st.integers(0, 2**32 - 1))
def test_make_pairs_is_deterministic_and_shaped_for_any_count_size_and_seed(n, size, seed):
    sources = np.random.default_rng(seed).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    pairs = make_pairs(sources, n, size, seed)
    again = make_pairs(sources, n, size, seed)
    assert pairs.a.shape == pairs.b.shape == (n, size, size, 3) and pairs.a.dtype == pairs.b.dtype == np.uint8
    assert np.array_equal(pairs.a, again.a) and np.array_equal(pairs.b, again.b)
    np.testing.assert_array_equal(labels_from_params(pairs.params), pairs.labels)
    assert np.all((pairs.source >= 0) & (pairs.source < len(sources)))
