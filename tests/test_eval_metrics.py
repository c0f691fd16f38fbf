"""Content-versus-style metrics: MLP and few-label probes, GMM clustering, style probes, DCI and MIG.

Each probe must recover structure planted in synthetic data, score chance on noise, choose its
hyper-parameters without the test labels, and be deterministic under a seed.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, Ridge
from sklearn.metrics import mutual_info_score
from sklearn.mixture import GaussianMixture

from genssl.errors import ConfigError, ShapeError
from genssl.eval.clustering import fit_gmm, gmm_clustering, hungarian_accuracy
from genssl.eval.disentanglement import dci, lasso_weights, mig
from genssl.eval.logistic import fit_logistic, fit_logistic_grid, fit_logistic_grid_fast
from genssl.eval.mlp_bank import _Bank, _bank_loss, select_and_refit_mlp
from genssl.eval.probes import few_label_linear_probe, linear_probe, mlp_probe, standardise, whiten
from genssl.eval.style import ridge_probe, ridge_weights, style_mean, style_probes


def blobs(n=600, d=8, classes=4, spread=3.0, seed=0):
    """Gaussian blobs around fixed centres; ``seed`` changes the samples, not the centres."""
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(1234)) * spread
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + torch.randn(n, d, generator=g), y


def noise(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def xor_labels(x):
    """Four classes from the signs of two coordinates: no linear read-out beats chance by much."""
    return ((x[:, 0] > 0).long() ^ (x[:, 1] > 0).long()) * 2 + (x[:, 2] * x[:, 3] > 0).long()


# ------------------------------------------------------------------------------------------ MLP probe


def test_mlp_bank_heads_train_as_if_alone():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300, 2), generator=g).float()
    bank = _Bank(8, 16, [3, 3], [0.0, 0.5], torch.Generator().manual_seed(1), torch.device("cpu"))
    alone = [
        bank.w1.detach()[:, :16].clone(),
        bank.b1.detach()[:16].clone(),
        bank.w2.detach()[0].clone(),
        bank.b2.detach()[0, 0].clone(),
    ]
    for p in alone:
        p.requires_grad_(True)
    opt_bank, opt_alone = torch.optim.Adam(bank.params, lr=1e-2), torch.optim.Adam(alone, lr=1e-2)
    for _ in range(30):
        i = torch.randint(0, 300, (32,), generator=g)
        opt_bank.zero_grad()
        _bank_loss(bank(x[i]), y[i], [(0, "discrete"), (1, "discrete")]).backward()
        opt_bank.step()
        bank.apply_decay(1e-2)  # head 0 has no decay, so it must match plain Adam
        opt_alone.zero_grad()
        w1, b1, w2, b2 = alone
        torch.nn.functional.cross_entropy(torch.relu(x[i] @ w1 + b1) @ w2 + b2, y[i, 0].long()).backward()
        opt_alone.step()
    torch.testing.assert_close(bank.w1.detach()[:, :16], alone[0].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bank.w2.detach()[0], alone[2].detach(), atol=1e-5, rtol=1e-5)


def test_mlp_probe_reads_nonlinear_classes_a_linear_probe_cannot():
    x, xt = noise(3000, 6, 0), noise(1000, 6, 1)
    y, yt = xor_labels(x), xor_labels(xt)
    mlp = mlp_probe(x, y, xt, yt, 4, hiddens=(64,), weight_decays=(1e-4,), seed=0)
    linear = linear_probe(x, y, xt, yt, 4)["accuracy"]
    assert set(mlp) == {"accuracy", "hidden", "weight_decay", "epochs", "val_accuracy"}
    assert mlp["accuracy"] > 0.85 and linear < 0.45


def test_mlp_probe_separable_blobs_and_noise():
    x, y = blobs(800)
    xt, yt = blobs(400, seed=1)
    assert mlp_probe(x, y, xt, yt, 4, hiddens=(32,), weight_decays=(1e-4,))["accuracy"] > 0.95
    g = torch.Generator().manual_seed(3)
    labels, test_labels = torch.randint(0, 4, (800,), generator=g), torch.randint(0, 4, (400,), generator=g)
    assert mlp_probe(x, labels, xt, test_labels, 4, hiddens=(32,), weight_decays=(1e-4,))["accuracy"] < 0.35


def ill_conditioned_blobs(n: int, seed: int, decades: float = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten overlapping classes in 4 informative directions, mixed into 32 correlated features whose
    covariance eigenvalues span 2 × ``decades`` orders of magnitude (like a VAE's posterior means)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    centres = torch.randn(10, 4, generator=torch.Generator().manual_seed(99))
    z = torch.cat([centres[y] + 0.7 * torch.randn(n, 4, generator=g), torch.randn(n, 28, generator=g)], 1)
    rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(98)))
    spread = torch.logspace(-decades, 0, 32)[torch.randperm(32, generator=torch.Generator().manual_seed(97))]
    return (z * spread) @ rotation, y


def test_whiten_gives_identity_covariance_and_clips_test():
    x, _ = ill_conditioned_blobs(2000, 0, decades=2.5)  # eigenvalues above whiten's floor (1e-6 × largest)
    xt = torch.cat([ill_conditioned_blobs(10, 1, decades=2.5)[0], 1e3 * torch.ones(1, 32)])
    white, white_test = whiten(x, xt, clip=True)
    torch.testing.assert_close(torch.cov(white.T.double()), torch.eye(32, dtype=torch.float64), atol=1e-3, rtol=0)
    assert torch.all(white_test <= white.max(0).values) and torch.all(white_test >= white.min(0).values)


def test_mlp_probe_is_not_beaten_by_the_linear_probe_on_ill_conditioned_features():
    # Adam on such features barely moves along the small directions: on standardised (not whitened)
    # inputs this MLP probe scores 0.39 against the linear probe's 0.76.
    (x, y), (xt, yt) = ill_conditioned_blobs(3000, 0), ill_conditioned_blobs(1000, 1)
    linear = linear_probe(x, y, xt, yt, 10)["accuracy"]
    mlp = mlp_probe(x, y, xt, yt, 10, hiddens=(64,), seed=0)["accuracy"]
    assert mlp >= linear - 0.02, (mlp, linear)


def test_mlp_probe_choices_ignore_test_labels_and_are_deterministic():
    x, xt = noise(1000, 6, 0), noise(400, 6, 1)
    y, yt = xor_labels(x), xor_labels(xt)
    kwargs = dict(hiddens=(16, 48), weight_decays=(1e-4, 1e-1), max_epochs=10, seed=5)
    first = mlp_probe(x, y, xt, yt, 4, **kwargs)
    again = mlp_probe(x, y, xt, yt, 4, **kwargs)
    shuffled = mlp_probe(x, y, xt, yt[torch.randperm(len(yt))], 4, **kwargs)
    assert first == again
    for key in ("hidden", "weight_decay", "epochs", "val_accuracy"):
        assert first[key] == shuffled[key]
    assert first["hidden"] in (16, 48) and first["weight_decay"] in (1e-4, 1e-1) and 1 <= first["epochs"] <= 10


def test_mlp_selection_ignores_test_targets_for_regression():
    x, xt = noise(1500, 4, 0), noise(500, 4, 1)
    t, tt = x[:, :1].abs(), xt[:, :1].abs()
    run = lambda test_t: select_and_refit_mlp(
        x, t, xt, test_t, [("continuous", 1)], hiddens=(16, 32), weight_decays=(1e-4,), max_epochs=10
    )[0]
    first, shuffled = run(tt), run(tt[torch.randperm(len(tt))])
    assert {k: first[k] for k in ("hidden", "epochs", "val_score")} == {
        k: shuffled[k] for k in ("hidden", "epochs", "val_score")
    }
    assert first["score"] > 0.8 and shuffled["score"] < 0.1


# ------------------------------------------------------------------------------- few-label probe


def test_logistic_grid_matches_one_by_one_fits():
    x, y = blobs(120, spread=1.0)
    mask = torch.arange(120) % 3 != 0
    weight, bias = fit_logistic_grid(
        x[None],
        y[None],
        4,
        torch.tensor([[1e-1, 1e-2]]),
        torch.stack([mask, torch.ones(120, dtype=torch.bool)]),
        max_iter=500,
    )
    for m, (rows, decay) in enumerate([(mask, 1e-1), (torch.ones(120, dtype=torch.bool), 1e-2)]):
        w, b = fit_logistic(x[rows], y[rows], 4, decay, max_iter=500)
        torch.testing.assert_close(weight[0, m], w, atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(bias[0, m], b, atol=2e-3, rtol=2e-3)


def test_few_label_probe_learns_from_ten_per_class_and_ignores_test_labels():
    x, y = blobs(2000)
    xt, yt = blobs(500, seed=1)
    result = few_label_linear_probe(x, y, xt, yt, 4, per_class=10, draws=3, seed=1)
    assert result["accuracy"] > 0.9 and 0 <= result["std"] < 0.1 and len(result["accuracies"]) == 3
    shuffled = few_label_linear_probe(x, y, xt, yt[torch.randperm(len(yt))], 4, per_class=10, draws=3, seed=1)
    assert shuffled["weight_decays"] == result["weight_decays"]
    assert few_label_linear_probe(x, y, xt, yt, 4, per_class=10, draws=3, seed=1) == result
    g = torch.Generator().manual_seed(0)
    chance = few_label_linear_probe(
        x,
        torch.randint(0, 4, (2000,), generator=g),
        xt,
        torch.randint(0, 4, (500,), generator=g),
        4,
        per_class=10,
        draws=3,
    )
    assert chance["accuracy"] < 0.35


def test_fast_logistic_grid_matches_the_autograd_one():
    x, y = blobs(120, spread=1.0)
    xs = torch.stack([x, x.flip(0)])
    ys = torch.stack([y, y.flip(0)])
    masks = torch.stack([torch.arange(120) % 3 != 0, torch.ones(120, dtype=torch.bool)])
    decays = torch.tensor([[1e-1, 1e-2], [1e-2, 1e-3]])
    weight, bias = fit_logistic_grid(xs, ys, 4, decays, masks, max_iter=500)
    fast_weight, fast_bias = fit_logistic_grid_fast(xs, ys, 4, decays, masks, max_iter=500)
    assert fast_weight.shape == weight.shape and fast_bias.shape == bias.shape
    # Both stop at L-BFGS's tolerances, on iterates that differ by float rounding only.
    torch.testing.assert_close(fast_weight, weight, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(fast_bias, bias, atol=5e-3, rtol=5e-3)
    warm = fit_logistic_grid_fast(xs, ys, 4, decays / 10, masks, max_iter=500, init=(fast_weight, fast_bias))
    torch.testing.assert_close(
        warm[0], fit_logistic_grid(xs, ys, 4, decays / 10, masks, max_iter=500)[0], atol=5e-3, rtol=5e-3
    )


def test_fast_few_label_probe_makes_the_same_choices():
    x, y = blobs(2000, spread=1.0)
    xt, yt = blobs(500, spread=1.0, seed=1)
    for per_class in (10, 50):
        full = few_label_linear_probe(x, y, xt, yt, 4, per_class=per_class, draws=3, seed=2)
        fast = few_label_linear_probe(x, y, xt, yt, 4, per_class=per_class, draws=3, seed=2, fast=True)
        assert fast["weight_decays"] == full["weight_decays"]
        assert abs(fast["accuracy"] - full["accuracy"]) <= 0.005
        assert few_label_linear_probe(x, y, xt, yt, 4, per_class=per_class, draws=3, seed=2, fast=True) == fast


def test_fast_mlp_probe_is_deterministic_and_reads_the_same_classes():
    x, xt = noise(3000, 6, 0), noise(1000, 6, 1)
    y, yt = xor_labels(x), xor_labels(xt)
    full = mlp_probe(x, y, xt, yt, 4, hiddens=(64,), seed=0)
    fast = mlp_probe(x, y, xt, yt, 4, hiddens=(64,), seed=0, fast=True)
    assert fast == mlp_probe(x, y, xt, yt, 4, hiddens=(64,), seed=0, fast=True)
    assert fast["accuracy"] > 0.85 and abs(fast["accuracy"] - full["accuracy"]) <= 0.02


def test_few_label_probe_needs_enough_images_per_class():
    x, y = blobs(100)
    with pytest.raises(ShapeError, match="per_class"):
        few_label_linear_probe(x, y, x, y, 4, per_class=100)


# -------------------------------------------------------------------------------------- clustering


def test_hungarian_accuracy_is_invariant_to_relabelling_clusters():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    clusters = np.array([1, 1, 2, 0, 0, 2, 2, 2, 1])
    assert hungarian_accuracy(clusters, labels) == pytest.approx(7 / 9)
    permuted = np.array([5, 9, 7])[clusters]  # any injective relabelling of the clusters
    assert hungarian_accuracy(permuted, labels) == hungarian_accuracy(clusters, labels)
    assert hungarian_accuracy(np.arange(9), labels) == pytest.approx(3 / 9)  # unmatched clusters are errors


def test_gmm_matches_scikit_learn_on_blobs():
    x, _ = blobs(1500, d=4, classes=3, spread=4.0)
    (weights, means, covs), converged, log_likelihood = fit_gmm(x, 3, seed=0)
    ref = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=0).fit(x.double().numpy())
    order = np.argsort(ref.means_[:, 0])
    ours = torch.argsort(means[:, 0])
    assert converged
    np.testing.assert_allclose(means[ours].numpy(), ref.means_[order], atol=1e-2)
    np.testing.assert_allclose(covs[ours].numpy(), ref.covariances_[order], atol=2e-2)
    assert log_likelihood == pytest.approx(ref.score(x.double().numpy()), abs=1e-3)


def test_gmm_clustering_finds_blobs_and_nothing_in_noise():
    x, _ = blobs(2000, d=12, classes=5, spread=3.0)
    xt, yt = blobs(800, d=12, classes=5, spread=3.0, seed=1)
    found = gmm_clustering(x, xt, yt, 5, seed=0, pca_dim=8)
    assert found["gmm_acc"] > 0.95 and found["nmi"] > 0.9 and found["ari"] > 0.9
    assert gmm_clustering(x, xt, yt, 5, seed=0, pca_dim=8) == found
    g = torch.Generator().manual_seed(0)
    nothing = gmm_clustering(
        noise(2000, 12, 2), noise(800, 12, 3), torch.randint(0, 5, (800,), generator=g), 5, pca_dim=8
    )
    assert nothing["gmm_acc"] < 0.3 and abs(nothing["ari"]) < 0.02 and nothing["nmi"] < 0.02


# ---------------------------------------------------------------------------------- style probes


def factors_of(x, g):
    return {
        "linear": 2 * x[:, 0] - x[:, 1],
        "abs": x[:, 2].abs(),
        "noise": torch.randn(len(x), generator=g),
        "flip": torch.zeros(len(x)),
        "xor": ((x[:, 3] > 0) ^ (x[:, 4] > 0)).long(),
        "sign": (x[:, 5] > 0).long() * 7,
    }


KINDS = {
    "linear": "continuous",
    "abs": "continuous",
    "noise": "continuous",
    "flip": "continuous",
    "xor": "discrete",
    "sign": "discrete",
}


def test_style_probes_recover_planted_factors():
    g = torch.Generator().manual_seed(0)
    x, xt = noise(3000, 8, 0), noise(1500, 8, 1)
    style = style_probes(x, factors_of(x, g), xt, factors_of(xt, g), KINDS, seed=0, mlp_hiddens=(64,))
    assert list(style) == list(KINDS)
    assert style["linear"]["metric"] == "r2" and style["linear"]["linear"] > 0.999
    assert style["abs"]["linear"] < 0.05 and style["abs"]["mlp"] > 0.9
    assert abs(style["noise"]["linear"]) < 0.02 and abs(style["noise"]["mlp"]) < 0.05
    assert style["xor"]["metric"] == "acc" and style["xor"]["linear"] < 0.6 and style["xor"]["mlp"] > 0.9
    assert style["sign"]["linear"] > 0.97  # discrete values need not be 0..C−1
    assert style["flip"] == {"metric": "r2", "skipped": "constant in the training split (always 0): nothing to probe"}
    scored = [p["mlp"] for p in style.values() if "mlp" in p]
    assert style_mean(style) == pytest.approx(sum(scored) / 5)
    assert style_mean({"flip": style["flip"]}) is None
    assert all(math.isfinite(v) for p in style.values() for v in p.values() if isinstance(v, float))


def test_style_probes_are_deterministic_and_subsample():
    g = torch.Generator().manual_seed(0)
    x, xt = noise(1200, 6, 0), noise(400, 6, 1)
    train, test = factors_of(x, g), factors_of(xt, g)
    kinds = {"linear": "continuous", "sign": "discrete"}
    pick = lambda f: {k: f[k] for k in kinds}
    run = lambda: style_probes(
        x, pick(train), xt, pick(test), kinds, seed=3, max_train=800, mlp_hiddens=(16,), max_epochs=8
    )
    assert run() == run()


def test_ridge_matches_scikit_learn_and_choice_ignores_test_targets():
    x, xt = noise(400, 5, 0), noise(200, 5, 1)
    w_true = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0])
    y = (x @ w_true + noise(400, 1, 2)[:, 0])[:, None]
    w, b = ridge_weights(x, y, [0.1])
    ref = Ridge(alpha=0.1 * len(x)).fit(x.double().numpy(), y[:, 0].double().numpy())  # penalty on the summed loss
    np.testing.assert_allclose(w[0, :, 0].numpy(), ref.coef_, atol=1e-6)
    np.testing.assert_allclose(b[0, 0].item(), ref.intercept_, atol=1e-6)
    yt = (xt @ w_true)[:, None]
    first, shuffled = ridge_probe(x, y, xt, yt)[0], ridge_probe(x, y, xt, yt[torch.randperm(200)])[0]
    assert first["alpha"] == shuffled["alpha"] and first["val_score"] == shuffled["val_score"]


def test_style_probes_reject_bad_input():
    x = noise(50, 3, 0)
    with pytest.raises(ConfigError, match="kind"):
        style_probes(x, {"a": x[:, 0]}, x, {"a": x[:, 0]}, {"a": "ordinal"})
    with pytest.raises(ConfigError, match="differ"):
        style_probes(x, {"a": x[:, 0]}, x, {"b": x[:, 0]}, {"a": "continuous", "b": "continuous"})
    with pytest.raises(ShapeError, match="one value per"):
        style_probes(x, {"a": x[:10, 0]}, x, {"a": x[:, 0]}, {"a": "continuous"})
    with pytest.raises(ShapeError, match="same D"):
        style_probes(x, {"a": x[:, 0]}, x[:, :2], {"a": x[:, 0]}, {"a": "continuous"})


# ------------------------------------------------------------------------------- DCI and MIG


def codes_and_factors(n, seed, mix=None):
    """Four uniform factors, each copied into one code dimension, plus four noise dimensions."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, 4, generator=g)
    codes = torch.cat([f - 0.5, 0.3 * torch.randn(n, 4, generator=g)], 1)
    if mix is not None:
        codes = codes @ mix
    return codes, {f"v{i}": f[:, i] for i in range(4)}


