"""The hooks a method offers the training loop, as a typed protocol.

The loop calls exactly these, at fixed points, and nothing else on a method: a guide implements the
ones it needs (:class:`~genssl.guides.EncoderGuide` gives every hook a no-op default) and
:class:`~genssl.inference.pyro_ssl.PyroSSL` forwards them to its guide.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class TrainingHooks(Protocol):
    """What the training loop and the evaluation call on a method besides its loss."""

    #: Whether the loss takes the batch's dataset indices (per-image guide state, e.g. DeepCluster's labels).
    uses_index: bool

    def before_epoch(
        self, images: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> None:
        """Start of an epoch, with all uint8 training images [N, C, H, W] (default: nothing)."""

    def after_step(self, progress: float) -> None:
        """After each optimiser step, with training progress in [0, 1] (default: nothing)."""

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen representation [N, D] of float images [N, C, H, W] that the evaluation probes."""
        ...
