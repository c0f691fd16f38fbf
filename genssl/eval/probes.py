"""Probes that read content out of frozen features. Pure tensor functions; run on any device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from genssl.errors import ShapeError
from genssl.eval.logistic import (
    fit_logistic,
    fit_logistic_grid,
    fit_logistic_grid_fast,
    fit_logistic_whitened,
    whitening_basis,
)
from genssl.eval.mlp_bank import select_and_refit_mlp


def standardise(train: torch.Tensor, *others: torch.Tensor, clip: bool = False) -> tuple[torch.Tensor, ...]:
    """Centre and scale every feature by the training split's mean and standard deviation.

    ``clip`` clamps the other splits to the range each standardised feature spans in train. Without
    it a feature (nearly) constant in train — a dead ReLU unit — can reach thousands of standard
    deviations on test, where a nonlinear probe that never saw it vary turns it into garbage.
    A feature whose spread is under 1e-3 of the widest one's (nearly dead) is scaled by that floor
    instead of blown up to unit variance: amplified noise makes the probes' problems ill-conditioned
    (one L-BFGS fit on a collapsed SimCLR's features took a minute instead of seconds).
    """
    std = train.std(0)
    mean, std = train.mean(0), std.clamp_min(max(1e-3 * std.max().item(), 1e-12))
    scaled = [(t - mean) / std for t in (train, *others)]
    return _clip_to_train(scaled) if clip else tuple(scaled)


def _clip_to_train(splits: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Clamp every split after the first (train) to the range each column spans in train."""
    low, high = splits[0].min(0).values, splits[0].max(0).values
    return (splits[0], *(torch.minimum(torch.maximum(t, low), high) for t in splits[1:]))


def whiten(
    train: torch.Tensor, *others: torch.Tensor, clip: bool = False, floor: float = 1e-6
) -> tuple[torch.Tensor, ...]:
    """PCA-whiten every split with the training split's covariance: x ↦ (x − μ) U Λ^{-1/2}.

    Λ, U are the eigenvalues and eigenvectors of train's covariance; eigenvalues are floored at
    ``floor`` times the largest. The MLP probes fit on whitened features: an invertible linear map
    of the input leaves an MLP's function class unchanged (the first layer absorbs it), but Adam on
    strongly correlated features barely moves in the low-variance directions. On a SimVAE's
    posterior means (covariance eigenvalues spanning 1e-8 to 2) the MLP probe scored 0.49 on
    standardised features, below the linear probe's 0.61, and 0.67 on whitened ones. ``clip``
    clamps the other splits to the range each whitened coordinate spans in train (see
    :func:`standardise`).
    """
    x = train.double()
    mean = x.mean(0)
    eigenvalues, vectors = torch.linalg.eigh(torch.cov((x - mean).T).reshape(x.shape[1], x.shape[1]))
    scale = vectors / eigenvalues.clamp_min(floor * max(eigenvalues.max().item(), 1e-12)).sqrt()
    white = [((t.double() - mean) @ scale).to(train.dtype) for t in (train, *others)]
    return _clip_to_train(white) if clip else tuple(white)


def _accuracy(params: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    return ((x @ params[0] + params[1]).argmax(1) == y).float().mean().item()


def _validation_split(
    n: int, choices: int, val_fraction: float, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear probes' seeded (val, fit) split of ``range(n)``: none held out when there is nothing
    to choose between (a single weight decay)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    n_val = max(1, int(n * val_fraction)) if choices > 1 else 0
    return order[:n_val], order[n_val:]


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decays: Sequence[float] = (1e-4, 1e-5, 1e-6),
    val_fraction: float = 0.1,
    max_iter: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """Logistic-regression probe whose weight decay is chosen on a validation split of the training set.

    Features are standardised with training statistics. Each λ in ``weight_decays`` (strongest first,
    each fit warm-started from the last) is fitted on the training split less a seeded
    ``val_fraction``, scored on that held-out part; the best λ is refitted on the whole training split
    and scored once on the test split. Returns ``{"accuracy", "weight_decay", "val_accuracy"}``.
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    val, fit = _validation_split(len(train_x), len(weight_decays), val_fraction, seed, train_x.device)
    best, params = (-1.0, weight_decays[0]), None
    for decay in sorted(weight_decays, reverse=True) if len(val) else []:
        params = fit_logistic(train_x[fit], train_y[fit], num_classes, decay, max_iter, init=params)
        score = _accuracy(params, train_x[val], train_y[val])
        if score > best[0]:
            best = (score, decay)
    final = fit_logistic(train_x, train_y, num_classes, best[1], max_iter)
    return {"accuracy": _accuracy(final, test_x, test_y), "weight_decay": best[1], "val_accuracy": best[0]}


@torch.no_grad()
def knn_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    k: int = 20,
    chunk: int = 1024,
) -> float:
    """k-nearest-neighbour majority vote under cosine similarity; returns test accuracy."""
    train_x = F.normalize(train_x.float(), dim=1)
    test_x = F.normalize(test_x.float(), dim=1)
    k = min(k, len(train_x))
    correct = 0
    for start in range(0, len(test_x), chunk):
        similarity = test_x[start : start + chunk] @ train_x.T
        neighbours = train_y[similarity.topk(k, dim=1).indices]
        votes = F.one_hot(neighbours, num_classes).sum(1)
        correct += (votes.argmax(1) == test_y[start : start + chunk]).sum().item()
    return correct / len(test_x)


@torch.no_grad()
def rank_me(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank (Garrido et al. 2023): exp(−Σ p_k log p_k), p_k = σ_k / Σσ + ε."""
    singular = torch.linalg.svdvals(features.double())
    p = singular / singular.sum() + eps
    return torch.exp(-(p * p.log()).sum()).item()


def check_features(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor | None = None
) -> None:
    """Raise :class:`ShapeError` unless features are ``[N, D]`` with matching D and one target per row."""
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ShapeError(
            f"Probe features must be [N, D] with the same D in both splits; got train "
            f"{tuple(train_x.shape)} and test {tuple(test_x.shape)}."
        )
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if y is not None and tuple(y.shape) != (len(x),):
            raise ShapeError(
                f"The {name} targets have shape {tuple(y.shape)}; expected [{len(x)}], one per {name} feature row."
            )


def mlp_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    hiddens: Sequence[int] = (64, 256),
    weight_decays: Sequence[float] = (1e-4,),
    val_fraction: float = 0.1,
    max_epochs: int = 30,
    patience: int = 3,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
    fast: bool = False,
) -> dict[str, float]:
    """One-hidden-layer ReLU MLP classifier on whitened features (Adam, minibatches; see :func:`whiten`).

    Protocol (:func:`select_and_refit_mlp`): hidden width × decoupled (AdamW-style) weight decay
    grid, each early-stopped on a seeded validation split of train (patience ``patience``, at most
    ``max_epochs``); the best (hidden, weight decay, epochs) is refitted on all of train for the same
    number of epochs and scored once on test. The candidates of one width train together in one pass.
    Test features are clipped to the range each whitened coordinate spans in train.

    Cost grows with Σ hidden × len(weight_decays) (selection) plus the chosen hidden (refit): about
    20 s of CPU time for the defaults on 60k×256 features (about 11 epochs to the best validation
    accuracy, 14 with patience). The default grid varies only the
    width: on the features we tried, the weight decay moved validation accuracy by < 0.5 points while
    doubling the cost; pass e.g. ``weight_decays=(1e-4, 1e-1)`` to choose it too. ``fast``: Adam's
    fused kernel (:func:`train_mlp_bank`).
    Returns ``{"accuracy", "hidden", "weight_decay", "epochs", "val_accuracy"}``.
    """
    check_features(train_x, train_y, test_x, test_y)
    train_x, test_x = whiten(train_x.float(), test_x.float(), clip=True)
    [result] = select_and_refit_mlp(
        train_x,
        train_y.float()[:, None],
        test_x,
        test_y.float()[:, None],
        [("discrete", num_classes)],
        hiddens=hiddens,
        weight_decays=weight_decays,
        val_fraction=val_fraction,
        max_epochs=max_epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        fast=fast,
    )
    return {
        "accuracy": result["score"],
        "hidden": result["hidden"],
        "weight_decay": result["weight_decay"],
        "epochs": result["epochs"],
        "val_accuracy": result["val_score"],
    }


def few_label_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    per_class: int = 10,
    draws: int = 5,
    weight_decays: Sequence[float] = (1.0, 1e-1, 1e-2, 1e-3),
    folds: int = 5,
    max_iter: int = 100,
    seed: int = 0,
    fast: bool = False,
) -> dict[str, float | list[float]]:
    """Linear probe from ``per_class`` labelled training images per class, over ``draws`` seeded draws.

    Features are standardised with the statistics of the whole training split (no labels needed: the
    unlabelled images are available in this semi-supervised setting). Each draw takes ``per_class``
    images of every class without replacement; its weight decay is chosen by stratified
    ``folds``-fold cross-validation inside the draw (mean held-out accuracy; the stronger decay wins
    ties), then the logistic regression (:func:`fit_logistic`'s objective) is refitted on the whole
    draw and scored once on the full test split. All draws × folds × decays are solved together
    (:func:`fit_logistic_grid`, or with ``fast`` its autograd-free twin :func:`fit_logistic_grid_fast`:
    the same iterates up to float rounding). Returns ``{"accuracy": mean, "std": population std,
    "accuracies", "weight_decays", "per_class", "draws"}``.
    """
    check_features(train_x, train_y, test_x, test_y)
    train_x, test_x = standardise(train_x.float(), test_x.float(), clip=True)
    device = train_x.device
    counts = torch.bincount(train_y, minlength=num_classes)
    if counts.min().item() < per_class:
        raise ShapeError(
            f"few_label_linear_probe needs {per_class} training images of every class, but "
            f"class {counts.argmin().item()} has {counts.min().item()}; lower per_class."
        )
    grid, folds = sorted(weight_decays, reverse=True), max(2, min(folds, per_class))
    labels = train_y.cpu()
    members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    picks = []
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 7919 + draw)
        picks.append(torch.cat([m[torch.randperm(len(m), generator=generator)[:per_class]] for m in members]))
    index = torch.stack(picks).to(device)  # [draws, n], grouped by class, random order within a class
    x, y = train_x[index], train_y[index]
    fold = (torch.arange(per_class, device=device) % folds).repeat(num_classes)  # stratified folds
    masks = fold[None, :] != torch.arange(folds, device=device)[:, None]  # [folds, n]: rows fitted on
    held_out = (~masks).float()
    solve = fit_logistic_grid_fast if fast else fit_logistic_grid
    cv, params = torch.zeros(draws, len(grid), device=device), None
    for i, decay in enumerate(grid):  # strongest first, each warm-started from the last: far fewer steps
        params = solve(
            x, y, num_classes, torch.full((draws, folds), decay, device=device), masks, max_iter, init=params
        )
        correct = (
            (torch.einsum("bnd,bmdc->bmnc", x, params[0]) + params[1][:, :, None]).argmax(3) == y[:, None]
        ).float()
        cv[:, i] = ((correct * held_out).sum(2) / held_out.sum(1)).mean(1)
    chosen = [grid[i] for i in cv.argmax(1).tolist()]  # argmax takes the first maximum: the stronger decay
    everything = torch.ones(1, x.shape[1], dtype=torch.bool, device=device)
    weight, bias = solve(x, y, num_classes, torch.tensor(chosen, device=device)[:, None], everything, max_iter)
    predictions = (torch.einsum("nd,bdc->bnc", test_x, weight[:, 0]) + bias[:, 0, None]).argmax(2)
    accuracies = (predictions == test_y[None]).float().mean(1).tolist()
    mean = sum(accuracies) / draws
    std = (sum((a - mean) ** 2 for a in accuracies) / draws) ** 0.5
    return {
        "accuracy": mean,
        "std": std,
        "accuracies": accuracies,
        "weight_decays": chosen,
        "per_class": per_class,
        "draws": draws,
    }


