"""Run directories are never damaged: checks made before Hydra creates or rewrites one.

- a run directory that is a file, or a folder that cannot be written, is refused, naming the path;
- training into a directory that holds a run (``checkpoints/last.pt``) is refused unless the user
  resumes it (``trainer.resume=true``) or starts over (``trainer.overwrite=true``);
- a resume needs a readable genssl checkpoint written by the same method with the same shapes: a
  foreign, truncated or newer checkpoint, or one of another method or size, is refused with what it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyro
import torch
from omegaconf import DictConfig, OmegaConf

from genssl.cli.command import Command
from genssl.distributed import slurm_restarts
from genssl.errors import ConfigError, DataError
from genssl.runfiles import checkpoint_config, read_checkpoint

CHECKPOINT = Path("checkpoints") / "last.pt"


def override_value(overrides: Sequence[str], key: str) -> str | None:
    for override in reversed(overrides):
        name, sep, value = override.partition("=")
        if sep and name.lstrip("+~") == key:
            return value
    return None


def check(command: Command, jobs: Sequence[tuple[list[str], DictConfig]]) -> None:
    """The run directory of every job (known when the user names it: hydra.run.dir, hydra.sweep.dir)."""
    for number, (overrides, cfg) in enumerate(jobs):
        if command.multirun:
            sweep = override_value(command.overrides, "hydra.sweep.dir")
            if sweep is None:
                continue  # a fresh timestamped folder
            subdir = override_value(command.overrides, "hydra.sweep.subdir")
            run_dir = Path(sweep) / job_subdir(subdir, number, cfg)
        else:
            named = override_value(overrides, "hydra.run.dir")
            run_dir = Path(named) if named is not None else None
        check_run_dir(run_dir, cfg)


def job_subdir(pattern: str | None, number: int, cfg: DictConfig) -> str:
    """A sweep job's sub-folder, as Hydra will name it (``configs/config.yaml``'s pattern by default)."""
    pattern = pattern or "${hydra.job.num}_${method.name}_${data.name}_seed${seed}"
    text = pattern.replace("${hydra.job.num}", str(number))
    try:
        resolved = OmegaConf.create({"_subdir": text, **OmegaConf.to_container(cfg, resolve=False)})
        return str(resolved._subdir)
    except Exception:  # an interpolation only Hydra knows at run time: leave that job's folder to it
        return text


def check_run_dir(run_dir: Path | None, cfg: DictConfig) -> None:
    """One job's directory: writable, not a file, and either fresh or resumed / overwritten on purpose."""
    t = cfg.trainer
    resume, overwrite = bool(t.get("resume", False)), bool(t.get("overwrite", False))
    if resume and overwrite:
        raise ConfigError("trainer.resume=true and trainer.overwrite=true contradict each other: choose one.")
    if run_dir is None:
        if resume:
            raise ConfigError("trainer.resume=true needs the run to resume: pass its directory as hydra.run.dir=<dir>.")
        writable(Path.cwd(), "the working directory (where outputs/ goes)")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"hydra.run.dir={run_dir} is a file, not a folder: choose a folder for the run.")
    writable(run_dir, f"the run directory {run_dir}")
    checkpoint = run_dir / CHECKPOINT
    holds_run = checkpoint.exists() or (run_dir / "metrics.json").exists()
    requeued = checkpoint.exists() and slurm_restarts() > 0 and not overwrite  # resumes (genssl.cli.train)
    if resume or requeued:
        if not checkpoint.exists():
            raise ConfigError(
                f"trainer.resume=true but there is no checkpoint at {checkpoint}. Pass the run directory of the "
                "run to resume as hydra.run.dir=<dir>, or drop trainer.resume to start afresh."
            )
        check_resumable(checkpoint, cfg)
    elif holds_run and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run ({'checkpoints/last.pt' if checkpoint.exists() else 'metrics.json'}): "
            "genssl will not replace it. Continue it with trainer.resume=true, start it over with "
            "trainer.overwrite=true, or choose another hydra.run.dir."
        )


def writable(path: Path, what: str) -> None:
    """The nearest existing folder at or above ``path`` can be written."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{existing} is a file, so {what} cannot be made there.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{existing} is not writable, so {what} cannot be written: choose a writable folder.")


def check_resumable(path: Path, cfg: DictConfig) -> None:
    """The checkpoint reads, was written by this method, and its weights fit this method's shapes."""
    from genssl.methods import build_method

    state = read_checkpoint(path)
    try:
        saved = checkpoint_config(state)
    except ValueError as err:
        raise DataError(f"The checkpoint {path} is damaged: {err}.") from None
    saved_method = (saved.get("method") or {}).get("name")
    if saved_method is not None and saved_method != cfg.method.name:
        raise ConfigError(
            f"The checkpoint {path} was written by method={saved_method}, not method={cfg.method.name}: resume it "
            f"with method={saved_method}, or train this method into another hydra.run.dir."
        )
    d = cfg.data
    channels = 3 if d.get("styled", False) else int(d.channels)
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
        method = build_method(cfg, channels, int(d.image_size))
        try:
            method.load_state_dict(state["method"])
        except Exception as err:
            reason = " ".join(str(err).split())[:400]
            raise ConfigError(
                f"The checkpoint {path} does not fit this run's {cfg.method.name} (other sizes or settings than it "
                f"was trained with: {reason}). Resume with the run's own settings (its .hydra/config.yaml)."
            ) from None
