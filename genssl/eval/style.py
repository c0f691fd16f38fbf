"""Style probes: how much of each style factor (pose, colour, augmentation parameters, ...) the
frozen features keep. Pure tensor functions; they run on the features' device.

A factor is ``continuous`` (scored by R² on test, which is negative when the probe predicts worse
than the test mean) or ``discrete`` (scored by accuracy). Every probe follows the content probes'
protocol: hyper-parameters are chosen on a seeded validation split carved from train, the chosen
setting is refitted on the whole (subsampled) training split and scored once on test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from genssl.errors import ConfigError, ShapeError, choices
from genssl.eval.mlp_bank import select_and_refit_mlp, split_indices
from genssl.eval.probes import check_features, linear_probe, linear_probe_whitened, standardise, whiten
from genssl.eval.subsets import seeded_subset

KINDS = ("continuous", "discrete")
# Added to the seed of the style probes' and DCI's training-row subset (seeded_subset): its permutation
# is then not the one their validation split (split_indices(seed)) draws.
SUBSET_SEED_OFFSET = 104729


@dataclass
class Factor:
    """A factor ready to probe: continuous values as float, discrete ones as class indices 0..C−1.

    Test values of a discrete factor that never occur in train map to −1, which no probe can
    predict, so they count as errors.
    """

    kind: str
    train: torch.Tensor
    test: torch.Tensor
    classes: int = 1


def prepare_factors(
    train_factors: Mapping[str, torch.Tensor],
    test_factors: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    n_train: int,
    n_test: int,
    where: tuple[str, str] = ("training split", "test split"),
) -> tuple[dict[str, Factor], dict[str, str]]:
    """Check the factors and split them into probe-able ones and skipped ones (name → reason).

    Raises :class:`ConfigError` for an unknown kind or mismatched factor names, and
    :class:`ShapeError` for a factor that is not one value per feature row or is not finite. A factor
    is skipped when it is constant in train (nothing to learn, e.g. a flip probability of 0) or, when
    continuous, constant in test (R² is undefined there); ``where`` names the two sets in the reasons.
    """
    if set(train_factors) != set(test_factors) or not set(train_factors) <= set(kinds):
        raise ConfigError(
            f"Style factors differ: train has {sorted(train_factors)}, test has "
            f"{sorted(test_factors)} and kinds are given for {sorted(kinds)}."
        )
    usable: dict[str, Factor] = {}
    skipped: dict[str, str] = {}
    for name in train_factors:
        kind = kinds[name]
        if kind not in KINDS:
            raise ConfigError(f"Style factor '{name}' has kind '{kind}'; expected {choices(KINDS)}.")
        train, test = train_factors[name], test_factors[name]
        for split, values, n in (("train", train, n_train), ("test", test, n_test)):
            if tuple(values.shape) != (n,):
                raise ShapeError(
                    f"Style factor '{name}' has {split} shape {tuple(values.shape)}; expected [{n}], "
                    f"one value per {split} feature row."
                )
            if values.is_floating_point() and not torch.isfinite(values).all():
                raise ShapeError(f"Style factor '{name}' has non-finite {split} values.")
        if kind == "discrete":
            classes, train_index = torch.unique(train, return_inverse=True)
            if len(classes) < 2:
                skipped[name] = f"constant in the {where[0]} (always {classes[0].item():g}): nothing to probe"
                continue
            hit = test.to(classes.device)[:, None] == classes[None, :]
            test_index = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(test, -1, dtype=torch.long))
            usable[name] = Factor(kind, train_index, test_index, len(classes))
        else:
            train, test = train.double(), test.double()
            if (train.max() - train.min()).item() <= 1e-12 * max(1.0, train.abs().max().item()):
                skipped[name] = f"constant in the {where[0]} (always {train[0].item():g}): nothing to probe"
            elif (test.max() - test.min()).item() <= 1e-12 * max(1.0, test.abs().max().item()):
                skipped[name] = f"constant in the {where[1]} (always {test[0].item():g}): R² is undefined"
            else:
                usable[name] = Factor(kind, train.float(), test.float())
    return usable, skipped


def ridge_weights(x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regressions of every column of ``y [n, T]`` on ``x [n, d]`` for every α, in closed form.

    Minimises (1/n)‖y − x w − b‖² + α‖w‖² with an unpenalised intercept: w = (XᵀX/n + αI)⁻¹ Xᵀy/n
    on centred data, through one eigendecomposition of the Gram matrix (float64). Returns
    ``w [A, d, T]`` and ``b [A, T]``.
    """
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    evals, evecs = torch.linalg.eigh(xc.T @ xc / len(x))
    projected = evecs.T @ (xc.T @ (y - y_mean) / len(x))  # [d, T]
    a = torch.tensor(list(alphas), dtype=x.dtype, device=x.device)
    w = evecs @ (projected[None] / (evals.clamp_min(0)[None, :, None] + a[:, None, None]))
    return w, y_mean - x_mean @ w


