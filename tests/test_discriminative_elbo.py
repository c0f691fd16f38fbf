"""Discriminative methods as ELBOs: −ELBO(ViewModel, Delta guide) equals the published loss.

Value and gradient with respect to the embeddings, on random inputs, up to the stated additive
constant (scale 1 throughout), against our reference formulas and against lightly's losses.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import negative_elbo
from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss

from genssl.guides import DeltaEncoderGuide
from genssl.models import discriminative_terms as terms
from genssl.nets import build_encoder
from genssl.nets.heads import projection_head
from genssl.objectives import vmf_kde_log_density
from genssl.reference import barlow_twins_loss, nt_xent_loss, spectral_contrastive_loss, vicreg_loss

B, D = 16, 12


def assert_same_value_and_gradient(ours_fn, reference_fn, constant: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    z = torch.randn(B, 2, D, requires_grad=True)
    ours = ours_fn(z)
    reference = reference_fn(z[:, 0], z[:, 1]) + constant
    torch.testing.assert_close(ours, reference.reshape(()), rtol=1e-5, atol=1e-5)
    (g_ours,) = torch.autograd.grad(ours, z)
    (g_ref,) = torch.autograd.grad(reference.sum(), z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_simclr_is_nt_xent(temperature):
    ours = lambda z: negative_elbo(terms.simclr_terms(temperature), {"z": z})  # noqa: E731
    constant = -math.log(2 * B - 1)  # the KDE's 1/(2B−1) normaliser
    assert_same_value_and_gradient(ours, lambda a, b: nt_xent_loss(a, b, temperature), constant)
    lightly = NTXentLoss(temperature=temperature)
    assert_same_value_and_gradient(ours, lightly, constant, seed=1)


@pytest.mark.parametrize("estimator", ["mean", "plugin"])
def test_simclr_er_is_the_er_bound(estimator):
    kappa = 10.0

    def er_loss(z1, z2):
        """−[κ mean⟨ẑ1, ẑ2⟩ + ½(Ĥ(Z1) + Ĥ(Z2))], Ĥ from the vMF KDE (REFERENCE.md §2)."""
        u1, u2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
        reconstruction = kappa * (u1 * u2).sum(1).mean()
        entropies = []
        for u in (u1, u2):
            log_p = torch.logsumexp(kappa * u @ u.T, dim=1) - math.log(len(u))
            weights = torch.full_like(log_p, 1 / len(u)) if estimator == "mean" else torch.softmax(log_p, 0)
            entropies.append(-(weights * log_p).sum())
        return -(reconstruction + 0.5 * (entropies[0] + entropies[1]))

    ours = lambda z: negative_elbo(terms.simclr_er_terms(kappa, estimator), {"z": z})  # noqa: E731
    assert_same_value_and_gradient(ours, er_loss)


def test_vicreg_is_vicreg():
    ours = lambda z: negative_elbo(terms.vicreg_terms(), {"z": z})  # noqa: E731
    assert_same_value_and_gradient(ours, vicreg_loss)
    assert_same_value_and_gradient(ours, VICRegLoss(), seed=1)


def test_barlow_twins_is_barlow_twins():
    ours = lambda z: negative_elbo(terms.barlow_twins_terms(0.0051), {"z": z})  # noqa: E731
    assert_same_value_and_gradient(ours, barlow_twins_loss)
    assert_same_value_and_gradient(ours, BarlowTwinsLoss(lambda_param=0.0051, gather_distributed=False), seed=1)


def test_spectral_is_spectral_contrastive():
    ours = lambda z: negative_elbo(terms.spectral_terms(), {"z": z})  # noqa: E731
    assert_same_value_and_gradient(ours, spectral_contrastive_loss)


def test_simclr_terms_are_reconstruction_plus_kde_entropy():
    """The entropy term is exactly −mean log p̂ of the leave-one-out KDE (normaliser dropped)."""
    z = torch.randn(B, 2, D)
    entropy = terms.simclr_terms(0.5)["entropy"]({"z": z})
    log_p = vmf_kde_log_density(torch.cat([z[:, 0], z[:, 1]]), 2.0, exclude_self=True, include_normaliser=False)
    torch.testing.assert_close(entropy, -log_p.mean())


def test_two_view_objectives_reject_other_view_counts():
    from genssl.errors import ShapeError

    with pytest.raises(ShapeError, match="num_views=3"):
        negative_elbo(terms.vicreg_terms(), {"z": torch.randn(B, 3, D)})


def test_delta_guide_embeds_each_view_and_represents_before_the_head():
    encoder = build_encoder("conv", 1, 28, 32)
    guide = DeltaEncoderGuide(encoder, projection_head(32, 64, 16)).eval()
    views = torch.rand(5, 2, 1, 28, 28)
    z = guide.embed(views)
    for j in range(2):
        torch.testing.assert_close(z[:, j], guide.projector(encoder(views[:, j])))
    assert guide.represent(views[:, 0]).shape == (5, 32)
