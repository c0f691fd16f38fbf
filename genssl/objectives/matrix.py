"""Matrix information quantities of Gram matrices, and the total coding rate.

K is an n×n positive semi-definite kernel matrix with unit diagonal (trace n), typically the
Gram matrix ẐẐᵀ of ℓ2-normalised features (:func:`gram_matrix`), so K/n has unit trace and its
eigenvalues form a probability vector.

Degenerate spectra (collapsed or duplicated rows give eigenvalue 0 with high multiplicity):
* integer α ≥ 2 uses traces of matrix powers, tr[(K/n)^α], with no eigendecomposition: exact
  and with finite gradients everywhere (α = 2 is ‖K‖_F²/n²);
* α = 1 (von Neumann) and non-integer α use the eigenvalues of K/n (``torch.linalg.eigvalsh``,
  whose gradient V diag(∂H/∂λ) Vᵀ needs no eigenvalue gaps, so repeated eigenvalues are fine).
  Eigenvalues are clamped below at ``floor`` (default 1e-8): eigenvalues under the floor add
  f(floor) to the sum with zero gradient, which keeps −λ log λ (α = 1) and λ^α (α < 1)
  differentiable at λ = 0. The value changes by at most n·f(floor) (≈ 2e-7·n for α = 1).
* an all-zero K (every row of z zero) has no spectrum to speak of: the power sum tr[(K/n)^α] is
  clamped at ``floor`` too, so the value stays finite (with zero gradient) instead of ±inf.
"""

from __future__ import annotations

import torch

from ._common import check_matrix, check_positive, check_same_shape, check_square, l2_normalise


def gram_matrix(z: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """K = ẐẐᵀ for ``z`` of shape ``[n, d]``, rows ℓ2-normalised unless ``normalise=False``."""
    check_matrix("z", z)
    zn = l2_normalise(z) if normalise else z
    return zn @ zn.T


def _is_integer(alpha: float) -> bool:
    return float(alpha).is_integer()


def matrix_renyi_entropy(k: torch.Tensor, alpha: float = 2.0, *, floor: float = 1e-8) -> torch.Tensor:
    """Matrix Rényi entropy of order α > 0 of a unit-diagonal kernel matrix ``k`` (``[n, n]``).

        H_α(K) = 1/(1 − α) · log tr[(K/n)^α]          α ≠ 1
        H_1(K) = −tr[(K/n) log(K/n)] = −Σ_i λ_i log λ_i   (the α → 1 limit, handled exactly)

    with λ the eigenvalues of K/n. See the module docstring for the degenerate-spectrum handling.
    """
    check_square("k", k)
    check_positive("alpha", alpha)
    check_positive("floor", floor)
    n = k.shape[0]
    a = k / n
    alpha = float(alpha)
    if alpha == 2.0:
        return -torch.log((a * a.T).sum().clamp_min(floor))
    if alpha > 2.0 and _is_integer(alpha):
        power = torch.linalg.matrix_power(a, int(alpha))
        return torch.log(torch.diagonal(power).sum().clamp_min(floor)) / (1.0 - alpha)
    lam = torch.linalg.eigvalsh((a + a.T) / 2).clamp_min(floor)
    if alpha == 1.0:
        return -(lam * torch.log(lam)).sum()
    return torch.log((lam**alpha).sum()) / (1.0 - alpha)


def matrix_joint_entropy(
    k1: torch.Tensor, k2: torch.Tensor, alpha: float = 2.0, *, floor: float = 1e-8
) -> torch.Tensor:
    """Matrix joint entropy H_α(K1 ⊙ K2): the Rényi entropy of the elementwise product."""
    check_square("k1", k1)
    check_same_shape("k1", k1, "k2", k2)
    return matrix_renyi_entropy(k1 * k2, alpha, floor=floor)


def matrix_mutual_information(
    k1: torch.Tensor, k2: torch.Tensor, alpha: float = 2.0, *, floor: float = 1e-8
) -> torch.Tensor:
    """Matrix mutual information I_α(K1; K2) = H_α(K1) + H_α(K2) − H_α(K1 ⊙ K2)."""
    joint = matrix_joint_entropy(k1, k2, alpha, floor=floor)
    return matrix_renyi_entropy(k1, alpha, floor=floor) + matrix_renyi_entropy(k2, alpha, floor=floor) - joint


def total_coding_rate(z: torch.Tensor, mu: float = 1.0, *, normalise: bool = True) -> torch.Tensor:
    """Total coding rate log det(I_d + (μ/d) ẐᵀẐ) of ``z`` (``[n, d]``), as in M-MAE.

    Ẑ has ℓ2-normalised rows unless ``normalise=False``. When n < d the equal n×n determinant
    log det(I_n + (μ/d) ẐẐᵀ) is used (Sylvester's identity). The matrix is I + PSD, so the
    Cholesky factor always exists and the gradient is finite, also for a collapsed batch.
    """
    check_matrix("z", z)
    check_positive("mu", mu)
    zn = l2_normalise(z) if normalise else z
    n, d = zn.shape
    small = zn @ zn.T if n < d else zn.T @ zn
    eye = torch.eye(small.shape[0], dtype=z.dtype, device=z.device)
    chol = torch.linalg.cholesky(eye + (mu / d) * small)
    return 2.0 * torch.log(torch.diagonal(chol)).sum()


def gram_mean_square(z: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """mean_ij (ẑ_iᵀẑ_j)² over all n² pairs of rows of ``z`` (``[n, d]``), diagonal included.

    The mean squared entry of K = ẐẐᵀ (:func:`gram_matrix`, rows ℓ2-normalised unless
    ``normalise=False``): ‖K‖_F²/n² = tr[(K/n)²] = exp(−H_2(K)) (:func:`matrix_renyi_entropy`
    at α = 2). It is U-MAE's uniformity term (Zhang et al., NeurIPS 2022); at unit rows it is
    ≥ 1/min(n, d), with equality for an isotropic batch, and 1 at collapse.
    """
    return gram_matrix(z, normalise=normalise).pow(2).mean()
