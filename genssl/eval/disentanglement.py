"""Disentanglement metrics against ground-truth factors: DCI (Eastwood & Williams 2018) and MIG
(Chen et al. 2018). Only meaningful on datasets whose factors are known (e.g. ``shapes``).

Both share :func:`genssl.eval.style.prepare_factors`: a factor constant in train (or, continuous,
in test) is left out and listed under ``"skipped"`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F

from genssl.errors import ShapeError
from genssl.eval.mlp_bank import split_indices
from genssl.eval.probes import check_features, standardise
from genssl.eval.style import SUBSET_SEED_OFFSET, Factor, prepare_factors, r2_score
from genssl.eval.subsets import seeded_subset


def lasso_weights(
    x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float], iters: int = 1000, tol: float = 1e-7
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lasso fits of every column of ``y [n, T]`` on ``x [n, d]`` for every α, all at once.

    Minimises (1/2n)‖y − x w − b‖² + α‖w‖₁ (unpenalised intercept) by FISTA on the Gram matrix
    XᵀX/n of the centred data (float64), so an iteration costs O(d²·T·A) whatever n is. Stops when no
    weight moves by more than ``tol`` or after ``iters`` iterations. Returns ``w [A, d, T]``, ``b [A, T]``.
    """
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc / len(x)
    corr = xc.T @ (y - y_mean) / len(x)  # [d, T]
    step = 1.0 / torch.linalg.eigvalsh(gram)[-1].clamp_min(1e-12).item()
    a = torch.tensor(list(alphas), dtype=x.dtype, device=x.device)[:, None, None]
    w = torch.zeros(len(alphas), *corr.shape, dtype=x.dtype, device=x.device)
    z, t = w.clone(), 1.0
    for _ in range(iters):
        g = z - step * (gram @ z - corr)
        new = torch.sign(g) * (g.abs() - step * a).clamp_min(0)  # soft threshold: the ℓ1 proximal step
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = new + (t - 1) / t_next * (new - w)
        moved = (new - w).abs().max().item()
        w, t = new, t_next
        if moved < tol:
            break
    return w, y_mean - x_mean @ w


def _targets(factor: Factor, values: torch.Tensor) -> torch.Tensor:
    """Regression targets: the value (continuous) or one column per class indicator (discrete)."""
    if factor.kind == "continuous":
        return values.double()[:, None]
    return F.one_hot(values.clamp_min(0), factor.classes).double() * (values >= 0).double()[:, None]


