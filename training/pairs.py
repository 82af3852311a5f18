"""The changer's pairs: B is A's view after zero to three geometric changes, cut from one larger source.

Geometry (the product's definition): a point p of A (pixels from A's centre, x right, y down)
shows in B at s·R(θ)·p + t, R(θ) = [[cos θ, sin θ], [−sin θ, cos θ]] (θ > 0 turns the content
counterclockwise on screen); t is a fraction of the view's side. Absent changes are exactly the
identity. Both views are sampled from the source, never outside it, so B has no empty borders.
B also gets nuisance changes that are not "changes": brightness/contrast ±10%, Gaussian noise up
to σ = 2/255, and JPEG re-encoding at quality 70-95.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CHANGES = ("displacement", "rotation", "scaling")
CHANGE_LABELS = (
    "unchanged",
    "displacement",
    "rotation",
    "scaling",
    "displacement+rotation",
    "displacement+scaling",
    "rotation+scaling",
    "displacement+rotation+scaling",
)
#: Which changes each class holds, in CHANGES order.
CLASS_CHANGES = np.array([[c in label.split("+") for c in CHANGES] for label in CHANGE_LABELS], dtype=bool)
PARAM_NAMES = ("shift_x", "shift_y", "angle", "scale")

SHIFT_RANGE = (0.10, 0.25)  # |t| as a fraction of the view's side
ANGLE_RANGE = (15.0, 30.0)  # |θ| in degrees
SCALE_RANGE = (1.2, 1.6)  # s or 1/s
VIEW_RANGE = (0.26, 0.40)  # the view's side as a fraction of the source's side (shrunk until it fits)


def sample_params(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) parameters [shift_x, shift_y, angle, scale] for class indices `labels`."""
    n = len(labels)
    changes = CLASS_CHANGES[labels]
    length = rng.uniform(*SHIFT_RANGE, n)
    direction = rng.uniform(0, 2 * math.pi, n)
    angle = rng.uniform(*ANGLE_RANGE, n) * rng.choice([-1.0, 1.0], n)
    log_scale = rng.uniform(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]), n) * rng.choice([-1.0, 1.0], n)
    params = np.stack([length * np.cos(direction), length * np.sin(direction), angle, np.exp(log_scale)], axis=1)
    params[~changes[:, 0], 0:2] = 0.0
    params[~changes[:, 1], 2] = 0.0
    params[~changes[:, 2], 3] = 1.0
    return params


def labels_from_params(params: np.ndarray) -> np.ndarray:
    """The class of each parameter row (exact identities count as absent changes)."""
    present = np.stack([np.hypot(params[:, 0], params[:, 1]) > 0, params[:, 2] != 0, params[:, 3] != 1], axis=1)
    return (present[:, None, :] == CLASS_CHANGES[None]).all(axis=2).argmax(axis=1)


def _b_offsets(params: np.ndarray, view: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Source-unit offsets from A's centre of B's sample points `corners` (fractions of the view, from its centre).

    B's pixel q (view fractions) shows A's point p = R(θ)⁻¹ (q − t) / s, i.e. source c_A + view·p.
    """
    theta = np.deg2rad(params[:, 2])
    cos, sin = np.cos(theta), np.sin(theta)
    q = corners[None, :, :] - params[:, None, 0:2]  # (N, K, 2)
    px = (cos[:, None] * q[..., 0] - sin[:, None] * q[..., 1]) / params[:, 3, None]
    py = (sin[:, None] * q[..., 0] + cos[:, None] * q[..., 1]) / params[:, 3, None]
    return np.stack([px, py], axis=-1) * view[:, None, None]


def place_views(params: np.ndarray, rng: np.random.Generator, aspect: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """View sides (source fractions) and A's centres such that A and B lie inside the unit-square source."""
    n = len(params)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    view = rng.uniform(*VIEW_RANGE, n)
    centre = np.zeros((n, 2))
    todo = np.ones(n, dtype=bool)
    margin = 0.5 / 256  # keep bilinear taps inside the source
    for _ in range(40):
        offsets = np.concatenate([_b_offsets(params[todo], view[todo], corners),
                                  corners[None] * view[todo, None, None]], axis=1)
        low = margin - offsets.min(axis=1)
        high = 1 - margin - offsets.max(axis=1)
        fits = (low <= high).all(axis=1)
        index = np.flatnonzero(todo)
        centre[index[fits]] = rng.uniform(low[fits], high[fits])
        todo[index[fits]] = False
        if not todo.any():
            return view, centre
        view[todo] *= 0.92
    raise ValueError("could not place the views inside the source")


def sampling_grids(params: np.ndarray, view: np.ndarray, centre: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample grids (N, size, size, 2) for A and B, in the source's [-1, 1] coordinates."""
    ticks = (np.arange(size) + 0.5) / size - 0.5
    gx, gy = np.meshgrid(ticks, ticks)
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (size², 2) view fractions, x right, y down
    a = centre[:, None, :] + pixels[None] * view[:, None, None]
    b = centre[:, None, :] + _b_offsets(params, view, pixels)
    to_grid = lambda p: torch.from_numpy((2 * p - 1).reshape(len(params), size, size, 2)).float()  # noqa: E731
    return to_grid(a), to_grid(b)


def render(sources: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Sample float NCHW sources at grids (bilinear), one grid per source."""
    return F.grid_sample(sources, grids, mode="bilinear", padding_mode="border", align_corners=False)


def nuisance(b: torch.Tensor, rng: np.random.Generator, jpeg: bool = True) -> np.ndarray:
    """Brightness/contrast ±10%, Gaussian noise σ ≤ 2/255, JPEG quality 70-95: uint8 NHWC."""
    n = b.shape[0]
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1))).float()
    contrast = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1))).float()
    mean = b.mean(dim=(1, 2, 3), keepdim=True)
    b = (b - mean) * contrast + mean * gain
    sigma = torch.from_numpy(rng.uniform(0, 2.0, (n, 1, 1, 1))).float()
    noise = torch.from_numpy(rng.standard_normal(b.shape)).float()
    out = (b + noise * sigma).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if jpeg:
        for i, quality in enumerate(rng.integers(70, 96, n)):
            buffer = io.BytesIO()
            Image.fromarray(out[i]).save(buffer, "JPEG", quality=int(quality))
            out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


@dataclass
class Pairs:
    a: np.ndarray  # uint8 (N, size, size, 3)
    b: np.ndarray
    labels: np.ndarray  # int64 (N,)
    params: np.ndarray  # float64 (N, 4)
    source: np.ndarray  # int64 (N,): which source image

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concat(cls, parts: list["Pairs"]) -> "Pairs":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("a", "b", "labels", "params", "source")))


def make_pairs(sources: np.ndarray, n: int, size: int, seed: int | np.random.Generator,
               labels: np.ndarray | None = None) -> Pairs:
    """`n` pairs from uint8 (M, S, S, 3) square sources, classes uniform unless `labels` is given."""
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = rng.integers(0, len(CHANGE_LABELS), n)
    picks = rng.integers(0, len(sources), n)
    params = sample_params(labels, rng)
    view, centre = place_views(params, rng)
    grid_a, grid_b = sampling_grids(params, view, centre, size)
    chosen = torch.from_numpy(np.ascontiguousarray(sources[picks])).permute(0, 3, 1, 2).float()
    a = render(chosen, grid_a).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    b = nuisance(render(chosen, grid_b), rng)
    return Pairs(np.ascontiguousarray(a), b, labels.astype(np.int64), params, picks)
