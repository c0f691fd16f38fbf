"""Probes that read content out of frozen features. Pure tensor functions; run on any device."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def standardise(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre and scale every feature by the training split's mean and standard deviation."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return tuple((t - mean) / std for t in (train, *others))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int = 500,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS; returns (W, b).

    Minimises mean_i −log softmax(W x_i + b)_{y_i} + (λ/2)‖W‖², λ = ``weight_decay``.
    """
    weight = torch.zeros(x.shape[1], num_classes, device=x.device) if init is None else init[0].clone()
    bias = torch.zeros(num_classes, device=x.device) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _accuracy(params: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    return ((x @ params[0] + params[1]).argmax(1) == y).float().mean().item()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, weight_decays: Sequence[float] = (1e-4, 1e-5, 1e-6),
                 val_fraction: float = 0.1, max_iter: int = 500, seed: int = 0) -> dict[str, float]:
    """Logistic-regression probe whose weight decay is chosen on a validation split of the training set.

    Features are standardised with training statistics. Each λ in ``weight_decays`` (strongest first,
    each fit warm-started from the last) is fitted on the training split less a seeded
    ``val_fraction``, scored on that held-out part; the best λ is refitted on the whole training split
    and scored once on the test split. Returns ``{"accuracy", "weight_decay", "val_accuracy"}``.
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed)).to(train_x.device)
    n_val = max(1, int(len(train_x) * val_fraction)) if len(weight_decays) > 1 else 0
    val, fit = order[:n_val], order[n_val:]
    best, params = (-1.0, weight_decays[0]), None
    for decay in sorted(weight_decays, reverse=True) if n_val else []:
        params = fit_logistic(train_x[fit], train_y[fit], num_classes, decay, max_iter, init=params)
        score = _accuracy(params, train_x[val], train_y[val])
        if score > best[0]:
            best = (score, decay)
    final = fit_logistic(train_x, train_y, num_classes, best[1], max_iter)
    return {"accuracy": _accuracy(final, test_x, test_y), "weight_decay": best[1], "val_accuracy": best[0]}


@torch.no_grad()
def knn_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
              num_classes: int, k: int = 20, chunk: int = 1024) -> float:
    """k-nearest-neighbour majority vote under cosine similarity; returns test accuracy."""
    train_x = F.normalize(train_x.float(), dim=1)
    test_x = F.normalize(test_x.float(), dim=1)
    k = min(k, len(train_x))
    correct = 0
    for start in range(0, len(test_x), chunk):
        similarity = test_x[start:start + chunk] @ train_x.T
        neighbours = train_y[similarity.topk(k, dim=1).indices]
        votes = F.one_hot(neighbours, num_classes).sum(1)
        correct += (votes.argmax(1) == test_y[start:start + chunk]).sum().item()
    return correct / len(test_x)


@torch.no_grad()
def rank_me(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank (Garrido et al. 2023): exp(−Σ p_k log p_k), p_k = σ_k / Σσ + ε."""
    singular = torch.linalg.svdvals(features.double())
    p = singular / singular.sum() + eps
    return torch.exp(-(p * p.log()).sum()).item()
