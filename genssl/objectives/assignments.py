"""Balanced soft assignments to prototypes: the Sinkhorn–Knopp equipartition used by SwAV."""
from __future__ import annotations

import math

import torch

from ._common import check_int, check_matrix, check_positive


def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Soft codes Q (``[B, K]``) for ``scores`` (``[B, K]`` sample–prototype similarities).

    Start from Q ∝ exp(scores/ε), normalised to total mass 1; each of the ``iterations`` rounds
    makes every prototype's mass 1/K (sum over samples) and then every sample's mass 1/B (sum
    over prototypes); the result is B·Q, so after at least one round each row sums to 1 and each
    column to about B/K (equipartition). Computed in log space (no overflow for small ε); SwAV's
    defaults are 3 rounds and ε = 0.05. The codes are differentiable; SwAV computes them from
    detached scores (the caller's choice). With ``iterations=0`` the result is B·exp(s/ε)/Σexp(s/ε).
    """
    check_matrix("scores", scores)
    check_int("iterations", iterations, 0)
    check_positive("epsilon", epsilon)
    b, k = scores.shape
    log_q = scores / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
    return torch.exp(log_q + math.log(b))
