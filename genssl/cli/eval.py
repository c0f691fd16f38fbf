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

from genssl.errors import ConfigError, DataError, GensslError


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
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file, not the folder of a genssl-train run.")
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
    ``eval/default.yaml``, so old runs evaluate too. Every override must name a setting the run's config
    has and hold a valid value (the schema of :mod:`genssl.cli.schema`).
    """
    from genssl.cli.schema import validate

    path = run_dir / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # YAML errors span lines: one paragraph
        raise DataError(
            f"The run's config {path} does not parse ({' '.join(str(err).split())[:300]}): it is damaged; "
            "restore it from the checkpoint's copy (torch.load(..., weights_only=True)['config'])."
        ) from None
    if not isinstance(cfg, DictConfig) or "method" not in cfg or "data" not in cfg:
        raise DataError(f"{path} is not a genssl run's config (it has no method and data settings).")
    default = OmegaConf.load(importlib.resources.files("genssl.configs").joinpath("eval", "default.yaml"))
    cfg.eval = OmegaConf.merge(default, cfg.get("eval") or {})
    try:
        requested = OmegaConf.from_dotlist(overrides)
    except Exception as err:
        raise ConfigError(f"Could not read the overrides {overrides}: {' '.join(str(err).split())}.") from None
    plain_run = OmegaConf.to_container(cfg, resolve=False)
    validate(OmegaConf.to_container(requested, resolve=False), plain_run)
    return OmegaConf.merge(cfg, requested)


def read_metrics(path: Path) -> dict | None:
    """The run's metrics.json, or None; a damaged one is an error (re-evaluating would overwrite it)."""
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is damaged ({err}). Move it aside and run genssl-eval again to write a new one."
        ) from None
    if not isinstance(metrics, dict):
        raise DataError(f"{path} holds a {type(metrics).__name__}, not a genssl metrics object.")
    return metrics


def evaluate_run(run_dir: Path, checkpoint_path: Path, cfg: DictConfig) -> dict:
    """Rebuild the run's method, load its weights, evaluate and write ``metrics.json``."""
    from genssl.cli.rundirs import writable
    from genssl.data import dataset_from_config
    from genssl.eval.evaluate import evaluate_with_baseline
    from genssl.methods import untrained_method
    from genssl.runfiles import checkpoint_config, read_checkpoint, write_json_atomic
    from genssl.runtime import resolve_device, set_num_threads

    writable(run_dir, f"the evaluation's files in {run_dir}")
    metrics_path = run_dir / "metrics.json"
    previous = read_metrics(metrics_path)
    set_num_threads(cfg.trainer.get("num_threads"))
    device = resolve_device(cfg.trainer.device)
    checkpoint = read_checkpoint(checkpoint_path, map_location=device)
    saved_method = (checkpoint_config(checkpoint).get("method") or {}).get("name")
    if saved_method not in (None, cfg.method.name):
        raise DataError(
            f"The checkpoint {checkpoint_path} was written by method={saved_method}, but the run's config says "
            f"method={cfg.method.name}: they are not one run."
        )
    dataset = dataset_from_config(cfg)
    k = int(cfg.eval.knn.k)
    if k > len(dataset.train):
        raise ConfigError(f"eval.knn.k={k} is more neighbours than the {len(dataset.train)} training images.")
    method = untrained_method(cfg, dataset, device)
    try:
        method.restore_weights(checkpoint)
    except RuntimeError as err:
        raise DataError(
            f"The checkpoint {checkpoint_path} does not fit the run's {cfg.method.name} "
            f"({' '.join(str(err).split())[:300]}): it belongs to another run or settings."
        ) from None
    metrics = previous or {"method": cfg.method.name, "data": cfg.data.name, "seed": cfg.seed}
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
    except KeyboardInterrupt:
        print("genssl: evaluation interrupted; metrics.json is as it was.", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        print(f"genssl: error: could not write {err.filename or 'a file'}: {err.strerror or err}.", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(metrics["content"]))


if __name__ == "__main__":
    main()
