"""ResNet-18 encoder with the CIFAR stem and a mirrored residual decoder.

The CIFAR stem (3×3 stride-1 first convolution, no max-pool) keeps small images at full
resolution for the first stage, as in SimCLR's CIFAR experiments and the SimVAE code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet18

DECODER_WIDTHS = (512, 256, 128, 64)


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 with a CIFAR stem; outputs the 512-d pooled features."""

    def __init__(self, channels: int, image_size: int) -> None:
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _UpBlock(nn.Module):
    """Residual block that doubles the resolution (nearest up-sampling then two 3×3 convolutions)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ResNet18Decoder(nn.Module):
    """Latent → 4×4×512 → residual up-sampling stages → image (32 px: 3 stages, 64 px: 4)."""

    def __init__(self, latent_dim: int, channels: int, image_size: int) -> None:
        super().__init__()
        stages = {32: 3, 64: 4}[image_size]
        widths = (*DECODER_WIDTHS, DECODER_WIDTHS[-1])[: stages + 1]
        self.project = nn.Linear(latent_dim, widths[0] * 16)
        self.blocks = nn.Sequential(*[_UpBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.width = widths[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, self.width, 4, 4)
        out = self.head(self.blocks(h))
        return out.reshape(*lead, *out.shape[1:])
