"""Priors on the unit sphere S^{d−1}, where the contrastive and distillation families' content latent lives.

Densities are relative to the sphere's uniform probability measure (see ``distributions.py``), so
:class:`~genssl.models.priors.UniformPrior` scores 0 and leaves SimCLR / BYOL exactly as published.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from genssl.models.distributions import VonMisesFisher


class VMFMixturePrior(PyroModule):
    """y ~ Σ_k π_k vMF(μ_k, κ_k): a mixture of von Mises–Fisher clusters on the sphere.

    With ``learnable`` the weights π, mean directions μ and concentrations κ train with the model:
    on SimCLR this turns the uniformity of InfoNCE into a pull of every image towards one of K
    clusters (a clustering method). The component index is integrated out in closed form.

    Args:
        latent_dim: d, the ambient dimension of the sphere (the projection width).
        num_components: K.
        init_concentration: κ_k at the start (the same for all).
        learnable: train π, μ and κ (False keeps them fixed at their initial values).
    """

    space = "sphere"

    def __init__(
        self, latent_dim: int, num_components: int = 10, init_concentration: float = 10.0, learnable: bool = True
    ) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        logits = torch.zeros(num_components)
        means = F.normalize(torch.randn(num_components, self.latent_dim), dim=1)
        concentrations = torch.full((num_components,), float(init_concentration))
        if learnable:
            self.logits = PyroParam(logits)
            self.means = PyroParam(means)
            self.concentrations = PyroParam(concentrations, constraint=constraints.positive)
        else:
            self.register_buffer("logits", logits)
            self.register_buffer("means", means)
            self.register_buffer("concentrations", concentrations)

    def distribution(self) -> dist.Distribution:
        """The mixture as a distribution over unit vectors [d]."""
        components = VonMisesFisher(self.means, self.concentrations)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        if latent_dim != self.latent_dim:
            raise ValueError(f"VMFMixturePrior was built for latent_dim={self.latent_dim}, called with {latent_dim}")
        return pyro.sample("y", self.distribution())
