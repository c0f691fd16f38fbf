"""Batch entropy estimators: vMF-kernel KDE on the sphere, prototype-average and Gaussian log-det.

Each takes one batch of embeddings (or probabilities) as a ``[n, d]`` tensor and returns a scalar
(or, for the log-density, one value per sample). All are invariant to the order of the batch.
"""

from __future__ import annotations

import math

import torch

from ._common import check_choice, check_matrix, check_positive, l2_normalise
from .special import log_vmf_normaliser

KDE_ESTIMATORS = ("mean", "plugin")


def vmf_kde_log_density(
    z: torch.Tensor,
    kappa: float = 10.0,
    *,
    exclude_self: bool = False,
    include_normaliser: bool = True,
    normalise: bool = True,
) -> torch.Tensor:
    """Leave-in (or leave-one-out) vMF kernel density of each sample, in log space.

        log p̂(ẑ_i) = log C_d(κ) + log Σ_{j∈S_i} exp(κ ẑ_iᵀẑ_j) − log |S_i|

    with S_i = all n samples, or the n − 1 others when ``exclude_self``. ``z``: ``[n, d]``;
    rows are ℓ2-normalised first unless ``normalise=False`` (then they must already be unit
    vectors). ``include_normaliser=False`` drops log C_d(κ), a constant in z. Returns ``[n]``.
    """
    check_matrix("z", z, min_rows=2 if exclude_self else 1)
    check_positive("kappa", kappa)
    zn = l2_normalise(z) if normalise else z
    logits = kappa * (zn @ zn.T)
    n = zn.shape[0]
    if exclude_self:
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
    log_p = torch.logsumexp(logits, dim=1) - math.log(n - 1 if exclude_self else n)
    if include_normaliser:
        log_p = log_p + log_vmf_normaliser(zn.shape[1], kappa)
    return log_p


def vmf_kde_entropy(
    z: torch.Tensor,
    kappa: float = 10.0,
    *,
    estimator: str = "mean",
    exclude_self: bool = False,
    include_normaliser: bool = True,
    normalise: bool = True,
) -> torch.Tensor:
    """Entropy of the batch on the sphere from the vMF-kernel density :func:`vmf_kde_log_density`.

        'mean':   Ĥ = −(1/n) Σ_i log p̂(ẑ_i)
        'plugin': Ĥ = −Σ_i w_i log p̂(ẑ_i),  w = softmax_i(log p̂(ẑ_i))   (w_i ∝ p̂(ẑ_i))

    The plug-in weights are not detached (as in the ER paper's code). κ = 10 is the ER default.
    """
    check_choice("estimator", estimator, KDE_ESTIMATORS)
    log_p = vmf_kde_log_density(
        z, kappa, exclude_self=exclude_self, include_normaliser=include_normaliser, normalise=normalise
    )
    if estimator == "mean":
        return -log_p.mean()
    weights = torch.softmax(log_p, dim=0)
    return -(weights * log_p).sum()


def prototype_entropy(probs: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Entropy of the batch-average prototype distribution: −Σ_c p̄_c log(p̄_c + ε), p̄ = mean_i p_i.

    ``probs``: ``[n, C]`` rows of probabilities (softmax outputs). ε keeps the value and the
    gradient finite when a prototype gets no mass (−Σ p̄ log p̄ is recovered as ε → 0).
    """
    check_matrix("probs", probs)
    check_positive("eps", eps, allow_zero=True)
    p_bar = probs.mean(dim=0)
    return -(p_bar * torch.log(p_bar + eps)).sum()


def gaussian_logdet_entropy(z: torch.Tensor, *, eps: float = 1e-4, unbiased: bool = True) -> torch.Tensor:
    """Entropy of a Gaussian fitted to the batch: ½ log det(2πe Σ̂ + εI).

    Σ̂ is the sample covariance of the rows of ``z`` (``[n, d]``), divided by n − 1 when
    ``unbiased`` and by n otherwise. ε > 0 keeps the matrix positive definite, so the value and
    its gradient are finite even for a collapsed batch (Σ̂ = 0 gives ½ d log ε). Computed via a
    Cholesky factor: log det A = 2 Σ log diag(L).
    """
    check_matrix("z", z, min_rows=2 if unbiased else 1)
    check_positive("eps", eps)
    n, d = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (n - 1 if unbiased else n)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    chol = torch.linalg.cholesky(2.0 * math.pi * math.e * cov + eps * eye)
    return torch.log(torch.diagonal(chol)).sum()
