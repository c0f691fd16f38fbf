"""Reconstruction terms of the ER bound: log q(z2 | z1) for a vMF or a categorical decoder."""

from __future__ import annotations

import torch

from ._common import check_matrix, check_positive, check_same_shape, l2_normalise, reduce
from .special import log_vmf_normaliser


def vmf_reconstruction(
    z1: torch.Tensor,
    z2: torch.Tensor,
    kappa: float = 10.0,
    *,
    include_normaliser: bool = False,
    normalise: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """vMF log-likelihood of one view given the other: κ⟨ẑ1_i, ẑ2_i⟩ (+ log C_d(κ)).

    A reconstruction to maximise (not a loss). ``z1``, ``z2``: ``[n, d]``, rows ℓ2-normalised
    unless ``normalise=False``; ``include_normaliser`` adds the constant log C_d(κ) so the value
    is the full log vMF density log q(ẑ2 | ẑ1). ``reduction``: 'mean', 'sum' or 'none' (``[n]``).
    """
    check_matrix("z1", z1)
    check_same_shape("z1", z1, "z2", z2)
    check_positive("kappa", kappa)
    if normalise:
        z1, z2 = l2_normalise(z1), l2_normalise(z2)
    values = kappa * (z1 * z2).sum(dim=1)
    if include_normaliser:
        values = values + log_vmf_normaliser(z1.shape[1], kappa)
    return reduce(values, reduction)


def symmetric_cross_entropy(
    p1: torch.Tensor, p2: torch.Tensor, *, eps: float = 1e-12, reduction: str = "mean"
) -> torch.Tensor:
    """½[−Σ_c p1_c log(p2_c + ε) − Σ_c p2_c log(p1_c + ε)] per row, for probabilities ``[n, C]``.

    A cross-entropy (a loss, ≥ 0): the discrete ER reconstruction term is its negative. ε keeps
    the value and gradient finite where a probability is exactly zero.
    """
    check_matrix("p1", p1)
    check_same_shape("p1", p1, "p2", p2)
    check_positive("eps", eps, allow_zero=True)
    values = -0.5 * ((p1 * torch.log(p2 + eps)).sum(dim=1) + (p2 * torch.log(p1 + eps)).sum(dim=1))
    return reduce(values, reduction)
