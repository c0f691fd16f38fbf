"""Distillation methods: ELBO = published loss, EMA targets, and DirectPred's directly-set predictor."""

from __future__ import annotations

import pytest
import torch
from conftest import negative_elbo
from lightly.loss import NegativeCosineSimilarity

from genssl.guides import DistillationGuide
from genssl.guides.distillation import ema_momentum
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import ViewModel
from genssl.models import discriminative_terms as terms
from genssl.nets import build_encoder
from genssl.nets.directpred import DirectPredictor, directpred_weight, running_correlation
from genssl.nets.heads import projection_head
from genssl.objectives import vmf_kde_entropy
from genssl.reference import byol_loss

B, D = 12, 8
SITES = {"z": D, "prediction": D, "target": D}


def random_sites():
    return {name: torch.randn(B, 2, D, requires_grad=True) for name in SITES}


def both_ways(loss_fn, s):
    p, t = s["prediction"], s["target"]
    return 0.5 * (loss_fn(p[:, 0], t[:, 1]) + loss_fn(p[:, 1], t[:, 0]))


def assert_close_with_gradients(ours, reference, wrt):
    torch.testing.assert_close(ours, reference)
    for got, want in zip(
        torch.autograd.grad(ours, wrt, allow_unused=True, retain_graph=True),
        torch.autograd.grad(reference, wrt, allow_unused=True),
    ):
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            torch.testing.assert_close(got, want)


def test_byol_is_symmetrised_byol_loss_minus_two():
    s = random_sites()
    ours = negative_elbo(terms.distillation_terms(kappa=2.0), s)
    assert_close_with_gradients(ours, both_ways(byol_loss, s) - 2.0, list(s.values()))


def test_simsiam_is_lightly_negative_cosine():
    s = random_sites()
    ours = negative_elbo(terms.distillation_terms(kappa=1.0), s)
    assert_close_with_gradients(ours, both_ways(NegativeCosineSimilarity(), s), list(s.values()))


def test_byol_er_adds_the_kde_entropy_of_online_projections():
    s = random_sites()
    kappa = 10.0
    cos = torch.nn.functional.cosine_similarity
    reconstruction = (
        kappa
        * 0.5
        * (cos(s["prediction"][:, 0], s["target"][:, 1]).mean() + cos(s["prediction"][:, 1], s["target"][:, 0]).mean())
    )
    entropy = 0.5 * sum(vmf_kde_entropy(s["z"][:, j], kappa, include_normaliser=False) for j in range(2))
    ours = negative_elbo(terms.distillation_er_terms(kappa), s)
    assert_close_with_gradients(ours, -(reconstruction + entropy), list(s.values()))


def make_guide(predictor, target="ema"):
    encoder = build_encoder("mlp", 1, 8)
    return DistillationGuide(encoder, projection_head(encoder.out_features, 32, D), predictor, target, 0.9)


def test_target_branch_gets_no_gradient_and_follows_the_ema_schedule():
    guide = make_guide(projection_head(D, 16, D))
    method = PyroSSL(ViewModel(terms.distillation_terms(), SITES), guide, elbo="trace")
    method(torch.rand(B, 2, 1, 8, 8)).backward()
    target = guide._target_branch
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    online = [guide.online.encoder, guide.online.projector]
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in guide.online.parameters():
            p.add_(1.0)
    method.after_step(progress=0.0)
    tau = ema_momentum(0.9, 0.0)
    online_params = [p for m in online for p in m.parameters()]
    for old, new, live in zip(before, target.parameters(), online_params):
        torch.testing.assert_close(new, tau * old + (1 - tau) * live)
    assert ema_momentum(0.996, 0.0) == pytest.approx(0.996) and ema_momentum(0.996, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["directpred", "directcopy"])
def test_directpred_predictor_is_set_by_the_formula_after_every_update(variant):
    rho, eps = 0.3, 0.1
    predictor = DirectPredictor(D, rho=rho, eps=eps, freq=1, variant=variant)
    guide = make_guide(predictor).train()
    expected_corr = torch.zeros(D, D)
    for _ in range(3):
        views = torch.rand(B, 2, 1, 8, 8)
        f = guide.online.embed(views).flatten(0, 1).detach()  # BatchNorm in train mode: same batch, same f
        guide.embeddings(views)
        expected_corr = rho * expected_corr + (1 - rho) * f.T @ f / f.shape[0]
        torch.testing.assert_close(predictor.correlation, expected_corr, rtol=1e-5, atol=1e-6)
        if variant == "directpred":
            s, u = torch.linalg.eigh(expected_corr)
            expected = u @ torch.diag((s.clamp_min(0) / s.max()).sqrt() + eps) @ u.T
        else:
            expected = expected_corr + eps * torch.eye(D)
        torch.testing.assert_close(predictor.weight, expected, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in predictor.parameters())  # set, never learned
    z = torch.randn(4, D)
    torch.testing.assert_close(predictor(z), z @ predictor.weight.T)


def test_directpred_updates_only_every_freq_steps():
    predictor = DirectPredictor(D, freq=3)
    weights = []
    for _ in range(4):
        predictor.observe(torch.randn(16, D))
        weights.append(predictor.weight.clone())
    assert not torch.equal(weights[0], torch.eye(D))
    torch.testing.assert_close(weights[1], weights[0])
    torch.testing.assert_close(weights[2], weights[0])
    assert not torch.equal(weights[3], weights[0])
    torch.testing.assert_close(weights[3], directpred_weight(predictor.correlation, 0.1))


def test_running_correlation_is_not_mean_centred():
    f = torch.randn(32, D) + 3.0
    torch.testing.assert_close(running_correlation(torch.zeros(D, D), f, 0.0), f.T @ f / 32)
