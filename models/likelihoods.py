"""Decoder likelihoods p(x | z) per dataset kind."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

from genssl.errors import ConfigError, choices

LIKELIHOODS = ("bernoulli", "gaussian")
# Fixed observation variance of the official SimVAE code for colour images: log σ_x² = −4.6.
GAUSSIAN_LOG_VAR = -4.6


def observation(kind: str, decoded: torch.Tensor, log_var: float = GAUSSIAN_LOG_VAR) -> dist.Distribution:
    """Per-pixel likelihood with the decoder output as Bernoulli logits or Gaussian means.

    Grey levels in [0, 1] are scored as soft Bernoulli targets (the binary cross-entropy of the
    official code), hence ``validate_args=False``.
    """
    decoded = decoded.float()  # likelihoods stay in float32 under mixed precision
    if kind == "bernoulli":
        return dist.Bernoulli(logits=decoded, validate_args=False)
    if kind == "gaussian":
        return dist.Normal(decoded, math.exp(0.5 * log_var))
    raise ConfigError(f"Unknown likelihood '{kind}': data.likelihood must be {choices(LIKELIHOODS)}.")


def observation_mean(kind: str, decoded: torch.Tensor) -> torch.Tensor:
    """E[x | z] of the likelihood :func:`observation` builds: sigmoid(logits) or the Gaussian mean."""
    decoded = decoded.float()
    if kind == "bernoulli":
        return torch.sigmoid(decoded)
    if kind == "gaussian":
        return decoded
    raise ConfigError(f"Unknown likelihood '{kind}': data.likelihood must be {choices(LIKELIHOODS)}.")
