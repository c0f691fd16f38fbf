"""HSIC with the inverse multiquadric (IMQ) kernel, exactly and through random Fourier features.

IMQ kernel: k(z, z′) = c / √(‖z − z′‖² + c²).

Random features. The IMQ spectral measure in R^d has density ∝ ‖ω‖^{(1−d)/2} K_{(d−1)/2}(c‖ω‖)
(a Bessel-K form; the radial part of ω has density ∝ (c r)^{(d−1)/2} K_{(d−1)/2}(c r)). It
need not be tabulated: IMQ is a scale mixture of Gaussian kernels,
    c / √(r² + c²) = E_t[exp(−t r²)],   t ~ Gamma(shape ½, rate c²),
because E[exp(−t r²)] = (c² / (c² + r²))^{1/2}. A Gaussian kernel exp(−t‖δ‖²) has spectral
measure N(0, 2t I), and 2t = g₀²/c² with g₀ ~ N(0, 1) (Gamma(½, 1) is χ²₁/2), so
    ω = g₀ g / c,   g₀ ~ N(0, 1), g ~ N(0, I_d)
samples the IMQ spectral measure exactly. :func:`imq_frequencies` draws unit-scale frequencies
(c = 1); :func:`random_fourier_features` divides the inputs by c, so c stays differentiable.
With D frequencies, φ(z) = [cos(Ωz/c), sin(Ωz/c)] / √D gives φ(z)ᵀφ(z′) = (1/D) Σ_k
cos(ω_kᵀ(z − z′)/c), an unbiased estimate of k(z, z′).

HSIC here is the biased (V-statistic) estimate HSIC(K, L) = tr(K H L H) / n², H = I − 11ᵀ/n, as in
SSL-HSIC's code. With features, tr(HΦΦᵀHΨΨᵀ) = ‖(HΦ)ᵀ(HΨ)‖_F², an F×F′ matrix: cost linear in n
and no n×n matrix is formed.
"""

from __future__ import annotations

import math

import torch

from genssl.errors import ShapeError

from ._common import check_int, check_matrix, check_positive, check_square


def imq_kernel(x: torch.Tensor, y: torch.Tensor, c: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Exact IMQ Gram matrix k(x_i, y_j) = c / √(‖x_i − y_j‖² + c²), shape ``[n, m]``."""
    check_matrix("x", x)
    check_matrix("y", y)
    if not isinstance(c, torch.Tensor):
        check_positive("c", c)
    sq = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    return c / torch.sqrt(sq + c * c)


def imq_frequencies(
    dim: int,
    num_features: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[num_features, dim]`` frequencies ω = g₀ g from the unit-scale (c = 1) IMQ spectral measure.

    g₀ ~ N(0, 1) per frequency and g ~ N(0, I_dim); see the module docstring for why.
    """
    check_int("dim", dim, 1)
    check_int("num_features", num_features, 1)
    radial = torch.randn(num_features, 1, generator=generator, dtype=dtype, device=device)
    gauss = torch.randn(num_features, dim, generator=generator, dtype=dtype, device=device)
    return radial * gauss


def random_fourier_features(z: torch.Tensor, frequencies: torch.Tensor, c: float | torch.Tensor = 1.0) -> torch.Tensor:
    """φ(z) = [cos(Ωz/c), sin(Ωz/c)] / √D for ``z`` ``[n, d]`` and Ω ``[D, d]``: ``[n, 2D]``."""
    check_matrix("z", z)
    if frequencies.dim() != 2 or frequencies.shape[1] != z.shape[1]:
        raise ShapeError(
            f"frequencies have shape {tuple(frequencies.shape)}: expected "
            f"[num_features, {z.shape[1]}] to match z's feature size."
        )
    if not isinstance(c, torch.Tensor):
        check_positive("c", c)
    proj = (z @ frequencies.T) / c
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1) / math.sqrt(frequencies.shape[0])


