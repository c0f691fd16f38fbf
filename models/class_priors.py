"""Priors over the K prototypes / clusters, where the SwAV, DINO and DeepCluster families' content latent lives.

A class prior is a distribution over {0, …, K−1}; besides the log p(y) term of the ELBO (which trains
a learnable marginal), its marginal π replaces the uniform one wherever the method enforces it:
Sinkhorn–Knopp's prototype masses (SwAV), the teacher's distribution (DINO, tilted by π) and the ER
entropy of the mean assignment, which becomes −KL(p̄ ‖ π). ``class_log_probs(K)`` gives log π.
Densities are relative to the uniform class distribution, so the uniform prior scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from pyro.nn import PyroModule, PyroParam

from genssl.errors import ConfigError
from genssl.models.distributions import UniformRelativeCategorical


class _ClassPrior(PyroModule):
    space = "classes"

    def class_log_probs(self, num_classes: int) -> torch.Tensor:
        """log π over the K classes."""
        raise NotImplementedError

    def forward(self, batch_size: int, num_classes: int) -> torch.Tensor:
        return pyro.sample("y", UniformRelativeCategorical(logits=self.class_log_probs(num_classes)))


class PowerLawPrior(_ClassPrior):
    """π_k ∝ (k + 1)^(−α): a long-tailed class marginal (α = 0 is uniform; Assran et al.'s PMSN prior).

    Prototype 0 is the most frequent class; the prior breaks the prototypes' symmetry and the
    assignments follow it. With ``learnable`` the exponent trains with the model.
    """

    def __init__(self, num_classes: int, exponent: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        exponent_t = torch.tensor(float(exponent))
        if learnable:
            self.exponent = PyroParam(exponent_t)
        else:
            self.register_buffer("exponent", exponent_t)

    def class_log_probs(self, num_classes: int) -> torch.Tensor:
        _check_classes(self.num_classes, num_classes)
        ranks = torch.arange(1, num_classes + 1, dtype=torch.float32, device=self.exponent.device)
        return torch.log_softmax(-self.exponent * ranks.log(), dim=0)


class ClassMarginalPrior(_ClassPrior):
    """π given as K non-negative weights (normalised here); with ``learnable`` π trains with the model."""

    def __init__(self, weights: Sequence[float], learnable: bool = False) -> None:
        super().__init__()
        w = torch.as_tensor(list(weights), dtype=torch.float32)
        if w.dim() != 1 or len(w) < 2 or not bool((w >= 0).all()) or not float(w.sum()) > 0:
            raise ConfigError(
                f"model.prior.weights={list(weights)} must be at least two non-negative class weights, "
                "not all zero (one per prototype / cluster)."
            )
        self.num_classes = len(w)
        logits = (w / w.sum()).log()
        if learnable:
            self.logits = PyroParam(logits.clamp_min(-30.0))
        else:
            self.register_buffer("logits", logits)

    def class_log_probs(self, num_classes: int) -> torch.Tensor:
        _check_classes(self.num_classes, num_classes)
        return torch.log_softmax(self.logits, dim=0)


def _check_classes(built: int, asked: int) -> None:
    if built != asked:
        raise ConfigError(
            f"The class prior has {built} classes but the method has {asked} prototypes / clusters: "
            "give it one weight per prototype (or set its num_classes to match)."
        )
