"""Styled grey datasets: colour, position and scale drawn per image and kept as ground-truth factors.

``load_dataset(name, styled=True)`` (``data.styled=true``) turns every image of a one-channel
dataset (Fashion-MNIST, MNIST, digits) into an RGB image whose style is four independent factors,
each uniform over its range, recorded in ``ImageSplit.factors`` like the procedural shapes' factors:

=========  ==========  =====================================================================
factor     kind        meaning
=========  ==========  =====================================================================
hue        continuous  HSV hue of the foreground (saturation = value = 1), in [0, 5/6)
pos_x      continuous  centre of the content frame, fraction of the width from the left,
                       in [0.375, 0.625]
pos_y      continuous  centre of the content frame, fraction of the height from the top,
                       in [0.375, 0.625]
scale      continuous  side of the content frame as a fraction of the canvas side, [0.55, 0.75]
=========  ==========  =====================================================================

The canvas keeps the native size. The original image (its whole frame, the "content frame") is
shrunk by ``scale`` and centred at ``(pos_x, pos_y)``; since ``|pos − 0.5| + scale / 2 <= 0.5``
over the whole ranges, the frame never leaves the canvas, so nothing of the object is cut off
(at 28 px: a 15–21 px object shifted by up to ±3.5 px). The background stays black and a pixel of
grey level ``g`` becomes ``g · rgb(hue)``, so values stay in [0, 1] and the brightest pixels carry
exactly the recorded hue. The hue range stops short of 1 because hue 0 and 1 are the same red
(no wrap-around for a regression probe), as in :mod:`genssl.data.shapes`.

Factors are drawn from a seeded generator of their own, with separate streams for train and test:
they are a property of the dataset, not of the run seed. :func:`load_dataset` draws them for the
full splits *before* taking the run's subsets, so an image keeps its style whatever the subset, and
renders them *after* the resize to ``image_size`` (digits are 8 px natively).

Rendering is one affine sampling grid (:func:`style_grid`) and one ``grid_sample`` per chunk of
images at twice the resolution, then a 2×2 average pool: the 2× supersampling antialiases the
down-scaling.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from genssl.data.colour import hsv_to_rgb
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import ConfigError, ShapeError

STYLE_RANGES: dict[str, tuple[float, float]] = {
    "hue": (0.0, 5.0 / 6.0),
    "pos_x": (0.375, 0.625),
    "pos_y": (0.375, 0.625),
    "scale": (0.55, 0.75),
}
STYLE_KINDS: dict[str, str] = {name: "continuous" for name in STYLE_RANGES}
_CHUNK = 2048  # images rendered at once; bounds the [chunk, 2H, 2W] grid and image temporaries
_SUPERSAMPLE = 2  # render at this multiple of the size, then average-pool back down


def draw_style(count: int, seed: int = 0, stream: int = 0) -> dict[str, torch.Tensor]:
    """``count`` values of every style factor (float32 ``[count]``), uniform over :data:`STYLE_RANGES`.

    The same ``(seed, stream)`` always gives the same values; the train split uses stream 0 and
    the test split stream 1.
    """
    generator = torch.Generator().manual_seed(2 * int(seed) + int(stream))
    return {
        name: low + (high - low) * torch.rand(count, generator=generator) for name, (low, high) in STYLE_RANGES.items()
    }


def render_style(images: torch.Tensor, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Grey uint8 ``[N, 1, H, W]`` images → RGB uint8 ``[N, 3, H, W]`` with the given style factors.

    With normalised coordinates ``u ∈ [-1, 1]`` (``align_corners=False``), the output pixel at ``u``
    samples the original at ``(u − c) / s`` with ``c = 2·pos − 1`` and ``s = scale``: the original
    frame shrunk to a side ``s`` and centred at ``pos``; outside it the image is black.
    """
    if images.dim() != 4 or images.shape[1] != 1 or images.dtype != torch.uint8:
        raise ShapeError(f"Styling needs grey uint8 images [N, 1, H, W]; got {images.dtype} {tuple(images.shape)}.")
    n, _, height, width = images.shape
    missing = sorted(set(STYLE_RANGES) - set(factors))
    if missing:
        raise ShapeError(f"Styling needs the factors {sorted(STYLE_RANGES)}; {missing} are missing.")
    out = torch.empty(n, 3, height, width, dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk = {name: factors[name][part].to(torch.float32) for name in STYLE_RANGES}
        out[part] = _render_chunk(images[part], chunk)
    return out


def _render_chunk(images: torch.Tensor, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    n, _, height, width = images.shape
    grid = style_grid(factors, _SUPERSAMPLE * height, _SUPERSAMPLE * width)
    grey = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    grey = F.avg_pool2d(grey, _SUPERSAMPLE)
    full = torch.ones_like(factors["hue"])
    rgb = hsv_to_rgb(torch.stack((factors["hue"], full, full), dim=1))  # [n, 3]
    return (grey * rgb.view(n, 3, 1, 1)).round_().clamp_(0, 255).to(torch.uint8)


def style_grid(factors: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """The ``grid_sample`` grid ``[N, height, width, 2]`` of the style's affine map.

    It equals ``affine_grid(θ, align_corners=False)`` with ``θ = [[1/s, 0, −c_x/s], [0, 1/s, −c_y/s]]``,
    built by broadcasting instead: the map has no rotation, so each coordinate depends on one axis
    only, and this is several times faster than ``affine_grid``'s batched matrix product.
    """
    scale = factors["scale"].view(-1, 1, 1)
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * (2.0 / height) - 1.0
    gx = (xs.view(1, 1, width) - (2.0 * factors["pos_x"] - 1.0).view(-1, 1, 1)) / scale
    gy = (ys.view(1, height, 1) - (2.0 * factors["pos_y"] - 1.0).view(-1, 1, 1)) / scale
    return torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)


def require_grey(name: str, channels: int) -> None:
    """Raise :class:`ConfigError` unless a dataset of ``channels`` channels can be styled."""
    if channels != 1:
        raise ConfigError(
            f"data.styled=true applies to grey (one-channel) datasets such as 'fashion_mnist', 'mnist' and "
            f"'digits', but dataset '{name}' has {channels} channels: it already has colour (and "
            f"'shapes' has its own ground-truth style factors). Set data.styled=false for '{name}'."
        )


def attach_style_factors(dataset: ImageDataset, seed: int = 0) -> ImageDataset:
    """The dataset with style factors drawn for every image (train: stream 0, test: stream 1);
    the images are left grey until :func:`render_styled_split`."""
    require_grey(dataset.name, dataset.channels)
    clash = sorted(set(STYLE_KINDS) & set(dataset.factor_kinds))
    if clash:
        raise ConfigError(f"Dataset '{dataset.name}' already has factors {clash}, which styling would overwrite.")
    train = _with_factors(dataset.train, draw_style(len(dataset.train), seed, 0))
    test = _with_factors(dataset.test, draw_style(len(dataset.test), seed, 1))
    return replace(dataset, train=train, test=test, factor_kinds={**dataset.factor_kinds, **STYLE_KINDS})


def _with_factors(split: ImageSplit, factors: dict[str, torch.Tensor]) -> ImageSplit:
    return ImageSplit(split.images, split.labels, {**split.factors, **factors})


def render_styled_split(split: ImageSplit) -> ImageSplit:
    """A split whose factors include the style factors, with its grey images rendered in colour."""
    return ImageSplit(render_style(split.images, split.factors), split.labels, split.factors)


def style_split(split: ImageSplit, seed: int = 0, stream: int = 0) -> ImageSplit:
    """Draw style factors for every image of a grey split (from ``seed``, ``stream``) and render them."""
    return render_styled_split(_with_factors(split, draw_style(len(split), seed, stream)))


def apply_style(dataset: ImageDataset, seed: int = 0) -> ImageDataset:
    """A grey dataset as its styled RGB version, factors recorded; see the module docstring."""
    styled = attach_style_factors(dataset, seed)
    return replace(styled, train=render_styled_split(styled.train), test=render_styled_split(styled.test)).validate()
