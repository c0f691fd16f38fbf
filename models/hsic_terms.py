"""SSL-HSIC (Li et al., NeurIPS 2021) as ViewModel terms, with its learned kernel scale.

    −ELBO = −HSIC(Z, Y) + γ √HSIC(Z, Z)          (IMQ kernel, Y = image identity)

over the views' embeddings: the "z" site (no target network), or — with the distillation guide —
the online predictions and stop-gradient target projections of both views (four "views" per image,
the official setting). The kernel scale c is a parameter of this term; as in the official code the
HSIC terms see it detached, and a separate factor log |mean ∂k/∂c| (its gradient reaches only c,
the embeddings are detached there) learns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, ItemsView

import torch
from torch import nn

from genssl.models.view_model import Sites
from genssl.objectives import imq_scale_objective, ssl_hsic_loss


class SSLHSICTerms(nn.Module):
    """The two factors of SSL-HSIC: ``hsic`` (the loss) and ``kernel_scale`` (learns c)."""

    def __init__(self, gamma: float = 3.0, init_scale: float = 1.0, num_features: int | None = 512) -> None:
        super().__init__()
        self.gamma = gamma
        self.num_features = num_features
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    @staticmethod
    def embeddings(sites: Sites) -> torch.Tensor:
        """[B, M, D]: the target-network views when the guide has them, else the plain embeddings."""
        if "prediction" in sites and "target" in sites:
            return torch.cat([sites["prediction"], sites["target"]], dim=1)
        return sites["z"]

    def items(self) -> ItemsView[str, Callable[[Sites], torch.Tensor]]:
        return {"hsic": self.hsic, "kernel_scale": self.kernel_scale}.items()

    def hsic(self, sites: Sites) -> torch.Tensor:
        c = self.log_scale.exp().detach()
        return -ssl_hsic_loss(self.embeddings(sites), gamma=self.gamma, c=c, num_features=self.num_features)

    def kernel_scale(self, sites: Sites) -> torch.Tensor:
        z = torch.nn.functional.normalize(self.embeddings(sites).flatten(0, 1).detach(), dim=1)
        return imq_scale_objective(z, z, self.log_scale.exp())


def ssl_hsic_terms(gamma: float = 3.0, init_scale: float = 1.0, num_features: int | None = 512) -> SSLHSICTerms:
    return SSLHSICTerms(gamma, init_scale, num_features)