FACTOR_KINDS = {f"v{i}": "continuous" for i in range(4)}
ROTATION = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(9)))[0]


def test_lasso_matches_scikit_learn():
    x = noise(300, 6, 0)
    y = (x[:, 0] - 0.5 * x[:, 3] + 0.1 * noise(300, 1, 1)[:, 0])[:, None]
    w, b = lasso_weights(x, y, [0.05], iters=5000, tol=1e-10)
    ref = Lasso(alpha=0.05, tol=1e-12, max_iter=100000).fit(x.double().numpy(), y[:, 0].double().numpy())
    np.testing.assert_allclose(w[0, :, 0].numpy(), ref.coef_, atol=1e-5)
    np.testing.assert_allclose(b[0, 0].item(), ref.intercept_, atol=1e-5)


def test_dci_scores_disentangled_codes_high_and_a_rotation_low():
    x, f = codes_and_factors(3000, 0)
    xt, ft = codes_and_factors(1000, 1)
    clean = dci(x, f, xt, ft, FACTOR_KINDS)
    assert clean["disentanglement"] > 0.95 and clean["completeness"] > 0.95 and clean["informativeness"] > 0.95
    assert dci(x, f, xt, ft, FACTOR_KINDS) == clean
    importance = torch.tensor(clean["importance"])
    assert importance.shape == (8, 4) and torch.equal(importance[:4].argmax(0), torch.arange(4))
    x, f = codes_and_factors(3000, 0, ROTATION)
    xt, ft = codes_and_factors(1000, 1, ROTATION)
    mixed = dci(x, f, xt, ft, FACTOR_KINDS)
    assert mixed["disentanglement"] < 0.5 and mixed["completeness"] < 0.5
    assert mixed["informativeness"] > 0.95  # a rotation loses no information, only its alignment


