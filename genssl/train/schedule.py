"""Learning-rate schedules as pure functions of the step, so a resumed run repeats them exactly."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from genssl.errors import ConfigError, choices
from genssl.ramps import cosine_decay

SCHEDULES = ("constant", "cosine")


def learning_rate(
    base_lr: float, step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0
) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of a ``total_steps``-step run.

    Linear warm-up over the first ``warmup_steps`` steps, lr_t = base · (t + 1) / warmup, then

    - ``constant``: lr_t = base;
    - ``cosine``: lr_t = base · ½(1 + cos(π · (t − warmup) / (total − warmup))), from base to 0 at the
      end of the planned run (MAE's recipe, with AdamW).
    """
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"Unknown learning-rate schedule '{schedule}': trainer.optim.schedule must be {choices(SCHEDULES)}."
        )
    if warmup_steps < 0:
        raise ConfigError(f"trainer.optim.warmup_epochs must be ≥ 0; it gives {warmup_steps} warm-up steps.")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    return base_lr * cosine_decay((step - warmup_steps) / max(total_steps - warmup_steps, 1))


def schedule_from_config(optim_cfg: DictConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """``step ↦ learning rate`` for ``trainer.optim`` (lr, schedule, warmup_epochs); raises
    :class:`ConfigError` here, before any training, on a bad schedule."""
    base = float(optim_cfg.lr)
    schedule = str(optim_cfg.get("schedule", "constant"))
    warmup_steps = round(float(optim_cfg.get("warmup_epochs", 0)) * steps_per_epoch)
    learning_rate(base, 0, total_steps, schedule, warmup_steps)
    return lambda step: learning_rate(base, step, total_steps, schedule, warmup_steps)
