"""Batched multi-view augmentation that records the parameters it drew.

For a batch ``[B, C, H, W]`` the module returns ``J`` views ``[B, J, C, S, S]`` and, for every
enabled operation, the parameters of each view as ``[B, J]`` float tensors. Those parameters are
the style factors that every dataset has (see :mod:`genssl.eval`).

All ``B·J`` views are processed together on the images' device. Crop, resize, flips and rotation
compose into one affine map per view, sampled bilinearly as ``grid_sample`` does: without rotation
the map is axis-aligned and is applied axis by axis (gathering whole rows, then whole columns),
with rotation by one ``grid_sample``. Photometric operations follow in a fixed order: colour jitter
(brightness, contrast, saturation, hue), random grey, blur. (torchvision shuffles the jitter order
per call; a fixed order keeps the recorded parameters a function of the view.) Inputs are expected
at the output size, as :func:`load_dataset` delivers them; other sizes are resampled bilinearly by
the same affine map.

The work is laid out in planes ``[C, B·J, S, S]`` (see :mod:`genssl.data.colour`): the uint8
images are converted to float once, straight into that layout, and the views are written back to
``[B, J, C, S, S]`` by the final clamp. On the CPU a photometric operation gathers only the views
that drew it, and the large temporaries are kept between calls (:class:`colour.Scratch`), since
fresh multi-megabyte allocations cost a page fault per page on every call; on other devices every
view is computed and blended, so nothing waits for the device.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from genssl.data import colour
from genssl.data.augment_options import OPTIONS, PROBABILITIES, dict_option, probability
from genssl.data.plain import to_plain
from genssl.errors import ConfigError, ShapeError, choices

_CROP_TRIES = 10  # like torchvision's RandomResizedCrop before it falls back to a centre crop
# Device types on which a photometric operation gathers the views that drew it (counting them
# synchronises with the device; elsewhere every view is computed and blended).
_GATHER_ON = ("cpu",)


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
        self._scratch: dict[int, colour.Scratch] = {}
        if self.blur is not None and self.blur["kernel_size"] is None:
            self.blur["kernel_size"] = 2 * math.ceil(3.0 * self.blur["sigma"][1]) + 1

    @property
    def geometric(self) -> bool:
        """Whether any operation moves pixels (and so needs the affine resampling)."""
        return self.crop is not None or self.hflip > 0 or self.vflip > 0 or self.rotation is not None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scratch"] = {}  # buffers, not state: copies and pickles start without them
        return state

    def _thread_scratch(self) -> colour.Scratch:
        """This thread's temporaries (a module may be called from several threads)."""
        return self._scratch.setdefault(threading.get_ident(), colour.Scratch())

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
        j, size = self.num_views, self.image_size
        draw = _Draw(b, j, images.device, generator)
        scratch = self._thread_scratch()
        params: dict[str, torch.Tensor] = {}
        x = self._geometry(images, draw, params, scratch)
        self._photometric(x, draw, params, scratch, rgb=c == 3)
        # The clamp writes the planes back in [B, J, C, S, S] order.
        x = x.view(c, b, j, size, size).permute(1, 2, 0, 3, 4)
        views = torch.clamp(x, 0.0, 1.0, out=torch.empty(b, j, c, size, size, device=x.device))
        return views, {k: v.reshape(b, j) for k, v in params.items()}

    def _geometry(
        self, images: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor], scratch: colour.Scratch
    ) -> torch.Tensor:
        """The views as planes [C, B·J, S, S]."""
        size, j = self.image_size, self.num_views
        b, c, h, w = images.shape
        n = b * j
        if not self.geometric:
            x = _unit_into(images.transpose(0, 1), torch.empty(c, b, h, w, device=images.device))
            if h != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return x.unsqueeze(2).expand(c, b, j, size, size).reshape(c, n, size, size)
        one = torch.ones(n, device=images.device)
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
        if self.rotation is None:
            # Axis-aligned: x_in = (2 cx - 1) + width · flip_x · x_out, and so for y.
            x_map, y_map = (width * flip_x, 2.0 * cx - 1.0), (height * flip_y, 2.0 * cy - 1.0)
            return _resample_separable(images, j, size, x_map, y_map, scratch)
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
        base = _base_grid(size, images.device)
        bx, by = base.view(1, 1, size), base.view(1, size, 1)
        row_x = [v.view(n, 1, 1) for v in (width * flip_x * cos, -width * flip_x * sin, 2.0 * cx - 1.0)]
        row_y = [v.view(n, 1, 1) for v in (height * flip_y * sin, height * flip_y * cos, 2.0 * cy - 1.0)]
        # affine_grid's points, as elementwise products (its batched matmul is slow on the CPU);
        # the J views of an image are stacked along the grid's height, so the image is read once.
        grid = torch.stack([a * bx + b_ * by + c_ for a, b_, c_ in (row_x, row_y)], dim=-1)
        grid = grid.view(b, j * size, size, 2)
        out = F.grid_sample(to_unit_float(images), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(b, c, j, size, size).transpose(0, 1).reshape(c, n, size, size)

    def _photometric(
        self, x: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor], scratch: colour.Scratch, rgb: bool
    ) -> None:
        """In place on the planes [C, N, S, S]."""
        if self.color_jitter is not None:
            self._jitter(x, draw, params, scratch, rgb)
        if self.grayscale > 0 and rgb:
            params["grayscale"] = draw.bernoulli(self.grayscale)

            def to_grey(planes: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
                luma = scratch.get("grey", planes.shape[1:], planes)
                return colour.luma_planes(planes, out=luma).expand_as(planes)

            _on_chosen(x, params["grayscale"], to_grey, scratch)
        if self.blur is not None:
            chosen = draw.bernoulli(self.blur["p"])
            params["blur_sigma"] = sigma = chosen * draw.uniform(*self.blur["sigma"])
            kernel = min(self.blur["kernel_size"], _largest_odd_below(x.shape[-1]))
            if kernel >= 3:

                def blur(planes: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
                    return colour.blur_(planes, _take(sigma, idx), kernel, scratch)

                _on_chosen(x, chosen, blur, scratch)

    def _jitter(
        self, x: torch.Tensor, draw: _Draw, params: dict[str, torch.Tensor], scratch: colour.Scratch, rgb: bool
    ) -> None:
        cfg = self.color_jitter
        chosen = draw.bernoulli(cfg["p"])
        steps = [("brightness", colour.brightness_), ("contrast", colour.contrast_)]
        if rgb:
            steps += [("saturation", colour.saturation_)]
        todo = []
        for name, adjust in steps:
            if cfg[name] > 0:
                factor = draw.uniform(max(0.0, 1.0 - cfg[name]), 1.0 + cfg[name])
                params[name] = torch.where(chosen > 0, factor, torch.ones_like(factor))
                todo.append((adjust, params[name]))
        if rgb and cfg["hue"] > 0:
            shift = chosen * draw.uniform(-cfg["hue"], cfg["hue"])
            params["hue"] = shift
            todo.append((colour.hue_, shift))

        def jitter(planes: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            for adjust, value in todo:
                planes = adjust(planes, _take(value, idx), scratch)
            return planes

        # Views that were not jittered keep their exact pixels (the HSV round trip is not exact).
        _on_chosen(x, chosen, jitter, scratch)

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


def _unit_into(images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``to_unit_float(images)`` written into ``out``: the same values (one float32 division by 255)."""
    return torch.div(images, 255.0, out=out) if images.dtype == torch.uint8 else out.copy_(images)


def _base_grid(size: int, device: torch.device) -> torch.Tensor:
    """affine_grid's output coordinates for align_corners=False: pixel centres in [-1, 1]."""
    return torch.linspace(-1.0, 1.0, size, device=device) * (size - 1) / size


def _taps(scale: torch.Tensor, offset: torch.Tensor, size: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample's bilinear taps along one axis for the map x_in = offset + scale · x_out.

    Returns, per view [N, size], the index of the lower neighbour on the axis with a zero border
    (one zero each side, so that the pixels -1 and ``side`` read zero, as grid_sample's zero padding
    does) and the weight of the upper neighbour.
    """
    coord = offset.view(-1, 1) + scale.view(-1, 1) * _base_grid(size, scale.device)
    source = ((coord + 1.0) * side - 1.0) / 2.0  # grid_sample's unnormalisation, align_corners=False
    lower = torch.floor(source)
    weight = source - lower
    return (lower.long() + 1).clamp_(0, side), weight


def _resample_separable(
    images: torch.Tensor,
    views: int,
    size: int,
    x_map: tuple[torch.Tensor, torch.Tensor],
    y_map: tuple[torch.Tensor, torch.Tensor],
    scratch: colour.Scratch,
) -> torch.Tensor:
    """Bilinear resampling by axis-aligned maps ``(scale, offset)`` [N] per axis: grid_sample's values.

    The images become zero-bordered float planes once, transposed, so that their columns are rows.
    Whole columns are gathered (``index_select``) and blended with one weight per output column;
    the result is transposed back, and its rows are gathered and blended the same way. Returns the
    views as planes [C, N, S, S], equal to grid_sample's to float round-off.
    """
    b, c, h, w = images.shape
    n, device = b * views, images.device
    like = torch.empty(0, device=device)  # float32 scratch on the images' device
    padded = scratch.get("geometry_padded", (c, b, w + 2, h + 2), like)  # [C, B, x, y]
    for border in (padded[:, :, 0], padded[:, :, -1], padded[..., 0], padded[..., -1]):
        border.zero_()
    _unit_into(images.transpose(0, 1).transpose(2, 3), padded[:, :, 1:-1, 1:-1])
    col, col_weight = _taps(*x_map, size, w)  # [N, S]
    row, row_weight = _taps(*y_map, size, h)
    image_of_view = (torch.arange(n, device=device) // views).view(n, 1)
    source = padded.view(c, b * (w + 2), h + 2)
    index = (col + image_of_view * (w + 2)).view(-1)
    lower = torch.index_select(source, 1, index, out=scratch.get("geometry_a", (c, n * size, h + 2), like))
    upper = torch.index_select(source, 1, index + 1, out=scratch.get("geometry_b", (c, n * size, h + 2), like))
    lower.lerp_(upper, col_weight.view(1, n * size, 1))
    # [C, N, S(x), H + 2] -> [C, N, H + 2, S(x)]: rows again.
    rows = scratch.get("geometry_rows", (c, n, h + 2, size), like)
    rows.copy_(lower.view(c, n, size, h + 2).transpose(2, 3))
    rows = rows.view(c, n * (h + 2), size)
    index = (row + torch.arange(n, device=device).view(n, 1) * (h + 2)).view(-1)
    lower = torch.index_select(rows, 1, index, out=scratch.get("geometry_views", (c, n * size, size), like))
    upper = torch.index_select(rows, 1, index + 1, out=scratch.get("geometry_b", (c, n * size, size), like))
    return lower.lerp_(upper, row_weight.view(1, n * size, 1)).view(c, n, size, size)


def _take(values: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return values if idx is None else values.index_select(0, idx)


def _on_chosen(
    x: torch.Tensor,
    chosen: torch.Tensor,
    op: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    scratch: colour.Scratch,
) -> None:
    """Apply ``op(planes, idx)`` to the views where ``chosen`` [N] is 1, in place in ``x`` [C, N, ...].

    ``op`` may overwrite ``planes``, the views it is to compute, and returns their new values. On the
    CPU those are only the chosen views (gathered; ``idx`` lists them, None when all are chosen).
    Elsewhere ``op`` computes a copy of every view (``idx`` is None) and a blend keeps the others,
    so that nothing waits for the device to count them.
    """
    if x.device.type not in _GATHER_ON:
        result = op(x.clone(), None)
        x.copy_(torch.where(chosen.bool().view(1, -1, *([1] * (x.dim() - 2))), result, x))
        return
    idx = chosen.nonzero().view(-1)
    if idx.numel() == x.shape[1]:
        result = op(x, None)
        if result is not x:
            x.copy_(result)
    elif idx.numel() > 0:
        planes = torch.index_select(x, 1, idx, out=scratch.get("chosen", (x.shape[0], idx.numel(), *x.shape[2:]), x))
        x.index_copy_(1, idx, op(planes, idx))


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
