"""Exponential-moving-average target networks (BYOL's target, DINO's teacher).

A target starts as a frozen copy of the online network and follows it after every optimiser step,
``target ← τ·target + (1 − τ)·online``, with BYOL's cosine schedule raising τ from its base value to
1 over the planned run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from genssl.ramps import cosine_decay


def ema_momentum(base: float, progress: float) -> float:
    """BYOL's cosine schedule: τ = 1 − (1 − τ_base)·½(cos(π·progress) + 1), progress ∈ [0, 1]."""
    return 1.0 - (1.0 - base) * cosine_decay(progress)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the starting point of an EMA target."""
    copied = copy.deepcopy(module)
    copied.requires_grad_(False)
    return copied


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target ← τ·target + (1 − τ)·online for parameters; buffers (BatchNorm statistics) are copied."""
    for target_p, online_p in zip(target.parameters(), online.parameters()):
        target_p.mul_(tau).add_(online_p.detach(), alpha=1.0 - tau)
    for target_b, online_b in zip(target.buffers(), online.buffers()):
        target_b.copy_(online_b)
