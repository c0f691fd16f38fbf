"""The end-of-training evaluation: frozen features, content and style probes, ``metrics.json``.

Protocol (every probe): features of the frozen encoder (the guide's ``represent``: posterior mean
or pre-projector embedding, BatchNorm in eval mode); probes fitted on the training split with
their hyper-parameters chosen on a seeded validation split carved from it, then scored once on the
test split. The same evaluation of the untrained network (same architecture, same seed) is the
``baseline`` block, so every figure has its reference beside it.

Two presets (``eval.preset``) run that protocol; ``metrics.json`` records which (``eval_preset``) and
the seconds each probe took (``timings``, and ``baseline.timings``):

- ``fast`` (default): the linear probes (content and the style probes' discrete factors) minimise the
  same objective with L-BFGS on whitened features (:func:`~genssl.eval.probes.linear_probe_whitened`:
  a preconditioner, the same minimiser), ``eval.linear.whitened_max_iter`` steps per fit instead of
  ``eval.linear.max_iter``, the refit warm-started from the chosen weight decay's fit; the few-label
  fits use a hand-written gradient (:func:`~genssl.eval.logistic.fit_logistic_grid_fast`) and the MLP
  probes Adam's fused kernel (both: the same iterates up to float rounding);
- ``full``: the protocol as it was before the presets (standardised features, ``eval.linear.max_iter``
  L-BFGS steps per fit from zero for the refit), for figures comparable with earlier tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from genssl.data import ImageDataset
from genssl.errors import ConfigError, choices
from genssl.eval.clustering import gmm_clustering
from genssl.eval.disentanglement import dci, mig
from genssl.eval.features import extract_features
from genssl.eval.generative import write_generative_artefacts
from genssl.eval.probes import (
    few_label_linear_probe,
    knn_probe,
    linear_probe,
    linear_probe_whitened,
    mlp_probe,
    rank_me,
)
from genssl.eval.style import style_mean, style_probes
from genssl.eval.style_targets import augmented_view_targets, dataset_augment
from genssl.eval.subsets import seeded_subset
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods import untrained_method

BASELINE_KEYS = (
    "content",
    "style",
    "style_mean",
    "style_source",
    "rank_me",
    "dci",
    "mig",
    "mig_per_factor",
    "eval_seconds",
    "timings",
)
EMBEDDING_POINTS = 2000  # test points kept for the report's 2-D embedding
PRESETS = ("fast", "full")


def eval_preset(ev: DictConfig) -> str:
    """``eval.preset`` (``fast`` when the config predates the key); a :class:`ConfigError` if unknown."""
    name = str(ev.get("preset", "fast"))
    if name not in PRESETS:
        raise ConfigError(f"eval.preset={name} is not a preset: it must be {choices(PRESETS)}.")
    return name


def _whitened_steps(ev: DictConfig) -> int:
    """``eval.linear.whitened_max_iter`` (50 where a config predates the key)."""
    return int(ev.linear.get("whitened_max_iter", 50))


@contextmanager
def _timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the wall seconds of the block to ``timings[name]`` (nothing when ``timings`` is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def evaluate(
    method: PyroSSL,
    dataset: ImageDataset,
    cfg: DictConfig,
    device: torch.device,
    progress: bool = True,
    artefact_dir: Path | None = None,
) -> dict[str, Any]:
    """Content, style and representation metrics of ``method``'s frozen representation.

    With ``artefact_dir``, also writes ``embedding.npz`` (test features for the report) and, for
    generative methods, reconstructions, prior samples and traversals (and adds ``elbo``).
    The features of each split are extracted once and shared by every probe; ``timings`` gives the
    wall seconds of each step (``features``, each probe, ``style_views`` for the augmented views, ...).
    """
    ev, seed = cfg.eval, int(cfg.seed)
    eval_preset(ev)
    method.eval()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    with _timed(timings, "features"):
        train_x = extract_features(
            method.represent, dataset.train.images, device, ev.batch_size, "train features", progress
        )
        test_x = extract_features(
            method.represent, dataset.test.images, device, ev.batch_size, "test features", progress
        )
    train_y, test_y = dataset.train.labels.to(device), dataset.test.labels.to(device)
    content, probes = content_metrics(train_x, train_y, test_x, test_y, dataset.num_classes, ev, seed, timings)
    with _timed(timings, "rank_me"):
        out: dict[str, Any] = {"content": content, "rank_me": rank_me(test_x), "probes": probes}
    out.update(style_metrics(method, dataset, cfg, train_x, test_x, device, progress, timings))
    if dataset.factor_kinds and ev.disentanglement.enabled:
        with _timed(timings, "disentanglement"):
            out.update(disentanglement_metrics(dataset, train_x, test_x, ev.disentanglement, seed))
    if artefact_dir is not None:
        with _timed(timings, "embedding"):
            write_embedding(Path(artefact_dir) / "embedding.npz", dataset, test_x, seed)
        with _timed(timings, "generative"):
            generative = write_generative_artefacts(method, dataset, Path(artefact_dir), device, seed)
        out.update(generative or {})
    out["eval_seconds"] = time.perf_counter() - start
    out["timings"] = timings
    return out


def content_metrics(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    ev: DictConfig,
    seed: int,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Linear, MLP, kNN, few-label linear and GMM-clustering scores of the class; and the chosen settings.

    ``eval.preset`` picks the solvers (see the module's docstring); ``timings``, when given, receives
    the wall seconds of each probe under its content key (``linear``, ``mlp``, ``knn``, ``linear_10``,
    ..., ``clustering``).
    """
    fast = eval_preset(ev) == "fast"
    with _timed(timings, "linear"):
        linear = (linear_probe_whitened if fast else linear_probe)(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes,
            list(ev.linear.weight_decays),
            ev.linear.val_fraction,
            _whitened_steps(ev) if fast else ev.linear.max_iter,
            seed,
        )
    with _timed(timings, "mlp"):
        mlp = mlp_probe(train_x, train_y, test_x, test_y, num_classes, seed=seed, fast=fast)
    with _timed(timings, "knn"):
        knn = knn_probe(train_x, train_y, test_x, test_y, num_classes, ev.knn.k)
    content = {"linear": linear["accuracy"], "mlp": mlp["accuracy"], "knn": knn}
    probes: dict[str, Any] = {
        "linear_weight_decay": linear["weight_decay"],
        "linear_val_accuracy": linear["val_accuracy"],
        "mlp": {k: v for k, v in mlp.items() if k != "accuracy"},
        "knn_k": ev.knn.k,
    }
    fewest = int(torch.bincount(train_y, minlength=num_classes).min())
    for per_class in map(int, ev.few_label.per_class):
        if per_class > fewest:  # a small subset (tests, data.train_subset) cannot supply the labels
            probes[f"linear_{per_class}"] = f"skipped: the rarest class has {fewest} training images"
            continue
        with _timed(timings, f"linear_{per_class}"):
            few = few_label_linear_probe(
                train_x,
                train_y,
                test_x,
                test_y,
                num_classes,
                per_class=per_class,
                draws=int(ev.few_label.draws),
                seed=seed,
                fast=fast,
            )
        content[f"linear_{per_class}"] = few["accuracy"]
        probes[f"linear_{per_class}"] = {"std": few["std"], "draws": few["draws"]}
    if ev.clustering.enabled:
        with _timed(timings, "clustering"):
            clusters = gmm_clustering(train_x, test_x, test_y, num_classes, seed=seed)
        probes["gmm_converged"] = bool(clusters.pop("converged"))
        content.update(clusters)
    return content, probes


