"""Features of a frozen encoder over a whole split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from genssl.data.augment import to_unit_float


@torch.no_grad()
def extract_features(
    represent: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 1024,
    desc: str = "features",
    progress: bool = True,
) -> torch.Tensor:
    """Apply ``represent`` to uint8 images [N, C, H, W] in batches on ``device``; returns [N, D] float32."""
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False, disable=not progress):
        batch = images[start : start + batch_size].to(device)
        batch = to_unit_float(batch)
        chunks.append(represent(batch).float())
    return torch.cat(chunks)
