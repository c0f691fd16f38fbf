"""What every genssl guide offers besides its Pyro program: the sites it proposes and the training hooks.

The training loop calls the hooks through :class:`~genssl.inference.hooks.TrainingHooks`; this base
class gives each a no-op default so a guide overrides only what it uses.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderGuide(nn.Module):
    """Base of the amortised guides: ``sites`` (name → width of each [B, J, width] site it proposes),
    ``represent`` (the downstream representation) and the loop's hooks.

    A plain module, not a PyroModule: Pyro's primitives need none, and a PyroModule's bookkeeping on
    every attribute access costs more than a small network's whole step."""

    # Whether forward() takes the images' dataset indices (per-image state, as DeepCluster's labels).
    uses_index: bool = False
    # Sites the guide proposes, with the width of each; the model scores exactly these.
    sites: dict[str, int]
    # Number of classes of a discrete content latent "y" the guide proposes (None: it proposes none).
    content_classes: int | None = None
    # The keys of the ``guide`` config block ``from_config`` reads, besides ``kind`` and ``projector``.
    config_keys: frozenset[str] = frozenset()

    def propose(self, views: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The values of the sites the guide proposes as point masses, for views [B, J, C, H, W]."""
        raise NotImplementedError(f"{type(self).__name__} does not propose point-mass sites")

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen representation of images [N, C, H, W] → [N, D] used by the evaluation."""
        raise NotImplementedError(f"{type(self).__name__} does not define its representation")

    def before_epoch(
        self, images: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> None:
        """Called with the uint8 training images at the start of every epoch (e.g. DeepCluster's k-means)."""

    def after_step(self, progress: float) -> None:
        """Called after every optimiser step with training progress in [0, 1] (e.g. EMA targets)."""
