"""Similarity transforms of views, torch-free, for showing what the changer estimates.

Convention (the changer's): a point p of A (pixels from A's centre, x right, y down) shows in B at
s·R(θ)·p + t, R(θ) = [[cos θ, sin θ], [−sin θ, cos θ]]; t is a fraction of the view's side.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image


def _inverse(angle: float, scale: float) -> np.ndarray:
    """R(θ)⁻¹ / s: from B's offsets back to A's."""
    theta = math.radians(angle)
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) / scale


def view_from(source: Image.Image, centre: tuple[float, float], side: float, size: int,
              shift_x: float = 0.0, shift_y: float = 0.0, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The size×size view of `source` that B would show if A were the side×side square at `centre` (source pixels)."""
    m = _inverse(angle, scale) * (side / size)
    # Output pixel (x, y) sits at view offset (x − size/2)/size; subtract t, map back, add A's centre.
    tx, ty = shift_x * size, shift_y * size
    a, b = m[0]
    d, e = m[1]
    c = centre[0] - a * (size / 2 + tx) - b * (size / 2 + ty)
    f = centre[1] - d * (size / 2 + tx) - e * (size / 2 + ty)
    warped = source.convert("RGB").transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                             resample=Image.Resampling.BILINEAR)
    return np.asarray(warped)


def warp_like_b(view_a: np.ndarray, shift_x: float, shift_y: float, angle: float, scale: float) -> np.ndarray:
    """A (uint8 HxWx3, square) as B would show it under the given change; outside A is black."""
    size = view_a.shape[0]
    return view_from(Image.fromarray(view_a), (size / 2, size / 2), size, size, shift_x, shift_y, angle, scale)


def pair_from_photo(photo: Image.Image, size: int, shift_x: float = 0.0, shift_y: float = 0.0, angle: float = 0.0,
                    scale: float = 1.0, view_fraction: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Two views cut from one photo, A centred and B after the change, as the pair generator makes them."""
    side = view_fraction * min(photo.size)
    centre = (photo.size[0] / 2, photo.size[1] / 2)
    return (view_from(photo, centre, side, size),
            view_from(photo, centre, side, size, shift_x, shift_y, angle, scale))
