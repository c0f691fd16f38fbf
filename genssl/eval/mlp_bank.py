"""One-hidden-layer MLP probes trained as a bank of independent heads in one pass, and the seeded
(fit, val) split every probe's selection uses. :func:`genssl.eval.probes.mlp_probe` and the style
probes call :func:`select_and_refit_mlp`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


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
    fast: bool = False,
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

    Each epoch gathers its shuffled rows once and slices the minibatches from them (the same batches
    as indexing per step). ``fast`` takes Adam's fused kernel: the same update up to float rounding.
    """
    device = x.device
    generator = torch.Generator().manual_seed(seed)
    bank = _Bank(x.shape[1], hidden, [h[2] for h in heads], [h[3] for h in heads], generator, device)
    optimizer = torch.optim.Adam(bank.params, lr=lr, fused=True if fast else None)
    kinds = [(h[0], h[1]) for h in heads]
    results: list[tuple[float, int]] = [(-float("inf"), 0)] * len(heads)
    last = max_epochs if epochs is None else max(epochs)
    for epoch in range(1, last + 1):
        order = torch.randperm(len(x), generator=generator).to(device)
        shuffled_x, shuffled_t = x[order], targets[order]
        with torch.enable_grad():
            for start in range(0, len(x), batch_size):
                batch = slice(start, start + batch_size)
                optimizer.zero_grad(set_to_none=True)
                _bank_loss(bank(shuffled_x[batch]), shuffled_t[batch], kinds).backward()
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
    fast: bool = False,
) -> list[dict[str, float]]:
    """The MLP-probe protocol for several targets at once; inputs must already be whitened (or standardised).

    ``tasks[j] = (kind, outputs)`` describes column j of ``train_t`` / ``test_t`` (see
    :func:`train_mlp_bank`). For every target, every (hidden, weight decay) pair is trained on the
    training split less a seeded ``val_fraction`` and early-stopped on that validation part; the pair
    and epoch count with the best validation score (first in grid order on ties) are refitted on the
    whole training split for that many epochs and scored once on test. The minibatch shrinks on small
    sets so that an epoch has at least 16 steps. ``fast``: see :func:`train_mlp_bank`. Returns, per
    target, ``{"score", "val_score", "hidden", "weight_decay", "epochs"}``.
    """
    fit, val = split_indices(len(train_x), val_fraction, seed, train_x.device)
    batch = max(8, min(batch_size, len(fit) // 16))
    options = dict(max_epochs=max_epochs, patience=patience, batch_size=batch, lr=lr, seed=seed, fast=fast)
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
