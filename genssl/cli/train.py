"""``genssl-train``: the Hydra entry point that trains a method and evaluates it."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from genssl import distributed
from genssl.errors import GensslError
from genssl.train.loop import Stopped

# Sweep jobs that failed (a sweep goes on past a failed job and exits non-zero at the end).
FAILED_JOBS: list[str] = []
# Named run directories that existed when the command started (never removed on a failure).
PREEXISTING: set[Path] = set()


def main() -> None:
    """Console script: check the whole command (every sweep job) before Hydra writes anything, then run it."""
    from genssl.cli.overrides import normalise_overrides
    from genssl.cli.prevalidate import check_command, searchpath_dirs, split

    use_working_directory()
    procs = distributed.setup()  # under torchrun: one process per device (Slurm tasks join in run())
    share_start_time(procs)
    try:
        command = split(sys.argv[1:])
        overrides = normalise_overrides(command.overrides, searchpath_dirs(command))
        argv = [*command.flags, *overrides]
        checked = check_command(argv)
        PREEXISTING.update(_named_dirs(checked.overrides))
    except GensslError as err:
        fail(err)
    except KeyboardInterrupt:
        print("genssl: interrupted while checking the command; nothing was written.", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        fail(GensslError(f"{err.filename or 'a file'}: {err.strerror or err}."))
    # Rank 0 writes the run's files; the other ranks share its run directory and write nothing there.
    quiet = ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    sys.argv = [sys.argv[0], *argv, *([] if procs.main else quiet)]
    try:
        _hydra_main()
    except Exception as err:  # a Slurm job that failed, as submitit reports it in the submitting process
        if type(err).__module__.startswith("submitit"):
            lines = [line for line in str(err).splitlines() if line.strip()]
            fail(GensslError(f"a Slurm job failed: {lines[-1] if lines else type(err).__name__} (its log is under "
                             "the sweep directory's .submitit/ folder)."))  # fmt: skip
        raise
    finally:
        distributed.shutdown()
    if FAILED_JOBS:
        print(f"genssl: error: {len(FAILED_JOBS)} sweep job(s) failed: " + " | ".join(FAILED_JOBS), file=sys.stderr)
        sys.exit(2)


def share_start_time(procs: distributed.Processes) -> None:
    """Every rank resolves Hydra's ``${now:…}`` (the run directory's name) to rank 0's start time, so that
    the processes of one run share one run directory."""
    if not procs.distributed:
        return
    import hydra.core.utils as hydra_utils

    start = distributed.broadcast_object(datetime.now())

    class _StartTime(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:
            return start

    hydra_utils.datetime = _StartTime


def _named_dirs(overrides: list[str]) -> set[Path]:
    out = set()
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in ("hydra.run.dir", "hydra.sweep.dir") and Path(value).exists():
            out.add(Path(value).resolve())
    return out


def use_working_directory() -> None:
    """Put the current directory on the import path, as ``python -m`` would: a user's own prior or terms
    (``model.prior._target_=mypriors.LaplacePrior``) import from the folder the run starts in."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def fail(err: GensslError) -> None:
    if distributed.processes().main:  # every rank meets the same error: one message
        print(f"genssl: error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="pkg://genssl.configs", config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    main_rank = distributed.processes().main
    try:
        run(cfg, run_dir)
    except Stopped as stop:
        if main_rank:
            print(f"genssl: {stop}; checkpoint written. {resume_hint(run_dir)}", file=sys.stderr)
        sys.exit(130)
    except (GensslError, OSError, KeyboardInterrupt) as err:
        message = _message(err, run_dir)
        if main_rank:
            _clean_failed_run_dir(run_dir)
        if os.environ.get("SUBMITIT_EXECUTOR"):  # a Slurm job: fail it, so that submitit reports it
            raise GensslError(message) from None
        if multirun and not isinstance(err, KeyboardInterrupt):
            print(f"genssl: error in {run_dir}: {message} (the sweep goes on)", file=sys.stderr)
            FAILED_JOBS.append(f"{run_dir.name}: {message}")
            return
        if isinstance(err, KeyboardInterrupt):
            print(f"genssl: {message}", file=sys.stderr)
            sys.exit(130)
        fail(GensslError(message))


def _message(err: BaseException, run_dir: Path) -> str:
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted. {resume_hint(run_dir)}"
    if isinstance(err, OSError) and not isinstance(err, GensslError):
        what = {28: "the disk is full", 13: "permission denied", 30: "the file system is read-only"}.get(
            err.errno or 0, err.strerror or str(err)
        )
        return f"could not write {err.filename or run_dir}: {what}. The last good checkpoint is kept."
    return str(err)


def resume_hint(run_dir: Path) -> str:
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if checkpoint.exists():
        return f"Resume from {checkpoint} with trainer.resume=true hydra.run.dir={run_dir}."
    return "No checkpoint was written yet; start the run again."


def _clean_failed_run_dir(run_dir: Path) -> None:
    """A run directory this command created and that holds nothing but Hydra's .hydra/ is removed."""
    if run_dir.resolve() in PREEXISTING or not run_dir.is_dir():
        return
    if all(entry.name == ".hydra" for entry in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train, save ``checkpoints/last.pt``, evaluate and write ``metrics.json`` into ``run_dir``."""
    from genssl.data import dataset_from_config
    from genssl.eval.evaluate import evaluate_with_baseline
    from genssl.eval.report_json import metrics_payload
    from genssl.methods import untrained_method
    from genssl.runfiles import write_json_atomic
    from genssl.runtime import resolve_device, set_num_threads
    from genssl.train.loop import train

    set_num_threads(cfg.trainer.num_threads)
    procs = distributed.setup()  # joins Slurm's tasks (torchrun's processes joined in main())
    device = distributed.device_for(resolve_device(cfg.trainer.device), procs)
    resume_if_requeued(cfg, run_dir, procs)
    dataset = dataset_from_config(cfg)
    method = untrained_method(cfg, dataset, device)  # seeded here, so the baseline can rebuild it exactly
    start = time.perf_counter()
    state = train(cfg, method, dataset, device, run_dir)
    wall = time.perf_counter() - start
    if not procs.main:
        return {}  # rank 0 evaluates and writes metrics.json; the others are done
    metrics = metrics_payload(cfg, state, wall)
    if cfg.eval.enabled:
        metrics.update(evaluate_with_baseline(cfg, method, dataset, device, run_dir, trained=state.step > 0))
    write_json_atomic(run_dir / "metrics.json", metrics)
    print(f"genssl: {cfg.method.name} on {cfg.data.name}: {headline(metrics)}  → {run_dir}", file=sys.stderr)
    return metrics


def resume_if_requeued(cfg: DictConfig, run_dir: Path, procs: distributed.Processes) -> None:
    """A Slurm job requeued after preemption or a time-out (SLURM_RESTART_COUNT > 0) resumes from its run
    directory's checkpoint; the run's saved config then says so."""
    from genssl.train.loop import CHECKPOINT

    restarts = distributed.slurm_restarts()
    if restarts < 1 or cfg.trainer.resume or cfg.trainer.get("overwrite") or not (run_dir / CHECKPOINT).exists():
        return
    cfg.trainer.resume = True
    if procs.main:
        print(f"genssl: Slurm requeued this job (restart {restarts}): resuming from {run_dir / CHECKPOINT}.",
              file=sys.stderr)  # fmt: skip
        saved = run_dir / ".hydra" / "config.yaml"
        if saved.parent.is_dir():
            tmp = saved.with_suffix(".yaml.tmp")
            tmp.write_text(OmegaConf.to_yaml(cfg))
            tmp.replace(saved)


def headline(metrics: dict) -> str:
    """``linear 0.8465 (untrained 0.8253), knn …, style_mean …`` for the end-of-run line."""
    base = metrics.get("baseline", {})
    parts = []
    for key, value, reference in [
        *(
            (k, v, base.get("content", {}).get(k))
            for k, v in metrics.get("content", {}).items()
            if k in ("linear", "knn", "mlp")
        ),
        ("style_mean", metrics.get("style_mean"), base.get("style_mean")),
    ]:
        if value is not None:
            parts.append(f"{key} {value:.4f}" + (f" (untrained {reference:.4f})" if reference is not None else ""))
    return ", ".join(parts) or "not evaluated"


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
