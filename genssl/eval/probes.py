"""Probes that read content out of frozen features. Pure tensor functions; run on any device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from genssl.errors import ShapeError


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
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

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


# ---------------------------------------------------------------------------------------------------
# One-hidden-layer MLP probes, trained as a bank of independent heads in one pass.
# ---------------------------------------------------------------------------------------------------


def split_indices(
    n: int, val_fraction: float, seed: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (fit, val) index split of ``range(n)``: the first ``val_fraction`` of a permutation is val."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return order[n_val:], order[:n_val]


def _score(kind: str, out: torch.Tensor, target: torch.Tensor) -> float:
    """Accuracy for a classifier head (``out`` are logits); R² = 1 − SS_res / SS_tot for a regressor."""
    if kind == "discrete":
        return (out.argmax(1) == target.long()).float().mean().item()
    residual = (out[:, 0] - target).pow(2).sum()
    total = (target - target.mean()).pow(2).sum().clamp_min(1e-12)
    return (1.0 - residual / total).item()


class _Bank:
    """K independent one-hidden-layer MLPs ``x → ReLU(x W1_k + b1_k) W2_k + b2_k`` sharing one input.

    Stacking the K first layers into one ``[d, K·h]`` matrix turns K small matmuls into one large one
    (the cost that dominates on CPU). The heads share no parameter, and Adam and the decoupled weight
    decay act elementwise, so each head trains exactly as it would alone on the same minibatch order.
    """

    def __init__(
        self,
        d: int,
        hidden: int,
        outs: Sequence[int],
        decays: Sequence[float],
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        k, o = len(outs), max(outs)
        self.k, self.hidden = k, hidden
        bound1, bound2 = d**-0.5, hidden**-0.5  # PyTorch's nn.Linear default init ranges
        self.w1 = ((torch.rand(d, k * hidden, generator=generator) * 2 - 1) * bound1).to(device)
        self.b1 = ((torch.rand(k * hidden, generator=generator) * 2 - 1) * bound1).to(device)
        self.w2 = ((torch.rand(k, hidden, o, generator=generator) * 2 - 1) * bound2).to(device)
        self.b2 = ((torch.rand(k, 1, o, generator=generator) * 2 - 1) * bound2).to(device)
        self.params = [p.requires_grad_(True) for p in (self.w1, self.b1, self.w2, self.b2)]
        # Padding logits of heads with fewer classes than the widest one must never win or get mass.
        self.mask = torch.zeros(k, 1, o, device=device)
        for i, n_out in enumerate(outs):
            self.mask[i, 0, n_out:] = float("-inf")
        self.decay = torch.tensor(list(decays), device=device, dtype=torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[K, N, max_out]`` (padded classes at −inf)."""
        hid = torch.relu(x @ self.w1 + self.b1).view(len(x), self.k, self.hidden).transpose(0, 1)
        return torch.baddbmm(self.b2, hid, self.w2) + self.mask

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        return torch.cat([self(x[s : s + chunk]) for s in range(0, len(x), chunk)], dim=1)

    @torch.no_grad()
    def apply_decay(self, lr: float) -> None:
        """Decoupled (AdamW-style) weight decay with a per-head rate; biases are not decayed."""
        shrink = 1.0 - lr * self.decay
        self.w1.view(self.w1.shape[0], self.k, self.hidden).mul_(shrink[None, :, None])
        self.w2.mul_(shrink[:, None, None])


def _bank_loss(out: torch.Tensor, targets: torch.Tensor, heads: Sequence[tuple[int, str]]) -> torch.Tensor:
    """Sum over heads of each head's mean loss: cross-entropy (discrete) or squared error (continuous)."""
    loss = out.new_zeros(())
    for i, (column, kind) in enumerate(heads):
        target = targets[:, column]
        if kind == "discrete":
            loss = loss + F.cross_entropy(out[i], target.long())
        else:
            loss = loss + F.mse_loss(out[i, :, 0], target)
    return loss


