"""SimVAE and its special cases VAE and β-VAE as one Pyro model.

For B source images with J views each (x: [B, J, C, H, W]):

    y_i ~ p(y)                      content latent, any prior (see ``priors.py``)
    z_ij | y_i ~ N(y_i, σ² I)       view latent, σ² = ``view_var`` (0.15 in the official code)
    x_ij | z_ij ~ p_θ(x | z_ij)     decoder likelihood (Bernoulli logits or fixed-variance Gaussian)

With ``view_var=None`` there is no view conditional: every view is an image of its own whose latent
is drawn from the prior directly — the VAE, and with ``beta`` ≠ 1 the β-VAE.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from genssl.models.likelihoods import GAUSSIAN_LOG_VAR, observation, observation_mean

Prior = Callable[[int, int], torch.Tensor]


class SimVAE(PyroModule):
    """Generative SSL model p(x, z, y); its ELBO with :class:`~genssl.guides.NormalEncoderGuide` is the loss."""

    def __init__(
        self,
        decoder: nn.Module,
        prior: Prior,
        latent_dim: int,
        view_var: float | None = 0.15,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        integrate_content: bool = True,
        obs_log_var: float = GAUSSIAN_LOG_VAR,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.prior = prior
        self.latent_dim = latent_dim
        self.view_var = view_var
        self.likelihood = likelihood
        self.beta = beta
        self.obs_log_var = obs_log_var
        # y is integrated out when the prior has a closed-form view marginal (the flat prior).
        self.integrate_content = integrate_content and hasattr(prior, "view_marginal") and view_var is not None

    @property
    def is_vae(self) -> bool:
        return self.view_var is None

    @property
    def latent_site(self) -> str:
        """Name of the per-view latent the guide must sample: "y" for the VAE, "z" for SimVAE."""
        return "y" if self.is_vae else "z"

    @property
    def samples_content(self) -> bool:
        """Whether the guide must also propose the content latent y."""
        return not self.is_vae and not self.integrate_content

    def decode_mean(self, latent: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean E[x | z] for latents [..., L] → images [..., C, H, W] (decoder mean)."""
        return observation_mean(self.likelihood, self.decoder(latent))

    def log_likelihood(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over each image's pixels: x [..., C, H, W], z [..., L] → [...]."""
        return observation(self.likelihood, self.decoder(latent), self.obs_log_var).log_prob(x).sum((-3, -2, -1))

    def forward(self, x: torch.Tensor) -> None:
        batch, views = x.shape[:2]
        # Per-view normalisation: the loss is in nats per view, comparable across J and methods.
        with poutine.scale(scale=1.0 / (batch * views)):
            if self.is_vae:
                self._vae(x.flatten(0, 1))
            else:
                self._simvae(x)

    def _vae(self, x: torch.Tensor) -> None:
        with pyro.plate("images", x.shape[0]):
            with poutine.scale(scale=self.beta):
                y = self.prior(x.shape[0], self.latent_dim)
            self._observe(x, y, event_dims=3)

    def _simvae(self, x: torch.Tensor) -> None:
        batch, views = x.shape[:2]
        with pyro.plate("images", batch):
            with poutine.scale(scale=self.beta):
                if self.integrate_content:
                    z = pyro.sample("z", self.prior.view_marginal(self.view_var, views, self.latent_dim))
                else:
                    y = self.prior(batch, self.latent_dim)
                    loc = y.unsqueeze(-2).expand(*y.shape[:-1], views, self.latent_dim)
                    z = pyro.sample("z", dist.Normal(loc, self.view_var**0.5).to_event(2))
            self._observe(x, z, event_dims=4)

    def _observe(self, x: torch.Tensor, latent: torch.Tensor, event_dims: int) -> None:
        likelihood = observation(self.likelihood, self.decoder(latent), self.obs_log_var)
        pyro.sample("x", likelihood.to_event(event_dims), obs=x)
