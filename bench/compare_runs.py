"""Tables (mean ± std over seeds, beside the untrained baseline) and loss curves of groups of runs.

    python bench/compare_runs.py --group "SimCLR=multirun/a/*simclr*" --group "SimCLR + vMF mixture=multirun/a_vmf/*" \\
        --metrics content.linear content.knn content.nmi content.gmm_acc --out bench/results/content_priors

Each ``--group LABEL=GLOB`` names run directories written by ``genssl-train`` (each holds
``metrics.json`` and ``metrics.jsonl``), one per seed. Prints a Markdown table: per group, each
metric's mean ± population std over the runs and, in brackets, the same for the untrained baseline
block of those runs (the zero-epoch network of the same seed). ``--out`` also writes
``<out>.md`` (the table) and ``<out>.png`` (each run's logged step losses, one colour per group).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path
from typing import Any


def lookup(metrics: dict[str, Any], dotted: str) -> float | None:
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def summary(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    spread = statistics.pstdev(present) if len(present) > 1 else 0.0
    return f"{statistics.fmean(present):.4f} ± {spread:.4f}"


def load_group(pattern: str) -> list[Path]:
    runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "metrics.json").is_file())
    if not runs:
        raise SystemExit(f"error: no run directory with a metrics.json matches {pattern!r}")
    return runs


def table(groups: dict[str, list[Path]], metrics: list[str]) -> str:
    header = "| group | runs | " + " | ".join(f"{m} (untrained)" for m in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for label, runs in groups.items():
        loaded = [json.loads((run / "metrics.json").read_text()) for run in runs]
        cells = []
        for metric in metrics:
            trained = summary([lookup(m, metric) for m in loaded])
            baseline = summary([lookup(m.get("baseline", {}), metric) for m in loaded])
            cells.append(f"{trained} ({baseline})")
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: dict[str, list[Path]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for colour, (label, runs) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], groups.items()):
        for i, run in enumerate(runs):
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
            steps = [r for r in records if r.get("kind") == "step"]
            ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color=colour, alpha=0.8,
                    label=label if i == 0 else None)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("−ELBO (logged mean over the last steps)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", required=True, help="LABEL=GLOB of run directories")
    parser.add_argument("--metrics", nargs="+", default=["content.linear", "content.knn", "content.nmi"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    groups = {}
    for spec in args.group:
        label, sep, pattern = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: --group {spec!r} must be LABEL=GLOB")
        groups[label] = load_group(pattern)
    text = table(groups, args.metrics)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text + "\n")
        plot(groups, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
