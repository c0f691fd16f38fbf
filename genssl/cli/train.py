"""``genssl-train``: the Hydra entry point that trains a method and evaluates it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from genssl.errors import GensslError


def main() -> None:
    """Console script: check group overrides, then hand over to Hydra."""
    from genssl.cli.overrides import normalise_overrides

    use_working_directory()
    try:
        sys.argv = [sys.argv[0], *normalise_overrides(sys.argv[1:])]
    except GensslError as err:
        fail(err)
    _hydra_main()


def use_working_directory() -> None:
    """Put the current directory on the import path, as ``python -m`` would: a user's own prior or terms
    (``model.prior._target_=mypriors.LaplacePrior``) import from the folder the run starts in."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def fail(err: GensslError) -> None:
    print(f"genssl: error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="pkg://genssl.configs", config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except GensslError as err:
        fail(err)


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
    device = resolve_device(cfg.trainer.device)
    dataset = dataset_from_config(cfg)
    method = untrained_method(cfg, dataset, device)  # seeded here, so the baseline can rebuild it exactly
    start = time.perf_counter()
    state = train(cfg, method, dataset, device, run_dir)
    wall = time.perf_counter() - start
    metrics = metrics_payload(cfg, state, wall)
    if cfg.eval.enabled:
        metrics.update(evaluate_with_baseline(cfg, method, dataset, device, run_dir, trained=state.step > 0))
    write_json_atomic(run_dir / "metrics.json", metrics)
    print(f"genssl: {cfg.method.name} on {cfg.data.name}: {headline(metrics)}  → {run_dir}", file=sys.stderr)
    return metrics


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
