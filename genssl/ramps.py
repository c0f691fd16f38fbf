"""Ramps over training progress shared by the learning-rate schedule and the EMA-momentum schedule."""

from __future__ import annotations

import math


def cosine_decay(progress: float) -> float:
    """½(1 + cos(π·p)) for progress p clipped to [0, 1]: 1 at the start, 0 at the end."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
