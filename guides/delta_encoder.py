"""Point-embedding guide for discriminative methods: q(z_ij | x_ij) = δ(z_ij − g(f(x_ij))).

f is the encoder, g the projection head; the representation used downstream is f(x), before the
head (as in SimCLR). A Delta guide has zero entropy, so the ELBO of the pair is the model's
log-density of the embeddings alone: the method's objective.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from omegaconf import DictConfig
from torch import nn

from genssl.guides.base import EncoderGuide


def embed_views(encoder: nn.Module, projector: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """g(f(x)) for views [B, J, C, H, W] → [B, J, D]."""
    batch, num_views = views.shape[:2]
    # View-major order keeps each view's images together for BatchNorm, as in two-branch code.
    flat = views.transpose(0, 1).flatten(0, 1)
    z = projector(encoder(flat)).float()
    return z.unflatten(0, (num_views, batch)).transpose(0, 1)


def output_width(projector: nn.Module) -> int:
    """Width of a projection head's output: its last layer's ``out_features``."""
    last = projector[-1] if isinstance(projector, nn.Sequential) else projector
    return int(last.out_features)


def sample_point_sites(sites: dict[str, torch.Tensor]) -> None:
    """Sample each [B, J, D] embedding as a point mass under the ``images`` plate."""
    batch = next(iter(sites.values())).shape[0]
    with pyro.plate("images", batch):
        for name, value in sites.items():
            pyro.sample(name, dist.Delta(value, event_dim=2))


class DeltaEncoderGuide(EncoderGuide):
    """Samples the site "z" ([B, J, D] embeddings of every view) as a point mass."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.sites = {"z": output_width(projector)}

    @classmethod
    def from_config(cls, cfg: DictConfig, encoder: nn.Module, projector: nn.Module) -> DeltaEncoderGuide:
        """The plain point-embedding guide (``guide.kind=delta``) takes no settings besides the projector."""
        return cls(encoder, projector)

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """Projected embeddings of views [B, J, C, H, W] → [B, J, D]."""
        return embed_views(self.encoder, self.projector, views)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """The downstream representation: encoder features before the projection head."""
        return self.encoder(images)

    def propose(self, views: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The point-mass sites: {"z": [B, J, D]}."""
        return {"z": self.embed(views)}

    def forward(self, views: torch.Tensor) -> None:
        sample_point_sites(self.propose(views))
