"""Clustering objectives (SwAV, DINO and their ER versions) as ViewModel terms.

The guide (:class:`~genssl.guides.PrototypeGuide`) proposes "scores", each view's cosine scores
against K prototypes [B, J, K], and for DINO also "teacher_probs", the EMA teacher's centred and
sharpened distribution. The view conditional is a categorical over prototypes:

| method | view conditional (categorical over prototypes) | entropy term | −ELBO = |
|---|---|---|---|
| swav | Σ q_j log softmax(s_j'/τ), q_j = Sinkhorn(sg s_j), swapped | none (Sinkhorn equipartition) | SwAV |
| swav_er | −½[CE(p1, p2) + CE(p2, p1)], p_j = softmax(s_j/τ) (symmetric CE) | H(mean_b p), per view | ER loss |
| dino | Σ P_t log P_s over teacher/student pairs of different views | none (centring + sharpening) | DINO |
| dino_er | the same | H(mean_b P_s), per view | ER loss |
| deepcluster | mean_j log softmax(s_j/τ)[y_i], y_i its k-means cluster | none (k-means) | DeepCluster-v2 |
| deepcluster_er | the same | H(mean_b p), per view | ER loss |

For DeepCluster the guide is :class:`~genssl.guides.ClusterAssignmentGuide`: "scores" against
frozen k-means centroids, and the content latent y (uniform prior) held at the epoch's k-means label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genssl.errors import ConfigError
from genssl.models.discriminative_terms import two_views
from genssl.models.view_model import Sites, Term
from genssl.objectives import prototype_entropy, sinkhorn_knopp


def swav_terms(temperature: float = 0.1, iterations: int = 3, epsilon: float = 0.05) -> dict[str, Term]:
    """SwAV's swapped prediction of Sinkhorn codes (Caron et al., NeurIPS 2020), two views:

        log p = ½ [mean_b Σ_k q_1[b,k] log p_2[b,k] + mean_b Σ_k q_2[b,k] log p_1[b,k]],
        p_j = softmax(s_j/τ),  q_j = Sinkhorn(sg s_j; ``iterations`` rounds, ε = ``epsilon``),

    each view's codes, computed from its detached scores, predicted by the other view: −log p
    is SwAV's loss (no queue). The codes carry no gradient; the equipartition of Sinkhorn stands
    in for an entropy term.
    """
    if not float(temperature) > 0.0:
        raise ConfigError(f"model.terms.temperature={temperature} must be positive (SwAV uses 0.1).")

    def view_conditional(sites: Sites) -> torch.Tensor:
        s1, s2 = two_views(sites, "scores")
        log_p1, log_p2 = F.log_softmax(s1 / temperature, dim=1), F.log_softmax(s2 / temperature, dim=1)
        q1 = sinkhorn_knopp(s1.detach(), iterations, epsilon)
        q2 = sinkhorn_knopp(s2.detach(), iterations, epsilon)
        return 0.5 * ((q1 * log_p2).sum(dim=1).mean() + (q2 * log_p1).sum(dim=1).mean())

    return {"view_conditional": view_conditional}


def _student_probs(sites: Sites, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    s1, s2 = two_views(sites, "scores")
    return F.softmax(s1 / temperature, dim=1), F.softmax(s2 / temperature, dim=1)


def _prototype_entropy(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    return 0.5 * (prototype_entropy(p1) + prototype_entropy(p2))


def swav_er_terms(temperature: float = 0.1) -> dict[str, Term]:
    """Discrete ER: symmetric cross-entropy between the views' prototype distributions + their entropy."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        # From log-softmax rather than log(p + ε): exact, and finite where a probability underflows.
        s1, s2 = two_views(sites, "scores")
        log_p1, log_p2 = F.log_softmax(s1 / temperature, dim=1), F.log_softmax(s2 / temperature, dim=1)
        cross = (log_p1.exp() * log_p2).sum(1) + (log_p2.exp() * log_p1).sum(1)
        return 0.5 * cross.mean()

    def entropy(sites: Sites) -> torch.Tensor:
        return _prototype_entropy(*_student_probs(sites, temperature))

    return {"view_conditional": view_conditional, "entropy": entropy}


def _dino_cross_view(sites: Sites, student_temp: float) -> torch.Tensor:
    """mean over pairs (t, s), t ≠ s, of mean_b Σ_k P_t log P_s."""
    teacher = sites["teacher_probs"]
    log_student = F.log_softmax(sites["scores"] / student_temp, dim=-1)
    views = teacher.shape[1]
    pairs = [(t, s) for t in range(views) for s in range(views) if t != s]
    return torch.stack([(teacher[:, t] * log_student[:, s]).sum(-1).mean() for t, s in pairs]).mean()


def dino_terms(student_temp: float = 0.1) -> dict[str, Term]:
    """DINO: the student predicts the (centred, sharpened) teacher distribution of the other views."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return _dino_cross_view(sites, student_temp)

    return {"view_conditional": view_conditional}


def dino_er_terms(student_temp: float = 0.1) -> dict[str, Term]:
    """ER-DINO: DINO's reconstruction plus the entropy of the student's batch-average distribution."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return _dino_cross_view(sites, student_temp)

    def entropy(sites: Sites) -> torch.Tensor:
        return _prototype_entropy(*_student_probs(sites, student_temp))

    return {"view_conditional": view_conditional, "entropy": entropy}


def _cluster_log_likelihood(sites: Sites, temperature: float) -> torch.Tensor:
    """mean_{b,j} log softmax(s_bj/τ)[y_b]: every view predicts its image's cluster."""
    log_p = F.log_softmax(sites["scores"] / temperature, dim=-1)
    y = sites["y"][:, None, None].expand(-1, log_p.shape[1], 1)
    return log_p.gather(-1, y).mean()


def deepcluster_terms(temperature: float = 0.1) -> dict[str, Term]:
    """DeepCluster-v2: each view classifies its image into the epoch's k-means cluster."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return _cluster_log_likelihood(sites, temperature)

    return {"view_conditional": view_conditional}


def deepcluster_er_terms(temperature: float = 0.1) -> dict[str, Term]:
    """ER-DeepCluster: the cluster reconstruction plus the entropy of the batch-average cluster distribution."""

    def view_conditional(sites: Sites) -> torch.Tensor:
        return _cluster_log_likelihood(sites, temperature)

    def entropy(sites: Sites) -> torch.Tensor:
        return _prototype_entropy(*_student_probs(sites, temperature))

    return {"view_conditional": view_conditional, "entropy": entropy}
