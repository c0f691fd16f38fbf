"""Wall time of the end-of-training evaluation of a run, under each preset, with the figures side by side.

    python bench/eval_speed.py /path/to/run_dir --threads 2
    python bench/eval_speed.py /path/to/run_dir --presets fast --no-baseline

Rebuilds the run's method from its ``.hydra/config.yaml`` and ``checkpoints/last.pt`` (as
``genssl-eval`` does), then runs :func:`genssl.eval.evaluate.evaluate_with_baseline` once per preset in
this one process (the trained network and, unless ``--no-baseline``, the untrained baseline), writing
artefacts to a temporary folder: the run directory is not touched. Prints the total wall and CPU
seconds (all threads of this process; on a busy machine, CPU seconds at ``--threads 1`` are the
steadier figure), the seconds of each probe (``timings`` in ``metrics.json``) and the content
metrics, ``style_mean`` and ``rank_me`` of every preset, for the run and its baseline; ``--json``
also saves everything. Extra ``key=value`` arguments override the run's config as in
``genssl-eval`` (e.g. ``trainer.device=cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import open_dict


def evaluate_presets(
    run_dir: Path, presets: list[str], overrides: list[str], baseline: bool
) -> dict[str, dict[str, Any]]:
    from genssl.cli.eval import load_run_config
    from genssl.data import dataset_from_config
    from genssl.eval.evaluate import evaluate_with_baseline
    from genssl.methods import untrained_method
    from genssl.runfiles import load_checkpoint
    from genssl.runtime import resolve_device

    cfg = load_run_config(run_dir, overrides)
    with open_dict(cfg):
        cfg.trainer.progress = False
        cfg.eval.baseline = baseline
    device = resolve_device(cfg.trainer.device)
    dataset = dataset_from_config(cfg)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location=device)
    results = {}
    for preset in presets:
        cfg.eval.preset = preset
        method = untrained_method(cfg, dataset, device)
        method.restore_weights(checkpoint)
        with tempfile.TemporaryDirectory() as artefacts:
            start, cpu = time.perf_counter(), time.process_time()
            metrics = evaluate_with_baseline(
                cfg, method, dataset, device, Path(artefacts), trained=checkpoint["step"] > 0
            )
            metrics["bench_seconds"] = time.perf_counter() - start
            metrics["bench_cpu_seconds"] = time.process_time() - cpu
        results[preset] = metrics
        print(
            f"{preset}: {metrics['bench_seconds']:.1f} s wall, {metrics['bench_cpu_seconds']:.1f} s CPU, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    return results


def _block(metrics: dict[str, Any], block: str | None) -> dict[str, Any]:
    return metrics if block is None else metrics.get(block, {})


def _metric_rows(results: dict[str, dict[str, Any]], block: str | None) -> dict[str, list[float | None]]:
    """Name → value per preset of the content metrics, style_mean and rank_me of the run or its baseline."""
    picks = [_block(m, block) for m in results.values()]
    names = list(dict.fromkeys(k for m in picks for k in m.get("content", {})))
    rows = {k: [m.get("content", {}).get(k) for m in picks] for k in names}
    return rows | {k: [m.get(k) for m in picks] for k in ("style_mean", "rank_me")}


def _timing_rows(results: dict[str, dict[str, Any]], block: str | None) -> dict[str, list[float | None]]:
    """Name → seconds per preset of every timed step of the run or its baseline, and their total."""
    picks = [_block(m, block) for m in results.values()]
    names = list(dict.fromkeys(k for m in picks for k in m.get("timings", {})))
    return {k: [m.get("timings", {}).get(k) for m in picks] for k in names} | {
        "total": [m.get("eval_seconds") for m in picks]
    }


def format_tables(results: dict[str, dict[str, Any]]) -> str:
    presets = list(results)
    blocks = [("run", None)] + ([("baseline", "baseline")] if all("baseline" in m for m in results.values()) else [])
    lines = [
        "both evaluations: "
        + ", ".join(
            f"{p} {results[p]['bench_seconds']:.1f} s wall, {results[p]['bench_cpu_seconds']:.1f} s CPU"
            for p in presets
        )
    ]
    for title, rows_of, fmt in (("seconds", _timing_rows, "{:.2f}"), ("metric", _metric_rows, "{:.4f}")):
        tables = [rows_of(results, block) for _, block in blocks]
        names = list(dict.fromkeys(name for table in tables for name in table))
        lines += ["", f"{title:<18}" + "".join(f"{f'{label}:{p}':>16}" for label, _ in blocks for p in presets)]
        for name in names:
            cells = [v for table in tables for v in table.get(name, [None] * len(presets))]
            lines.append(f"{name:<18}" + "".join(("-" if v is None else fmt.format(v)).rjust(16) for v in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the run's config")
    parser.add_argument("--presets", nargs="+", default=["fast", "full"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true", help="evaluate the trained network only")
    parser.add_argument("--json", type=Path, help="also write the metrics of every preset here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = evaluate_presets(args.run_dir, args.presets, args.overrides, not args.no_baseline)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(format_tables(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