def test_dci_handles_discrete_and_constant_factors():
    x, f = codes_and_factors(2000, 0)
    xt, ft = codes_and_factors(800, 1)
    f = {"v0": f["v0"], "half": (f["v1"] > 0.5).long(), "off": torch.zeros(2000)}
    ft = {"v0": ft["v0"], "half": (ft["v1"] > 0.5).long(), "off": torch.zeros(800)}
    result = dci(x, f, xt, ft, {"v0": "continuous", "half": "discrete", "off": "continuous"})
    assert result["factors"] == ["v0", "half"] and "off" in result["skipped"]
    assert result["per_factor"]["half"]["informativeness"] > 0.95 and result["disentanglement"] > 0.9


def test_mig_separates_disentangled_rotated_and_copied_codes():
    x, f = codes_and_factors(5000, 0)
    clean = mig(x, f, FACTOR_KINDS)["mig"]
    rotated = mig(codes_and_factors(5000, 0, ROTATION)[0], f, FACTOR_KINDS)["mig"]
    copies = mig(torch.cat([x[:, :4], x[:, :4]], 1), f, FACTOR_KINDS)
    assert clean > 0.9 and rotated < 0.3
    assert copies["mig"] == pytest.approx(0.0, abs=1e-9)
    assert mig(x, f, FACTOR_KINDS) == mig(x, f, FACTOR_KINDS)