def style_metrics(
    method: PyroSSL,
    dataset: ImageDataset,
    cfg: DictConfig,
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    device: torch.device,
    progress: bool,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Style probes on ground-truth factors (clean images) and on the augmentation parameters of a view
    (drawn with the dataset's default augmentation, the same for every method).

    ``style_mean`` averages the ground-truth factors where the dataset has them (``style_source``
    says which), otherwise the augmentation parameters: those are the only style every dataset has.
    ``timings`` receives ``style_truth`` (probes of the ground-truth factors), ``style_views`` (the
    augmented views and their features) and ``style_augmented`` (probes of their parameters).
    """
    ev, seed = cfg.eval, int(cfg.seed)
    if not ev.style.enabled:
        return {}
    fast = eval_preset(ev) == "fast"
    options = {"fast": fast, "whitened_max_iter": _whitened_steps(ev)}
    train_sub = seeded_subset(len(dataset.train), ev.style.max_train, seed)
    test_sub = seeded_subset(len(dataset.test), ev.style.max_test, seed + 1)
    style: dict[str, Any] = {}
    truth: dict[str, Any] = {}
    if dataset.factor_kinds:
        with _timed(timings, "style_truth"):
            truth = style_probes(
                train_x[train_sub.to(device)],
                _on(dataset.train.factors, train_sub, device),
                test_x[test_sub.to(device)],
                _on(dataset.test.factors, test_sub, device),
                dataset.factor_kinds,
                seed=seed,
                **options,
            )
        style.update(truth)
    augmented = {}
    if ev.style.augmentation:
        augment = dataset_augment(cfg.data.name) or cfg.data.augment
        with _timed(timings, "style_views"):
            train_v, train_f, kinds = augmented_view_targets(
                method.represent,
                dataset.train.select(train_sub),
                augment,
                device,
                seed,
                ev.batch_size,
                "augmented train views",
                progress,
            )
            test_v, test_f, _ = augmented_view_targets(
                method.represent,
                dataset.test.select(test_sub),
                augment,
                device,
                seed + 1,
                ev.batch_size,
                "augmented test views",
                progress,
            )
        with _timed(timings, "style_augmented"):
            augmented = style_probes(train_v, train_f, test_v, test_f, kinds, seed=seed, **options)
        style.update(augmented)
    source, chosen = ("ground truth", truth) if truth else ("augmentation", augmented)
    return {"style": style, "style_mean": style_mean(chosen) if chosen else None, "style_source": source}


def disentanglement_metrics(
    dataset: ImageDataset, train_x: torch.Tensor, test_x: torch.Tensor, dcfg: DictConfig, seed: int
) -> dict[str, Any]:
    """DCI and MIG against the dataset's ground-truth factors (on seeded subsets: both are costly)."""
    train_sub = seeded_subset(len(dataset.train), dcfg.max_train, seed)
    test_sub = seeded_subset(len(dataset.test), dcfg.max_test, seed + 1)
    device = train_x.device
    train_f = _on(dataset.train.factors, train_sub, device)
    test_f = _on(dataset.test.factors, test_sub, device)
    scores = dci(
        train_x[train_sub.to(device)], train_f, test_x[test_sub.to(device)], test_f, dataset.factor_kinds, seed=seed
    )
    gaps = mig(test_x[test_sub.to(device)], test_f, dataset.factor_kinds)
    # The importance matrix (D × factors) stays out of metrics.json: it is large and read by no one yet.
    return {
        "dci": {k: scores[k] for k in ("disentanglement", "completeness", "informativeness", "per_factor")},
        "mig": gaps["mig"],
        "mig_per_factor": gaps["per_factor"],
    }


def write_embedding(path: Path, dataset: ImageDataset, test_x: torch.Tensor, seed: int) -> None:
    """A seeded subset of test features with labels and ground-truth factors, for the report's 2-D map."""
    index = seeded_subset(len(dataset.test), EMBEDDING_POINTS, seed)
    names = sorted(dataset.factor_kinds)
    factors = (
        torch.stack([dataset.test.factors[n][index].float() for n in names], 1) if names else torch.zeros(len(index), 0)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        features=test_x[index.to(test_x.device)].cpu().numpy().astype(np.float32),
        labels=dataset.test.labels[index].numpy(),
        class_names=np.array(dataset.class_names),
        factor_names=np.array(names, dtype=str),
        factors=factors.numpy().astype(np.float32),
    )
    tmp.replace(path)


def _on(factors: dict[str, torch.Tensor], index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: value[index].to(device) for name, value in factors.items()}


def evaluate_with_baseline(
    cfg: DictConfig, method: PyroSSL, dataset: ImageDataset, device: torch.device, run_dir: Path, trained: bool
) -> dict[str, Any]:
    """:func:`evaluate` of the run (artefacts into ``run_dir/eval``) plus, under ``baseline``, the same
    metrics of the untrained network built from the run's seed (for an untrained run, its own).

    Adds ``eval_preset`` and ``eval_total_seconds``: the wall time of both evaluations together.
    """
    progress = bool(cfg.trainer.progress)
    start = time.perf_counter()
    result = evaluate(method, dataset, cfg, device, progress, Path(run_dir) / "eval")
    if cfg.eval.baseline:
        base = evaluate(untrained_method(cfg, dataset, device), dataset, cfg, device, progress) if trained else result
        result["baseline"] = {key: base[key] for key in BASELINE_KEYS if key in base}
    result["eval_preset"] = eval_preset(cfg.eval)
    result["eval_total_seconds"] = time.perf_counter() - start
    return result
