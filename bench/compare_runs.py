"""Tables (mean ± std over seeds, beside the untrained baseline) and loss curves of groups of runs.

    python bench/compare_runs.py --group "SimCLR=multirun/a/*simclr*" --group "SimCLR + vMF mixture=multirun/a_vmf/*" \\
        --metrics linear knn nmi gmm_acc rank_me --out bench/results/content_priors

Each ``--group LABEL=GLOB`` names run directories written by ``genssl-train`` (each holds
``metrics.json`` and ``metrics.jsonl``), one per seed, read and summarised by genssl-report's own code
(:mod:`genssl.report.collect`, :class:`genssl.report.aggregate.Group`). Prints a Markdown table: per
group, each metric's mean ± sample std over the runs and, in brackets, the same for the untrained
baseline block of those runs (the zero-epoch network of the same seed). ``--out`` also writes
``<out>.md`` (the table) and ``<out>.png`` (each run's logged step losses, one colour per group).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from genssl.report.aggregate import Group, Stat, metric_columns
from genssl.report.collect import load_runs


def load_group(label: str, pattern: str) -> Group:
    paths = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "metrics.json").is_file())
    if not paths:
        raise SystemExit(f"error: no run directory with a metrics.json matches {pattern!r}")
    runs = load_runs(paths)
    return Group(runs[0].data, runs[0].method, runs, label)


def shown(stat: Stat | None) -> str:
    return "—" if stat is None else f"{stat.mean:.4f} ± {stat.std:.4f}"


def table(groups: list[Group], metrics: list[str]) -> str:
    """genssl-report's statistics (:meth:`Group.stat`: mean ± sample std over seeds) of each metric."""
    columns = {c.key: c for c in metric_columns(groups)}
    unknown = [m for m in metrics if m not in columns]
    if unknown:
        raise SystemExit(f"error: no run has {unknown}; the runs have {sorted(columns)}")
    header = "| group | runs | " + " | ".join(f"{m} (untrained)" for m in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for group in groups:
        cells = [f"{shown(group.stat(columns[m]))} ({shown(group.baseline_stat(columns[m]))})" for m in metrics]
        lines.append(f"| {group.name} | {len(group.runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: list[Group], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for colour, group in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], groups):
        for i, run in enumerate(group.runs):
            steps, losses = zip(*run.curve) if run.curve else ((), ())
            ax.plot(steps, losses, color=colour, alpha=0.8, label=group.name if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("−ELBO (logged mean over the last steps)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", required=True, help="LABEL=GLOB of run directories")
    parser.add_argument("--metrics", nargs="+", default=["linear", "knn", "nmi"], help="genssl-report's column keys")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    groups = []
    for spec in args.group:
        label, sep, pattern = spec.rpartition("=")  # a label may hold "=" (K = 100), a folder glob rarely does
        if not sep:
            raise SystemExit(f"error: --group {spec!r} must be LABEL=GLOB")
        groups.append(load_group(label, pattern))
    text = table(groups, args.metrics)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text + "\n")
        plot(groups, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
