"""Group runs by (data, method) and summarise each metric over seeds: mean ± std, n, gain over baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from genssl.report.collect import CONTENT_KEYS, Run, warn

# Metrics on a [0, 1] scale (accuracies, NMI/ARI, R², DCI, MIG): gains are shown in percentage points.
# The others (RankMe, ELBO) are shown and differenced in their own units.
RAW_SCALE = {"rank_me", "elbo"}


@dataclass(frozen=True)
class Column:
    """One metric column of the comparison table."""

    key: str
    label: str
    get: Callable[[dict[str, Any]], float | None]  # reads a metric block (a Run's, or its baseline's)
    gain: bool  # show the gain over the untrained baseline

    @property
    def fraction(self) -> bool:
        return self.key not in RAW_SCALE


@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of one group; ``gain`` is the mean per-run difference to the baseline."""

    mean: float
    std: float
    n: int
    gain: float | None


@dataclass
class Group:
    """All seeds of one method on one dataset; ``name`` labels it in tables and figures."""

    data: str
    method: str
    runs: list[Run]
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.method

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def stat(self, column: Column) -> Stat | None:
        """Mean ± std over runs that have the metric; None when no run has it."""
        pairs = [(column.get(_block(r)), column.get(r.baseline) if r.baseline else None) for r in self.runs]
        values = [v for v, _ in pairs if v is not None]
        if not values:
            return None
        gains = [v - b for v, b in pairs if v is not None and b is not None]
        return Stat(
            float(np.mean(values)),
            float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            len(values),
            float(np.mean(gains)) if gains and column.gain else None,
        )

    def baseline_stat(self, column: Column) -> Stat | None:
        """The same metric for the untrained encoders of this group's runs."""
        values = [v for v in (column.get(r.baseline) for r in self.runs if r.baseline) if v is not None]
        if not values:
            return None
        return Stat(
            float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values), None
        )


def _block(run: Run) -> dict[str, Any]:
    """A run's own metrics in the same shape as its ``baseline`` block, so one getter reads both."""
    return {
        "content": run.content,
        "style": run.style,
        "style_mean": run.style_mean,
        "rank_me": run.rank_me,
        "extra": run.extra,
    }


def _content_getter(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda block: block.get("content", {}).get(key)


def _getter(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda block: block.get(key)


def _extra_getter(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda block: block.get("extra", {}).get(key)


def style_getter(factor: str, probe: str = "linear") -> Callable[[dict[str, Any]], float | None]:
    """Reads one factor's probe score (``style[factor][probe]``) from a metric block."""

    def get(block: dict[str, Any]) -> float | None:
        value = block.get("style", {}).get(factor, {}).get(probe)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return get


def group_name(run: Run) -> str:
    """The method with its variant (the settings that set it apart from other runs of the method, see
    :func:`~genssl.report.collect.load_runs`), marked "(untrained)" for a zero-epoch run: the older way
    of getting a baseline is a separate ``trainer.max_epochs=0`` run, which must not be averaged with
    the trained seeds."""
    name = f"{run.method} [{run.variant}]" if run.variant else run.method
    return f"{name} (untrained)" if run.train.get("epochs") == 0 else name


def group_runs(runs: list[Run]) -> dict[str, list[Group]]:
    """Runs grouped by dataset, then method and variant, in the order first seen; seeds sorted within."""
    by_data: dict[str, dict[str, Group]] = {}
    for run in runs:
        groups = by_data.setdefault(run.data, {})
        name = group_name(run)
        groups.setdefault(name, Group(run.data, run.method, [], name)).runs.append(run)
    for groups in by_data.values():
        for group in groups.values():
            group.runs.sort(key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.path)))
            seeds = [r.seed for r in group.runs if r.seed is not None]
            if len(seeds) != len(set(seeds)):
                warn(
                    f"{group.name} on {group.data} has several runs with the same seed ({seeds}); they are "
                    "averaged as if they were different seeds."
                )
    return {data: list(groups.values()) for data, groups in by_data.items()}


def metric_columns(groups: list[Group]) -> list[Column]:
    """Content metrics (known ones first), then style mean, RankMe, DCI / MIG / ELBO: those some run has."""
    runs = [r for g in groups for r in g.runs]
    content_keys = [k for k in CONTENT_KEYS if any(k in r.content for r in runs)]
    content_keys += sorted({k for r in runs for k in r.content} - set(content_keys))
    columns = [Column(k, k, _content_getter(k), True) for k in content_keys]
    if any(r.style_mean is not None for r in runs):
        columns.append(Column("style_mean", "style_mean", _getter("style_mean"), True))
    if any(r.rank_me is not None for r in runs):
        columns.append(Column("rank_me", "rank_me", _getter("rank_me"), False))
    for key in ("dci_disentanglement", "dci_completeness", "dci_informativeness", "mig", "elbo"):
        if any(key in r.extra for r in runs):
            columns.append(Column(key, key.replace("dci_", "DCI "), _extra_getter(key), False))
    return columns


def style_factors(groups: list[Group]) -> list[tuple[str, str]]:
    """(factor, metric kind) for every style factor some run probed, in first-seen order."""
    factors: dict[str, str] = {}
    for group in groups:
        for run in group.runs:
            for name, probe in run.style.items():
                factors.setdefault(name, str(probe.get("metric", "")))
    return list(factors.items())


def best_rows(groups: list[Group], column: Column) -> set[int]:
    """Indices of the groups with the highest mean (ties included, compared as displayed)."""
    shown = {
        i: round(s.mean, 3 if column.fraction else 2) for i, g in enumerate(groups) if (s := g.stat(column)) is not None
    }
    if len(shown) < 2:
        return set()
    top = max(shown.values())
    return {i for i, v in shown.items() if v == top}


def format_stat(stat: Stat | None, column: Column) -> str:
    """``0.847 ± 0.004 (+2.2)``: mean, std over seeds when n > 1, gain in points (or units) over baseline."""
    if stat is None:
        return "–"
    digits = 3 if column.fraction else 2
    text = f"{stat.mean:.{digits}f}"
    if stat.n > 1:
        text += f" ± {stat.std:.{digits}f}"
    if stat.gain is not None:
        gain = stat.gain * 100 if column.fraction else stat.gain
        text += f" ({gain:+.1f})"
    return text


def split_stat(text: str) -> tuple[str, str]:
    """Split a formatted stat into (mean, rest), so writers can bold only the mean."""
    head, _, tail = text.partition(" ")
    return head, (" " + tail if tail else "")
