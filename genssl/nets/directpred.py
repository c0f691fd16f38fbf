"""DirectPred (Tian, Chen & Ganguli, ICML 2021): a linear predictor set directly, not learned.

Each update, with f the online projector outputs of the batch (both views, detached, not
mean-centred):

    F̂ ← ρ F̂ + (1 − ρ) E_B[f fᵀ]                         running correlation
    F̂ = U diag(s) Uᵀ                                     (torch.linalg.eigh)
    W_p = U diag(p) Uᵀ,  p_j = √(s_j / max_k s_k) + ε     DirectPred
    W_p = F̂ + ε I                                        DirectCopy variant

W_p is recomputed every ``freq`` updates; the predictor is bias-free and has no trainable weight.
"""

from __future__ import annotations

import torch
from torch import nn

from genssl.errors import ConfigError, choices

VARIANTS = ("directpred", "directcopy")


def running_correlation(previous: torch.Tensor, f: torch.Tensor, rho: float) -> torch.Tensor:
    """ρ F̂ + (1 − ρ) (1/n) fᵀf for f [n, d]."""
    return rho * previous + (1.0 - rho) * (f.T @ f) / f.shape[0]


def directpred_weight(correlation: torch.Tensor, eps: float, variant: str = "directpred") -> torch.Tensor:
    """W_p from F̂: U diag(√(s/max s) + ε) Uᵀ, or F̂ + εI for DirectCopy."""
    if variant == "directcopy":
        return correlation + eps * torch.eye(correlation.shape[0], device=correlation.device)
    eigenvalues, eigenvectors = torch.linalg.eigh(correlation)
    eigenvalues = eigenvalues.clamp_min(0.0)  # F̂ is PSD; clip round-off negatives before the root
    p = (eigenvalues / eigenvalues.max().clamp_min(1e-12)).sqrt() + eps
    return eigenvectors @ torch.diag(p) @ eigenvectors.T


class DirectPredictor(nn.Module):
    """Linear, bias-free predictor whose weight follows :func:`directpred_weight`."""

    def __init__(
        self, dim: int, rho: float = 0.3, eps: float = 0.1, freq: int = 1, variant: str = "directpred"
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(
                f"Unknown DirectPred variant '{variant}': guide.predictor.variant must be {choices(VARIANTS)}."
            )
        self.rho, self.eps, self.freq, self.variant = rho, eps, freq, variant
        self.register_buffer("correlation", torch.zeros(dim, dim))
        self.register_buffer("weight", torch.eye(dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe(self, f: torch.Tensor) -> None:
        """Fold a batch of projector outputs into F̂; every ``freq`` updates, reset W_p from it."""
        self.correlation.copy_(running_correlation(self.correlation, f.detach().float(), self.rho))
        if self.freq == 1 or int(self.updates) % self.freq == 0:  # freq 1: no read of the count (traceable)
            self.weight.copy_(directpred_weight(self.correlation, self.eps, self.variant))
        self.updates += 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T
