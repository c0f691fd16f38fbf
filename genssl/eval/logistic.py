"""The logistic-regression solvers behind the linear probes: full-batch L-BFGS on one problem, on a grid
of many small problems at once, and the fast preset's twins with the loss and gradient written out.

All minimise mean cross-entropy + (λ/2)‖W‖², in different coordinates or layouts;
:mod:`genssl.eval.probes` holds the protocols (splits, λ grids, refits) that call them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

# L-BFGS settings: a single fit runs to tight tolerances; a grid of many small fits stops earlier.
ONE_PROBLEM = {"history_size": 20, "tolerance_grad": 1e-7, "tolerance_change": 1e-10}
MANY_PROBLEMS = {"history_size": 10, "tolerance_grad": 1e-5, "tolerance_change": 1e-9}


def _lbfgs(params: list[torch.Tensor], max_iter: int, **tolerances: float) -> torch.optim.LBFGS:
    """Full-batch L-BFGS with unit step and a strong-Wolfe line search, as every fit here uses."""
    return torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", **tolerances)


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int = 500,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS; returns (W, b).

    Minimises mean_i −log softmax(W x_i + b)_{y_i} + (λ/2)‖W‖², λ = ``weight_decay``.
    """
    weight = torch.zeros(x.shape[1], num_classes, device=x.device) if init is None else init[0].clone()
    bias = torch.zeros(num_classes, device=x.device) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = _lbfgs([weight, bias], max_iter, **ONE_PROBLEM)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_logistic_grid(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    decays: torch.Tensor,
    masks: torch.Tensor,
    max_iter: int = 300,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Many small logistic regressions (:func:`fit_logistic`'s objective) solved in one L-BFGS run.

    ``x`` is ``[B, n, d]`` (B data sets), ``y`` ``[B, n]``, ``decays`` ``[B, M]`` and ``masks``
    ``[M, n]`` (which rows problem m fits on): problem (b, m) minimises the masked mean cross-entropy
    on set b plus (λ_bm / 2)‖W_bm‖². The problems share no parameter and each is strictly convex, so
    the sum has the same unique minimiser as fitting them one by one, at a fraction of the per-call
    overhead that dominates such small fits. ``init`` warm-starts from ``(W, b)``. Returns
    ``W [B, M, d, C]`` and ``b [B, M, C]``.
    """
    (batch, n, d), m = x.shape, masks.shape[0]
    if init is None:
        init = (
            torch.zeros(batch, m, d, num_classes, device=x.device),
            torch.zeros(batch, m, num_classes, device=x.device),
        )
    weight, bias = init[0].clone().requires_grad_(True), init[1].clone().requires_grad_(True)
    share = masks.float() / masks.float().sum(1, keepdim=True)
    target = y[:, None, :].expand(batch, m, n)
    optimizer = _lbfgs([weight, bias], max_iter, **MANY_PROBLEMS)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.einsum("bnd,bmdc->bmnc", x, weight) + bias[:, :, None, :]
        nll = F.cross_entropy(logits.reshape(-1, num_classes), target.reshape(-1), reduction="none")
        loss = (nll.view(batch, m, n) * share).sum() + 0.5 * (decays * weight.pow(2).sum((2, 3))).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def whitening_basis(x: torch.Tensor, floor: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, A, s)`` with ``(x − mean) A`` white: A = U diag(s)^{-1/2}, s the covariance eigenvalues
    floored at ``floor`` times the largest (float64 eigendecomposition, float32 results).

    Used as a preconditioner only: any invertible A maps a linear model's solution one-to-one.
    """
    xd = x.double()
    mean = xd.mean(0)
    eigenvalues, vectors = torch.linalg.eigh(torch.cov((xd - mean).T).reshape(x.shape[1], x.shape[1]))
    scale = eigenvalues.clamp_min(floor * max(eigenvalues.max().item(), 1e-12))
    return mean.float(), (vectors / scale.sqrt()).float(), scale.float()


def fit_logistic_whitened(
    z_t: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    penalty: torch.Tensor,
    max_iter: int = 50,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on whitened features by full-batch L-BFGS; returns (Wᵀ [C, d], b).

    ``z_t`` is the transposed design ``[d, n]`` (whitened coordinates z = (x − μ) A), ``penalty`` the
    per-coordinate weight of the ridge term, s⁻¹ for A = U diag(s)^{-1/2}. It minimises

        mean_i −log softmax(Wᵀ z_i + b)_{y_i} + (λ/2) Σ_{c,k} W_{kc}² penalty_k,

    which under W = A W_z is :func:`fit_logistic`'s objective on x itself: the same minimiser, reached
    in far fewer steps because the data term's curvature is (nearly) isotropic in z (on SSL features,
    whose covariance spans several decades, 50 steps reach a lower objective than 500 on
    standardised features). Loss and gradient are written out (softmax − one-hot) in the class-major
    layout [C, n], which keeps the per-step cost to two matrix products and cheap reductions.
    """
    d, n = z_t.shape
    weight = torch.zeros(num_classes, d, device=z_t.device) if init is None else init[0].clone()
    bias = torch.zeros(num_classes, device=z_t.device) if init is None else init[1].clone()
    onehot = F.one_hot(y, num_classes).to(z_t.dtype).T.contiguous()  # [C, n]
    optimizer = _lbfgs([weight, bias], max_iter, **ONE_PROBLEM)

    def closure() -> torch.Tensor:
        log_p = torch.log_softmax(torch.addmm(bias[:, None], weight, z_t), 0)
        loss = -(log_p * onehot).sum() / n + 0.5 * weight_decay * (weight.square() * penalty).sum()
        residual = log_p.exp_().sub_(onehot).div_(n)  # ∂loss/∂logits
        weight.grad = torch.addmm(weight * penalty, residual, z_t.T, beta=weight_decay)
        bias.grad = residual.sum(1)
        return loss

    with torch.no_grad():
        optimizer.step(closure)
    return weight, bias


def fit_logistic_grid_fast(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    decays: torch.Tensor,
    masks: torch.Tensor,
    max_iter: int = 300,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fit_logistic_grid` (same arguments, objective, optimiser settings and result) with the loss
    and gradient written out instead of traced by autograd: two batched matrix products per step in
    the class-major layout ``[B, M·C, n]`` (softmax over C), the same L-BFGS iterates up to float
    rounding at a fraction of the cost per step."""
    (batch, n, d), m = x.shape, masks.shape[0]
    if init is None:
        weight = torch.zeros(batch, m * num_classes, d, device=x.device)
        bias = torch.zeros(batch, m * num_classes, device=x.device)
    else:
        weight = init[0].transpose(2, 3).reshape(batch, m * num_classes, d).contiguous()
        bias = init[1].reshape(batch, m * num_classes).clone()
    share = (masks.float() / masks.float().sum(1, keepdim=True))[None, :, None, :]  # [1, M, 1, n]
    target = F.one_hot(y, num_classes).to(x.dtype).transpose(1, 2)[:, None] * share  # [B, M, C, n]
    x_t = x.transpose(1, 2).contiguous()  # [B, d, n]
    decay = decays.repeat_interleave(num_classes, 1)[:, :, None]  # [B, M·C, 1]
    optimizer = _lbfgs([weight, bias], max_iter, **MANY_PROBLEMS)

    def closure() -> torch.Tensor:
        logits = torch.baddbmm(bias[..., None], weight, x_t).view(batch, m, num_classes, n)
        log_p = torch.log_softmax(logits, 2)
        loss = -(log_p * target).sum() + 0.5 * (decay * weight.square()).sum()
        residual = log_p.exp_().mul_(share).sub_(target).view(batch, m * num_classes, n)
        weight.grad = torch.baddbmm(decay * weight, residual, x)
        bias.grad = residual.sum(2)
        return loss

    with torch.no_grad():
        optimizer.step(closure)
    shaped = weight.view(batch, m, num_classes, d).transpose(2, 3).contiguous()
    return shaped, bias.view(batch, m, num_classes)
