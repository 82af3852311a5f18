"""Similarity transforms of image batches (rotation, zoom, shift about the centre), sampled bilinearly."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_warp(
    images: Tensor, angle_deg: Tensor, scale: Tensor, shift: Tensor | None = None, padding_mode: str = "reflection"
) -> Tensor:
    """Show each image after a similarity transform: a point p (pixels from the centre, y down) moves to s·R(θ)·p + t.

    images: (N, C, H, W) float; angle_deg, scale: (N,); shift: (N, 2) as fractions of the side (x, y).
    θ > 0 turns the content counterclockwise on screen. Pixels that come from outside the image are
    filled by `padding_mode` (grid_sample's).
    """
    n = images.shape[0]
    theta = torch.deg2rad(angle_deg.to(images.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    s = scale.to(images.dtype)
    # Output pixel q shows input p = R(θ)^-1 (q - t) / s; R(θ)^-1 = [[cos, -sin], [sin, cos]].
    matrix = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    matrix[:, 0, 0] = cos / s
    matrix[:, 0, 1] = -sin / s
    matrix[:, 1, 0] = sin / s
    matrix[:, 1, 1] = cos / s
    if shift is not None:
        t = shift.to(images.dtype) * 2  # fractions of the side -> normalised [-1, 1] units
        matrix[:, :, 2] = -torch.einsum("nij,nj->ni", matrix[:, :, :2], t)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_rotation_zoom(n: int, generator: torch.Generator, angle_range=(15.0, 30.0), zoom_range=(1.2, 1.6)) -> tuple[Tensor, Tensor]:
    """Angles of either sign with |θ| in `angle_range` and zooms in `zoom_range` (in or out, by a coin)."""
    angle = torch.empty(n).uniform_(*angle_range, generator=generator)
    angle = angle * (torch.randint(0, 2, (n,), generator=generator) * 2 - 1)
    zoom = torch.empty(n).uniform_(math.log(zoom_range[0]), math.log(zoom_range[1]), generator=generator).exp()
    zoom = torch.where(torch.rand(n, generator=generator) < 0.5, zoom, 1 / zoom)
    return angle, zoom