def hsic_exact(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC from two n×n kernel matrices: tr(K H L H) / n², H = I − 11ᵀ/n."""
    check_square("k", k)
    check_square("l", l)
    if k.shape != l.shape:
        raise ShapeError(f"k has shape {tuple(k.shape)} but l has shape {tuple(l.shape)}.")
    kc = k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()
    return (kc * l.T).sum() / k.shape[0] ** 2


def hsic_features(phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Biased HSIC with kernels ΦΦᵀ and ΨΨᵀ, in linear time: ‖(Φ − Φ̄)ᵀ(Ψ − Ψ̄)‖_F² / n².

    Equals :func:`hsic_exact` of the two explicit Gram matrices. For HSIC(Z, Z), pass features
    of two independent frequency draws so that the estimate of k² is unbiased. Cost O(n F F′)
    with an F×F′ intermediate (linear in n); when n is below F F′/(F + F′) the identical value
    tr(HΦΦᵀH · HΨΨᵀH)/n² is computed from n×n Gram matrices instead, which is then cheaper.
    """
    check_matrix("phi", phi)
    check_matrix("psi", psi)
    if phi.shape[0] != psi.shape[0]:
        raise ShapeError(f"phi has {phi.shape[0]} rows but psi has {psi.shape[0]}: they must match.")
    n = phi.shape[0]
    phi_c, psi_c = phi - phi.mean(dim=0), psi - psi.mean(dim=0)
    if n >= phi.shape[1] * psi.shape[1] / (phi.shape[1] + psi.shape[1]):
        return (phi_c.T @ psi_c).pow(2).sum() / n**2  # [F, F′]: cost linear in n
    # small batches (n below the feature counts): the same value via two n×n Gram matrices
    return ((phi_c @ phi_c.T) * (psi_c @ psi_c.T)).sum() / n**2


def identity_hsic_exact(k: torch.Tensor, num_views: int) -> torch.Tensor:
    """SSL-HSIC's HSIC(Z, Y), Y = image identity, from an exact ``[n, n]`` kernel, n = N·M views.

    Rows are image-major (row i·M + v is view v of image i). The population HSIC with the
    identity label kernel is proportional to E_pos k − E_all k (positive = another view of the
    same image); this is its plug-in estimate
        P/(n(M − 1)) − k̄,   P = Σ_i Σ_{v≠v′} k(z_iv, z_iv′),  k̄ = mean of all n² entries.
    Related forms: the V-statistic with the one-hot Gram L, :func:`hsic_exact`(K, L) =
    (P + Σ_a k_aa)/n² − (M/n) k̄; SSL-HSIC's code counts self-pairs as positives,
    (P + Σ_a k_aa)/(n(M − 1)) − k̄ = this + mean_a k_aa/(M − 1), i.e. + 1/(M − 1) for IMQ.
    """
    check_square("k", k)
    check_int("num_views", num_views, 2)
    n = k.shape[0]
    if n % num_views:
        raise ShapeError(f"kernel size {n} is not a multiple of num_views={num_views}.")
    blocks = k.reshape(n // num_views, num_views, n // num_views, num_views)
    same = torch.diagonal(blocks, dim1=0, dim2=2)  # [M, M, N]: k(z_iv, z_iv′)
    positive = same.sum() - torch.diagonal(k).sum()
    return positive / (n * (num_views - 1)) - k.mean()


def identity_hsic_features(phi: torch.Tensor) -> torch.Tensor:
    """Linear-time :func:`identity_hsic_exact` with kernel φᵀφ′, for features ``[N, M, F]``.

    Σ_{i, v≠v′} φ_ivᵀφ_iv′ = Σ_i ‖Σ_v φ_iv‖² − Σ_{i,v} ‖φ_iv‖², and Σ_{a,b} φ_aᵀφ_b = ‖Σ_a φ_a‖².
    """
    if phi.dim() != 3 or phi.shape[1] < 2:
        raise ShapeError(f"phi has shape {tuple(phi.shape)}: expected [images, views >= 2, features].")
    n_img, views, _ = phi.shape
    n = n_img * views
    per_image = phi.sum(dim=1).pow(2).sum()
    self_pairs = phi.pow(2).sum()
    total = phi.sum(dim=(0, 1)).pow(2).sum()
    return (per_image - self_pairs) / (n * (views - 1)) - total / n**2


def imq_scale_objective(
    x: torch.Tensor, y: torch.Tensor, c: float | torch.Tensor, *, floor: float = 1e-7
) -> torch.Tensor:
    """SSL-HSIC's kernel-scale objective (maximised over c): log |mean_ij ∂k(x_i, y_j)/∂c|.

    With r² = ‖x_i − y_j‖² (detached: only c is learned by it),
        ∂/∂c [c / √(r² + c²)] = r² / (r² + c²)^{3/2} ≥ 0,
    and the log is floored at log(``floor``). The official code sums over (subsampled) pairs
    instead of averaging: it equals this value + log(n·m), the same gradient in c.
    """
    check_positive("floor", floor)
    with torch.no_grad():
        sq = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    grad = (sq / (sq + c * c).pow(1.5)).mean()
    return torch.log(grad.clamp_min(floor))
