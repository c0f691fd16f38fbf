"""Batched photometric operations with one parameter per image: colour jitter, grey, blur.

Every function takes float images ``[N, C, H, W]`` in [0, 1] and parameters of shape ``[N]``, runs
on the images' device with no Python loop over images, and keeps values in [0, 1]. Jitter follows
torchvision's ``ColorJitter`` definitions (blend with black, the mean grey level, the grey image;
hue rotation in HSV), clamping after each step as torchvision does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, the ones torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)


def grey(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 1, H, W] luma (identity for one channel)."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1).to(torch.float32)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale every pixel by ``factor`` (1 keeps the image, 0 gives black)."""
    return (images * _per_image(factor)).clamp(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level (1 keeps the image, 0 gives flat grey)."""
    mean = grey(images).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_image(factor)
    return (f * images + (1.0 - f) * mean).clamp(0.0, 1.0)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grey version (1 keeps the image, 0 gives grey); RGB only."""
    f = _per_image(factor)
    return (f * images + (1.0 - f) * grey(images)).clamp(0.0, 1.0)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (a fraction of the colour circle, in [-0.5, 0.5]); RGB only."""
    hue, saturation, value = rgb_to_hsv(images).unbind(dim=1)
    hue = (hue + shift.view(-1, 1, 1).to(hue.dtype)) % 1.0
    return hsv_to_rgb(torch.stack((hue, saturation, value), dim=1))


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


def to_greyscale(images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``chosen`` (bool [N]) by their luma on every channel."""
    return torch.where(chosen.view(-1, 1, 1, 1), grey(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` per image; sigma 0 leaves the image unchanged.

    Per-image kernels become one grouped convolution (a group per image channel), so the whole
    batch is a single pair of conv calls. Borders are reflected, as in torchvision.
    """
    n, c, h, w = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    # A sigma of 0 gives exp(-inf) = 0 off centre: an exact identity kernel.
    s = sigma.to(torch.float32).clamp(min=1e-6).view(-1, 1)
    kernel = torch.exp(-(offsets**2) / (2.0 * s**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N*C, K]
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return x.view(n, c, h, w).clamp(0.0, 1.0)
