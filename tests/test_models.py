"""SimVAE / VAE as Pyro models: their ELBO is the closed form of REFERENCE.md §1."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from genssl.guides import NormalEncoderGuide
from genssl.models import FlatPrior, FlatViewMarginal, MixturePrior, NormalPrior, SimVAE
from genssl.nets import build_decoder, build_encoder

B, J, L, VIEW_VAR = 4, 3, 5, 0.15


def make_pair(prior, view_var=VIEW_VAR, beta=1.0, integrate=True, likelihood="bernoulli"):
    model = SimVAE(
        build_decoder("mlp", L, 1, 8),
        prior,
        L,
        view_var=view_var,
        likelihood=likelihood,
        beta=beta,
        integrate_content=integrate,
    )
    guide = NormalEncoderGuide(
        build_encoder("mlp", 1, 8),
        L,
        latent_site=model.latent_site,
        samples_content=model.samples_content,
        view_var=view_var,
        num_views=J,
        beta=beta,
    )
    return model, guide


def flat_log_normaliser():
    return -0.5 * (J - 1) * L * math.log(2 * math.pi * VIEW_VAR) - 0.5 * L * math.log(J)


def guide_sample(guide, x, seed):
    pyro.set_rng_seed(seed)
    return poutine.trace(guide).get_trace(x).nodes


def loss_and_sample(elbo, model, guide, x, seed=3):
    """The ELBO loss and the latent the guide drew for it ('fixed noise': the same RNG state)."""
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, x)
    return loss, guide_sample(guide, x, seed)


def simvae_terms(elbo):
    """A flat-prior SimVAE's loss under ``elbo`` with the z, q(z|x) and log p(x|z) of the same draw."""
    model, guide = make_pair(FlatPrior())
    x = torch.rand(B, J, 1, 8, 8)
    loss, nodes = loss_and_sample(elbo, model, guide, x)
    z = nodes["z"]["value"]
    loc, scale = guide.encode(x)
    log_px = dist.Bernoulli(logits=model.decoder(z), validate_args=False).log_prob(x).sum()
    return model, guide, loss, z, loc, scale, log_px


def test_simvae_monte_carlo_elbo_equals_closed_form():
    """Trace_ELBO = −(1/BJ)[Σ_j log p(x_ij|z_ij) − log q(z_ij|x_ij)] + Σ_j ‖z_ij − z̄_i‖²/(2σ²) − const."""
    model, guide, loss, z, loc, scale, log_px = simvae_terms(Trace_ELBO())
    log_qz = dist.Normal(loc, scale).log_prob(z).sum()
    spread = (z - z.mean(1, keepdim=True)).pow(2).sum()
    elbo = log_px - log_qz - spread / (2 * VIEW_VAR) + B * flat_log_normaliser()
    torch.testing.assert_close(loss, -elbo / (B * J))
    params = list(model.parameters()) + list(guide.parameters())
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(-elbo / (B * J), params)):
        torch.testing.assert_close(got, want)


def test_simvae_analytic_elbo_equals_closed_form_with_entropy():
    """Mean-field ELBO: E_q log p(x|z) (one sample) + H[q] − E_q Σ_j ‖z_ij − z̄_i‖²/(2σ²) + const."""
    _, _, loss, _, loc, scale, log_px = simvae_terms(TraceMeanField_ELBO())
    entropy = dist.Normal(loc, scale).entropy().sum()
    expected_spread = (loc - loc.mean(1, keepdim=True)).pow(2).sum() + (1 - 1 / J) * scale.pow(2).sum()
    elbo = log_px + entropy - expected_spread / (2 * VIEW_VAR) + B * flat_log_normaliser()
    torch.testing.assert_close(loss, -elbo / (B * J))


def test_flat_marginal_is_the_integral_over_y():
    """log p(z_1..z_J) equals a numerical integral of Π_j N(z_j; y, σ²) over a 1-d y."""
    marginal = FlatViewMarginal(VIEW_VAR, num_views=J, latent_dim=1)
    z = torch.randn(J, 1) * 0.5
    ys = torch.linspace(-6, 6, 200001)
    integrand = dist.Normal(ys[:, None], VIEW_VAR**0.5).log_prob(z[:, 0]).sum(1).exp()
    numeric = torch.trapezoid(integrand, ys).log()
    torch.testing.assert_close(marginal.log_prob(z), numeric, atol=1e-4, rtol=1e-4)


