"""Redundancy-reduction terms: VICReg's variance / covariance / invariance, Barlow Twins' C."""

from __future__ import annotations

import torch

from ._common import check_matrix, check_positive, check_same_shape


def vicreg_invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VICReg invariance term: mean squared error (1/(n d)) Σ_ij (z1_ij − z2_ij)²."""
    check_same_shape("z1", z1, "z2", z2)
    return (z1 - z2).pow(2).mean()


def vicreg_variance(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance hinge: (1/d) Σ_j max(0, γ − √(Var(z_·j) + ε)), unbiased variance (n − 1).

    ε > 0 keeps the square root differentiable for a collapsed batch (Var = 0).
    """
    check_matrix("z", z, min_rows=2)
    check_positive("gamma", gamma)
    check_positive("eps", eps)
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(gamma - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: (1/d) Σ_{i≠j} C_ij², C the unbiased (n − 1) sample covariance."""
    check_matrix("z", z, min_rows=2)
    n, d = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def batch_standardise(z: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Affine-free batch norm: (z − mean) / √(Var + ε) per feature, biased variance (n)."""
    check_matrix("z", z)
    check_positive("eps", eps)
    centred = z - z.mean(dim=0, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0, keepdim=True) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins cross-correlation C = BN(z1)ᵀ BN(z2) / n (``[d, d]``), BN affine-free."""
    check_same_shape("z1", z1, "z2", z2)
    return batch_standardise(z1, eps=eps).T @ batch_standardise(z2, eps=eps) / z1.shape[0]