def test_mig_information_matches_scikit_learn_and_skips_constants():
    g = torch.Generator().manual_seed(0)
    codes = torch.rand(2000, 2, generator=g)
    factor = (codes[:, 0] * 3).long() + torch.randint(0, 2, (2000,), generator=g)  # discrete, noisy copy
    result = mig(
        codes, {"k": factor, "flat": torch.ones(2000, dtype=torch.long)}, {"k": "discrete", "flat": "discrete"}
    )
    bins = np.minimum((codes.numpy() - codes.numpy().min(0)) / np.ptp(codes.numpy(), 0) * 20, 19).astype(int)
    info = [mutual_info_score(factor.numpy(), bins[:, d]) for d in range(2)]
    entropy = mutual_info_score(factor.numpy(), factor.numpy())
    assert result["per_factor"]["k"] == pytest.approx((max(info) - min(info)) / entropy, abs=1e-6)
    assert "flat" in result["skipped"] and set(result["per_factor"]) == {"k"}


def test_dead_training_features_cannot_blow_up_on_test():
    x, y = blobs(800)
    xt, yt = blobs(400, seed=1)
    x = torch.cat([x, torch.zeros(800, 1)], 1)  # a unit that never fires in train ...
    xt = torch.cat([xt, torch.full((400, 1), 50.0)], 1)  # ... fires on every test image
    _, clipped = standardise(x, xt, clip=True)
    assert clipped[:, -1].abs().max() == 0
    assert mlp_probe(x, y, xt, yt, 4, hiddens=(32,))["accuracy"] > 0.95


