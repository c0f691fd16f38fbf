"""Features of a frozen encoder over a whole split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from genssl.data.augment import to_unit_float
from genssl.data.streaming import BatchStream


@torch.no_grad()
def extract_features(
    represent: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 1024,
    desc: str = "features",
    progress: bool = True,
) -> torch.Tensor:
    """Apply ``represent`` to uint8 images [N, C, H, W] (a tensor or :class:`~genssl.data.streaming.LazyImages`)
    in batches on ``device``; returns [N, D] float32."""
    chunks = []
    # Image files (data=image_folder) decode in DataLoader workers, as in training; tensors are sliced.
    with BatchStream.in_order(images, batch_size, device=device) as stream:
        for _, batch in tqdm(stream, desc=desc, unit="batch", leave=False, disable=not progress):
            chunks.append(represent(to_unit_float(batch)).float())
    return torch.cat(chunks)