def r2_score(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """R² = 1 − Σ(ŷ − y)² / Σ(y − ȳ)² per column (ȳ: the mean of the scored set itself)."""
    total = (target - target.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    return 1 - (prediction - target).pow(2).sum(0) / total


def ridge_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Ridge probe for every column of ``train_y [n, T]`` (standardised features and targets).

    Per target, α is the grid value with the best R² on a seeded validation split of train (the
    stronger α on ties), refitted on all of train and scored once on test. Returns, per target,
    ``{"score": test R², "val_score", "alpha"}``.
    """
    fit, val = split_indices(len(train_x), val_fraction, seed, train_x.device)
    grid = sorted(alphas, reverse=True)
    w, b = ridge_weights(train_x[fit], train_y[fit], grid)
    val_r2 = torch.stack(
        [r2_score(train_x[val].double() @ w[a] + b[a], train_y[val].double()) for a in range(len(grid))]
    )  # [A, T]
    best = val_r2.argmax(0)  # first maximum = strongest α on ties
    w_all, b_all = ridge_weights(train_x, train_y, grid)
    results = []
    for t in range(train_y.shape[1]):
        a = int(best[t])
        prediction = test_x.double() @ w_all[a, :, t] + b_all[a, t]
        results.append(
            {
                "score": r2_score(prediction[:, None], test_y[:, t : t + 1].double()).item(),
                "val_score": val_r2[a, t].item(),
                "alpha": grid[a],
            }
        )
    return results


def style_probes(
    train_x: torch.Tensor,
    train_factors: Mapping[str, torch.Tensor],
    test_x: torch.Tensor,
    test_factors: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    seed: int = 0,
    *,
    max_train: int | None = 20000,
    val_fraction: float = 0.1,
    ridge_alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    logistic_weight_decays: Sequence[float] = (1e-3, 1e-4, 1e-5),
    logistic_max_iter: int = 300,
    mlp_hiddens: Sequence[int] = (128,),
    mlp_weight_decays: Sequence[float] = (1e-4,),
    max_epochs: int = 30,
    patience: int = 3,
    fast: bool = False,
    whitened_max_iter: int = 50,
) -> dict[str, dict[str, float | str]]:
    """Linear and MLP probes of every style factor; ``{name: {"metric": "r2"|"acc", "linear", "mlp"}}``.

    Protocol. Features are standardised with training statistics (whitened for the MLPs, see
    :func:`genssl.eval.probes.whiten`). To keep the cost flat in the
    training-set size, both probes of every factor fit on the same seeded subset of at most
    ``max_train`` training rows (None: all); within it a seeded ``val_fraction`` is the validation
    split for every choice below, and the chosen setting is refitted on the whole subset and scored
    once on all of test.

    - continuous (targets standardised with the subset's statistics; R² is unaffected): ridge
      regression in closed form, α chosen on validation (:func:`ridge_probe`), and a one-hidden-layer
      ReLU MLP regressor (squared error);
    - discrete: multinomial logistic regression (:func:`genssl.eval.probes.linear_probe`, weight decay
      chosen on validation) and a one-hidden-layer MLP classifier (cross-entropy).

    The MLP width and decoupled weight decay come from ``mlp_hiddens`` × ``mlp_weight_decays`` and the
    epoch count from early stopping on validation (:func:`genssl.eval.mlp_bank.select_and_refit_mlp`);
    all factors' MLPs train together in one pass. A factor that cannot be probed (constant in train,
    or continuous and constant in test) is reported as ``{"metric", "skipped": reason}`` instead.

    ``fast`` (the evaluation's fast preset) fits the logistic regressions with
    :func:`genssl.eval.probes.linear_probe_whitened` (``whitened_max_iter`` steps per fit) and trains
    the MLPs with Adam's fused kernel; the protocol is otherwise the same.
    """
    check_features(train_x, None, test_x)
    usable, skipped = prepare_factors(train_factors, test_factors, kinds, len(train_x), len(test_x))
    rows = seeded_subset(
        len(train_x), max_train, seed + SUBSET_SEED_OFFSET, sort=False, device=train_x.device, none_if_all=True
    )
    subset_x = train_x if rows is None else train_x[rows]
    white_x, white_test = whiten(subset_x.float(), test_x.float(), clip=True)  # for the MLPs (see whiten)
    subset_x, test_x = standardise(subset_x.float(), test_x.float(), clip=True)
    device = train_x.device
    take = {name: f.train.to(device) if rows is None else f.train.to(device)[rows] for name, f in usable.items()}
    # A factor can be constant on the subset while varying over all of train (a rare value).
    for name in [n for n, v in take.items() if (v.max() - v.min()).item() <= 0]:
        skipped[name] = f"constant on the {len(subset_x)}-row training subset: nothing to probe"
        del usable[name], take[name]
    names = list(usable)
    train_t = torch.zeros(len(subset_x), len(names), device=device)
    test_t = torch.zeros(len(test_x), len(names), device=device)
    for j, name in enumerate(names):
        values, test_values = take[name].float(), usable[name].test.to(device).float()
        if usable[name].kind == "continuous":  # standardise so MLP losses and ridge α share one scale
            mean, std = values.mean(), values.std().clamp_min(1e-12)
            values, test_values = (values - mean) / std, (test_values - mean) / std
        train_t[:, j], test_t[:, j] = values, test_values
    result: dict[str, dict[str, float | str]] = {}
    continuous = [j for j, n in enumerate(names) if usable[n].kind == "continuous"]
    if continuous:
        fits = ridge_probe(
            subset_x, train_t[:, continuous], test_x, test_t[:, continuous], ridge_alphas, val_fraction, seed
        )
        for column, fit in zip(continuous, fits):
            result[names[column]] = {"metric": "r2", "linear": fit["score"]}
    for name in names:
        if usable[name].kind == "discrete":
            fit = (linear_probe_whitened if fast else linear_probe)(
                subset_x,
                take[name],
                test_x,
                usable[name].test.to(device),
                usable[name].classes,
                logistic_weight_decays,
                val_fraction,
                whitened_max_iter if fast else logistic_max_iter,
                seed,
            )
            result[name] = {"metric": "acc", "linear": fit["accuracy"]}
    if names:
        tasks = [
            ("continuous", 1) if usable[n].kind == "continuous" else ("discrete", usable[n].classes) for n in names
        ]
        mlps = select_and_refit_mlp(
            white_x,
            train_t,
            white_test,
            test_t,
            tasks,
            hiddens=mlp_hiddens,
            weight_decays=mlp_weight_decays,
            val_fraction=val_fraction,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
            fast=fast,
        )
        for name, mlp in zip(names, mlps):
            result[name]["mlp"] = mlp["score"]
    for name, reason in skipped.items():
        result[name] = {"metric": "r2" if kinds[name] == "continuous" else "acc", "skipped": reason}
    return {name: result[name] for name in train_factors}  # the caller's factor order


def style_mean(style: Mapping[str, Mapping[str, float | str]]) -> float | None:
    """The mean over probed factors of the MLP probe's score; None when no factor was probed.

    The MLP score is used because it bounds what the features keep about a factor better than the
    linear one. R² (continuous factors) and accuracy (discrete) are averaged together as they come,
    so compare ``style_mean`` only between runs on the same factors. Skipped factors do not count.
    """
    values = [float(probe["mlp"]) for probe in style.values() if "mlp" in probe]
    return sum(values) / len(values) if values else None
