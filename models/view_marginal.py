"""The view marginal of SimVAE under a flat content prior, with y integrated out analytically.

For one source image with J views and latent dimension L,

    p(z_1..z_J) = ∫ Π_j N(z_j; y, σ² I) dy
               = (2πσ²)^{-(J-1)L/2} · J^{-L/2} · exp(-Σ_j ‖z_j − z̄‖² / (2σ²)),   z̄ = mean_j z_j,

a density on the subspace orthogonal to the mean. It is improper as a distribution over all of
R^{J×L} (it cannot be sampled) but is exactly the term the paper's objective needs.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import Independent, Normal, TorchDistribution, constraints
from torch.distributions import kl_divergence, register_kl

EMPTY = torch.Size()


class FlatViewMarginal(TorchDistribution):
    """Log-density of J views' latents [..., J, L] after integrating out a flat content latent."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(
        self,
        view_var: float,
        num_views: int,
        latent_dim: int,
        batch_shape: torch.Size = EMPTY,
        validate_args: bool | None = None,
    ) -> None:
        self.view_var = float(view_var)
        self.num_views = int(num_views)
        self.latent_dim = int(latent_dim)
        super().__init__(torch.Size(batch_shape), torch.Size((num_views, latent_dim)), validate_args=False)

    @property
    def log_normaliser(self) -> float:
        """−(J−1)L/2 · log(2πσ²) − L/2 · log J."""
        j, l = self.num_views, self.latent_dim
        return -0.5 * (j - 1) * l * math.log(2 * math.pi * self.view_var) - 0.5 * l * math.log(j)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        spread = (value - value.mean(-2, keepdim=True)).pow(2).sum((-2, -1))
        return self.log_normaliser - spread / (2 * self.view_var)

    def expand(self, batch_shape: torch.Size, _instance: FlatViewMarginal | None = None) -> FlatViewMarginal:
        return FlatViewMarginal(self.view_var, self.num_views, self.latent_dim, torch.Size(batch_shape))

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        raise NotImplementedError(
            "A flat content prior is improper and cannot be sampled; choose model.prior=normal or mog "
            "to draw samples from the model."
        )


@register_kl(Independent, FlatViewMarginal)
def _kl_normal_flat_marginal(q: Independent, p: FlatViewMarginal) -> torch.Tensor:
    """E_q[log q − log p] in closed form for a diagonal Normal q over [J, L].

    With z_j ~ N(μ_j, diag s_j²): E Σ_j ‖z_j − z̄‖² = Σ_j ‖μ_j − μ̄‖² + (1 − 1/J) Σ_j Σ_l s_jl².
    """
    base = q.base_dist
    if not isinstance(base, Normal) or q.reinterpreted_batch_ndims != 2:
        raise NotImplementedError
    loc, scale = base.loc, base.scale
    spread = (loc - loc.mean(-2, keepdim=True)).pow(2).sum((-2, -1))
    spread = spread + (1 - 1 / p.num_views) * scale.pow(2).sum((-2, -1))
    return -q.entropy() - p.log_normaliser + spread / (2 * p.view_var)


__all__ = ["FlatViewMarginal", "kl_divergence"]
