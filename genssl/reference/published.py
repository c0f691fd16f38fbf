"""Published SSL losses in their usual form: reference functions to check the ELBO forms against.

Test-side only: no production module imports this (``tests/test_layers.py`` enforces it), so a
test comparing a method's −ELBO with one of these losses compares the terms with code written
separately from them. Both may use the estimators of :mod:`genssl.objectives` (Sinkhorn, kernels,
coding rate, ...), which are tested on their own against naive formulas and lightly.

Conventions follow the ``lightly`` package where it has the loss (tests compare value and
gradient); differences are stated in each docstring. Inputs are ``[B, d]`` per view unless noted.
None of these detaches a target/teacher branch except where the algorithm itself does (SwAV's
codes); pass target outputs computed without gradient, as an EMA target is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from genssl.errors import ShapeError
from genssl.objectives import (
    cross_correlation,
    hsic_exact,
    hsic_features,
    identity_hsic_exact,
    identity_hsic_features,
    imq_frequencies,
    imq_kernel,
    random_fourier_features,
    sinkhorn_knopp,
    total_coding_rate,
    vicreg_covariance,
    vicreg_invariance,
    vicreg_variance,
)
from genssl.objectives._common import check_matrix, check_positive, check_same_shape, l2_normalise


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent / InfoNCE (SimCLR) over the 2B normalised embeddings u = [ẑ1; ẑ2]:

        L = (1/2B) Σ_i [ −u_iᵀu_{p(i)}/τ + log Σ_{k≠i} exp(u_iᵀu_k/τ) ],

    p(i) the other view of the same image; only the self-similarity is excluded from the
    denominator (the positive stays in). Equals lightly's ``NTXentLoss(temperature)``.
    """
    check_matrix("z1", z1)
    check_same_shape("z1", z1, "z2", z2)
    check_positive("temperature", temperature)
    u = l2_normalise(torch.cat([z1, z2], dim=0))
    b = z1.shape[0]
    logits = (u @ u.T) / temperature
    eye = torch.eye(2 * b, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(eye, float("-inf"))
    positive = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(u.device)
    return F.cross_entropy(logits, positive)


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, lambda_: float = 25.0, mu: float = 25.0, nu: float = 1.0, eps: float = 1e-4
) -> torch.Tensor:
    """VICReg: λ·MSE(z1, z2) + μ·½[v(z1) + v(z2)] + ν·[c(z1) + c(z2)] (v, c as in ``redundancy``).

    Equals lightly's ``VICRegLoss`` (same defaults λ = μ = 25, ν = 1, ε = 1e-4).
    """
    inv = vicreg_invariance(z1, z2)
    var = 0.5 * (vicreg_variance(z1, eps=eps) + vicreg_variance(z2, eps=eps))
    cov = vicreg_covariance(z1) + vicreg_covariance(z2)
    return lambda_ * inv + mu * var + nu * cov


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, lambda_: float = 0.0051, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins: Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij², C = BN(z1)ᵀBN(z2)/B (affine-free BN).

    Same normalisation as lightly's ``BarlowTwinsLoss`` (C divided by B, biased BN variance,
    ε = 1e-5): equal when given the same λ. The default λ = 0.0051 is the paper's; lightly's
    default is 0.005.
    """
    c = cross_correlation(z1, z2, eps=eps)
    diag = torch.diagonal(c)
    off = c.pow(2).sum() - diag.pow(2).sum()
    return (1.0 - diag).pow(2).sum() + lambda_ * off


def spectral_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Spectral contrastive loss: −2 mean_i z1_iᵀz2_i + mean_{i≠j} (z1_iᵀz2_j)², raw features."""
    check_matrix("z1", z1, min_rows=2)
    check_same_shape("z1", z1, "z2", z2)
    b = z1.shape[0]
    sims = z1 @ z2.T
    positive = torch.diagonal(sims).mean()
    off = (sims.pow(2).sum() - torch.diagonal(sims).pow(2).sum()) / (b * (b - 1))
    return -2.0 * positive + off


