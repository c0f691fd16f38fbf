"""Batched multi-view augmentation that records the parameters it drew.

For a batch ``[B, C, H, W]`` the module returns ``J`` views ``[B, J, C, S, S]`` and, for every
enabled operation, the parameters of each view as ``[B, J]`` float tensors. Those parameters are
the style factors that every dataset has (see :mod:`genssl.eval`).

All ``B·J`` views are processed together on the images' device. Crop, resize, flips and rotation
compose into one affine map per view, applied by a single ``grid_sample``; photometric operations
follow in a fixed order: colour jitter (brightness, contrast, saturation, hue), random grey, blur.
(torchvision shuffles the jitter order per call; a fixed order keeps the recorded parameters a
function of the view.) Inputs are expected at the output size, as :func:`load_dataset` delivers
them; other sizes are resampled bilinearly by the same affine map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from genssl.data import colour
from genssl.data.augment_options import OPTIONS, PROBABILITIES, dict_option, probability
from genssl.data.plain import to_plain
from genssl.errors import ConfigError, ShapeError, choices

_CROP_TRIES = 10  # like torchvision's RandomResizedCrop before it falls back to a centre crop


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [0, 255] → float32 [0, 1]; float input is cast to float32 as it is."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


class MultiViewAugment(torch.nn.Module):
    """Draw ``num_views`` augmented views of every image; see the module docstring.

    Args:
        num_views: views per image (J >= 1).
        image_size: side S of the output views.
        crop: random resized crop, ``{scale: [min, max] area fraction, ratio: [min, max]
            width/height}``; None keeps the whole image.
        hflip, vflip: probability of a horizontal / vertical flip.
        rotation: ``{p, degrees}``: with probability p rotate by an angle uniform in
            [-degrees, degrees] (counter-clockwise positive; corners filled with black).
        color_jitter: ``{p, brightness, contrast, saturation, hue}`` with torchvision's meaning:
            factors uniform in [max(0, 1 - v), 1 + v], hue shift uniform in [-hue, hue].
            Saturation and hue are skipped for one-channel images.
        grayscale: probability of replacing a (colour) view by its luma.
        blur: ``{p, sigma: [min, max], kernel_size}``: Gaussian blur; the kernel size defaults to
            covering three sigmas of the largest sigma.

    ``forward`` returns the views (float32 in [0, 1]) and the recorded parameters, only for
    enabled operations: ``crop_scale`` (area fraction), ``crop_aspect`` (width/height),
    ``crop_x``, ``crop_y`` (crop centre as a fraction of width/height), ``hflip``, ``vflip``
    (0/1), ``rotation`` (degrees), ``brightness``, ``contrast``, ``saturation`` (factors, 1 when
    not jittered), ``hue`` (shift, 0 when not jittered), ``grayscale`` (0/1), ``blur_sigma``
    (0 when not blurred).
    """

    def __init__(
        self,
        num_views: int,
        image_size: int,
        *,
        crop: Mapping[str, Any] | None = None,
        hflip: float = 0.0,
        vflip: float = 0.0,
        rotation: Mapping[str, Any] | None = None,
        color_jitter: Mapping[str, Any] | None = None,
        grayscale: float = 0.0,
        blur: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_views", num_views), ("image_size", image_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer.")
        self.num_views = num_views
        self.image_size = image_size
        self.crop = dict_option("crop", crop)
        self.hflip = probability("hflip", hflip)
        self.vflip = probability("vflip", vflip)
        self.rotation = dict_option("rotation", rotation)
        self.color_jitter = dict_option("color_jitter", color_jitter)
        self.grayscale = probability("grayscale", grayscale)
        self.blur = dict_option("blur", blur)
        if self.blur is not None and self.blur["kernel_size"] is None:
            self.blur["kernel_size"] = 2 * math.ceil(3.0 * self.blur["sigma"][1]) + 1

    @property
    def geometric(self) -> bool:
        """Whether any operation moves pixels (and so needs the affine resampling)."""
        return self.crop is not None or self.hflip > 0 or self.vflip > 0 or self.rotation is not None

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Views ``[B, J, C, S, S]`` and the recorded parameters ``{name: [B, J]}``."""
        if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"MultiViewAugment expects square images [B, C, H, W], got shape {tuple(images.shape)}.")
        if generator is not None and generator.device.type != images.device.type:
            raise ConfigError(
                f"The augmentation generator is on {generator.device} but the images are on "
                f"{images.device}; create it with torch.Generator(device=images.device)."
            )
        b, c = images.shape[:2]
        x = to_unit_float(images)
        x = x.unsqueeze(1).expand(b, self.num_views, *x.shape[1:]).reshape(-1, *x.shape[1:])
        draw = _Draw(b, self.num_views, images.device, generator)
        params: dict[str, torch.Tensor] = {}
        x = self._geometry(x, draw, params)
        x = self._photometric(x, draw, params, rgb=c == 3)
        views = x.clamp(0.0, 1.0).reshape(b, self.num_views, c, self.image_size, self.image_size)
        return views.contiguous(), {k: v.reshape(b, self.num_views) for k, v in params.items()}

    def _geometry(self, x: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor]) -> torch.Tensor:
        size = self.image_size
        if not self.geometric:
            if x.shape[-1] == size:
                return x
            return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        n = x.shape[0]
        one = torch.ones(n, device=x.device)
        width, height, cx, cy = one, one, 0.5 * one, 0.5 * one
        if self.crop is not None:
            width, height, cx, cy = _sample_crop(draw, self.crop["scale"], self.crop["ratio"])
            params.update(crop_scale=width * height, crop_aspect=width / height, crop_x=cx, crop_y=cy)
        flip_x, flip_y = one, one
        if self.hflip > 0:
            params["hflip"] = draw.bernoulli(self.hflip)
            flip_x = 1.0 - 2.0 * params["hflip"]
        if self.vflip > 0:
            params["vflip"] = draw.bernoulli(self.vflip)
            flip_y = 1.0 - 2.0 * params["vflip"]
        angle = torch.zeros(n, device=x.device)
        if self.rotation is not None:
            degrees = self.rotation["degrees"]
            chosen = draw.bernoulli(self.rotation["p"])
            angle = chosen * draw.uniform(-degrees, degrees)
            params["rotation"] = angle
        # Output point o (normalised to [-1, 1]) samples the input at
        #   centre + diag(width, height) @ diag(flip) @ R(angle) @ o,
        # i.e. rotate the view, flip it, then place it in the crop box. In image coordinates y
        # points down, so this R turns the picture counter-clockwise by +angle, like torchvision.
        t = torch.deg2rad(angle)
        cos, sin = torch.cos(t), torch.sin(t)
        theta = torch.stack(
            (
                torch.stack((width * flip_x * cos, -width * flip_x * sin, 2.0 * cx - 1.0), dim=-1),
                torch.stack((height * flip_y * sin, height * flip_y * cos, 2.0 * cy - 1.0), dim=-1),
            ),
            dim=-2,
        )
        grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _photometric(self, x: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor], rgb: bool) -> torch.Tensor:
        if self.color_jitter is not None:
            x = self._jitter(x, draw, params, rgb)
        if self.grayscale > 0 and rgb:
            params["grayscale"] = draw.bernoulli(self.grayscale)
            x = colour.to_greyscale(x, params["grayscale"].bool())
        if self.blur is not None:
            chosen = draw.bernoulli(self.blur["p"])
            params["blur_sigma"] = chosen * draw.uniform(*self.blur["sigma"])
            kernel = min(self.blur["kernel_size"], _largest_odd_below(x.shape[-1]))
            if kernel >= 3:
                x = colour.gaussian_blur(x, params["blur_sigma"], kernel)
        return x

    def _jitter(self, x: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor], rgb: bool) -> torch.Tensor:
        cfg = self.color_jitter
        chosen = draw.bernoulli(cfg["p"])
        jittered = x
        steps = [("brightness", colour.adjust_brightness), ("contrast", colour.adjust_contrast)]
        if rgb:
            steps += [("saturation", colour.adjust_saturation)]
        for name, adjust in steps:
            if cfg[name] > 0:
                factor = draw.uniform(max(0.0, 1.0 - cfg[name]), 1.0 + cfg[name])
                params[name] = torch.where(chosen > 0, factor, torch.ones_like(factor))
                jittered = adjust(jittered, params[name])
        if rgb and cfg["hue"] > 0:
            shift = chosen * draw.uniform(-cfg["hue"], cfg["hue"])
            params["hue"] = shift
            jittered = colour.adjust_hue(jittered, shift)
        # Views that were not jittered keep their exact pixels (the HSV round trip is not exact).
        return torch.where(chosen.bool().view(-1, 1, 1, 1), jittered, x)

    def extra_repr(self) -> str:
        enabled = {k: getattr(self, k) for k in OPTIONS if getattr(self, k)}
        return f"num_views={self.num_views}, image_size={self.image_size}, {enabled}"