def test_dci_gives_an_unpredictable_factor_zero_completeness_not_nan():
    x, f = codes_and_factors(2000, 0)
    xt, ft = codes_and_factors(800, 1)
    g = torch.Generator().manual_seed(4)
    f, ft = {**f, "noise": torch.rand(2000, generator=g)}, {**ft, "noise": torch.rand(800, generator=g)}
    result = dci(x, f, xt, ft, {**FACTOR_KINDS, "noise": "continuous"})
    assert result["per_factor"]["noise"]["completeness"] == 0.0
    assert abs(result["per_factor"]["noise"]["informativeness"]) < 0.02
    assert all(math.isfinite(result[k]) for k in ("disentanglement", "completeness", "informativeness"))


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_kmeans_plus_plus_seeds_one_centre_in_each_separated_cluster(metric):
    from genssl.objectives.assignments import kmeans_plus_plus

    g = torch.Generator().manual_seed(0)
    cluster = torch.arange(5).repeat_interleave(40)
    x = 10 * torch.eye(5)[cluster] + 0.01 * torch.randn(200, 5, generator=g)  # five orthogonal, tight blobs
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    for seed in range(5):
        picks = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(seed), metric=metric)
        assert picks.shape == (5,) and picks.dtype == torch.long
        assert sorted(cluster[picks].tolist()) == [0, 1, 2, 3, 4]
        assert torch.equal(picks, kmeans_plus_plus(x, 5, torch.Generator().manual_seed(seed), metric=metric))
    # Every point on one centre (all distances 0): further centres are uniform draws, not an error.
    same = kmeans_plus_plus(torch.ones(6, 3) / 3**0.5, 4, torch.Generator().manual_seed(0), metric=metric)
    assert same.shape == (4,) and bool(((same >= 0) & (same < 6)).all())
    with pytest.raises(ConfigError, match="k-means"):
        kmeans_plus_plus(x, 2, metric="euclid")


