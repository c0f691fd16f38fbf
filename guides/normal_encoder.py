"""Amortised Normal encoder guide: q(z_ij | x_ij) = N(μ_φ(x_ij), diag σ_φ²(x_ij)).

When the model samples the content latent (a prior that is not integrated out), the guide also
proposes q(y_i | x_i·) = N(mean_j μ_φ(x_ij), diag τ²) with a learnable τ, initialised at the
posterior scale σ/√J that a flat prior would give. It depends on x only, not on the sampled z, so
the guide stays mean-field and Pyro's analytic-KL ELBO applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from genssl.guides.base import EncoderGuide
from genssl.prior_contract import run_prior_global_guide, run_prior_guide

MIN_SCALE = 1e-4


class NormalEncoderGuide(EncoderGuide):
    """Guide for :class:`~genssl.models.SimVAE` built on any feature encoder with ``out_features``."""

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        latent_site: str = "z",
        samples_content: bool = False,
        view_var: float | None = None,
        num_views: int = 2,
        beta: float = 1.0,
        prior: Callable | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.loc = nn.Linear(encoder.out_features, latent_dim)
        self.scale = nn.Linear(encoder.out_features, latent_dim)
        self.latent_site = latent_site
        self.samples_content = samples_content
        self.beta = beta
        # The model's prior, held by reference (not a second submodule): its own latents' guide runs here.
        object.__setattr__(self, "_prior", prior)
        self.sites = {latent_site: latent_dim, **({"y": latent_dim} if samples_content else {})}
        if samples_content:
            init = math.sqrt((view_var or 1.0) / num_views)
            self.content_log_scale = nn.Parameter(torch.full((latent_dim,), math.log(init)))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior location and scale for images [..., C, H, W] → two tensors [..., latent_dim]."""
        lead = images.shape[:-3]
        h = self.encoder(images.reshape(-1, *images.shape[-3:]))
        loc = self.loc(h).float()
        scale = F.softplus(self.scale(h).float()) + MIN_SCALE
        return loc.reshape(*lead, -1), scale.reshape(*lead, -1)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """The representation used downstream: the posterior mean μ_φ(x)."""
        return self.encode(images)[0]

    def forward(self, x: torch.Tensor, beta: float | None = None) -> None:
        """q(z | x) for views x [B, J, C, H, W]; ``beta`` (default: the model's β) weights the latents' terms."""
        batch, views = x.shape[:2]
        beta = self.beta if beta is None else beta
        loc, scale = self.encode(x)  # [B, J, L]
        with poutine.scale(scale=1.0 / (batch * views)):
            with poutine.scale(scale=beta):
                run_prior_global_guide(self._prior)
            if self.latent_site == "y":  # VAE: each view is an image of its own
                with pyro.plate("images", batch * views), poutine.scale(scale=beta):
                    run_prior_guide(self._prior, batch * views, loc.shape[-1])
                    pyro.sample("y", dist.Normal(loc.flatten(0, 1), scale.flatten(0, 1)).to_event(1))
                return
            with pyro.plate("images", batch), poutine.scale(scale=beta):
                if self.samples_content:
                    run_prior_guide(self._prior, batch, loc.shape[-1])
                # Sites in the model's order (y, then z) so Pyro can verify the mean-field guide.
                if self.samples_content:
                    pyro.sample("y", dist.Normal(loc.mean(1), self.content_log_scale.exp()).to_event(1))
                pyro.sample("z", dist.Normal(loc, scale).to_event(2))
