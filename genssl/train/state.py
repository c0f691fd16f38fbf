"""What a checkpoint holds and how a run picks up from one, at an epoch boundary or mid-epoch.

A checkpoint (``checkpoints/last.pt``, format :data:`~genssl.runfiles.CHECKPOINT_FORMAT`) holds the
method's weights, ``pyro.param`` values, the optimiser, the progress counters, the RNG states and
the resolved config. One written when a run is stopped (Ctrl-C, SIGTERM: a Slurm preemption) also
holds the epoch's permutation, its position in it and the epoch generator's state, so the resumed
run takes exactly the batches and random draws the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genssl.runfiles import CHECKPOINT_FORMAT


@dataclass
class TrainState:
    """How far a run has got; saved in every checkpoint so a resumed run continues the count."""

    epoch: int = 0  # completed epochs
    step: int = 0
    seconds: float = 0.0
    samples: int = 0  # views seen


@dataclass
class EpochPosition:
    """Where a stopped run was inside its epoch: the permutation, the steps taken, the generator's state."""

    order: torch.Tensor
    steps_done: int
    generator_state: torch.Tensor
    rank_generator_states: list[torch.Tensor] | None = None  # every rank's augmentation stream (several ranks)


def checkpoint_payload(
    method: torch.nn.Module,
    extra: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config_yaml: str,
    position: EpochPosition | None = None,
) -> dict[str, Any]:
    """Everything a resumed run needs (see the module docstring)."""
    import genssl

    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "genssl": genssl.__version__,
        "method": method.state_dict(),
        "extra_params": {name: p.detach().cpu() for name, p in extra.items()},
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "samples": state.samples,
        "rng": rng,
        "config": config_yaml,
    }
    if position is not None:
        payload["epoch_position"] = {
            "order": position.order.cpu(),
            "steps_done": position.steps_done,
            "generator_state": position.generator_state.cpu(),
            "rank_generator_states": [s.cpu() for s in position.rank_generator_states or []],
        }
    return payload


def restore(
    checkpoint: dict[str, Any], method: Any, extra: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> tuple[TrainState, EpochPosition | None]:
    """Load a checkpoint into ``method`` and ``optimizer`` and the global RNG; the state and mid-epoch position."""
    method.restore_weights(checkpoint, extra)
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in checkpoint["rng"]["cuda"]])
    state = TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["seconds"], checkpoint["samples"])
    saved = checkpoint.get("epoch_position")
    position = None
    if saved is not None:
        ranks = list(saved.get("rank_generator_states") or []) or None
        position = EpochPosition(saved["order"], int(saved["steps_done"]), saved["generator_state"], ranks)
    return state, position


def truncate_metrics(path: Path, state: TrainState) -> int:
    """Cut ``metrics.jsonl`` back to the records a checkpoint at ``state`` had seen (a resumed run logs the
    steps after it again); returns how many records were dropped. Unreadable lines are dropped too."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        late = record.get("step", 0) > state.step or (
            record.get("kind") == "epoch" and record.get("epoch", 0) > state.epoch
        )
        if late:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return dropped


def non_finite_parameters(method: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers holding a NaN or an infinity (never written to a checkpoint)."""
    bad = []
    for name, tensor in [*method.named_parameters(), *method.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
    return bad


def finite(value: float) -> bool:
    return math.isfinite(value)