def train_mlp_bank(
    x: torch.Tensor,
    targets: torch.Tensor,
    heads: Sequence[tuple[int, str, int, float]],
    hidden: int,
    eval_x: torch.Tensor,
    eval_targets: torch.Tensor,
    *,
    epochs: Sequence[int] | None = None,
    max_epochs: int = 30,
    patience: int = 3,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[tuple[float, int]]:
    """Train one MLP per head with Adam on minibatches; return each head's (eval score, epochs).

    ``heads`` are ``(target column, kind, outputs, weight decay)``; ``kind`` is "discrete" (outputs =
    number of classes, cross-entropy, scored by accuracy) or "continuous" (outputs = 1, squared error,
    scored by R²). Two modes:

    - ``epochs=None`` (selection, ``eval_*`` is a validation split): score every head on the eval set
      after each epoch; a head's result is its best score and the epoch it was reached (early
      stopping: training ends once no head has improved for ``patience`` epochs, or at ``max_epochs``).
    - ``epochs`` given (refit, ``eval_*`` may be the test split): head k is scored exactly once, after
      its own ``epochs[k]`` epochs; nothing is chosen from those scores.
    """
    device = x.device
    generator = torch.Generator().manual_seed(seed)
    bank = _Bank(x.shape[1], hidden, [h[2] for h in heads], [h[3] for h in heads], generator, device)
    optimizer = torch.optim.Adam(bank.params, lr=lr)
    kinds = [(h[0], h[1]) for h in heads]
    results: list[tuple[float, int]] = [(-float("inf"), 0)] * len(heads)
    last = max_epochs if epochs is None else max(epochs)
    for epoch in range(1, last + 1):
        order = torch.randperm(len(x), generator=generator).to(device)
        with torch.enable_grad():
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                _bank_loss(bank(x[index]), targets[index], kinds).backward()
                optimizer.step()
                bank.apply_decay(lr)
        due = range(len(heads)) if epochs is None else [k for k in range(len(heads)) if epochs[k] == epoch]
        if not due:
            continue
        out = bank.predict(eval_x)
        for k in due:
            score = _score(heads[k][1], out[k, :, : heads[k][2]], eval_targets[:, heads[k][0]])
            if epochs is not None or score > results[k][0]:
                results[k] = (score, epoch)
        if epochs is None and all(epoch - best >= patience for _, best in results):
            break
    return results


def select_and_refit_mlp(
    train_x: torch.Tensor,
    train_t: torch.Tensor,
    test_x: torch.Tensor,
    test_t: torch.Tensor,
    tasks: Sequence[tuple[str, int]],
    *,
    hiddens: Sequence[int],
    weight_decays: Sequence[float],
    val_fraction: float = 0.1,
    max_epochs: int = 30,
    patience: int = 3,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[dict[str, float]]:
    """The MLP-probe protocol for several targets at once; inputs must already be whitened (or standardised).

    ``tasks[j] = (kind, outputs)`` describes column j of ``train_t`` / ``test_t`` (see
    :func:`train_mlp_bank`). For every target, every (hidden, weight decay) pair is trained on the
    training split less a seeded ``val_fraction`` and early-stopped on that validation part; the pair
    and epoch count with the best validation score (first in grid order on ties) are refitted on the
    whole training split for that many epochs and scored once on test. The minibatch shrinks on small
    sets so that an epoch has at least 16 steps. Returns, per target, ``{"score", "val_score",
    "hidden", "weight_decay", "epochs"}``.
    """
    fit, val = split_indices(len(train_x), val_fraction, seed, train_x.device)
    batch = max(8, min(batch_size, len(fit) // 16))
    options = dict(max_epochs=max_epochs, patience=patience, batch_size=batch, lr=lr, seed=seed)
    best: list[tuple[float, int, float, int]] = [(-float("inf"), 0, 0.0, 0)] * len(tasks)
    for hidden in hiddens:
        heads = [(j, kind, outs, decay) for j, (kind, outs) in enumerate(tasks) for decay in weight_decays]
        found = train_mlp_bank(train_x[fit], train_t[fit], heads, hidden, train_x[val], train_t[val], **options)
        for (j, _, _, decay), (score, epochs) in zip(heads, found):
            if score > best[j][0]:
                best[j] = (score, hidden, decay, epochs)
    results: list[dict[str, float]] = [{} for _ in tasks]
    for hidden in dict.fromkeys(b[1] for b in best):  # one refit bank per chosen hidden size
        chosen = [j for j in range(len(tasks)) if best[j][1] == hidden]
        heads = [(j, *tasks[j], best[j][2]) for j in chosen]
        scores = train_mlp_bank(
            train_x, train_t, heads, hidden, test_x, test_t, epochs=[max(1, best[j][3]) for j in chosen], **options
        )  # 0 if val was NaN
        for j, (score, _) in zip(chosen, scores):
            results[j] = {
                "score": score,
                "val_score": best[j][0],
                "hidden": hidden,
                "weight_decay": best[j][2],
                "epochs": best[j][3],
            }
    return results


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
    doubling the cost; pass e.g. ``weight_decays=(1e-4, 1e-1)`` to choose it too.
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
    )
    return {
        "accuracy": result["score"],
        "hidden": result["hidden"],
        "weight_decay": result["weight_decay"],
        "epochs": result["epochs"],
        "val_accuracy": result["val_score"],
    }


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
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

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
) -> dict[str, float | list[float]]:
    """Linear probe from ``per_class`` labelled training images per class, over ``draws`` seeded draws.

    Features are standardised with the statistics of the whole training split (no labels needed: the
    unlabelled images are available in this semi-supervised setting). Each draw takes ``per_class``
    images of every class without replacement; its weight decay is chosen by stratified
    ``folds``-fold cross-validation inside the draw (mean held-out accuracy; the stronger decay wins
    ties), then the logistic regression (:func:`fit_logistic`'s objective) is refitted on the whole
    draw and scored once on the full test split. All draws × folds × decays are solved together
    (:func:`fit_logistic_grid`). Returns ``{"accuracy": mean, "std": population std, "accuracies",
    "weight_decays", "per_class", "draws"}``.
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
    cv, params = torch.zeros(draws, len(grid), device=device), None
    for i, decay in enumerate(grid):  # strongest first, each warm-started from the last: far fewer steps
        params = fit_logistic_grid(
            x, y, num_classes, torch.full((draws, folds), decay, device=device), masks, max_iter, init=params
        )
        correct = (
            (torch.einsum("bnd,bmdc->bmnc", x, params[0]) + params[1][:, :, None]).argmax(3) == y[:, None]
        ).float()
        cv[:, i] = ((correct * held_out).sum(2) / held_out.sum(1)).mean(1)
    chosen = [grid[i] for i in cv.argmax(1).tolist()]  # argmax takes the first maximum: the stronger decay
    everything = torch.ones(1, x.shape[1], dtype=torch.bool, device=device)
    weight, bias = fit_logistic_grid(
        x, y, num_classes, torch.tensor(chosen, device=device)[:, None], everything, max_iter
    )
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
