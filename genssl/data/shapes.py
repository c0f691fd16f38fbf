"""A procedural dataset of coloured shapes with known content and style.

Content is the shape class; style is five independent, uniformly drawn factors:

=========  ==========  ====================================================================
factor     kind        meaning
=========  ==========  ====================================================================
pos_x      continuous  centre, fraction of the width from the left, in [0.36, 0.64]
pos_y      continuous  centre, fraction of the height from the top, in [0.36, 0.64]
scale      continuous  radius of the shape's bounding circle, fraction of the side, [0.18, 0.32]
rotation   continuous  degrees, counter-clockwise, in [-40, 40]
hue        continuous  HSV hue (saturation = value = 1) in [0, 5/6)
=========  ==========  ====================================================================

Every class lacks rotational symmetry below 90°, and rotations stay within ±40°, so the rotation
is visible in the image and has no wrap-around; there is deliberately no circle (its rotation
would be unobservable). The hue range stops short of 1 for the same reason: hue 0 and 1 are the
same red. Position and scale ranges keep every shape entirely inside the image, with a margin of
at least 4% of the side (a black border of one pixel or more from 28 px up).

Shapes are signed-distance functions in a local frame where the shape fits the unit disc;
coverage of a pixel is ``clamp(0.5 - distance_in_pixels, 0, 1)``, a one-pixel antialiasing ramp.
"""

from __future__ import annotations

import math

import torch

from genssl.data.colour import hsv_to_rgb
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import ConfigError

CLASS_NAMES = ["square", "triangle", "cross", "ellipse", "semicircle"]
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "pos_x": (0.36, 0.64),
    "pos_y": (0.36, 0.64),
    "scale": (0.18, 0.32),
    "rotation": (-40.0, 40.0),
    "hue": (0.0, 5.0 / 6.0),
}
FACTOR_KINDS = {name: "continuous" for name in FACTOR_RANGES}
_CHUNK = 2048  # images rendered at once; bounds the [chunk, H, W] float temporaries


def load_shapes(
    image_size: int | None = None, num_train: int = 20000, num_test: int = 5000, dataset_seed: int = 0
) -> ImageDataset:
    """Render the train and test splits (3×size×size, default 32 px) from ``dataset_seed``.

    The two splits come from different random streams of the same seed, so they are disjoint
    draws; the run seed plays no part, so every run sees the same images.
    """
    size = 32 if image_size is None else int(image_size)
    if size < 8:
        raise ConfigError(f"shapes needs image_size >= 8 to draw recognisable shapes, got {size}.")
    for option, value in (("num_train", num_train), ("num_test", num_test)):
        if int(value) < 1:
            raise ConfigError(f"shapes option {option} must be a positive integer, got {value}.")
    train = render_split(int(num_train), size, seed=2 * int(dataset_seed))
    test = render_split(int(num_test), size, seed=2 * int(dataset_seed) + 1)
    return ImageDataset("shapes", train, test, len(CLASS_NAMES), list(CLASS_NAMES), dict(FACTOR_KINDS))


def render_split(count: int, size: int, seed: int) -> ImageSplit:
    """Draw ``count`` labels and factor values from ``seed`` and render them."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(CLASS_NAMES), (count,), generator=generator)
    factors = {
        name: low + (high - low) * torch.rand(count, generator=generator) for name, (low, high) in FACTOR_RANGES.items()
    }
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for start in range(0, count, _CHUNK):
        part = slice(start, start + _CHUNK)
        images[part] = render(labels[part], {k: v[part] for k, v in factors.items()}, size)
    return ImageSplit(images, labels, factors)


def render(labels: torch.Tensor, factors: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """uint8 [N, 3, size, size] images of the given classes and factor values."""
    n = labels.shape[0]
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    py, px = torch.meshgrid(centres, centres, indexing="ij")  # [H, W], y grows downwards
    scale = factors["scale"].view(n, 1, 1)
    dx = (px - factors["pos_x"].view(n, 1, 1)) / scale
    dy = (factors["pos_y"].view(n, 1, 1) - py) / scale  # flip so the local y axis points up
    # Rotating the shape by +theta = sampling it at the pixel rotated by -theta.
    theta = torch.deg2rad(factors["rotation"]).view(n, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    ux, uy = cos * dx + sin * dy, -sin * dx + cos * dy
    distance = torch.empty_like(ux)
    for index, sdf in enumerate(_SDFS):
        chosen = labels == index
        if chosen.any():
            distance[chosen] = sdf(ux[chosen], uy[chosen])
    coverage = (0.5 - distance * scale * size).clamp(0.0, 1.0)  # local units -> pixels
    colour = hue_to_rgb(factors["hue"]).view(n, 3, 1, 1)
    return (colour * coverage.unsqueeze(1) * 255.0).round().to(torch.uint8)


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """[N] hues in [0, 1) -> [N, 3] RGB in [0, 1] at full saturation and value."""
    full = torch.ones_like(hue)
    return hsv_to_rgb(torch.stack((hue, full, full), dim=1))


# Signed distances in the local frame (positive outside), each shape inside the unit disc.


def _box(ux: torch.Tensor, uy: torch.Tensor, half_w: float, half_h: float) -> torch.Tensor:
    qx, qy = ux.abs() - half_w, uy.abs() - half_h
    outside = torch.hypot(qx.clamp(min=0.0), qy.clamp(min=0.0))
    return outside + torch.maximum(qx, qy).clamp(max=0.0)


def _square(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    return _box(ux, uy, 0.7, 0.7)  # corner at radius 0.99


def _triangle(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    # Equilateral, apex up, circumradius 0.95 (inradius 0.475): the largest signed distance to
    # its three edge lines (exact inside and near the edges, which is all antialiasing needs).
    distances = [ux * math.cos(a) + uy * math.sin(a) - 0.475 for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    return torch.maximum(torch.maximum(distances[0], distances[1]), distances[2])


def _cross(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    # A plus sign whose arms are unequal (long vertical) so it has 180° rather than 90° symmetry.
    return torch.minimum(_box(ux, uy, 0.65, 0.3), _box(ux, uy, 0.3, 0.9))


def _ellipse(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    # Semi-axes 0.95 × 0.5. First-order distance estimate k0 (k0 - 1) / k1, accurate near the
    # boundary where coverage is decided.
    a, b = 0.95, 0.5
    k0 = torch.hypot(ux / a, uy / b)
    k1 = torch.hypot(ux / (a * a), uy / (b * b)).clamp(min=1e-6)
    return k0 * (k0 - 1.0) / k1


def _semicircle(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
    # Upper half of a disc of radius 0.9 centred at (0, -0.4): corners at radius 0.985.
    disc = torch.hypot(ux, uy + 0.4) - 0.9
    return torch.maximum(disc, -(uy + 0.4))


_SDFS = (_square, _triangle, _cross, _ellipse, _semicircle)
