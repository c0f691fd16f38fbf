"""Metric sinks: ``metrics.jsonl`` in the run directory, and optionally Weights & Biases."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genssl.errors import ConfigError, choices

LOGGERS = ("none", "wandb")


class RunLogger:
    """Appends one JSON object per logged step or epoch to ``metrics.jsonl``; mirrors it to wandb if asked."""

    def __init__(self, run_dir: Path, logger_cfg: DictConfig, full_cfg: DictConfig, enabled: bool = True) -> None:
        if logger_cfg.name not in LOGGERS:
            raise ConfigError(f"Unknown logger '{logger_cfg.name}': logger must be {choices(LOGGERS)}.")
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled  # only rank 0 of a distributed run logs
        self.wandb = None
        if logger_cfg.name == "wandb" and enabled:
            self.wandb = _start_wandb(run_dir, logger_cfg, full_cfg)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            step = record.get("step")
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.wandb is not None:
            self.wandb.summary.update(_flatten(metrics))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(run_dir: Path, logger_cfg: DictConfig, full_cfg: DictConfig) -> Any:
    import wandb  # imported lazily: it is slow to import and most runs do not use it

    mode = logger_cfg.mode
    if mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"Unknown wandb mode '{mode}': logger.mode must be 'offline', 'online' or 'disabled'.")
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        name=logger_cfg.run_name,
        tags=list(logger_cfg.tags),
        mode=mode,
        dir=str(run_dir),
        config=OmegaConf.to_container(full_cfg, resolve=True),
    )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat
