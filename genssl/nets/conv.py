"""Small convolutional encoder/decoder pairs for 28, 32 and 64 pixel images.

Each stride-2 stage halves the resolution; the decoder mirrors the encoder with transposed
convolutions, so that a latent code decodes to exactly the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Per input size: channels of the stride-2 stages. 28 → 14 → 7 → 4 (padding keeps 7 → 4).
CONV_STAGES: dict[int, tuple[int, ...]] = {28: (32, 64, 128), 32: (32, 64, 128), 64: (32, 64, 128, 256)}


def _spatial_sizes(image_size: int, stages: int) -> list[int]:
    sizes = [image_size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 3×3 convolutions with ReLU, then a linear layer to ``out_features`` features."""

    def __init__(self, channels: int, image_size: int, widths: Sequence[int], out_features: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        final = _spatial_sizes(image_size, len(widths))[-1]
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * final * final, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder` built from transposed convolutions."""

    def __init__(
        self, latent_dim: int, channels: int, image_size: int, widths: Sequence[int], hidden: int = 256
    ) -> None:
        super().__init__()
        sizes = _spatial_sizes(image_size, len(widths))
        widths = list(reversed(widths))
        self.start = (widths[0], sizes[-1], sizes[-1])
        self.project = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, widths[0] * sizes[-1] ** 2), nn.ReLU()
        )
        layers: list[nn.Module] = []
        targets = list(reversed(sizes[:-1]))  # spatial size after each up-sampling stage
        for i, target in enumerate(targets):
            c_in = widths[i]
            c_out = widths[i + 1] if i + 1 < len(widths) else channels
            # output_padding picks the even/odd target size (e.g. 4 → 7 needs 0, 7 → 14 needs 1).
            current = sizes[len(sizes) - 1 - i]
            out_pad = target - ((current - 1) * 2 - 2 + 3)
            layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=out_pad))
            if i + 1 < len(targets):
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.body(h)
        return out.reshape(*lead, *out.shape[1:])
