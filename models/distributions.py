"""Distributions on the content latent's spaces that Pyro does not ship: the sphere and K classes.

Densities here are taken with respect to the *uniform probability measure* of their space (the
normalised surface measure on S^{d−1}, the uniform distribution on {0, …, K−1}), so the uniform prior
of each space has log-density 0 and the default priors leave a method's loss exactly as published.
Any other prior differs from the usual convention by a constant (log |S^{d−1}| or log K).
"""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints

from genssl.objectives import log_bessel_iv

EMPTY = torch.Size()


def broadcast(*shapes: tuple[int, ...]) -> torch.Size:
    """torch.broadcast_shapes without its overhead (it costs tens of µs a call: this runs every step)."""
    length = max(len(s) for s in shapes)
    out = [1] * length
    for shape in shapes:
        for i, size in enumerate(shape, start=length - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                out[i] = size
    return torch.Size(out)


class _LogBesselIv(torch.autograd.Function):
    """log I_ν(κ) elementwise, differentiable in κ: d/dκ log I_ν(κ) = I_{ν+1}(κ)/I_ν(κ) + ν/κ."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, nu: float, kappa: torch.Tensor) -> torch.Tensor:
        values = kappa.detach().double().cpu().numpy()
        log_iv = np.vectorize(lambda k: log_bessel_iv(nu, k))(values)
        log_next = np.vectorize(lambda k: log_bessel_iv(nu + 1.0, k))(values)
        ctx.save_for_backward(kappa, torch.as_tensor(np.exp(log_next - log_iv), dtype=kappa.dtype, device=kappa.device))
        ctx.nu = nu
        return torch.as_tensor(log_iv, dtype=kappa.dtype, device=kappa.device)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        kappa, ratio = ctx.saved_tensors
        return None, grad * (ratio + ctx.nu / kappa)


def log_vmf_normaliser_uniform(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """log of the vMF normaliser relative to the uniform probability measure on S^{d−1}:

        log(C_d(κ)·|S^{d−1}|) = (d/2 − 1)·log(κ/2) − log I_{d/2−1}(κ) − log Γ(d/2),

    which tends to 0 as κ → 0 (the vMF becomes uniform). Differentiable in κ.
    """
    nu = dim / 2.0 - 1.0
    kappa = kappa.clamp_min(1e-6)
    return nu * torch.log(kappa / 2.0) - _LogBesselIv.apply(nu, kappa) - math.lgamma(dim / 2.0)


def sample_vmf(loc: torch.Tensor, concentration: torch.Tensor, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
    """Draws from vMF(μ, κ) on S^{d−1} by Wood's (1994) rejection sampler of the cosine w = μᵀx,
    then a uniform direction orthogonal to μ; loc [..., d] unit, concentration [...]."""
    shape = torch.Size(sample_shape) + broadcast(loc.shape[:-1], concentration.shape)
    d = loc.shape[-1]
    mu = loc.expand(*shape, d)
    kappa = concentration.expand(shape).to(loc.dtype)
    # b = (d−1) / (2κ + √(4κ² + (d−1)²)): Wood's b in the form without cancellation at large κ.
    b = (d - 1) / (2 * kappa + torch.sqrt(4 * kappa**2 + (d - 1) ** 2))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (d - 1) * torch.log1p(-(x0**2))
    beta = torch.distributions.Beta(torch.tensor((d - 1) / 2.0), torch.tensor((d - 1) / 2.0))
    w = torch.empty(shape, dtype=loc.dtype, device=loc.device)
    pending = torch.ones(shape, dtype=torch.bool, device=loc.device)
    while pending.any():
        z = beta.sample(shape).to(loc.device, loc.dtype)
        proposal = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        u = torch.rand(shape, dtype=loc.dtype, device=loc.device)
        accept = kappa * proposal + (d - 1) * torch.log1p(-x0 * proposal) - c >= torch.log(u)
        take = pending & accept
        w = torch.where(take, proposal, w)
        pending = pending & ~accept
    v = F.normalize(torch.randn(*shape, d, dtype=loc.dtype, device=loc.device), dim=-1)
    v = F.normalize(v - (v * mu).sum(-1, keepdim=True) * mu, dim=-1)  # orthogonal to μ
    return w.unsqueeze(-1) * mu + torch.sqrt((1 - w**2).clamp_min(0)).unsqueeze(-1) * v


class VonMisesFisher(TorchDistribution):
    """vMF(μ, κ) on S^{d−1}, density relative to the uniform probability measure:
    log p(x) = κ μᵀx̂ + log(C_d(κ)|S^{d−1}|). Inputs are normalised before scoring (x̂ = x/‖x‖)."""

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.sphere
    has_rsample = False

    def __init__(
        self, loc: torch.Tensor, concentration: torch.Tensor | float, validate_args: bool | None = None
    ) -> None:
        self.loc = F.normalize(loc, dim=-1)
        self.concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        batch_shape = broadcast(self.loc.shape[:-1], self.concentration.shape)
        super().__init__(batch_shape, self.loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: VonMisesFisher | None = None) -> VonMisesFisher:
        batch_shape = torch.Size(batch_shape)
        return VonMisesFisher(
            self.loc.expand(*batch_shape, self.event_shape[0]), self.concentration.expand(batch_shape)
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cosine = (F.normalize(value, dim=-1) * self.loc).sum(-1)
        return self.concentration * cosine + log_vmf_normaliser_uniform(self.event_shape[0], self.concentration)

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        with torch.no_grad():
            return sample_vmf(self.loc, self.concentration, sample_shape)


class SphereUniform(TorchDistribution):
    """The uniform distribution on S^{d−1}: log-density 0 relative to itself, sampled as ĝ, g ~ N(0, I)."""

    arg_constraints: dict = {}
    support = constraints.sphere

    def __init__(self, dim: int, batch_shape: torch.Size = EMPTY, validate_args: bool | None = None) -> None:
        self.dim = int(dim)
        super().__init__(torch.Size(batch_shape), torch.Size((self.dim,)), validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: SphereUniform | None = None) -> SphereUniform:
        return SphereUniform(self.dim, torch.Size(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return value.new_zeros(broadcast(value.shape[:-1], self.batch_shape))

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        return F.normalize(torch.randn(shape), dim=-1)


class UniformRelativeCategorical(dist.Categorical):
    """Categorical(π) whose log-density is taken relative to the uniform distribution on its K classes,
    log p(k) = log(K π_k): 0 everywhere for the uniform π (see the module docstring)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value) + math.log(self._num_events)

    def expand(
        self, batch_shape: torch.Size, _instance: UniformRelativeCategorical | None = None
    ) -> UniformRelativeCategorical:
        new = self._get_checked_instance(UniformRelativeCategorical, _instance)
        return super().expand(batch_shape, _instance=new)


