"""The fixed part of ``metrics.json``: what ran, and how fast it trained."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def metrics_payload(cfg: DictConfig, state: Any, wall_seconds: float) -> dict[str, Any]:
    """``method``, ``data`` and the ``train`` block; samples are augmented views."""
    return {
        "method": cfg.method.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "train": {
            "epochs": state.epoch,
            "steps": state.step,
            "seconds": state.seconds,
            "wall_seconds": wall_seconds,
            "samples_per_s": state.samples / state.seconds if state.seconds > 0 else 0.0,
        },
    }
