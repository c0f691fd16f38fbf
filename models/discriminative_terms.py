"""Each discriminative objective as the terms of a :class:`~genssl.models.view_model.ViewModel`.

A builder returns ``{term name: log-density term}`` for embeddings z [B, J, D] (J = 2 here). The
ELBO with a Delta guide is the sum of the terms; the tests check −ELBO against the published loss:

| method | view conditional log q(z2 | z1) | entropy / kernel term | −ELBO = |
|---|---|---|---|
| simclr | vMF, κ = 1/τ: κ⟨ẑ1, ẑ2⟩ | leave-one-out vMF KDE over all 2B embeddings | NT-Xent − log(2B−1) |
| simclr_er | vMF, κ: κ⟨ẑ1, ẑ2⟩ | vMF KDE entropy per branch (mean / plug-in) | the ER loss |
| vicreg | Gaussian: −λ‖z1 − z2‖²/d | −μ·variance hinge − ν·covariance (log-det surrogate) | VICReg |
| barlow_twins | Gaussian on standardised z: −Σ(1 − C_ii)² | −λ Σ_{i≠j} C_ij² (redundancy) | Barlow Twins |
| spectral | linear kernel: 2·mean z1ᵀz2 | −mean_{i≠j} (z1_iᵀ z2_j)² | spectral contrastive |
| byol, directpred | vMF, κ = 2: κ cos(q(z1), sg t2), both ways | none (kept implicitly by the EMA target) | BYOL − 2 |
| simsiam | vMF, κ = 1: κ cos(q(z1), sg z2), both ways | none (stop-gradient) | negative cosine |
| byol_er | vMF, κ: κ cos(q(z1), sg t2), both ways | vMF KDE entropy of the online projections | the ER loss |

Distillation terms read the guide's "prediction" and "target" sites; ``cos`` averages the two
directions (view 1 predicts view 2 and the reverse).
"""

from __future__ import annotations

import torch

from genssl.errors import ShapeError
from genssl.models.conditionals import ContentSpec, ProposalSpec, ViewConditional
from genssl.models.view_model import ObjectiveTerms, Sites
from genssl.objectives import (
    cross_correlation,
    vicreg_covariance,
    vicreg_invariance,
    vicreg_variance,
    vmf_kde_entropy,
    vmf_reconstruction,
)


def sphere_content(scored: str, kappa: float) -> ContentSpec:
    """y on the sphere, proposed as the unit embedding "z" of one view, and a vMF(κ) conditional of the
    other views' ``scored`` embeddings."""
    return ContentSpec(
        ViewConditional("vmf", scored, "sphere", {"kappa": kappa}),
        ProposalSpec("anchor_embedding", {"site": "z", "normalise": True}),
    )


def distilled_content(kappa: float) -> ContentSpec:
    """BYOL's y: one view's unit EMA target (stop-gradient, so the vMF conditional of the other views'
    predictions sends it no gradient); a prior's gradient reaches the encoder straight through the
    online projection of the same view."""
    return ContentSpec(
        ViewConditional("vmf", "prediction", "sphere", {"kappa": kappa, "detach_content": True}),
        ProposalSpec("anchor_embedding", {"site": "target", "normalise": True, "gradient_site": "z"}),
    )


def euclidean_content(kind: str, params: dict) -> ContentSpec:
    """y in R^d, proposed as one view's embedding "z", with the conditional ``kind`` of the other views."""
    return ContentSpec(
        ViewConditional(kind, "z", "euclidean", params),
        ProposalSpec("anchor_embedding", {"site": "z", "normalise": False}),
    )


def two_views(z: torch.Tensor | Sites, site: str = "z") -> tuple[torch.Tensor, torch.Tensor]:
    """Split [B, 2, D] embeddings (a tensor, or ``sites[site]``) into the two branches."""
    if not isinstance(z, torch.Tensor):
        z = z[site]
    if z.shape[1] != 2:
        raise ShapeError(
            f"This objective compares two views of each image, but data.num_views={z.shape[1]}. Set data.num_views=2."
        )
    return z[:, 0], z[:, 1]


def branch_kde_entropy(sites: Sites, kappa: float, estimator: str = "mean", exclude_self: bool = False) -> torch.Tensor:
    """½[Ĥ(Z1) + Ĥ(Z2)]: the vMF-KDE entropy of each branch of "z" (normaliser dropped)."""
    z1, z2 = two_views(sites)
    estimate = [
        vmf_kde_entropy(b, kappa, estimator=estimator, exclude_self=exclude_self, include_normaliser=False)
        for b in (z1, z2)
    ]
    return 0.5 * (estimate[0] + estimate[1])