def test_analytic_kl_matches_monte_carlo():
    """The registered E_q[log q − log p] agrees with a large-sample Monte Carlo estimate."""
    loc, scale = torch.randn(J, L), torch.rand(J, L) + 0.2
    q = dist.Normal(loc, scale).to_event(2)
    p = FlatViewMarginal(VIEW_VAR, J, L)
    samples = q.sample((200000,))
    mc = (q.log_prob(samples) - p.log_prob(samples)).mean()
    torch.testing.assert_close(torch.distributions.kl_divergence(q, p), mc, atol=0.05, rtol=0.01)


def test_vae_elbo_is_reconstruction_minus_gaussian_kl():
    model, guide = make_pair(NormalPrior(), view_var=None)
    x = torch.rand(B, 1, 1, 8, 8)
    loss, nodes = loss_and_sample(TraceMeanField_ELBO(), model, guide, x)
    y = nodes["y"]["value"]
    loc, scale = guide.encode(x.flatten(0, 1))
    log_px = dist.Bernoulli(logits=model.decoder(y), validate_args=False).log_prob(x.flatten(0, 1)).sum()
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum()
    torch.testing.assert_close(loss, -(log_px - kl) / B)


def test_beta_scales_only_the_kl():
    x = torch.rand(B, 1, 1, 8, 8)
    losses = {}
    for beta in (1.0, 4.0):
        torch.manual_seed(0)
        model, guide = make_pair(NormalPrior(), view_var=None, beta=beta)
        pyro.set_rng_seed(1)
        losses[beta] = TraceMeanField_ELBO().differentiable_loss(model, guide, x)
        loc, scale = guide.encode(x.flatten(0, 1))
        losses[f"kl{beta}"] = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum() / B
    torch.testing.assert_close(losses[4.0] - losses[1.0], 3 * losses["kl1.0"])


@pytest.mark.parametrize(
    "prior", [NormalPrior(), MixturePrior(L, num_components=3), FlatPrior()], ids=["normal", "mog", "flat-sampled"]
)
def test_sampled_content_priors_train(prior):
    """Priors that are not integrated out: y is sampled by the guide and its parameters get gradients."""
    model, guide = make_pair(prior, integrate=False)
    assert model.samples_content
    x = torch.rand(B, J, 1, 8, 8)
    loss = TraceMeanField_ELBO().differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    assert guide.content_log_scale.grad is not None
    for p in prior.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_gaussian_likelihood_uses_fixed_variance():
    model, guide = make_pair(FlatPrior(), likelihood="gaussian")
    x = torch.rand(B, J, 1, 8, 8)
    _, nodes = loss_and_sample(Trace_ELBO(), model, guide, x)
    trace = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(x))).get_trace(x)
    fn = trace.nodes["x"]["fn"].base_dist
    torch.testing.assert_close(fn.scale, torch.full_like(fn.scale, math.exp(-2.3)))


def laplace_prior(batch_size, latent_dim):
    """A plain-function prior whose learnable scale lives in Pyro's param store."""
    scale = pyro.param("laplace_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
    return pyro.sample("y", dist.Laplace(0.0, scale).expand([latent_dim]).to_event(1))


def test_plain_function_prior_parameters_are_found_for_the_optimiser():
    from genssl.inference.pyro_ssl import PyroSSL

    model, guide = make_pair(laplace_prior)
    method = PyroSSL(model, guide)
    method(torch.rand(B, J, 1, 8, 8)).backward()
    extra = method.extra_parameters()
    assert list(extra) == ["laplace_scale"] and extra["laplace_scale"].grad is not None
    assert not any(p is extra["laplace_scale"] for p in method.parameters())


def test_pyro_module_prior_parameters_are_module_parameters_only():
    from genssl.inference.pyro_ssl import PyroSSL

    model, guide = make_pair(MixturePrior(L, num_components=3), integrate=False)
    method = PyroSSL(model, guide)
    method(torch.rand(B, J, 1, 8, 8)).backward()
    assert method.extra_parameters() == {}
    assert any(name.endswith("prior.means_unconstrained") for name, _ in method.named_parameters())
