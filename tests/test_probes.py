"""Content probes against references: scikit-learn's logistic regression and a brute-force kNN; the fast
preset's whitened linear probe against the full protocol's."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.nn import functional as F

from genssl.eval.logistic import fit_logistic, fit_logistic_whitened, whitening_basis
from genssl.eval.probes import knn_probe, linear_probe, linear_probe_whitened, rank_me, standardise


def blobs(n=600, d=8, classes=4, spread=1.5, seed=0):
    """Gaussian blobs around fixed centres; ``seed`` changes the samples, not the centres."""
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(1234)) * spread
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, d, generator=g), y


def test_linear_probe_agrees_with_sklearn():
    x, y = blobs()
    xt, yt = blobs(seed=1)
    ours = linear_probe(x, y, xt, yt, 4, weight_decays=[1e-3])["accuracy"]
    mean, std = x.mean(0), x.std(0)
    ref = LogisticRegression(C=1 / (1e-3 * len(x)), max_iter=2000).fit(((x - mean) / std).numpy(), y.numpy())
    theirs = ref.score(((xt - mean) / std).numpy(), yt.numpy())
    assert abs(ours - theirs) <= 0.01
    assert ours > 0.7  # the blobs are separable enough that a working probe scores well


def test_linear_probe_is_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    y, yt = torch.randint(0, 4, (500,), generator=g), torch.randint(0, 4, (500,), generator=g)
    assert linear_probe(x, y, xt, yt, 4)["accuracy"] < 0.35


def test_linear_probe_hyperparameter_is_chosen_without_the_test_labels():
    x, y = blobs(spread=0.6)
    xt, yt = blobs(seed=1, spread=0.6)
    grid = [1e-1, 1e-3, 1e-6]
    first = linear_probe(x, y, xt, yt, 4, weight_decays=grid)
    shuffled = linear_probe(x, y, xt, yt[torch.randperm(len(yt))], 4, weight_decays=grid)
    assert first["weight_decay"] in grid and first["weight_decay"] == shuffled["weight_decay"]
    assert first["val_accuracy"] == shuffled["val_accuracy"]


def test_knn_matches_brute_force():
    x, y = blobs(n=300)
    xt, yt = blobs(n=97, seed=2)
    k = 7
    xn = x / x.norm(dim=1, keepdim=True)
    xtn = xt / xt.norm(dim=1, keepdim=True)
    predictions = []
    for row in (xtn @ xn.T).numpy():
        labels = y.numpy()[np.argsort(-row, kind="stable")[:k]]
        counts = np.bincount(labels, minlength=4)
        predictions.append(np.argmax(counts))
    expected = float((np.array(predictions) == yt.numpy()).mean())
    assert knn_probe(x, y, xt, yt, 4, k=k, chunk=16) == expected


def test_rank_me_counts_effective_dimensions():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(2000, 16, generator=g)
    low = torch.randn(2000, 3, generator=g) @ torch.randn(3, 16, generator=g)
    assert rank_me(full) > 14
    assert 2 < rank_me(low) < 3.5


# ------------------------------------------------------------------ the fast preset's linear solver


def ill_conditioned(n, seed, classes=4, d=16):
    """Blobs in 3 informative directions mixed into ``d`` features whose variances span six decades."""
    x, y = blobs(n=n, d=3, classes=classes, spread=1.0, seed=seed)
    g = torch.Generator().manual_seed(7)
    z = torch.cat([x, torch.randn(n, d - 3, generator=torch.Generator().manual_seed(seed + 100))], 1)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    return (z * torch.logspace(-3, 0, d)) @ rotation, y


def test_whitened_linear_probe_agrees_with_sklearn():
    x, y = blobs()
    xt, yt = blobs(seed=1)
    ours = linear_probe_whitened(x, y, xt, yt, 4, weight_decays=[1e-3])["accuracy"]
    mean, std = x.mean(0), x.std(0)
    ref = LogisticRegression(C=1 / (1e-3 * len(x)), max_iter=2000).fit(((x - mean) / std).numpy(), y.numpy())
    assert abs(ours - ref.score(((xt - mean) / std).numpy(), yt.numpy())) <= 0.01


def test_whitening_preconditions_the_same_objective():
    """The whitened fit maps back onto :func:`fit_logistic`'s minimiser, in a hundredth of the steps."""
    x, y = ill_conditioned(2000, 0)
    x = standardise(x)[0]
    objective = lambda w, b: F.cross_entropy(x @ w + b, y).item() + 0.5e-6 * w.pow(2).sum().item()
    mean, basis, scale = whitening_basis(x)
    z_t = ((x - mean) @ basis).T.contiguous()
    weight, bias = fit_logistic_whitened(z_t, y, 4, 1e-6, 1.0 / scale, max_iter=50)
    weight_x = basis @ weight.T
    fast = objective(weight_x, bias - mean @ weight_x)
    assert fast <= objective(*fit_logistic(x, y, 4, 1e-6, max_iter=5000)) + 1e-5
    assert objective(*fit_logistic(x, y, 4, 1e-6, max_iter=50)) > fast + 0.1  # unpreconditioned: far from it


def test_whitened_linear_probe_matches_the_full_protocol():
    (x, y), (xt, yt) = ill_conditioned(3000, 0), ill_conditioned(1000, 1)
    grid = [1e-2, 1e-4, 1e-6]
    full = linear_probe(x, y, xt, yt, 4, weight_decays=grid, max_iter=2000)
    fast = linear_probe_whitened(x, y, xt, yt, 4, weight_decays=grid)
    assert fast["weight_decay"] == full["weight_decay"]
    assert abs(fast["accuracy"] - full["accuracy"]) <= 0.01 and abs(fast["val_accuracy"] - full["val_accuracy"]) <= 0.01
    shuffled = linear_probe_whitened(x, y, xt, yt[torch.randperm(len(yt))], 4, weight_decays=grid)
    assert shuffled["weight_decay"] == fast["weight_decay"] and shuffled["val_accuracy"] == fast["val_accuracy"]
    assert linear_probe_whitened(x, y, xt, yt, 4, weight_decays=grid) == fast


def test_whitened_linear_probe_is_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    y, yt = torch.randint(0, 4, (500,), generator=g), torch.randint(0, 4, (500,), generator=g)
    assert linear_probe_whitened(x, y, xt, yt, 4)["accuracy"] < 0.35
