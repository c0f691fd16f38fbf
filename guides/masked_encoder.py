"""Point-mass guide of the masked family (MAE, U-MAE, M-MAE): the encoder of the visible patches.

For views x [B, J, C, H, W] the guide draws a random patch mask m per view (uniform over the
subsets that hide a fixed fraction of the patches) and proposes, as point masses,

    q(m, c, t | x) = δ(m − m̃) · δ(c − f_cls(x_vis(m̃))) · δ(t − f_tok(x_vis(m̃)))

at three sites under the ``images`` plate: "mask" [B, J, L] (1 = hidden patch), "cls" [B, J, D]
(the [CLS] embedding) and "tokens" [B, J, L_vis, D] (the visible patch tokens). Delta sites have
zero entropy and the model puts flat base measures on all three, so the ELBO is the model's
likelihood of the hidden patches plus its regulariser (see ``genssl.models.masked``).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from genssl.guides.base import EncoderGuide
from genssl.nets.masking import random_patch_mask, visible_count
from genssl.nets.vit import ViTEncoder


class MaskedEncoderGuide(EncoderGuide):
    """Samples "mask", "cls" and "tokens" as point masses; ``represent`` is the unmasked [CLS] feature."""

    def __init__(self, encoder: ViTEncoder, mask_ratio: float = 0.75) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.num_visible = visible_count(encoder.num_patches, self.mask_ratio)  # checks the ratio early
        # Widths: one mask entry per patch; the [CLS] and visible-token embeddings are the encoder's width.
        self.sites = {"mask": encoder.num_patches, "cls": encoder.width, "tokens": encoder.width}

    def propose(
        self, views: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mask [B, J, L], cls [B, J, D], tokens [B, J, L_vis, D]) for views [B, J, C, H, W].

        A fresh mask is drawn per view from torch's global generator unless ``mask`` is given.
        """
        batch, num_views = views.shape[:2]
        flat = views.flatten(0, 1)
        keep = None  # a given mask's visible count is counted and checked
        if mask is None:
            mask = random_patch_mask(len(flat), self.encoder.num_patches, self.mask_ratio, device=views.device)
            keep = self.num_visible
        else:
            mask = mask.flatten(0, 1)
        tokens = self.encoder.encode_masked(flat, mask, keep).float()
        unflat = (batch, num_views)
        return mask.unflatten(0, unflat), tokens[:, 0].unflatten(0, unflat), tokens[:, 1:].unflatten(0, unflat)

    @torch.no_grad()
    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """[CLS] feature of the whole, unmasked image [N, C, H, W] → [N, D], encoder in eval mode."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(images)
        finally:
            self.encoder.train(was_training)

    def forward(self, views: torch.Tensor) -> None:
        mask, cls, tokens = self.propose(views)
        with pyro.plate("images", views.shape[0]):
            for name, value in (("mask", mask), ("cls", cls), ("tokens", tokens)):
                pyro.sample(name, dist.Delta(value, event_dim=value.dim() - 1))