def test_seeded_subset_is_seeded_and_keeps_every_row_when_it_can():
    from genssl.eval.subsets import seeded_subset

    rows = seeded_subset(100, 30, 5)
    assert len(rows) == 30 and len(set(rows.tolist())) == 30 and 0 <= rows.min() and rows.max() < 100
    assert torch.equal(rows, rows.sort().values) and torch.equal(rows, seeded_subset(100, 30, 5))
    unsorted = seeded_subset(100, 30, 5, sort=False, none_if_all=True)
    assert torch.equal(unsorted.sort().values, rows) and not torch.equal(unsorted, rows)
    assert torch.equal(seeded_subset(10, None, 0), torch.arange(10)) and torch.equal(
        seeded_subset(10, 10, 0), torch.arange(10)
    )
    assert seeded_subset(10, 20, 0, none_if_all=True) is None


# ------------------------------------------------------------------- presets and timings (evaluate)


@pytest.fixture(scope="module")
def digits_run():
    """An (untrained) SimCLR network on digits with its config, and its evaluation under each preset."""
    from hydra import compose, initialize_config_module

    from genssl.cli.overrides import normalise_overrides
    from genssl.data import dataset_from_config
    from genssl.eval.evaluate import evaluate
    from genssl.methods import untrained_method

    overrides = ["method=simclr", "data=digits", "trainer.progress=false", "eval.style.max_train=600"]
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(overrides))
    dataset = dataset_from_config(cfg)
    method = untrained_method(cfg, dataset, torch.device("cpu"))
    results = {}
    for preset in ("fast", "full"):
        cfg.eval.preset = preset
        results[preset] = evaluate(method, dataset, cfg, torch.device("cpu"), progress=False)
    return cfg, dataset, method, results


