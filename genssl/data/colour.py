"""Batched photometric operations with one parameter per image: colour jitter, grey, blur.

Two layouts. The public ``adjust_*``, :func:`to_greyscale` and :func:`gaussian_blur` take float
images ``[N, C, H, W]`` in [0, 1] and parameters of shape ``[N]``. The augmentation works on
*planes*, ``[C, N, ...]``: every channel of every image is one contiguous block, so the colour
arithmetic is plane-by-plane elementwise work (no reductions over a strided channel axis, no
boolean masks, no ``torch.where``), done in place by the ``*_`` functions here; the public
functions are those applied to a transposed copy. Everything runs on the images' device with no
Python loop over images and keeps values in [0, 1]. Jitter follows torchvision's ``ColorJitter``
definitions (blend with black, the mean grey level, the grey image; hue rotation in HSV), clamping
after each step as torchvision does.
"""

from __future__ import annotations

import math

import torch

# ITU-R 601 luma weights, the ones torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)
# hsv_to_rgb's channel offsets (in sixths of the colour circle) for R, G, B.
_HEX_OFFSETS = (5.0, 3.0, 1.0)


def grey(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 1, H, W] luma (identity for one channel)."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _planar(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> a contiguous floating-point copy in the planar layout [C, N, H, W]."""
    dtype = images.dtype if images.is_floating_point() else torch.float32
    return images.transpose(0, 1).to(dtype, memory_format=torch.contiguous_format, copy=True)


def _from_planar(planes: torch.Tensor) -> torch.Tensor:
    return planes.transpose(0, 1).contiguous()


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale every pixel by ``factor`` (1 keeps the image, 0 gives black)."""
    return _from_planar(brightness_(_planar(images), factor))


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level (1 keeps the image, 0 gives flat grey)."""
    return _from_planar(contrast_(_planar(images), factor))


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grey version (1 keeps the image, 0 gives grey); RGB only."""
    return _from_planar(saturation_(_planar(images), factor))


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (a fraction of the colour circle, in [-0.5, 0.5]); RGB only."""
    return _from_planar(hue_(_planar(images), shift))


