"""Assignments to prototypes: SwAV's Sinkhorn–Knopp equipartition and DeepCluster's spherical k-means."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from genssl.errors import ConfigError, ShapeError, choices

from ._common import check_int, check_matrix, check_positive

SEEDING_METRICS = ("cosine", "sqeuclidean")  # the distances kmeans_plus_plus can seed with


def sinkhorn_knopp(
    scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05, log_marginal: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft codes Q (``[B, K]``) for ``scores`` (``[B, K]`` sample–prototype similarities).

    Start from Q ∝ exp(scores/ε), normalised to total mass 1; each of the ``iterations`` rounds
    makes every prototype's mass 1/K (sum over samples) and then every sample's mass 1/B (sum
    over prototypes); the result is B·Q, so after at least one round each row sums to 1 and each
    column to about B/K (equipartition). Computed in log space (no overflow for small ε); SwAV's
    defaults are 3 rounds and ε = 0.05. The codes are differentiable; SwAV computes them from
    detached scores (the caller's choice). With ``iterations=0`` the result is B·exp(s/ε)/Σexp(s/ε).

    ``log_marginal`` (``[K]``, log π summing to 1) replaces the uniform 1/K by π_k as prototype k's
    mass: the codes then follow the class marginal π instead of equipartition.
    """
    check_matrix("scores", scores)
    check_int("iterations", iterations, 0)
    check_positive("epsilon", epsilon)
    b, k = scores.shape
    log_q = scores / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(iterations):
        if log_marginal is None:
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
        else:
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + log_marginal
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
    return torch.exp(log_q + math.log(b))


@torch.no_grad()
def spherical_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    iterations: int = 10,
    generator: torch.Generator | None = None,
    chunk: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the directions of ``x`` (``[N, d]``): returns unit centroids ``[K, d]`` and labels ``[N]``.

    Maximises Σ_i ĉ_{y_i}ᵀ x̂_i over unit centroids ĉ and labels y (x̂ = x/‖x‖): k-means under cosine
    similarity, the clustering DeepCluster-v2 runs on ℓ2-normalised projections. Seeded k-means++
    initialisation (each new centre drawn with probability ∝ 1 − max_c ĉᵀx̂, the cosine distance
    to the nearest chosen centre), then ``iterations`` Lloyd rounds: assign each point to its most
    similar centroid, set each centroid to the normalised mean of its points. A cluster left empty
    is re-seeded with the point least similar to its own centroid, so all K clusters stay in use.
    ``chunk`` bounds the [chunk, K] similarity block held at once.
    """
    check_matrix("x", x)
    check_int("num_clusters", num_clusters, 1)
    check_int("iterations", iterations, 0)
    n = x.shape[0]
    if num_clusters > n:
        raise ShapeError(
            f"spherical_kmeans cannot make {num_clusters} clusters of {n} points; "
            "use at most as many clusters as points."
        )
    x = F.normalize(x.float(), dim=1)
    centroids = x[kmeans_plus_plus(x, num_clusters, generator, metric="cosine")]
    labels, similarity = _nearest(x, centroids, chunk)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=num_clusters)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            # The worst-fitted points start the empty clusters (each a different point).
            sums[empty] = x[similarity.topk(len(empty), largest=False).indices]
        centroids = F.normalize(sums, dim=1)
        labels, similarity = _nearest(x, centroids, chunk)
    return centroids, labels


def kmeans_plus_plus(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    metric: Literal["cosine", "sqeuclidean"] = "cosine",
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices ``[k]`` of the rows of ``x`` chosen as centres.

    The first centre is a uniform draw; each further one is drawn with probability proportional to
    every point's distance to its nearest centre chosen so far, so the seeds spread over the data
    and Lloyd's iterations start near a good optimum instead of wherever k uniform draws land.
    ``metric`` is the distance the caller's k-means minimises:

    - ``"cosine"``: 1 − x̂ᵀĉ (clamped at 0), for rows already ℓ2-normalised (:func:`spherical_kmeans`);
    - ``"sqeuclidean"``: ‖x − c‖², Lloyd's own objective (the GMM's k-means start,
      :func:`genssl.eval.clustering.kmeans`).

    Draws come from ``generator`` (the default generator if None): one ``randint`` for the first
    centre and one ``multinomial`` per further centre, its weights moved to the generator's device
    (a CPU generator seeds data on any device). If every point already coincides with a chosen
    centre (all distances 0), the next draw is uniform. Returned on ``x``'s device.
    """
    if metric not in SEEDING_METRICS:
        raise ConfigError(f"Unknown k-means++ metric '{metric}': it must be {choices(SEEDING_METRICS)}.")
    draw_device = generator.device if generator is not None else x.device
    first = torch.randint(x.shape[0], (1,), generator=generator, device=draw_device).to(x.device)
    chosen = [first]
    if metric == "cosine":
        distance = (1.0 - x @ x[first[0]]).clamp_min(0.0)
    else:  # cdist for the first centre, a direct sum after: the GMM start's arithmetic, kept to the bit
        distance = torch.cdist(x, x[first]).squeeze(1).pow(2)
    for _ in range(1, k):
        weights = distance
        if weights.sum() <= 0:  # every point already coincides with a centre: any draw will do
            weights = torch.ones_like(weights)
        elif metric == "sqeuclidean":
            # multinomial normalises anyway, but the GMM start always passed probabilities, and the
            # division rounds the weights: kept so seeded GMM fits stay bit-identical.
            weights = weights / weights.sum()
        pick = torch.multinomial(weights.to(draw_device), 1, generator=generator).to(x.device)
        chosen.append(pick)
        if metric == "cosine":
            step = (1.0 - x @ x[pick[0]]).clamp_min(0.0)
        else:
            step = (x - x[pick[0]]).pow(2).sum(1)
        distance = torch.minimum(distance, step)
    return torch.cat(chosen)


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and similarity of each point's most similar centroid."""
    values, labels = [], []
    for start in range(0, x.shape[0], chunk):
        best = (x[start : start + chunk] @ centroids.T).max(dim=1)
        values.append(best.values)
        labels.append(best.indices)
    return torch.cat(labels), torch.cat(values)