# ---------------------------------------------------------------------------------------------------
# The fast preset's linear probe: the same protocol, its fits on whitened features.
# ---------------------------------------------------------------------------------------------------


def linear_probe_whitened(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decays: Sequence[float] = (1e-4, 1e-5, 1e-6),
    val_fraction: float = 0.1,
    max_iter: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """:func:`linear_probe`'s protocol (standardised features, the same seeded validation split and λ
    grid, strongest λ first and warm-started from the last, the best λ refitted on all of train and
    scored once on test) with the fits of :func:`fit_logistic_whitened`, preconditioned by the
    training split's whitening (no label used), ``max_iter`` L-BFGS steps each, and the refit
    warm-started from the chosen λ's fit. Returns ``{"accuracy", "weight_decay", "val_accuracy"}``.
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    val, fit = _validation_split(len(train_x), len(weight_decays), val_fraction, seed, train_x.device)
    mean, basis, scale = whitening_basis(train_x)
    penalty = 1.0 / scale
    z_t = ((train_x - mean) @ basis).T.contiguous()  # [d, n]
    best: tuple[float, float, tuple[torch.Tensor, torch.Tensor] | None] = (-1.0, weight_decays[0], None)
    params = None
    if len(val):
        fit_t, val_t = z_t[:, fit].contiguous(), z_t[:, val]
        for decay in sorted(weight_decays, reverse=True):
            params = fit_logistic_whitened(fit_t, train_y[fit], num_classes, decay, penalty, max_iter, init=params)
            score = ((params[0] @ val_t + params[1][:, None]).argmax(0) == train_y[val]).float().mean().item()
            if score > best[0]:
                best = (score, decay, params)
        del fit_t
    weight, bias = fit_logistic_whitened(z_t, train_y, num_classes, best[1], penalty, max_iter, init=best[2])
    weight_x = basis @ weight.T  # back to the standardised features: x W + b = z W_z + b_z
    bias_x = bias - mean @ weight_x
    return {
        "accuracy": _accuracy((weight_x, bias_x), test_x, test_y),
        "weight_decay": best[1],
        "val_accuracy": best[0],
    }
