"""SimVAE and its special cases VAE and β-VAE as one Pyro model.

For B source images with J views each (x: [B, J, C, H, W]):

    y_i ~ p(y)                      content latent, any prior (see ``priors.py``)
    z_ij | y_i ~ N(y_i, σ² I)       view latent, σ² = ``view_var`` (0.15 in the official code)
    x_ij | z_ij ~ p_θ(x | z_ij)     decoder likelihood (Bernoulli logits or fixed-variance Gaussian)

With ``view_var=None`` there is no view conditional: every view is an image of its own whose latent
is drawn from the prior directly — the VAE, and with ``beta`` ≠ 1 the β-VAE.

The model also answers the evaluation's questions about itself: :meth:`SimVAE.generate` is the same
program with x unobserved (``pyro.infer.Predictive`` draws from it), :meth:`SimVAE.sample_view_latents`
draws latents of new images, and :meth:`SimVAE.evidence_lower_bound` bounds log p(x) of single images.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO, config_enumerate
from torch import nn
from torch.distributions import kl_divergence

from genssl.models.likelihoods import GAUSSIAN_LOG_VAR, observation, observation_mean
from genssl.prior_contract import run_prior_globals

Prior = Callable[[int, int], torch.Tensor]


class SimVAE(nn.Module):
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
        enumerate_prior: bool = False,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.prior = prior
        self.latent_dim = latent_dim
        self.view_var = view_var
        self.likelihood = likelihood
        self.beta = beta
        self.obs_log_var = obs_log_var
        # The prior's own discrete latents (a mixture component) are enumerated exactly (model.elbo=enum).
        self.enumerate_prior = bool(enumerate_prior)
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

    def forward(self, x: torch.Tensor, beta: float | None = None) -> None:
        """The model of views x [B, J, C, H, W]; ``beta`` (default: the model's β) weights the latents' terms."""
        batch, views = x.shape[:2]
        self._program(batch, views, x, self.beta if beta is None else beta)

    def generate(self, num_images: int, num_views: int = 1) -> None:
        """The same program with x unobserved: ``Predictive(model.generate, ...)`` draws y, z and images."""
        self._program(num_images, num_views, None, 1.0)

    def _content_prior(self, batch: int) -> torch.Tensor:
        prior = config_enumerate(self.prior, default="parallel") if self.enumerate_prior else self.prior
        return prior(batch, self.latent_dim)

    def _program(self, batch: int, views: int, x: torch.Tensor | None, beta: float) -> None:
        # Per-view normalisation: the loss is in nats per view, comparable across J and methods.
        with poutine.scale(scale=1.0 / (batch * views)):
            with poutine.scale(scale=beta):
                run_prior_globals(self.prior)
            if self.is_vae:
                self._vae(batch * views, None if x is None else x.flatten(0, 1), beta)
            else:
                self._simvae(batch, views, x, beta)

    def _vae(self, num_images: int, x: torch.Tensor | None, beta: float) -> None:
        with pyro.plate("images", num_images):
            with poutine.scale(scale=beta):
                y = self._content_prior(num_images)
            self._observe(x, y, event_dims=3)

    def _simvae(self, batch: int, views: int, x: torch.Tensor | None, beta: float) -> None:
        with pyro.plate("images", batch):
            with poutine.scale(scale=beta):
                if self.integrate_content:
                    z = pyro.sample("z", self.prior.view_marginal(self.view_var, views, self.latent_dim))
                else:
                    y = self._content_prior(batch)
                    loc = y.unsqueeze(-2).expand(*y.shape[:-1], views, self.latent_dim)
                    z = pyro.sample("z", dist.Normal(loc, self.view_var**0.5).to_event(2))
            self._observe(x, z, event_dims=4)

    def _observe(self, x: torch.Tensor | None, latent: torch.Tensor, event_dims: int) -> None:
        likelihood = observation(self.likelihood, self.decoder(latent), self.obs_log_var)
        pyro.sample("x", likelihood.to_event(event_dims), obs=x)

    # What the evaluation asks of a generative model.

    def sample_view_latents(self, num_images: int) -> torch.Tensor | None:
        """Latents [n, L] of one view of each of n new images, drawn from the model (y ~ p(y), then
        z | y); None when the prior cannot be sampled (an improper prior, such as the flat one)."""
        try:
            trace = poutine.trace(self.generate).get_trace(num_images, 1)
        except NotImplementedError:  # improper distributions have no sampler
            return None
        # A flat measure's placeholder draws (zeros, for Pyro's tracing tools) are not samples either.
        if any(isinstance(site["fn"], dist.ImproperUniform) for _, site in trace.iter_stochastic_nodes()):
            return None
        return trace.nodes[self.latent_site]["value"].reshape(num_images, self.latent_dim)

    def single_view_marginal(self) -> dist.Distribution | None:
        """p(z) of one view, y integrated out, when the prior offers it in closed form (``prior.marginal``);
        None otherwise."""
        marginal = getattr(self.prior, "marginal", None)
        device = next(self.decoder.parameters()).device
        return None if marginal is None else marginal(self.view_var or 0.0, self.latent_dim, device)

    def evidence_lower_bound(self, guide: nn.Module, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor | None:
        """Σ over images of a lower bound on log p(x_i) for single images x [N, C, H, W] in [0, 1]; None
        where p(x) does not exist (an improper prior).

        With the prior's closed-form single-view marginal p(z): E_q[log p(x | z)] − KL(q(z | x) ‖ p(z))
        (analytic KL where torch has it, else Monte Carlo on the same samples). Otherwise Pyro's own
        mean-field ELBO of this model and ``guide`` on one view per image at β = 1, which also proposes
        y: still a bound on log p(x), a looser one.
        """
        if not self._prior_is_proper():
            return None
        marginal = self.single_view_marginal()
        if marginal is None:
            per_image = -TraceMeanField_ELBO().loss(self, guide, x.unsqueeze(1), beta=1.0)
            return torch.as_tensor(per_image * len(x))  # the model normalises per view: one view per image
        loc, scale = guide.encode(x)
        q = dist.Normal(loc, scale).to_event(1)
        z = q.rsample((num_samples,))  # [S, N, L]
        expected_ll = self.log_likelihood(x.expand(num_samples, *x.shape), z).mean(0)
        try:
            kl = kl_divergence(q, marginal)
        except NotImplementedError:
            kl = (q.log_prob(z) - marginal.log_prob(z)).mean(0)
        return (expected_ll - kl).sum()

    def _prior_is_proper(self) -> bool:
        """Whether the prior can be sampled (improper distributions have no sampler); leaves the RNG alone."""
        device = next(self.decoder.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), poutine.block():
            return self.sample_view_latents(1) is not None