class _Draw:
    """Random draws of shape [B·J], all from one generator, in a fixed order."""

    def __init__(self, b: int, j: int, device: torch.device, generator: torch.Generator | None) -> None:
        self.n, self.device, self.generator = b * j, device, generator

    def rand(self, *extra: int) -> torch.Tensor:
        return torch.rand(self.n, *extra, device=self.device, generator=self.generator)

    def uniform(self, low: float, high: float, *extra: int) -> torch.Tensor:
        return low + (high - low) * self.rand(*extra)

    def bernoulli(self, p: float) -> torch.Tensor:
        return (self.rand() < p).float()


def _sample_crop(
    draw: _Draw, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop width, height (fractions of the side) and centre, as RandomResizedCrop draws them.

    Area and log-aspect are drawn ``_CROP_TRIES`` times per view and the first box that fits is
    kept; a view with none that fits falls back to the largest centred box within the ratio range,
    as torchvision does.
    """
    area = draw.uniform(*scale, _CROP_TRIES)
    aspect = torch.exp(draw.uniform(math.log(ratio[0]), math.log(ratio[1]), _CROP_TRIES))
    width, height = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (width <= 1.0) & (height <= 1.0)
    first = fits.float().argmax(dim=1, keepdim=True)
    width, height = width.gather(1, first).squeeze(1), height.gather(1, first).squeeze(1)
    any_fits = fits.any(dim=1)
    # torchvision's fallback for a square image: the whole image if 1 is an allowed ratio.
    fallback_w = ratio[1] if ratio[1] < 1.0 else 1.0
    fallback_h = 1.0 / ratio[0] if ratio[0] > 1.0 else 1.0
    width = torch.where(any_fits, width, torch.full_like(width, fallback_w))
    height = torch.where(any_fits, height, torch.full_like(height, fallback_h))
    cx = width / 2 + (1.0 - width) * draw.rand()
    cy = height / 2 + (1.0 - height) * draw.rand()
    return width, height, cx, cy


def _largest_odd_below(size: int) -> int:
    """Reflect padding needs a radius smaller than the image: the largest usable kernel."""
    return size - 1 if size % 2 == 0 else size - 2


def build_augment(cfg: Mapping[str, Any] | None, num_views: int, image_size: int) -> MultiViewAugment:
    """A :class:`MultiViewAugment` from the ``data.augment`` config (keys = constructor kwargs)."""
    cfg = {} if cfg is None else to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ConfigError(f"data.augment must be a mapping with keys {choices(OPTIONS)}, got {cfg!r}.")
    unknown = sorted(set(cfg) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"data.augment has unknown key(s) {choices(unknown)}; valid keys are {choices(OPTIONS)}.")
    for key in PROBABILITIES:
        if cfg.get(key) is None:
            cfg.pop(key, None)  # null means "off", which for a probability is 0
    return MultiViewAugment(num_views, image_size, **cfg)
