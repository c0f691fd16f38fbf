"""``genssl-eval run_dir=<dir>`` (or ``checkpoint=<file>``): re-run the evaluation of a trained run.

The run's own resolved config (``.hydra/config.yaml``) rebuilds the method; the checkpoint's weights
are loaded (``weights_only=True``) and ``metrics.json`` is rewritten beside it. Further ``key=value``
arguments override the run's config, e.g. ``eval.knn.k=10`` or ``trainer.device=cpu``; evaluation
settings the run's config lacks (added to the protocol later) take today's defaults.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genssl.errors import ConfigError, GensslError


def parse_args(argv: list[str]) -> tuple[Path, Path, list[str]]:
    """Split ``run_dir=``/``checkpoint=`` from config overrides; return (run_dir, checkpoint, overrides)."""
    run_dir = checkpoint = None
    overrides = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(
                f"Unexpected argument '{arg}': genssl-eval takes run_dir=<dir> or checkpoint=<file>, "
                "plus key=value overrides of the run's config."
            )
        if key == "run_dir":
            run_dir = Path(value)
        elif key == "checkpoint":
            checkpoint = Path(value)
        else:
            overrides.append(arg)
    if run_dir is None and checkpoint is None:
        raise ConfigError(
            "genssl-eval needs run_dir=<dir of a genssl-train run> or checkpoint=<.../checkpoints/last.pt>."
        )
    if run_dir is None:
        run_dir = checkpoint.resolve().parent.parent
    checkpoint = checkpoint or run_dir / "checkpoints" / "last.pt"
    for path, what in ((run_dir / ".hydra" / "config.yaml", "the run's config"), (checkpoint, "the checkpoint")):
        if not path.is_file():
            raise ConfigError(
                f"Cannot evaluate {run_dir}: {what} {path} does not exist. Point run_dir= at a "
                "directory written by genssl-train (it holds .hydra/config.yaml and checkpoints/last.pt)."
            )
    return run_dir, checkpoint, overrides


def load_run_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's config, its evaluation settings completed by today's defaults, then ``overrides``.

    The run's own ``eval`` block wins so a re-evaluation repeats the run's protocol (its subsets, draws
    and probes); settings added to the protocol since the run was trained come from the packaged
    ``eval/default.yaml``, so old runs evaluate too.
    """
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    default = OmegaConf.load(importlib.resources.files("genssl.configs").joinpath("eval", "default.yaml"))
    cfg.eval = OmegaConf.merge(default, cfg.get("eval") or {})
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except Exception as err:
        raise ConfigError(f"Could not apply overrides {overrides} to the run's config: {err}.") from None


def evaluate_run(run_dir: Path, checkpoint_path: Path, cfg: DictConfig) -> dict:
    """Rebuild the run's method, load its weights, evaluate and write ``metrics.json``."""
    from genssl.data import dataset_from_config
    from genssl.eval.evaluate import evaluate_with_baseline
    from genssl.methods import untrained_method
    from genssl.runfiles import load_checkpoint, write_json_atomic
    from genssl.runtime import resolve_device, set_num_threads

    set_num_threads(cfg.trainer.get("num_threads"))
    device = resolve_device(cfg.trainer.device)
    dataset = dataset_from_config(cfg)
    method = untrained_method(cfg, dataset, device)
    checkpoint = load_checkpoint(checkpoint_path, map_location=device)
    method.restore_weights(checkpoint)
    metrics_path = run_dir / "metrics.json"
    metrics = (
        json.loads(metrics_path.read_text())
        if metrics_path.is_file()
        else {"method": cfg.method.name, "data": cfg.data.name, "seed": cfg.seed}
    )
    metrics.update(evaluate_with_baseline(cfg, method, dataset, device, run_dir, trained=checkpoint["step"] > 0))
    write_json_atomic(metrics_path, metrics)
    return metrics


def main() -> None:
    from genssl.cli.train import use_working_directory

    use_working_directory()  # a run with a prior of the user's own rebuilds it from the same folder
    try:
        run_dir, checkpoint, overrides = parse_args(sys.argv[1:])
        metrics = evaluate_run(run_dir, checkpoint, load_run_config(run_dir, overrides))
    except GensslError as err:
        print(f"genssl: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(metrics["content"]))


if __name__ == "__main__":
    main()
