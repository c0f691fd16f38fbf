"""Clustering (SwAV, DINO, ER versions) and SSL-HSIC: −ELBO equals the published loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import negative_elbo
from lightly.loss import DINOLoss, SwaVLoss

from genssl.guides import PrototypeGuide
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import ViewModel
from genssl.models import clustering_terms as clustering
from genssl.models.hsic_terms import SSLHSICTerms
from genssl.nets import build_encoder
from genssl.nets.heads import projection_head
from genssl.objectives import prototype_entropy, symmetric_cross_entropy
from genssl.reference import dino_loss, ssl_hsic_loss, swav_loss

B, K, D = 16, 10, 8


def check(ours, reference, wrt):
    torch.testing.assert_close(ours, reference.reshape(()), rtol=1e-5, atol=1e-6)
    for got, want in zip(torch.autograd.grad(ours, wrt, retain_graph=True), torch.autograd.grad(reference.sum(), wrt)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_swav_is_swav_and_lightly():
    scores = torch.randn(B, 2, K, requires_grad=True)
    ours = negative_elbo(clustering.swav_terms(0.1, 3, 0.05), {"scores": scores})
    check(ours, swav_loss([scores[:, 0], scores[:, 1]], temperature=0.1), [scores])
    lightly = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    check(ours, lightly([scores[:, 0], scores[:, 1]], []), [scores])


def test_swav_er_is_discrete_er_bound():
    scores = torch.randn(B, 2, K, requires_grad=True)
    p1, p2 = F.softmax(scores[:, 0] / 0.1, 1), F.softmax(scores[:, 1] / 0.1, 1)
    symmetric_ce = symmetric_cross_entropy(p1.double(), p2.double(), eps=0.0).float()
    entropy = 0.5 * sum(-(p.mean(0) * p.mean(0).log()).sum() for p in (p1, p2))
    ours = negative_elbo(clustering.swav_er_terms(0.1), {"scores": scores})
    check(ours, symmetric_ce - entropy, [scores])


@pytest.mark.parametrize("er", [False, True])
def test_dino_is_dino_and_lightly(er):
    student = torch.randn(B, 2, K, requires_grad=True)
    teacher_scores, centre = torch.randn(B, 2, K), torch.randn(K) * 0.1
    teacher_temp = float(torch.tensor(0.04))  # lightly divides by a float32 temperature
    teacher_probs = F.softmax((teacher_scores - centre) / teacher_temp, dim=-1)
    terms = clustering.dino_er_terms(0.1) if er else clustering.dino_terms(0.1)
    ours = negative_elbo(terms, {"scores": student, "teacher_probs": teacher_probs})
    reference = dino_loss(
        [teacher_scores[:, 0], teacher_scores[:, 1]],
        [student[:, 0], student[:, 1]],
        centre,
        teacher_temp=teacher_temp,
        student_temp=0.1,
    )
    if er:
        reference = reference - 0.5 * sum(prototype_entropy(F.softmax(student[:, j] / 0.1, 1)) for j in range(2))
    check(ours, reference, [student])
    if not er:
        lightly = DINOLoss(output_dim=K, teacher_temp=teacher_temp, student_temp=0.1)
        lightly.center.copy_(centre.reshape(1, K))
        check(ours, lightly([teacher_scores[:, 0], teacher_scores[:, 1]], [student[:, 0], student[:, 1]]), [student])


def test_dino_teacher_centre_follows_its_ema():
    encoder = build_encoder("mlp", 1, 8)
    guide = PrototypeGuide(
        encoder,
        projection_head(encoder.out_features, 16, D),
        K,
        teacher=True,
        momentum=0.9,
        teacher_temp=0.04,
        centre_momentum=0.9,
    )
    method = PyroSSL(ViewModel(clustering.dino_terms(), {"scores": K, "teacher_probs": K}), guide, elbo="trace")
    views = torch.rand(B, 2, 1, 8, 8)
    method(views).backward()
    assert all(p.grad is None for p in guide._modules["teacher"].parameters())
    batch_mean = guide.batch_centre.clone()
    method.after_step(0.5)
    torch.testing.assert_close(guide.centre, 0.1 * batch_mean)


@pytest.mark.parametrize("with_target", [False, True])
def test_ssl_hsic_is_the_published_loss_and_learns_its_scale(with_target):
    terms = SSLHSICTerms(gamma=3.0, init_scale=0.7, num_features=None)  # exact kernel for the comparison
    sites = {"z": torch.randn(B, 2, D, requires_grad=True)}
    if with_target:
        sites.update(prediction=torch.randn(B, 2, D, requires_grad=True), target=torch.randn(B, 2, D))
    ours = negative_elbo(terms, sites)
    views = torch.cat([sites["prediction"], sites["target"]], 1) if with_target else sites["z"]
    hsic = ssl_hsic_loss(views, gamma=3.0, c=0.7, num_features=None)
    flat = F.normalize(views.flatten(0, 1), dim=1)
    sq = torch.cdist(flat, flat).pow(2)
    scale = torch.log((sq / (sq + 0.49).pow(1.5)).mean())
    torch.testing.assert_close(ours, hsic - scale, rtol=1e-5, atol=1e-5)
    leaf = sites["prediction"] if with_target else sites["z"]
    (g_ours,) = torch.autograd.grad(ours, leaf, retain_graph=True)
    (g_ref,) = torch.autograd.grad(hsic, leaf)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-6)  # the scale factor does not reach z
    (g_scale,) = torch.autograd.grad(ours, terms.log_scale)
    assert g_scale != 0  # c is learned, by the scale objective only
