"""The end-of-training evaluation: frozen features, content and style probes, ``metrics.json``.

Protocol (every probe): features of the frozen encoder (the guide's ``represent``: posterior mean
or pre-projector embedding, BatchNorm in eval mode); probes fitted on the training split with
their hyper-parameters chosen on a seeded validation split carved from it, then scored once on the
test split. The same evaluation of the untrained network (same architecture, same seed) is the
``baseline`` block, so every figure has its reference beside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from genssl.data import ImageDataset
from genssl.eval.clustering import gmm_clustering
from genssl.eval.disentanglement import dci, mig
from genssl.eval.features import extract_features
from genssl.eval.generative import write_generative_artefacts
from genssl.eval.probes import few_label_linear_probe, knn_probe, linear_probe, mlp_probe, rank_me
from genssl.eval.style import style_mean, style_probes
from genssl.eval.style_targets import augmented_view_targets, dataset_augment
from genssl.eval.subsets import seeded_subset
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods import untrained_method

BASELINE_KEYS = ("content", "style", "style_mean", "style_source", "rank_me", "dci", "mig", "mig_per_factor")
EMBEDDING_POINTS = 2000  # test points kept for the report's 2-D embedding


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
    """
    ev, seed = cfg.eval, int(cfg.seed)
    method.eval()
    start = time.perf_counter()
    train_x = extract_features(
        method.represent, dataset.train.images, device, ev.batch_size, "train features", progress
    )
    test_x = extract_features(method.represent, dataset.test.images, device, ev.batch_size, "test features", progress)
    train_y, test_y = dataset.train.labels.to(device), dataset.test.labels.to(device)
    content, probes = content_metrics(train_x, train_y, test_x, test_y, dataset.num_classes, ev, seed)
    out: dict[str, Any] = {"content": content, "rank_me": rank_me(test_x), "probes": probes}
    out.update(style_metrics(method, dataset, cfg, train_x, test_x, device, progress))
    if dataset.factor_kinds and ev.disentanglement.enabled:
        out.update(disentanglement_metrics(dataset, train_x, test_x, ev.disentanglement, seed))
    if artefact_dir is not None:
        write_embedding(Path(artefact_dir) / "embedding.npz", dataset, test_x, seed)
        generative = write_generative_artefacts(method, dataset, Path(artefact_dir), device, seed)
        out.update(generative or {})
    out["eval_seconds"] = time.perf_counter() - start
    return out


def content_metrics(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    ev: DictConfig,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Linear, MLP, kNN, few-label linear and GMM-clustering scores of the class; and the chosen settings."""
    linear = linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes,
        list(ev.linear.weight_decays),
        ev.linear.val_fraction,
        ev.linear.max_iter,
        seed,
    )
    mlp = mlp_probe(train_x, train_y, test_x, test_y, num_classes, seed=seed)
    content = {
        "linear": linear["accuracy"],
        "mlp": mlp["accuracy"],
        "knn": knn_probe(train_x, train_y, test_x, test_y, num_classes, ev.knn.k),
    }
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
        few = few_label_linear_probe(
            train_x, train_y, test_x, test_y, num_classes, per_class=per_class, draws=int(ev.few_label.draws), seed=seed
        )
        content[f"linear_{per_class}"] = few["accuracy"]
        probes[f"linear_{per_class}"] = {"std": few["std"], "draws": few["draws"]}
    if ev.clustering.enabled:
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
) -> dict[str, Any]:
    """Style probes on ground-truth factors (clean images) and on the augmentation parameters of a view
    (drawn with the dataset's default augmentation, the same for every method).

    ``style_mean`` averages the ground-truth factors where the dataset has them (``style_source``
    says which), otherwise the augmentation parameters: those are the only style every dataset has.
    """
    ev, seed = cfg.eval, int(cfg.seed)
    if not ev.style.enabled:
        return {}
    train_sub = seeded_subset(len(dataset.train), ev.style.max_train, seed)
    test_sub = seeded_subset(len(dataset.test), ev.style.max_test, seed + 1)
    style: dict[str, Any] = {}
    truth: dict[str, Any] = {}
    if dataset.factor_kinds:
        truth = style_probes(
            train_x[train_sub.to(device)],
            _on(dataset.train.factors, train_sub, device),
            test_x[test_sub.to(device)],
            _on(dataset.test.factors, test_sub, device),
            dataset.factor_kinds,
            seed=seed,
        )
        style.update(truth)
    augmented = {}
    if ev.style.augmentation:
        augment = dataset_augment(cfg.data.name) or cfg.data.augment
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
        augmented = style_probes(train_v, train_f, test_v, test_f, kinds, seed=seed)
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
    metrics of the untrained network built from the run's seed (for an untrained run, its own)."""
    progress = bool(cfg.trainer.progress)
    result = evaluate(method, dataset, cfg, device, progress, Path(run_dir) / "eval")
    if cfg.eval.baseline:
        base = evaluate(untrained_method(cfg, dataset, device), dataset, cfg, device, progress) if trained else result
        result["baseline"] = {key: base[key] for key in BASELINE_KEYS if key in base}
    return result
