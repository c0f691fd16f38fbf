"""Assemble the report: header, legend, then one section per dataset with tables and figures."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from genssl.report import figures
from genssl.report.aggregate import (
    Column,
    Group,
    best_rows,
    format_stat,
    group_name,
    group_runs,
    metric_columns,
    style_factors,
    style_getter,
)
from genssl.report.collect import IMAGE_KINDS, Run, load_embedding, warn
from genssl.report.render import PNG_SIGNATURE, Block, Bullets, Cell, Details, Figure, Heading, Table, Text, slug

LEGEND = {
    "linear": "linear-probe accuracy: a linear classifier fitted on frozen train features, scored on test",
    "knn": "k-nearest-neighbour classifier accuracy on frozen features",
    "mlp": "accuracy of a small MLP probe on frozen features",
    "linear_10": "linear-probe accuracy with only 10 labelled training images per class",
    "linear_100": "linear-probe accuracy with only 100 labelled training images per class",
    "gmm_acc": "accuracy of a Gaussian mixture fitted without labels, clusters matched to classes",
    "nmi": "normalised mutual information between Gaussian-mixture clusters (no labels) and the classes",
    "ari": "adjusted Rand index between Gaussian-mixture clusters (no labels) and the classes",
    "style_mean": "mean style-probe score over the style factors (R² for continuous factors, accuracy for "
    "discrete ones): how much of what varies between views the representation keeps",
    "rank_me": "RankMe, the effective rank of the test features (higher: less dimensional collapse)",
    "dci_disentanglement": "DCI disentanglement w.r.t. the ground-truth factors",
    "dci_completeness": "DCI completeness w.r.t. the ground-truth factors",
    "dci_informativeness": "DCI informativeness w.r.t. the ground-truth factors",
    "mig": "mutual information gap w.r.t. the ground-truth factors",
    "elbo": "evidence lower bound on test data (generative methods)",
}
KIND_TITLES = {"reconstructions": "Reconstructions", "samples": "Samples", "traversals": "Latent traversals"}

Job = tuple[str, Callable[[], list[Block]]]


class ReportBuilder:
    """Turns loaded runs into blocks and PNGs written into ``out_dir`` (a fresh temporary directory)."""

    def __init__(
        self, runs: list[Run], out_dir: Path, projection: str = "tsne", progress: bool = True, title: str | None = None
    ) -> None:
        self.runs, self.out_dir, self.projection, self.progress = runs, out_dir, projection, progress
        self.sections = group_runs(runs)
        self.methods = list(dict.fromkeys(r.method for r in runs))
        self.styles = figures.method_styles(list(dict.fromkeys(group_name(r) for r in runs)))
        self.title = title or f"genssl report: {', '.join(self.methods)} on {', '.join(self.sections)}"
        self._names: set[str] = set()
        self._embedding_sections: set[str] = set()

    def build(self) -> list[Block]:
        """Every block of the report, in order; figures are drawn under one progress bar."""
        jobs: list[Job] = [("header", self._header)]
        for data, groups in self.sections.items():
            jobs += self._section_jobs(data, groups)
        blocks: list[Block] = []
        with tqdm(total=len(jobs), desc="genssl-report", unit="part", disable=not self.progress) as bar:
            for label, job in jobs:
                bar.set_postfix_str(label, refresh=True)
                blocks += job()
                bar.update()
        return blocks

    # ---- header and legend -------------------------------------------------------------------------

    def _header(self) -> list[Block]:
        seeds = sorted({r.seed for r in self.runs if r.seed is not None})
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        summary = (
            f"Compares **{len(self.runs)} run{'s' * (len(self.runs) != 1)}**: "
            f"{len(self.methods)} method{'s' * (len(self.methods) != 1)} ({', '.join(self.methods)}) on "
            f"{len(self.sections)} dataset{'s' * (len(self.sections) != 1)} ({', '.join(self.sections)})"
            + (f", seeds {', '.join(map(str, seeds))}" if seeds else "")
            + f". Generated {when}."
        )
        columns = metric_columns([g for groups in self.sections.values() for g in groups])
        legend = [f"**{c.label}**: {LEGEND[c.key]}" for c in columns if c.key in LEGEND]
        legend += [
            "Cells read `mean ± std (gain)`: mean and standard deviation over seeds (n in the `seeds` column); "
            "the gain in brackets is the mean difference to each run's own **baseline**, in percentage points "
            "for scores on a 0–1 scale. The baseline is the untrained encoder of the same architecture and "
            "seed, evaluated the same way: random conv features already score well, so gains are what "
            "training added.",
            "**Bold**: the highest mean in its column within one dataset.",
        ]
        runs = [f"`{r.path}`: {r.method} on {r.data}, seed {r.seed}" for r in self.runs]
        return [
            Heading(1, self.title),
            Text(summary),
            Heading(2, "How to read this report"),
            Bullets(legend),
            Details(f"The {len(self.runs)} run directories", runs),
        ]

    # ---- one dataset ---------------------------------------------------------------------------------

    def _section_jobs(self, data: str, groups: list[Group]) -> list[Job]:
        jobs: list[Job] = [
            (f"{data}: tables", lambda: self._tables(data, groups)),
            (f"{data}: content vs style", lambda: self._scatter(data, groups)),
            (f"{data}: style factors", lambda: self._style_bars(data, groups)),
            (f"{data}: training curves", lambda: self._curves(data, groups)),
            (f"{data}: generative images", lambda: self._images(data, groups)),
        ]
        for group in groups:
            run = next((r for r in group.runs if r.embedding_path is not None), None)
            if run is not None and self.projection != "none":
                jobs.append(
                    (f"{data}/{group.name}: embedding", lambda run=run, name=group.name: self._embedding(run, name))
                )
        return jobs

    def _tables(self, data: str, groups: list[Group]) -> list[Block]:
        columns = metric_columns(groups)
        blocks: list[Block] = [Heading(2, f"Dataset: {data}")]
        if columns:
            has_baseline = any(r.baseline for g in groups for r in g.runs)
            caption = "Mean ± std over seeds" + (
                " (gain over the untrained baseline)."
                if has_baseline
                else "; these runs carry no baseline block, so no gains are shown."
            )
            blocks += [Heading(3, "Content and style"), self._table(groups, columns, caption)]
        factors = style_factors(groups)
        if factors:
            factor_columns = [
                Column(name, f"{name} ({kind})" if kind else name, style_getter(name), False) for name, kind in factors
            ]
            blocks += [
                Heading(3, "Style factors"),
                self._table(
                    groups,
                    factor_columns,
                    "Linear style-probe score per factor (R² for continuous factors, accuracy for discrete ones).",
                ),
            ]
        train = self._train_table(groups)
        if train is not None:
            blocks += [Heading(3, "Training"), train]
        return blocks

    def _table(self, groups: list[Group], columns: list[Column], caption: str) -> Table:
        best = {c.key: best_rows(groups, c) for c in columns}
        rows = []
        for i, group in enumerate(groups):
            cells = [Cell(group.name), Cell(str(len(group.runs)))]
            cells += [Cell(format_stat(group.stat(c), c), bold=i in best[c.key]) for c in columns]
            rows.append(cells)
        return Table(["method", "seeds"] + [c.label for c in columns], rows, caption)

    def _train_table(self, groups: list[Group]) -> Table | None:
        keys = (
            ("epochs", "epochs", "{:.0f}"),
            ("steps", "steps", "{:.0f}"),
            ("seconds", "train time (s)", "{:.1f}"),
            ("samples_per_s", "views / s", "{:.0f}"),
        )
        present = [k for k in keys if any(isinstance(r.train.get(k[0]), (int, float)) for g in groups for r in g.runs)]
        if not present:
            return None
        rows = []
        for group in groups:
            cells = [Cell(group.name)]
            for key, _, fmt in present:
                values = [r.train[key] for r in group.runs if isinstance(r.train.get(key), (int, float))]
                cells.append(Cell(fmt.format(sum(values) / len(values)) if values else "–"))
            rows.append(cells)
        return Table(["method"] + [label for _, label, _ in present], rows, "Means over seeds.")

    def _png(self, *parts: str) -> Path:
        """A unique file name in the output directory for one figure."""
        stem = "-".join(slug(p) for p in parts)
        if len(stem) > 100:  # a variant with a long override (a list of weights): file systems cap names at 255
            stem = f"{stem[:80]}-{hashlib.sha1(stem.encode()).hexdigest()[:8]}"
        name, k = f"{stem}.png", 1
        while name in self._names:
            k += 1
            name = f"{stem}-{k}.png"
        self._names.add(name)
        return self.out_dir / name

    def _scatter(self, data: str, groups: list[Group]) -> list[Block]:
        columns = {c.key: c for c in metric_columns(groups)}
        if "linear" not in columns or "style_mean" not in columns:
            return []
        path = figures.content_style_scatter(
            groups,
            columns["linear"],
            columns["style_mean"],
            self.styles,
            self._png(data, "content-vs-style"),
            f"Content vs style on {data}",
        )
        if path is None:
            return []
        return [
            Heading(3, "Content versus style"),
            Figure(
                path.name,
                f"content vs style on {data}",
                "Each filled point is a method (error bars: std over seeds); hollow points are its "
                "untrained baseline, joined by an arrow to show what training changed.",
            ),
        ]

    def _style_bars(self, data: str, groups: list[Group]) -> list[Block]:
        path = figures.style_factor_bars(
            groups,
            style_factors(groups),
            self.styles,
            self._png(data, "style-factors"),
            f"Style kept per factor on {data}",
        )
        if path is None:
            return []
        return [
            Heading(3, "Style per factor"),
            Figure(
                path.name,
                f"style probe per factor on {data}",
                "Bars: mean linear style-probe score over seeds; error bars: std over seeds.",
            ),
        ]

    def _curves(self, data: str, groups: list[Group]) -> list[Block]:
        path = figures.training_curves(
            groups, self.styles, self._png(data, "training-curves"), f"Training loss on {data}"
        )
        if path is None:
            return []
        return [
            Heading(3, "Training curves"),
            Figure(
                path.name,
                f"training curves on {data}",
                "Loss logged in metrics.jsonl, one line per seed; one panel per method because the "
                "losses of different methods are on different scales.",
            ),
        ]

    def _images(self, data: str, groups: list[Group]) -> list[Block]:
        blocks: list[Block] = []
        for group in groups:
            run = next((r for r in group.runs if r.images), None)
            if run is None:
                continue
            figs: list[Block] = []
            for kind in IMAGE_KINDS:
                source = run.images.get(kind)
                if source is None:
                    continue
                try:
                    with source.open("rb") as handle:
                        is_png = handle.read(8) == PNG_SIGNATURE
                except OSError as err:
                    warn(f"skipping {source}: {err}")
                    continue
                if not is_png:
                    warn(f"skipping {source}: not a PNG file.")
                    continue
                target = self._png(data, group.name, kind)
                shutil.copyfile(source, target)
                figs.append(
                    Figure(
                        target.name, f"{group.name} {kind}", f"{KIND_TITLES[kind]} of {group.name}, seed {run.seed}."
                    )
                )
            if figs:
                blocks += [Heading(4, f"{group.name}: generated images")] + figs
        return ([Heading(3, "Generative runs")] + blocks) if blocks else []

    def _embedding(self, run: Run, name: str) -> list[Block]:
        assert run.embedding_path is not None
        embedding = load_embedding(run.embedding_path)
        if embedding is None:
            return []
        path = figures.embedding_figure(run, embedding, self._png(run.data, name, "embedding"), self.projection)
        blocks: list[Block] = []
        if run.data not in self._embedding_sections:
            self._embedding_sections.add(run.data)
            blocks.append(Heading(3, "Test-set embeddings"))
        return blocks + [
            Figure(
                path.name,
                f"2-D embedding of {name} on {run.data}",
                f"{name}, seed {run.seed}: test features projected to 2-D.",
            )
        ]