def test_evaluation_times_every_probe(digits_run):
    _, _, _, results = digits_run
    for metrics in results.values():
        timings = metrics["timings"]
        expected = {"features", "linear", "mlp", "knn", "linear_10", "clustering", "rank_me"}
        assert set(timings) >= expected | {"style_views", "style_augmented"}
        assert all(isinstance(v, float) and v >= 0 for v in timings.values())
        assert sum(timings.values()) <= metrics["eval_seconds"] + 1e-6


def test_fast_preset_measures_what_the_full_one_does(digits_run):
    _, _, _, results = digits_run
    fast, full = results["fast"]["content"], results["full"]["content"]
    assert set(fast) == set(full)
    for key in ("knn", "gmm_acc", "nmi", "ari"):  # the same computation under both presets
        assert fast[key] == full[key], key
    for key in ("linear", "linear_10", "mlp"):
        assert abs(fast[key] - full[key]) <= 0.02, (key, fast[key], full[key])
    assert results["fast"]["rank_me"] == results["full"]["rank_me"]
    assert set(results["fast"]["style"]) == set(results["full"]["style"])
    assert abs(results["fast"]["style_mean"] - results["full"]["style_mean"]) <= 0.03


def test_baseline_block_and_preset_are_recorded(digits_run, tmp_path):
    from genssl.eval.evaluate import evaluate_with_baseline

    cfg, dataset, method, _ = digits_run
    cfg = copy.deepcopy(cfg)
    cfg.eval.preset = "fast"
    cfg.eval.style.enabled = False
    metrics = evaluate_with_baseline(cfg, method, dataset, torch.device("cpu"), tmp_path, trained=True)
    assert metrics["eval_preset"] == "fast"
    assert set(metrics["baseline"]["timings"]) >= {"features", "linear", "knn"}
    assert "embedding" in metrics["timings"] and "embedding" not in metrics["baseline"]["timings"]
    assert metrics["eval_total_seconds"] >= metrics["eval_seconds"] + metrics["baseline"]["eval_seconds"] - 1e-6
    assert metrics["baseline"]["content"] == metrics["content"]  # the network is the untrained one
    cfg.eval.preset = "quick"
    with pytest.raises(ConfigError, match="eval.preset"):
        evaluate_with_baseline(cfg, method, dataset, torch.device("cpu"), tmp_path, trained=True)