def _score(factor: Factor, prediction: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """R² of the prediction (continuous) or accuracy of its arg-max class (discrete); one per α row."""
    if factor.kind == "continuous":
        return r2_score(prediction[..., 0].T, values.double()[:, None].expand(-1, prediction.shape[0]))
    return (prediction.argmax(-1) == values).double().mean(-1)


def _normalised_entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Entropy of each distribution along ``dim`` (rows of non-negative weights, normalised here),
    in units of log(size): 0 for a one-hot distribution, 1 for a uniform one; uniform if all zero."""
    size = p.shape[dim]
    if size == 1:
        return torch.zeros(p.shape[1 - dim], dtype=p.dtype, device=p.device)
    total = p.sum(dim, keepdim=True)
    q = torch.where(total > 0, p / total.clamp_min(1e-300), torch.full_like(p, 1.0 / size))
    return -(q * q.clamp_min(1e-300).log()).sum(dim) / math.log(size)


def dci(
    train_x: torch.Tensor,
    train_factors: Mapping[str, torch.Tensor],
    test_x: torch.Tensor,
    test_factors: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    seed: int = 0,
    *,
    max_train: int | None = 20000,
    val_fraction: float = 0.1,
    alphas: Sequence[float] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4),
    tolerance: float = 0.01,
) -> dict[str, object]:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018) with lasso importances.

    Regressors: on standardised codes (train statistics) and standardised targets, one lasso per
    factor (:func:`lasso_weights`); a discrete factor is regressed one-vs-rest on its class
    indicators and predicted as the arg-max class. α is chosen on a seeded validation split of a
    seeded subset of at most ``max_train`` training rows: the largest α whose validation score is
    within ``tolerance`` of the best (the one-standard-error idea: sparser at no real cost in fit),
    then refitted on the whole subset. The ℓ1 penalty matters here: ridge would spread small weights
    over every irrelevant code dimension, and their mass alone would pull completeness down.

    With importance R[d, k] = |w_dk| (summed over a discrete factor's classes) for code dimension d
    and factor k:
    - disentanglement = Σ_d ρ_d (1 − H_K(R[d, :] / Σ_k R[d, k])), ρ_d = Σ_k R[d, k] / Σ_dk R;
    - completeness = mean_k (1 − H_D(R[:, k] / Σ_d R[d, k])) (a factor no dimension predicts has a
      uniform column and scores 0);
    - informativeness = mean_k of the regressor's test score: R² (continuous), accuracy (discrete);
    with H_K the entropy in base K (so each term lies in [0, 1]). Returns those three plus
    ``"per_factor"`` (completeness, informativeness, α), ``"importance"`` (R as nested lists,
    ``[D][K]``), ``"factors"`` (column order) and ``"skipped"`` (name → reason).
    """
    check_features(train_x, None, test_x)
    usable, skipped = prepare_factors(train_factors, test_factors, kinds, len(train_x), len(test_x))
    device = train_x.device
    rows = seeded_subset(
        len(train_x), max_train, seed + SUBSET_SEED_OFFSET, sort=False, device=device, none_if_all=True
    )
    subset = train_x if rows is None else train_x[rows]
    subset, test_x = standardise(subset.float(), test_x.float(), clip=True)
    fit, val = split_indices(len(subset), val_fraction, seed, device)
    grid = sorted(alphas, reverse=True)
    names, per_factor = list(usable), {}
    values = {n: usable[n].train.to(device) if rows is None else usable[n].train.to(device)[rows] for n in names}
    if not names:
        return {
            "disentanglement": None,
            "completeness": None,
            "informativeness": None,
            "per_factor": {},
            "importance": [],
            "factors": [],
            "skipped": skipped,
        }
    blocks = [_targets(usable[n], values[n]) for n in names]  # one column, or one per class
    spans = torch.tensor([0] + [blk.shape[1] for blk in blocks]).cumsum(0).tolist()
    target = torch.cat(blocks, 1)
    # Every factor and α in one lasso call per split: the Gram matrix, the costly part, is shared.
    mean, std = target[fit].mean(0), target[fit].std(0).clamp_min(1e-12)
    w, b = lasso_weights(subset[fit], (target[fit] - mean) / std, grid)
    val_prediction = (subset[val].double() @ w + b[:, None]) * std + mean  # [A, n_val, T]
    mean, std = target.mean(0), target.std(0).clamp_min(1e-12)
    w_all, b_all = lasso_weights(subset, (target - mean) / std, grid)
    test_prediction = (test_x.double() @ w_all + b_all[:, None]) * std + mean
    columns = []
    for j, name in enumerate(names):
        block = slice(spans[j], spans[j + 1])
        scores = _score(usable[name], val_prediction[..., block], values[name][val])
        choice = int(torch.nonzero(scores >= scores.max() - tolerance)[0])  # largest α within tolerance
        test_values = usable[name].test.to(device)
        informativeness = _score(usable[name], test_prediction[choice : choice + 1, :, block], test_values)[0].item()
        columns.append(w_all[choice, :, block].abs().sum(1))
        per_factor[name] = {"informativeness": informativeness, "alpha": grid[choice]}
    importance = torch.stack(columns, 1)  # [D, K]
    total = importance.sum()
    rho = importance.sum(1) / total if total > 0 else torch.zeros_like(importance[:, 0])
    disentanglement = (rho * (1 - _normalised_entropy(importance, 1))).sum().item()
    completeness = 1 - _normalised_entropy(importance, 0)
    for name, c in zip(names, completeness.tolist()):
        per_factor[name]["completeness"] = c
    return {
        "disentanglement": disentanglement,
        "completeness": completeness.mean().item(),
        "informativeness": sum(p["informativeness"] for p in per_factor.values()) / len(names),
        "per_factor": per_factor,
        "importance": importance.tolist(),
        "factors": names,
        "skipped": skipped,
    }


def _bins(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width bin index in [0, bins) of each column of ``values [N, C]`` over its own range."""
    low, high = values.min(0).values, values.max(0).values
    scaled = (values - low) / (high - low).clamp_min(1e-12)
    return (scaled * bins).long().clamp(0, bins - 1)


def _entropy(counts: torch.Tensor) -> torch.Tensor:
    p = counts / counts.sum(-1, keepdim=True)
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def mig(
    codes: torch.Tensor, factors: Mapping[str, torch.Tensor], kinds: Mapping[str, str], bins: int = 20
) -> dict[str, object]:
    """Mutual information gap (Chen et al. 2018) of ``codes [N, D]`` against ground-truth factors.

    Every code dimension is discretised into ``bins`` equal-width bins over its range (as in
    disentanglement_lib); continuous factors are discretised the same way, discrete ones are used as
    they are. With I(c_d; v_k) the plug-in mutual information (nats) of the joint histogram and
    H(v_k) the factor's entropy, MIG = mean_k (I_(1) − I_(2)) / H(v_k), where I_(1) ≥ I_(2) are the
    two largest informations about v_k over code dimensions. Codes that copy a factor into two
    dimensions therefore score 0 on it. Returns ``{"mig", "per_factor": {name: gap}, "skipped"}``;
    ``"mig"`` is None when no factor can be scored.
    """
    if codes.dim() != 2 or codes.shape[1] < 2:
        raise ShapeError(f"mig needs codes of shape [N, D] with D >= 2; got {tuple(codes.shape)}.")
    usable, skipped = prepare_factors(factors, factors, kinds, len(codes), len(codes), ("given rows", "given rows"))
    code_bins = _bins(codes.double(), bins)  # [N, D]
    n, d = code_bins.shape
    per_factor: dict[str, float] = {}
    for name, factor in usable.items():
        values = factor.train.to(codes.device)
        labels = _bins(values.double()[:, None], bins)[:, 0] if factor.kind == "continuous" else values
        k = int(labels.max()) + 1
        joint = torch.zeros(d, bins * k, dtype=torch.float64, device=codes.device)
        joint.scatter_add_(
            1, (code_bins * k + labels[:, None]).T, torch.ones(d, n, dtype=torch.float64, device=codes.device)
        )
        joint = joint.view(d, bins, k)
        info = _entropy(joint.sum(2)) + _entropy(joint.sum(1)) - _entropy(joint.view(d, -1))  # I = H(c)+H(v)−H(c,v)
        top = info.topk(2).values
        per_factor[name] = ((top[0] - top[1]) / _entropy(joint[0].sum(0))).item()
    value = sum(per_factor.values()) / len(per_factor) if per_factor else None
    return {"mig": value, "per_factor": per_factor, "skipped": skipped}
