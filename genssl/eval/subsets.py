"""The evaluation's one seeded-subset helper: which rows a costly metric is computed on."""

from __future__ import annotations

import torch


def seeded_subset(
    n: int,
    limit: int | None,
    seed: int,
    *,
    sort: bool = True,
    device: torch.device | str = "cpu",
    none_if_all: bool = False,
) -> torch.Tensor | None:
    """Indices of a seeded random choice of ``limit`` of ``range(n)``, for metrics too costly on every row.

    The choice is the first ``limit`` entries of ``torch.randperm(n)`` from a CPU generator seeded
    with ``seed`` (each caller offsets its seed to keep its draw apart from its other seeded draws),
    sorted when ``sort`` (rows keep their dataset order) and moved to ``device``. When there is no
    need to choose (``limit`` is None or at least ``n``) the result is ``torch.arange(n)`` on
    ``device``, or None when ``none_if_all`` (the caller then uses its rows as they are).
    """
    if limit is None or n <= limit:
        return None if none_if_all else torch.arange(n, device=device)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    return (rows.sort().values if sort else rows).to(device)