def to_greyscale(images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``chosen`` (bool [N]) by their luma on every channel."""
    return torch.where(chosen.view(-1, 1, 1, 1), grey(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` per image; sigma 0 leaves the image unchanged.

    Borders are reflected, as in torchvision. See :func:`blur_`.
    """
    return _from_planar(blur_(_planar(images), sigma, kernel_size))


# --- The planar layout [C, N, ...]: in-place operations, one parameter per image. ---


class Scratch:
    """Temporary CPU tensors kept from one call to the next, by name.

    On the CPU a fresh multi-megabyte tensor is memory the allocator may have handed back to the
    system after the last call, and then every page of it faults again on first touch, which costs
    more than the arithmetic. ``get`` returns a view of a cached buffer instead (grown when a
    larger one is asked for); tensors with different names never overlap. Off the CPU (where the
    framework's caching allocator does this already) and with ``keep=False`` it allocates afresh.
    A Scratch is for one thread at a time: a tensor it returns is valid until ``get`` is called
    with the same name again.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
        """A tensor of ``shape`` with ``like``'s dtype and device and arbitrary contents."""
        if not self.keep or like.device.type != "cpu":
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype:
            buffer = self._buffers[name] = torch.empty(numel, dtype=like.dtype)
        return buffer[:numel].view(shape)


_FRESH = Scratch(keep=False)


def _per_plane(values: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """[N] -> [1, N, 1, ...], broadcasting over the channels and pixels of ``planes``."""
    return values.to(planes.dtype).view(1, -1, *([1] * (planes.dim() - 2)))


def luma_planes(planes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[3, N, ...] -> [N, ...] luma, into ``out`` when given; a [1, N, ...] tensor's plane, as it is."""
    if planes.shape[0] == 1:
        return planes[0]
    r, g, b = planes.unbind(0)
    out = torch.mul(r, _LUMA[0], out=out) if out is not None else r * _LUMA[0]
    return out.add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])


def brightness_(planes: torch.Tensor, factor: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """In place: scale every pixel by ``factor`` [N]."""
    return planes.mul_(_per_plane(factor, planes)).clamp_(0.0, 1.0)


def contrast_(planes: torch.Tensor, factor: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """In place: blend with each image's mean grey level."""
    means = planes.flatten(2).mean(dim=2)  # [C, N]: the mean of the luma is the luma of the means
    mean = means[0] if planes.shape[0] == 1 else _LUMA[0] * means[0] + _LUMA[1] * means[1] + _LUMA[2] * means[2]
    f = factor.to(planes.dtype)
    return planes.mul_(_per_plane(f, planes)).add_(_per_plane((1.0 - f) * mean, planes)).clamp_(0.0, 1.0)


def saturation_(planes: torch.Tensor, factor: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """In place: blend each RGB image with its grey version."""
    scratch = scratch or _FRESH
    f = factor.to(planes.dtype)
    grey_part = luma_planes(planes, out=scratch.get("luma", planes.shape[1:], planes))
    grey_part.mul_(_per_plane(1.0 - f, planes)[0])  # (1 - f) · grey
    return planes.mul_(_per_plane(f, planes)).add_(grey_part).clamp_(0.0, 1.0)


def hue_(planes: torch.Tensor, shift: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """In place: rotate the HSV hue of RGB planes [3, N, ...] by ``shift`` [N] (circle fractions).

    The same result as ``hsv_to_rgb`` after shifting the hue of ``rgb_to_hsv`` (to float
    round-off), without building the HSV tensor: a channel of the result is
    ``value - delta · clamp(min(k, 4 - k), 0, 1)`` with ``delta = max - min`` and ``k`` the
    channel's position on the hexagon, ``offset + 6 · hue`` modulo 6.
    """
    scratch = scratch or _FRESH
    r, g, b = planes.unbind(0)
    value, delta, safe, hue, tmp, mask = (scratch.get(f"hue{i}", r.shape, planes) for i in range(6))
    torch.maximum(torch.maximum(r, g, out=value), b, out=value)
    torch.minimum(torch.minimum(r, g, out=delta), b, out=delta)
    torch.sub(value, delta, out=delta)
    torch.clamp(delta, min=1e-12, out=safe)
    # The sector of the colour hexagon by the largest channel, in sixths of the circle, as
    # rgb_to_hsv computes it; lerp with a 0/1 weight is an exact selection (ties between channels
    # give the same hue either way).
    torch.sub(r, g, out=hue).div_(safe).add_(4.0)
    hue.lerp_(torch.sub(b, r, out=tmp).div_(safe).add_(2.0), torch.eq(g, value, out=mask))
    hue.lerp_(torch.sub(g, b, out=tmp).div_(safe), torch.eq(r, value, out=mask))
    hue.add_(_per_plane(6.0 * shift, planes)[0])
    for channel, offset in enumerate(_HEX_OFFSETS):  # r, g, b are no longer needed: overwrite them
        k = torch.add(hue, offset, out=planes[channel])
        k.sub_(torch.div(k, 6.0, out=tmp).floor_(), alpha=6.0)  # modulo 6
        ramp = torch.minimum(k, torch.mul(k, -1.0, out=tmp).add_(4.0), out=tmp).clamp_(0.0, 1.0).mul_(delta)
        torch.sub(value, ramp, out=k)
    return planes


def blur_(planes: torch.Tensor, sigma: torch.Tensor, kernel_size: int, scratch: Scratch | None = None) -> torch.Tensor:
    """In place: separable Gaussian blur of planes [C, N, H, W] with one ``sigma`` [N] per image.

    Each image's normalised kernel is applied as ``kernel_size`` shifted multiply-adds per axis
    over reflected borders (a grouped convolution with a group per image costs far more on the
    CPU). A sigma of 0 gives exp(-inf) = 0 off centre: an exact identity. Needs
    ``kernel_size // 2`` below both sides.
    """
    scratch = scratch or _FRESH
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=planes.device, dtype=planes.dtype)
    s = sigma.to(planes.dtype).clamp(min=1e-6).view(-1, 1)
    kernel = torch.exp(-(offsets**2) / (2.0 * s**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [N, K]
    taps = [kernel[:, i].view(1, -1, 1, 1) for i in range(kernel_size)]
    c, n, h, w = planes.shape
    wide = _reflect_pad(planes, radius, -1, scratch.get("blur_wide", (c, n, h, w + 2 * radius), planes))
    across = torch.mul(wide[..., 0:w], taps[0], out=scratch.get("blur_across", planes.shape, planes))
    for i in range(1, kernel_size):
        across.addcmul_(wide[..., i : i + w], taps[i])
    tall = _reflect_pad(across, radius, -2, scratch.get("blur_tall", (c, n, h + 2 * radius, w), planes))
    torch.mul(tall[..., 0:h, :], taps[0], out=planes)
    for i in range(1, kernel_size):
        planes.addcmul_(tall[..., i : i + h, :], taps[i])
    return planes.clamp_(0.0, 1.0)


def _reflect_pad(x: torch.Tensor, radius: int, dim: int, out: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, mode="reflect")`` along ``dim`` (-1 or -2), written into ``out``."""
    size = x.shape[dim]
    out.narrow(dim, radius, size).copy_(x)
    for i in range(1, radius + 1):
        out.narrow(dim, radius - i, 1).copy_(x.narrow(dim, i, 1))
        out.narrow(dim, radius + size - 1 + i, 1).copy_(x.narrow(dim, size - 1 - i, 1))
    return out


# --- HSV conversions (used to render colour datasets; the augmentation's hue_ does without). ---


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] RGB -> HSV, every channel in [0, 1]."""
    r, g, b = images.unbind(dim=1)
    value, argmax = images.max(dim=1)
    delta = value - images.min(dim=1).values
    saturation = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = delta.clamp(min=1e-12)
    # Sector of the colour hexagon by the largest channel, in units of 60 degrees.
    sector = torch.stack(((g - b) / safe, (b - r) / safe + 2.0, (r - g) / safe + 4.0), dim=1)
    hue = sector.gather(1, argmax.unsqueeze(1)).squeeze(1)
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack((hue, saturation, value), dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """[N, 3, ...] HSV in [0, 1] -> RGB in [0, 1] (branch-free hexagon formula)."""
    hue, saturation, value = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    shape = [1, 3] + [1] * (hsv.dim() - 2)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(shape)
    k = (offsets + 6.0 * hue) % 6.0
    return value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
