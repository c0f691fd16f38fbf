"""Fully connected encoder/decoder with the official SimVAE sizes (784-2000-500-500, mirrored)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SIMVAE_HIDDEN = (2000, 500, 500)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattens an image and maps it through ReLU layers to ``out_features`` features."""

    def __init__(self, channels: int, image_size: int, hidden: Sequence[int] = SIMVAE_HIDDEN) -> None:
        super().__init__()
        self.in_features = channels * image_size * image_size
        self.body = nn.Sequential(_mlp([self.in_features, *hidden]), nn.ReLU())
        self.out_features = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


class MLPDecoder(nn.Module):
    """Mirror of :class:`MLPEncoder`: latent → image-shaped logits or means."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, hidden: Sequence[int] = SIMVAE_HIDDEN) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.body = _mlp([latent_dim, *reversed(hidden), channels * image_size * image_size])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).unflatten(-1, self.shape)
