"""The changer's pair generator implements the product's definition exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.pairs import (CHANGE_LABELS, CLASS_CHANGES, labels_from_params, make_pairs, place_views, render,
                            sample_params, sampling_grids)


def _dot_source(size: int, x: float, y: float) -> torch.Tensor:
    """A black float source with a small bright Gaussian dot at pixel coordinates (x, y)."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dot = 255 * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    return dot.expand(1, 3, size, size).contiguous()


def _peak(image: torch.Tensor) -> tuple[float, float]:
    """Intensity-weighted centre of the dot, in view fractions from the centre (x right, y down)."""
    plane = image[0, 0]
    weights = plane.clamp(min=0) ** 2
    size = plane.shape[0]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (float((weights * xs).sum() / weights.sum()) / size - 0.5,
            float((weights * ys).sum() / weights.sum()) / size - 0.5)


@pytest.mark.parametrize("shift, angle, scale", [
    ((0.0, 0.0), 90.0, 1.0),   # the convention: θ > 0 turns content counterclockwise on screen
    ((0.0, 0.0), 25.0, 1.0),
    ((0.2, -0.1), 0.0, 1.0),
    ((0.0, 0.0), 0.0, 1.5),
    ((-0.12, 0.15), -20.0, 1 / 1.4),
])
def test_a_point_of_a_shows_in_b_at_s_r_p_plus_t(shift, angle, scale):
    size, view, out = 400, 0.3, 96
    p = np.array([0.2, 0.1])  # the dot's place in A, view fractions from A's centre
    centre = np.array([[0.5, 0.5]])
    source = _dot_source(size, (0.5 + view * p[0]) * size, (0.5 + view * p[1]) * size)
    params = np.array([[shift[0], shift[1], angle, scale]])
    grid_a, grid_b = sampling_grids(params, np.array([view]), centre, out)
    found_a = _peak(render(source, grid_a))
    found_b = _peak(render(source, grid_b))
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    expected_b = scale * rotation @ p + np.array(shift)
    assert np.allclose(found_a, p, atol=0.01)
    assert np.allclose(found_b, expected_b, atol=0.01)
    if angle == 90.0:
        assert found_b[1] < -0.15 and abs(found_b[0] - 0.1) < 0.02  # right of centre -> above it


def test_parameters_follow_the_class_definition():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 500)
    params = sample_params(labels, rng)
    changes = CLASS_CHANGES[labels]
    length = np.hypot(params[:, 0], params[:, 1])
    assert np.all(length[changes[:, 0]] >= 0.10 - 1e-12) and np.all(length[changes[:, 0]] <= 0.25 + 1e-12)
    assert np.all(length[~changes[:, 0]] == 0)
    angle = np.abs(params[:, 2])
    assert np.all((angle[changes[:, 1]] >= 15) & (angle[changes[:, 1]] <= 30))
    assert np.all(params[~changes[:, 1], 2] == 0)
    assert (params[changes[:, 1], 2] > 0).any() and (params[changes[:, 1], 2] < 0).any()
    zoom = np.maximum(params[:, 3], 1 / params[:, 3])
    assert np.all((zoom[changes[:, 2]] >= 1.2 - 1e-12) & (zoom[changes[:, 2]] <= 1.6 + 1e-12))
    assert np.all(params[~changes[:, 2], 3] == 1)
    assert (params[changes[:, 2], 3] > 1).any() and (params[changes[:, 2], 3] < 1).any()
    assert np.array_equal(labels_from_params(params), labels)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 7))
def test_every_sample_of_both_views_lies_inside_the_source(seed, label):
    rng = np.random.default_rng(seed)
    params = sample_params(np.full(16, label), rng)
    view, centre = place_views(params, rng)
    grid_a, grid_b = sampling_grids(params, view, centre, 32)
    for grid in (grid_a, grid_b):
        assert grid.abs().max() <= 1.0  # grid_sample's [-1, 1] is the source's extent


def test_pairs_are_deterministic_and_labelled():
    sources = np.random.default_rng(1).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    one, two = make_pairs(sources, 64, 32, 7), make_pairs(sources, 64, 32, 7)
    assert np.array_equal(one.a, two.a) and np.array_equal(one.b, two.b) and np.array_equal(one.labels, two.labels)
    assert one.a.dtype == np.uint8 and one.a.shape == (64, 32, 32, 3)
    assert not np.array_equal(make_pairs(sources, 64, 32, 8).a, one.a)
    assert np.array_equal(labels_from_params(one.params), one.labels)
    assert len(CHANGE_LABELS) == 8 and CHANGE_LABELS[7] == "displacement+rotation+scaling"


def test_unchanged_pairs_differ_only_by_nuisance():
    sources = np.random.default_rng(2).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    sources = np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(sources).permute(0, 3, 1, 2).float(), 3, 1, 1)
                         .permute(0, 2, 3, 1).round().byte())
    pairs = make_pairs(sources, 32, 32, 3, labels=np.zeros(32, dtype=int))
    difference = np.abs(pairs.a.astype(int) - pairs.b.astype(int)).mean(axis=(1, 2, 3))
    assert difference.max() < 16  # brightness/contrast ±10%, σ ≤ 2 noise, JPEG ≥ 70; no geometry


def test_caltech_splits_are_disjoint(tmp_path, monkeypatch):
    from training.data import HASH_SPLITS, load_hashed_split
    from PIL import Image

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    for k in range(60):
        folder = tmp_path / "photos" / f"class{k % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 10), (4 * k, 0, 0)).save(folder / f"image_{k:04d}.png")
    splits = {s: load_hashed_split(tmp_path / "photos", s, 8) for s in HASH_SPLITS}
    assert sum(len(s) for s in splits.values()) == 60
    reds = [set(np.asarray(s.images)[:, 4, 4, 0].tolist()) for s in splits.values()]
    assert not (reds[0] & reds[2]) and not (reds[1] & reds[2])


def test_the_runtime_geometry_draws_the_same_views_as_the_generator():
    """zoo.geometry (torch-free, used by the app) and the training generator agree pixel for pixel."""
    from PIL import Image

    from zoo.geometry import pair_from_photo

    small = np.random.default_rng(0).integers(0, 255, (40, 40, 3)).astype(np.uint8)
    photo = Image.fromarray(small).resize((400, 400), Image.Resampling.BICUBIC)
    params = np.array([[0.1, -0.15, 20.0, 1.3]])
    a, b = pair_from_photo(photo, 64, *params[0], view_fraction=0.3)
    grid_a, grid_b = sampling_grids(params, np.array([0.3]), np.array([[0.5, 0.5]]), 64)
    source = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float()
    for ours, grid in ((a, grid_a), (b, grid_b)):
        theirs = render(source, grid)[0].permute(1, 2, 0).numpy()
        assert np.abs(ours.astype(float) - theirs).mean() < 1.0
