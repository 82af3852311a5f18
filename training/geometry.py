"""Geometric perturbation of whole images, in the changer's convention (training/pairs.py)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .pairs import sampling_grids


def similarity_warp(images: Tensor, angle_deg: Tensor, scale: Tensor, padding_mode: str = "reflection") -> Tensor:
    """Each square image (N, C, S, S) after rotation θ and zoom s about its centre: p shows at s·R(θ)·p.

    θ > 0 turns the content counterclockwise on screen. Pixels that come from outside the image are
    filled by `padding_mode` (grid_sample's).
    """
    n, _, height, width = images.shape
    if height != width:
        raise ValueError(f"similarity_warp needs square images, not {height}x{width}")
    params = np.stack([np.zeros(n), np.zeros(n), angle_deg.double().numpy(), scale.double().numpy()], axis=1)
    _, grid = sampling_grids(params, np.ones(n), np.full((n, 2), 0.5), height)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_rotation_zoom(n: int, generator: torch.Generator, angle_range=(15.0, 30.0), zoom_range=(1.2, 1.6)) -> tuple[Tensor, Tensor]:
    """Angles of either sign with |θ| in `angle_range` and zooms in `zoom_range` (in or out, by a coin)."""
    angle = torch.empty(n).uniform_(*angle_range, generator=generator)
    angle = angle * (torch.randint(0, 2, (n,), generator=generator) * 2 - 1)
    zoom = torch.empty(n).uniform_(math.log(zoom_range[0]), math.log(zoom_range[1]), generator=generator).exp()
    zoom = torch.where(torch.rand(n, generator=generator) < 0.5, zoom, 1 / zoom)
    return angle, zoom
