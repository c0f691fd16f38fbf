"""Priors over the per-image content latent y.

A prior is any callable ``prior(batch_size, latent_dim) -> y`` that draws the content latent with
``pyro.sample("y", ...)`` and returns it with shape [batch_size, latent_dim]. SimVAE calls it
inside its ``images`` plate, so a prior declares one event dimension (``.to_event(1)``) and opens
no plate of its own. Learnable priors are ``PyroModule``s: their parameters train with the rest of
the model and are saved in the checkpoint. Plain functions may use ``pyro.param`` instead.

A prior that can be integrated out in closed form offers ``view_marginal(view_var, num_views,
latent_dim)``; SimVAE then scores the view latents under that marginal and samples no y. A proper
prior may also offer ``marginal(extra_var, latent_dim, device)``, the distribution of y + N(0, extra_var·I)
(one view's latent): the evaluation then bounds log p(x) in closed form instead of with Pyro's ELBO.

Example of a user prior, passed as ``model.prior._target_=mymodule.LaplacePrior +model.prior.scale=2``::

    class LaplacePrior(PyroModule):
        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = PyroParam(torch.tensor(scale), constraint=constraints.positive)

        def forward(self, batch_size, latent_dim):
            return pyro.sample("y", dist.Laplace(0.0, self.scale).expand([latent_dim]).to_event(1))
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from genssl.errors import ConfigError
from genssl.models.distributions import ClassUniform, FlatBaseMeasure, SphereUniform
from genssl.models.view_marginal import FlatViewMarginal


class NormalPrior(PyroModule):
    """y ~ N(0, scale² I) — the Gaussian the official SimVAE code puts on the content mean."""

    space = "euclidean"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        # Python-float parameters broadcast on any device.
        return pyro.sample("y", dist.Normal(0.0, self.scale).expand([latent_dim]).to_event(1))

    def marginal(self, extra_var: float, latent_dim: int, device: torch.device | None = None) -> dist.Distribution:
        """y + ε, ε ~ N(0, extra_var·I): N(0, (scale² + extra_var) I)."""
        scale = (self.scale**2 + extra_var) ** 0.5
        return dist.Normal(torch.zeros(latent_dim, device=device), scale).to_event(1)


class FlatPrior(PyroModule):
    """The paper's improper flat p(y); integrated out exactly by :class:`FlatViewMarginal`."""

    space = "euclidean"

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        # Only reached when SimVAE is told not to integrate y out; scores 0 everywhere.
        return pyro.sample("y", FlatBaseMeasure(constraints.real, (), (latent_dim,)))

    def view_marginal(self, view_var: float, num_views: int, latent_dim: int) -> FlatViewMarginal:
        return FlatViewMarginal(view_var, num_views, latent_dim)


class MixturePrior(PyroModule):
    """y ~ Σ_k π_k N(m_k, diag s_k²) with learnable weights π, means m and scales s.

    The component index is integrated out in closed form (``MixtureSameFamily``'s log-density), never
    sampled for the ELBO.
    """

    space = "euclidean"

    def __init__(
        self, latent_dim: int, num_components: int = 10, init_spread: float = 1.0, init_scale: float = 0.5
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.logits = PyroParam(torch.zeros(num_components))
        self.means = PyroParam(init_spread * torch.randn(num_components, latent_dim))
        self.scales = PyroParam(torch.full((num_components, latent_dim), init_scale), constraint=constraints.positive)

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        if latent_dim != self.latent_dim:
            raise ValueError(f"MixturePrior was built for latent_dim={self.latent_dim}, called with {latent_dim}")
        components = dist.Normal(self.means, self.scales).to_event(1)
        mixture = dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)
        return pyro.sample("y", mixture)

    def marginal(self, extra_var: float, latent_dim: int, device: torch.device | None = None) -> dist.Distribution:
        """y + ε, ε ~ N(0, extra_var·I): the same mixture with every component variance raised by extra_var."""
        components = dist.Normal(self.means, (self.scales**2 + extra_var).sqrt()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)


class UniformPrior(PyroModule):
    """The uniform distribution of the space the method's content latent lives in.

    Log-density 0 (relative to that space's uniform measure): the sphere's uniform for the vMF
    families, the uniform class marginal (equipartition) for the prototype / cluster families. The
    method's builder binds the space (``bind``); on R^d there is no uniform distribution — use
    ``model.prior=flat``.
    """

    space = "any"

    def __init__(self) -> None:
        super().__init__()
        self.bound_space: str | None = None

    def bind(self, space: str) -> None:
        """Fix the space: "sphere" or "classes"."""
        self.bound_space = space

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        if self.bound_space == "sphere":
            return pyro.sample("y", SphereUniform(latent_dim))
        if self.bound_space == "classes":
            return pyro.sample("y", ClassUniform(latent_dim))
        raise ConfigError(
            "model.prior=uniform needs a bounded space (the sphere or K classes); on R^d use model.prior=flat."
        )

    def class_log_probs(self, num_classes: int) -> None:
        """None: the uniform marginal, which the methods' equipartition already enforces."""
        return None