def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """−mean_i cos(p_i, z_i) (SimSiam); equals lightly's ``NegativeCosineSimilarity``."""
    check_same_shape("p", p, "z", z)
    return -F.cosine_similarity(p, z, dim=1, eps=eps).mean()


def byol_loss(p: torch.Tensor, z: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """BYOL regression loss mean_i (2 − 2 cos(p_i, z_i)) = ‖p̂_i − ẑ_i‖² averaged (one direction).

    Relation: byol_loss = 2 + 2·negative_cosine_similarity. Symmetrise by swapping the views.
    """
    return 2.0 + 2.0 * negative_cosine_similarity(p, z, eps=eps)


def swav_loss(
    high_res: Sequence[torch.Tensor],
    low_res: Sequence[torch.Tensor] = (),
    *,
    temperature: float = 0.1,
    iterations: int = 3,
    epsilon: float = 0.05,
) -> torch.Tensor:
    """SwAV swapped prediction from prototype scores (``[B, K]`` per crop).

    For each high-resolution crop i, codes q_i = Sinkhorn(scores_i, detached); every other crop v
    predicts them with p_v = softmax(scores_v/τ):
        L = (1/H) Σ_i (1/(V − 1)) Σ_{v≠i} −mean_b Σ_k q_i[b,k] log p_v[b,k],
    V = total crops, H = high-resolution crops. Equals lightly's ``SwaVLoss`` (no queue) with the
    same iterations and ε; lightly returns shape ``[1]``, this a scalar.
    """
    if len(high_res) < 1 or len(high_res) + len(low_res) < 2:
        raise ShapeError(
            f"SwAV needs at least one high-resolution crop and two crops in all; got "
            f"{len(high_res)} high- and {len(low_res)} low-resolution crops."
        )
    check_positive("temperature", temperature)
    crops = list(high_res) + list(low_res)
    log_p = [F.log_softmax(s / temperature, dim=1) for s in crops]
    total = crops[0].new_zeros(())
    for i, scores in enumerate(high_res):
        q = sinkhorn_knopp(scores.detach(), iterations, epsilon)
        ce = [-(q * log_p[v]).sum(dim=1).mean() for v in range(len(crops)) if v != i]
        total = total + torch.stack(ce).sum() / (len(crops) - 1)
    return total / len(high_res)


def deepcluster_loss(
    scores: Sequence[torch.Tensor], assignments: torch.Tensor, *, temperature: float = 0.1
) -> torch.Tensor:
    """DeepCluster(-v2) cross-entropy to the epoch's k-means pseudo-labels.

    With ``scores`` the views' cosine similarities to the (frozen) k-means centroids, ``[B, K]``
    each, and y_b ∈ {0..K−1} the cluster of image b:
        L = (1/V) Σ_v −mean_b log softmax(scores_v[b]/τ)[y_b].
    """
    if len(scores) < 1:
        raise ShapeError("DeepCluster needs the prototype scores of at least one view.")
    check_positive("temperature", temperature)
    return torch.stack([F.cross_entropy(s / temperature, assignments) for s in scores]).mean()


def dino_loss(
    teacher: Sequence[torch.Tensor],
    student: Sequence[torch.Tensor],
    centre: torch.Tensor,
    *,
    teacher_temp: float = 0.04,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """DINO cross-entropy between centred, sharpened teacher and student distributions.

        P_t = softmax((t − centre)/τ_t),  log P_s = log_softmax(s/τ_s),
        L = (1/(n_pairs B)) Σ_{(t, s): t ≠ s} Σ_b −P_t[b]ᵀ log P_s[b],

    over all teacher views t and student views s with different view index (n_pairs = T·S −
    min(T, S)). ``centre`` (``[K]``) is passed in, not kept as state: update it with
    :func:`dino_centre_update`. Equals lightly's ``DINOLoss`` with its centre buffer set to
    ``centre`` (lightly then also updates its buffer).
    """
    check_positive("teacher_temp", teacher_temp)
    check_positive("student_temp", student_temp)
    t = torch.softmax((torch.stack(list(teacher)) - centre.reshape(-1)) / teacher_temp, dim=-1)
    log_s = F.log_softmax(torch.stack(list(student)) / student_temp, dim=-1)
    cross = -torch.einsum("tbk,sbk->ts", t, log_s)
    n_t, n_s = cross.shape
    same = torch.eye(n_t, n_s, dtype=torch.bool, device=cross.device)
    n_pairs = n_t * n_s - min(n_t, n_s)
    if n_pairs == 0:
        raise ShapeError(
            "DINO needs at least two views in all: with one teacher and one student "
            "view every pair has the same view index."
        )
    return cross.masked_fill(same, 0.0).sum() / (n_pairs * t.shape[1])


def dino_centre_update(centre: torch.Tensor, teacher: Sequence[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """New DINO centre m·centre + (1 − m)·mean of all teacher outputs (views and batch), detached."""
    batch_centre = torch.stack(list(teacher)).detach().mean(dim=(0, 1))
    return momentum * centre.detach().reshape(-1) + (1.0 - momentum) * batch_centre


def ssl_hsic_loss(
    z: torch.Tensor,
    *,
    gamma: float = 3.0,
    c: float | torch.Tensor = 1.0,
    num_features: int | None = 512,
    generator: torch.Generator | None = None,
    normalise: bool = True,
    eps: float = 1e-12,
) -> torch.Tensor:
    """SSL-HSIC: −HSIC(Z, Y) + γ √HSIC(Z, Z) for ``z`` of shape ``[N images, M views, d]``.

    IMQ kernel with scale c, Y the image identity (:func:`identity_hsic_exact` /
    :func:`identity_hsic_features`; differs from the official code by the constant
    mean k(z, z)/(M − 1)). With ``num_features`` = D, random Fourier features (linear in N·M):
    HSIC(Z, Y) from one draw, HSIC(Z, Z) from two independent draws (paired cos/sin features;
    the official code uses D random-phase cosines). ``num_features=None`` gives
    the exact quadratic-cost loss. √· is taken of max(HSIC(Z, Z), ε), finite at collapse. The
    official code detaches c here and learns it with :func:`imq_scale_objective`.
    """
    if z.dim() != 3 or z.shape[1] < 2:
        raise ShapeError(f"z has shape {tuple(z.shape)}: expected [images, views >= 2, features].")
    check_positive("gamma", gamma, allow_zero=True)
    if not isinstance(c, torch.Tensor):
        check_positive("c", c)
    n_img, views, dim = z.shape
    flat = z.reshape(n_img * views, dim)
    if normalise:
        flat = l2_normalise(flat)
    if num_features is None:
        k = imq_kernel(flat, flat, c)
        hsic_zy, hsic_zz = identity_hsic_exact(k, views), hsic_exact(k, k)
    else:
        freqs = [
            imq_frequencies(dim, num_features, generator=generator, dtype=z.dtype, device=z.device) for _ in range(2)
        ]
        phi1, phi2 = (random_fourier_features(flat, f, c) for f in freqs)
        hsic_zy = identity_hsic_features(phi1.reshape(n_img, views, -1))
        hsic_zz = hsic_features(phi1, phi2)
    return -hsic_zy + gamma * torch.sqrt(hsic_zz.clamp_min(eps))


def umae_uniformity(z: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """U-MAE uniformity term mean_{ij} (ẑ_iᵀẑ_j)², diagonal included (weight λ = 0.01 in U-MAE)."""
    check_matrix("z", z)
    zn = l2_normalise(z) if normalise else z
    return (zn @ zn.T).pow(2).mean()


def mmae_coding_rate_loss(z: torch.Tensor, mu: float = 1.0, *, normalise: bool = True) -> torch.Tensor:
    """M-MAE regulariser −log det(I_d + (μ/d) ẐᵀẐ) (weight λ = 0.01; μ = 1 ViT-B, 3 ViT-L).

    Second-order Taylor form: −(μ/d) tr(ẐᵀẐ) + (μ²/2d²) Σ_ij (ẑ_iᵀẑ_j)², which for unit rows is
    −μn/d + (μ²n²/2d²)·:func:`umae_uniformity`: U-MAE's term plus a constant, close for small μ.
    """
    return -total_coding_rate(z, mu, normalise=normalise)
