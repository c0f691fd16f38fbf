"""The report's matplotlib figures, each written as one PNG (Agg backend: no display needed).

Colours come from colour-blind-safe palettes (Okabe–Ito for methods, Paul Tol's "muted" for classes,
viridis for continuous factors); markers vary as well, so figures also read in grey scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: the report runs on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genssl.report.aggregate import Column, Group, style_getter  # noqa: E402
from genssl.report.collect import Embedding, Run  # noqa: E402

# Okabe & Ito (2008); yellow last because it is faint on white.
METHOD_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
# Paul Tol's "muted" qualitative scheme plus its pale grey: ten classes.
CLASS_COLOURS = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#BBBBBB",
)
DPI = 110

plt.rcParams.update(
    {
        "figure.dpi": DPI,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 9,
        "axes.titlesize": 10,
        "legend.fontsize": 8,
    }
)


def method_styles(methods: list[str]) -> dict[str, tuple[str, str]]:
    """A fixed (colour, marker) per method, so one method looks the same in every figure."""
    return {
        m: (METHOD_COLOURS[i % len(METHOD_COLOURS)], METHOD_MARKERS[i % len(METHOD_MARKERS)])
        for i, m in enumerate(methods)
    }


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def content_style_scatter(
    groups: list[Group], linear: Column, style_mean: Column, styles: dict[str, tuple[str, str]], path: Path, title: str
) -> Path | None:
    """Content (linear probe) against style (mean style probe), one point per method, baselines hollow."""
    points = [(g, g.stat(linear), g.stat(style_mean)) for g in groups]
    points = [(g, x, y) for g, x, y in points if x is not None and y is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    any_baseline = False
    for group, x, y in points:
        colour, marker = styles[group.name]
        ax.errorbar(
            x.mean,
            y.mean,
            xerr=x.std if x.n > 1 else None,
            yerr=y.std if y.n > 1 else None,
            fmt=marker,
            color=colour,
            markersize=8,
            capsize=3,
            label=f"{group.name} (n={x.n})",
        )
        ax.annotate(group.name, (x.mean, y.mean), xytext=(6, 4), textcoords="offset points", fontsize=8)
        bx, by = group.baseline_stat(linear), group.baseline_stat(style_mean)
        if bx is not None and by is not None:
            any_baseline = True
            ax.errorbar(
                bx.mean,
                by.mean,
                xerr=bx.std if bx.n > 1 else None,
                yerr=by.std if by.n > 1 else None,
                fmt=marker,
                color=colour,
                markerfacecolor="none",
                markersize=8,
                capsize=3,
            )
            # A faint arrow from untrained to trained: what training moved.
            ax.annotate(
                "",
                (x.mean, y.mean),
                (bx.mean, by.mean),
                arrowprops={"arrowstyle": "->", "color": colour, "alpha": 0.4, "lw": 1},
            )
    ax.set_xlabel("content: linear-probe accuracy (test)")
    ax.set_ylabel("style: mean style-probe score")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if any_baseline:
        handles.append(plt.Line2D([], [], marker="o", color="grey", markerfacecolor="none", linestyle=""))
        labels.append("untrained baseline (hollow)")
    ax.legend(handles, labels, loc="best", frameon=False)
    return _save(fig, path)


def style_factor_bars(
    groups: list[Group], factors: list[tuple[str, str]], styles: dict[str, tuple[str, str]], path: Path, title: str
) -> Path | None:
    """Grouped bars: one group per style factor, one bar per method (mean over seeds, std as error bar)."""
    if not factors:
        return None
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(factors) * max(1, len(groups) / 3)), 4.2))
    x = np.arange(len(factors))
    hatches = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
    drawn = False
    for i, group in enumerate(groups):
        means, errs = [], []
        for name, _ in factors:
            stat = group.stat(Column(name, name, style_getter(name), False))
            means.append(stat.mean if stat else np.nan)
            errs.append(stat.std if stat and stat.n > 1 else 0.0)
        if np.all(np.isnan(means)):
            continue
        drawn = True
        colour, _ = styles[group.name]
        ax.bar(
            x + (i - (len(groups) - 1) / 2) * width,
            means,
            width,
            yerr=errs,
            capsize=2,
            color=colour,
            hatch=hatches[i % len(hatches)],
            edgecolor="white",
            linewidth=0.5,
            label=group.name,
        )
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks(x, [f"{name}\n({kind})" if kind else name for name, kind in factors])
    ax.set_ylabel("linear style-probe score (R² or accuracy)")
    ax.set_xlabel("style factor")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(title)
    ax.legend(frameon=False, ncols=min(4, len(groups)))
    return _save(fig, path)


def training_curves(groups: list[Group], styles: dict[str, tuple[str, str]], path: Path, title: str) -> Path | None:
    """Loss against step, one panel per method (losses of different methods are not on one scale)."""
    with_curves = [g for g in groups if any(r.curve for r in g.runs)]
    if not with_curves:
        return None
    cols = min(3, len(with_curves))
    rows = -(-len(with_curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    line_styles = ("-", "--", ":", "-.")
    for ax, group in zip(axes.flat, with_curves):
        colour, _ = styles[group.name]
        kinds = set()
        for j, run in enumerate(r for r in group.runs if r.curve):
            steps, losses = zip(*run.curve)
            kinds.add(run.curve_kind)
            ax.plot(
                steps,
                losses,
                line_styles[j % len(line_styles)],
                color=colour,
                lw=1.2,
                marker="o" if len(steps) < 12 else None,
                markersize=3,
                label=f"seed {run.seed}" if run.seed is not None else run.path.name,
            )
        values = np.array([loss for r in group.runs for _, loss in r.curve])
        # Reconstruction losses fall by orders of magnitude; a log axis keeps the tail readable.
        if values.size and values.min() > 0 and values.max() / values.min() > 50:
            ax.set_yscale("log")
        ax.set_title(group.name)
        ax.set_xlabel("training step" + (" (epoch means)" if kinds == {"epoch"} else ""))
        ax.set_ylabel("loss (negative ELBO)")
        ax.legend(frameon=False)
    for ax in list(axes.flat)[len(with_curves) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def project_2d(features: np.ndarray, seed: int = 0, method: str = "tsne") -> tuple[np.ndarray, str]:
    """PCA to at most 50 dimensions, then t-SNE to 2 (or PCA's first two with ``method='pca'``)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.astype(np.float64)
    x = x - x.mean(axis=0)
    n, d = x.shape
    if d <= 2:
        return np.pad(x, ((0, 0), (0, 2 - d))), "raw features"
    reduced = PCA(n_components=min(50, d, n), random_state=seed).fit_transform(x)
    if method == "pca" or n < 10:
        return reduced[:, :2], "PCA"
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(reduced), "PCA → t-SNE"


def pick_factor(embedding: Embedding) -> int | None:
    """The first style factor that actually varies over the test points (a constant one colours nothing)."""
    for i in range(embedding.factors.shape[1]):
        if np.nanstd(embedding.factors[:, i]) > 0:
            return i
    return None


def embedding_figure(run: Run, embedding: Embedding, path: Path, projection: str = "tsne") -> Path:
    """Test features in 2-D, coloured by class and (when the run has style factors) by one factor."""
    coords, how = project_2d(embedding.features, seed=run.seed or 0, method=projection)
    factor = pick_factor(embedding)
    panels = 2 if factor is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.6), squeeze=False)
    ax = axes[0, 0]
    classes = np.unique(embedding.labels)
    names = embedding.class_names
    for k, cls in enumerate(classes):
        mask = embedding.labels == cls
        label = names[cls] if 0 <= cls < len(names) else str(cls)
        if len(classes) <= len(CLASS_COLOURS):
            ax.scatter(
                coords[mask, 0],
                coords[mask, 1],
                s=7,
                color=CLASS_COLOURS[k],
                marker=METHOD_MARKERS[k % 5],
                label=label,
                alpha=0.8,
                linewidths=0,
            )
        else:  # many classes: a sequential map, no legend
            ax.scatter(
                coords[mask, 0],
                coords[mask, 1],
                s=6,
                color=plt.cm.viridis(k / max(len(classes) - 1, 1)),
                alpha=0.8,
                linewidths=0,
            )
    ax.set_title(f"coloured by class ({len(classes)} classes)")
    if len(classes) <= len(CLASS_COLOURS):
        ax.legend(frameon=False, markerscale=2, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if factor is not None:
        ax2 = axes[0, 1]
        points = ax2.scatter(
            coords[:, 0], coords[:, 1], s=7, c=embedding.factors[:, factor], cmap="viridis", alpha=0.85, linewidths=0
        )
        fig.colorbar(points, ax=ax2, label=embedding.factor_names[factor])
        ax2.set_title(f"coloured by style factor '{embedding.factor_names[factor]}'")
    for axis in axes.flat:
        axis.set_xlabel(f"{how} 1")
        axis.set_ylabel(f"{how} 2")
        axis.set_xticks([])
        axis.set_yticks([])
    fig.suptitle(f"{run.method} on {run.data}, seed {run.seed}: {len(coords)} test images ({how})")
    fig.tight_layout()
    return _save(fig, path)