class ClassUniform(TorchDistribution):
    """The uniform distribution on {0, …, K−1}: log-density 0 relative to itself, on any device."""

    arg_constraints: dict = {}
    has_enumerate_support = True

    def __init__(self, num_classes: int, batch_shape: torch.Size = EMPTY, validate_args: bool | None = None) -> None:
        self.num_classes = int(num_classes)
        super().__init__(torch.Size(batch_shape), EMPTY, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_classes - 1)

    def expand(self, batch_shape: torch.Size, _instance: ClassUniform | None = None) -> ClassUniform:
        return ClassUniform(self.num_classes, torch.Size(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros(broadcast(value.shape, self.batch_shape), device=value.device)

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        return torch.randint(self.num_classes, torch.Size(sample_shape) + self.batch_shape)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        values = torch.arange(self.num_classes).view((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


class FlatBaseMeasure(dist.ImproperUniform):
    """The improper flat base measure of a point-embedding site (log-density 0 everywhere).

    A flat measure has no draws; ``sample`` returns zeros so that Pyro's tools that run the model
    without a guide (``pyro.render_model``, prior ``Predictive``) can still trace it. Those zeros
    are placeholders, not samples: draw these sites from the guide (posterior predictive) instead.
    """

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        return torch.zeros(torch.Size(sample_shape) + self.batch_shape + self.event_shape)

    def expand(self, batch_shape: torch.Size, _instance: FlatBaseMeasure | None = None) -> FlatBaseMeasure:
        new = self._get_checked_instance(FlatBaseMeasure, _instance)
        return super().expand(batch_shape, _instance=new)
