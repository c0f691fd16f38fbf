"""What the evaluation asks of a model with a decoder, as a protocol any generative model can satisfy."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class GenerativeModel(Protocol):
    """A model that decodes latents to images and can be sampled and bounded (e.g. :class:`SimVAE`)."""

    latent_dim: int

    def decode_mean(self, latent: torch.Tensor) -> torch.Tensor:
        """E[x | z] for latents [..., L] → images [..., C, H, W]."""
        ...

    def sample_view_latents(self, num_images: int) -> torch.Tensor | None:
        """Latents [n, L] of one view of n images drawn from the model; None if it cannot be sampled."""
        ...

    def evidence_lower_bound(self, guide: nn.Module, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor | None:
        """Σ over images x [N, C, H, W] of a lower bound on log p(x); None where p(x) does not exist."""
        ...