def simclr_terms(temperature: float = 0.5) -> ObjectiveTerms:
    """InfoNCE: vMF reconstruction (κ = 1/τ) + leave-one-out vMF-KDE entropy of the 2B embeddings."""
    kappa = 1.0 / temperature

    def view_conditional(sites: Sites) -> torch.Tensor:
        return vmf_reconstruction(*two_views(sites), kappa)

    def entropy(sites: Sites) -> torch.Tensor:
        both = torch.cat(two_views(sites), dim=0)
        return vmf_kde_entropy(both, kappa, exclude_self=True, include_normaliser=False)

    return ObjectiveTerms({"view_conditional": view_conditional, "entropy": entropy}, sphere_content("z", kappa))


def simclr_er_terms(kappa: float = 10.0, estimator: str = "mean", exclude_self: bool = False) -> ObjectiveTerms:
    """ER bound H(Z) + E log q(z2 | z1): vMF reconstruction + per-branch vMF-KDE entropy, symmetrised."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return vmf_reconstruction(*two_views(sites), kappa)

    def entropy(sites: Sites) -> torch.Tensor:
        return branch_kde_entropy(sites, kappa, estimator, exclude_self)

    return ObjectiveTerms({"view_conditional": view_conditional, "entropy": entropy}, sphere_content("z", kappa))


def vicreg_terms(lambda_: float = 25.0, mu: float = 25.0, nu: float = 1.0, eps: float = 1e-4) -> ObjectiveTerms:
    """VICReg: Gaussian view conditional (invariance) + variance/covariance entropy surrogate."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return -lambda_ * vicreg_invariance(*two_views(sites))

    def entropy(sites: Sites) -> torch.Tensor:
        z1, z2 = two_views(sites)
        variance = 0.5 * (vicreg_variance(z1, eps=eps) + vicreg_variance(z2, eps=eps))
        return -(mu * variance + nu * (vicreg_covariance(z1) + vicreg_covariance(z2)))

    gaussian = euclidean_content("gaussian", {"weight": lambda_})
    return ObjectiveTerms({"view_conditional": view_conditional, "entropy": entropy}, gaussian)


def barlow_twins_terms(lambda_: float = 0.0051, eps: float = 1e-5) -> ObjectiveTerms:
    """Barlow Twins: on-diagonal agreement (view conditional) + off-diagonal redundancy reduction."""

    def correlation(sites: Sites) -> torch.Tensor:
        return cross_correlation(*two_views(sites), eps=eps)

    def view_conditional(sites: Sites) -> torch.Tensor:
        return -(1.0 - torch.diagonal(correlation(sites))).pow(2).sum()

    def redundancy(sites: Sites) -> torch.Tensor:
        c = correlation(sites)
        return -lambda_ * (c.pow(2).sum() - torch.diagonal(c).pow(2).sum())

    agreement = euclidean_content("cross_correlation", {"eps": eps})
    return ObjectiveTerms({"view_conditional": view_conditional, "redundancy": redundancy}, agreement)


def spectral_terms() -> ObjectiveTerms:
    """Spectral contrastive: linear-kernel reconstruction + squared cross-similarity penalty."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        z1, z2 = two_views(sites)
        return 2.0 * (z1 * z2).sum(1).mean()

    def entropy(sites: Sites) -> torch.Tensor:
        z1, z2 = two_views(sites)
        sims = z1 @ z2.T
        n = z1.shape[0]
        return -(sims.pow(2).sum() - torch.diagonal(sims).pow(2).sum()) / (n * (n - 1))

    kernel = euclidean_content("linear_kernel", {"weight": 2.0})
    return ObjectiveTerms({"view_conditional": view_conditional, "entropy": entropy}, kernel)


def _cross_view_cosine(sites: Sites) -> torch.Tensor:
    """½[mean cos(p_1, t_2) + mean cos(p_2, t_1)] from the "prediction" and "target" sites."""
    p1, p2 = two_views(sites, "prediction")
    t1, t2 = two_views(sites, "target")
    cos = torch.nn.functional.cosine_similarity
    return 0.5 * (cos(p1, t2, dim=1).mean() + cos(p2, t1, dim=1).mean())


def distillation_terms(kappa: float = 2.0) -> ObjectiveTerms:
    """BYOL (κ = 2: loss 2 − 2cos) and SimSiam (κ = 1: loss −cos): a vMF view conditional alone."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return kappa * _cross_view_cosine(sites)

    return ObjectiveTerms({"view_conditional": view_conditional}, distilled_content(kappa))


def distillation_er_terms(kappa: float = 10.0, estimator: str = "mean") -> ObjectiveTerms:
    """ER distillation: the same vMF reconstruction plus an explicit vMF-KDE entropy of the online projections."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return kappa * _cross_view_cosine(sites)

    def entropy(sites: Sites) -> torch.Tensor:
        return branch_kde_entropy(sites, kappa, estimator)

    distilled = distilled_content(kappa)
    return ObjectiveTerms({"view_conditional": view_conditional, "entropy": entropy}, distilled)
