"""Probes that read content out of frozen features. Pure tensor functions; run on any device."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def standardise(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre and scale every feature by the training split's mean and standard deviation."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return tuple((t - mean) / std for t in (train, *others))


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, weight_decay: float = 1e-4, max_iter: int = 300) -> float:
    """Multinomial logistic regression fitted by full-batch L-BFGS; returns test accuracy.

    Minimises mean_i −log softmax(W x_i + b)_{y_i} + (λ/2)‖W‖² on standardised features.
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    weight = torch.zeros(train_x.shape[1], num_classes, device=train_x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=train_x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(train_x @ weight + bias, train_y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (test_x @ weight + bias).argmax(1)
    return (predicted == test_y).float().mean().item()


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
