"""Content priors of the discriminative families, checked against closed forms written here.

1. −ELBO under a non-flat prior (vMF mixture on the sphere, N(0, s²I) on R^d, power-law / given class
   marginals over prototypes) equals the closed form, value and gradient, on methods built from their
   configs and fed hand-made embeddings / scores.
2. With its default prior every discriminative method's −ELBO is its published loss (genssl.reference
   and lightly), value and gradient w.r.t. the network, up to the stated constants.
3. Pyro's tools (poutine.trace, Predictive, render_model) work on the built methods.

Every reference formula is written in this file from the math; genssl code under test is only built
and run.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pyro
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss, VICRegLoss
from pyro import poutine
from pyro.infer import Predictive
from pyro.infer.inspect import get_model_relations
from scipy.special import gammaln, ive

from genssl import reference
from genssl.cli.overrides import normalise_overrides
from genssl.methods import build_method

B, D, K = 8, 8, 6  # images, projection width, prototypes / clusters
SMALL = ("data=digits", f"guide.projector.out_dim={D}", "guide.projector.hidden_dim=16", "net.feature_dim=16")
PROTOTYPES = ("swav", "swav_er", "dino", "dino_er")
CLUSTERS = ("deepcluster", "deepcluster_er")
MLP_PREDICTOR = ("byol", "byol_er", "simsiam")


# ---------------------------------------------------------------------------------------------- helpers


def config(*overrides):
    with initialize_config_module("genssl.configs", version_base=None):
        return compose("config", overrides=normalise_overrides(list(overrides)))


def size_overrides(name):
    if name == "simvae":
        return ["data=digits", "model.latent_dim=4", "net.feature_dim=16"]
    extra = []
    if name in PROTOTYPES:
        extra.append(f"guide.prototypes.num={K}")
    if name in CLUSTERS:
        extra.append(f"guide.clusters.num={K}")
    if name in MLP_PREDICTOR:
        extra.append("guide.predictor.hidden_dim=16")
    return [*SMALL, *extra]


def build(name, *overrides, seed=0):
    """The method ``name`` built from its config at small sizes, in eval mode (deterministic forward)."""
    torch.manual_seed(seed)
    cfg = config(f"method={name}", *size_overrides(name), *overrides)
    return build_method(cfg, cfg.data.channels, cfg.data.image_size).eval()


def feed(method, sites):
    """Make the method's base guide propose ``sites`` (hand-made leaf tensors); returns matching dummy views.

    The model and ContentGuide read only the views' shape, so everything downstream of the base guide
    (the proposal of y, the model's prior, conditional and factors, the ELBO) is the real code.
    """
    method.guide.base.propose = lambda views, index=None: dict(sites)
    batch, views = next(iter(sites.values())).shape[:2]
    return torch.zeros(batch, views, 1, 1, 1)


def images_views(seed=1, batch=B):
    """Views [batch, 2, 1, 28, 28] of smooth random patterns (distinct images, unlike pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * 2, 1, 4, 4, generator=g) ** 3
    return F.interpolate(coarse, size=28, mode="bilinear", align_corners=False).unflatten(0, (batch, 2))


def calibrate(method, batches=4):
    """Set every BatchNorm's running statistics to the exact average over a few batches (train-mode passes
    of the base guide, DirectPred's F̂ updated too), then eval mode: the embeddings no longer all point the
    same way, as they do with the initial statistics, so the comparisons are not in a degenerate regime."""
    norms = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    method.train()
    with torch.no_grad():
        for i in range(batches):
            method.guide.base.propose(images_views(seed=100 + i, batch=16))
    for m in norms:
        m.momentum = 0.1
    return method.eval()


def spread(x):
    """Mean distance of the unit rows of x to their mean direction (≈ 0 for collapsed embeddings)."""
    u = F.normalize(x.detach().flatten(0, -2), dim=-1)
    return float((u - u.mean(0)).norm(dim=-1).mean())


def trainable(method):
    return [p for p in method.parameters() if p.requires_grad]


def grads(value, wrt):
    out = torch.autograd.grad(value, wrt, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(out, wrt)]


def assert_value_and_grad(ours, want, wrt, rtol=1e-4, atol=1e-5):
    """Same value, and the same gradient w.r.t. every tensor in ``wrt`` (absolute tolerance relative to the
    largest gradient entry: float32 round-off in the network's BatchNorm-ed layers is of that order)."""
    torch.testing.assert_close(ours.reshape(()), want.reshape(()), rtol=rtol, atol=atol)
    g_ours = torch.cat([g.flatten() for g in grads(ours, wrt)])
    g_want = torch.cat([g.flatten() for g in grads(want.reshape(()), wrt)])
    assert g_want.abs().max() > 0, "nothing to compare: the reference has no gradient"
    torch.testing.assert_close(g_ours, g_want, rtol=rtol, atol=atol * max(1.0, float(g_want.abs().max())))


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def cosine(a, b):
    return (unit(a) * unit(b)).sum(-1)


def xlogx(p):
    return torch.where(p > 0, p * p.clamp_min(1e-38).log(), torch.zeros_like(p))


def row_entropy(p):
    """H of each row of probabilities."""
    return -xlogx(p).sum(-1)


def entropy_of_mean(p):
    """H(p̄), p̄ = mean over the batch of rows p [B, K]."""
    return row_entropy(p.mean(0))


def nt_xent(z1, z2, tau):
    """(1/2B) Σ_i [−u_iᵀu_p(i)/τ + log Σ_{k≠i} exp(u_iᵀu_k/τ)], u the 2B unit embeddings."""
    u = unit(torch.cat([z1, z2]))
    n = len(u)
    logits = u @ u.T / tau
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(n // 2, n), torch.arange(0, n // 2)])
    return (-logits[torch.arange(n), partner] + torch.logsumexp(logits, dim=1)).mean()


def kde_entropy(z, kappa):
    """−mean_i log[(1/n) Σ_j exp(κ ẑ_iᵀẑ_j)]: the vMF-KDE entropy, normaliser dropped, self included."""
    u = unit(z)
    return -(torch.logsumexp(kappa * u @ u.T, dim=1) - math.log(len(u))).mean()


def sinkhorn(scores, pi, iterations=3, epsilon=0.05):
    """Sinkhorn–Knopp codes [B, K] of scores [B, K] with prototype masses π (uniform: π = 1/K).

    Q ∝ exp(s/ε) with total mass 1; each round gives prototype k the mass π_k (sum over samples), then
    every sample the mass 1/B; returns B·Q (rows sum to 1). Float64 throughout."""
    s = scores.detach().double()
    pi = pi.detach().double()
    q = torch.exp((s - s.max()) / epsilon)
    q = q / q.sum()
    batch = s.shape[0]
    for _ in range(iterations):
        q = q / q.sum(0, keepdim=True) * pi
        q = q / q.sum(1, keepdim=True) / batch
    return (q * batch).float()


def log_vmf_normaliser(d, kappas):
    """log(C_d(κ)·|S^{d−1}|), C_d(κ) = κ^{d/2−1}/((2π)^{d/2} I_{d/2−1}(κ)), |S^{d−1}| = 2π^{d/2}/Γ(d/2) (numpy)."""
    k = np.asarray(kappas.detach().double() if torch.is_tensor(kappas) else kappas, dtype=np.float64)
    nu = d / 2 - 1
    log_bessel = np.log(ive(nu, k)) + k  # log I_ν(κ)
    log_c = nu * np.log(k) - (d / 2) * np.log(2 * np.pi) - log_bessel
    log_area = np.log(2.0) + (d / 2) * np.log(np.pi) - gammaln(d / 2)
    return log_c + log_area


def log_vmf_mixture(y, logits, means, kappas):
    """log of Σ_k π_k C_d(κ_k)|S^{d−1}| exp(κ_k μ̂_kᵀŷ): the vMF-mixture density relative to the uniform
    probability measure on S^{d−1}; y [..., d] unit vectors. Differentiable in y, logits and means (the
    normaliser, from scipy's Bessel function, is a constant)."""
    log_norm = torch.as_tensor(log_vmf_normaliser(y.shape[-1], kappas), dtype=y.dtype)
    log_pi = torch.log_softmax(logits, 0)
    return torch.logsumexp(log_pi + log_norm + kappas.detach() * (y.unsqueeze(-2) * unit(means)).sum(-1), dim=-1)


def vmf_mean_resultant(d, kappa):
    """A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ) = E[μᵀx] under vMF(μ, κ) on S^{d−1}, and −d/dκ log C_d(κ)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    return ive(d / 2, kappa) / ive(d / 2 - 1, kappa)


def log_normal(z, scale):
    """log N(z; 0, s² I), the full normalised density, summed over the last dim."""
    return (-0.5 * math.log(2 * math.pi * scale**2) - z.pow(2) / (2 * scale**2)).sum(-1)


def scores_like(*shape, seed=0):
    """Cosine-like prototype scores in (−1, 1), a leaf that requires grad."""
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(*shape, generator=g)).requires_grad_()


def leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_()


def class_weights():
    return [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]  # K = 6


# ------------------------------------------------- 1. non-flat priors: −ELBO against closed forms


VMF_LOGITS = torch.log(torch.tensor([0.5, 0.3, 0.2]))
VMF_KAPPAS = torch.tensor([2.0, 5.0, 12.0])


def set_vmf_mixture(method, seed=3):
    """Fix the (learnable) vMF-mixture prior's weights, means and concentrations; return its means."""
    prior = method.model.prior
    g = torch.Generator().manual_seed(seed)
    means = unit(torch.randn(3, D, generator=g))
    with torch.no_grad():
        prior.logits_unconstrained.copy_(VMF_LOGITS)
        prior.means_unconstrained.copy_(means)
        prior.concentrations_unconstrained.copy_(VMF_KAPPAS.log())  # κ = exp(u) (positive constraint)
    torch.testing.assert_close(prior.concentrations.detach(), VMF_KAPPAS)
    return means


def sphere_sites(name):
    if name == "simclr":
        return {"z": leaf(B, 2, D, seed=1)}
    return {"z": leaf(B, 2, D, seed=1), "prediction": leaf(B, 2, D, seed=2), "target": leaf(B, 2, D, seed=3)}


def sphere_published(name, s):
    """−ELBO with the uniform prior: NT-Xent − log(2B − 1) (SimCLR, τ = 0.2), BYOL's symmetric loss − 2."""
    if name == "simclr":
        z = s["z"]
        return nt_xent(z[:, 0], z[:, 1], 0.2) - math.log(2 * B - 1)
    p, t = s["prediction"], s["target"].detach()  # BYOL's target is a stop-gradient
    return -(cosine(p[:, 0], t[:, 1]).mean() + cosine(p[:, 1], t[:, 0]).mean())


def sphere_anchor(name, s):
    """ŷ_a [B, 2, d]: view a's unit embedding (SimCLR) or unit target projection (BYOL), whose gradient
    reaches the online projection of the same view straight through (the target is a stop-gradient)."""
    if name == "simclr":
        return unit(s["z"])
    online = unit(s["z"])
    return unit(s["target"]).detach() + (online - online.detach())


@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_vmf_mixture_prior_adds_minus_mean_log_density_of_the_anchor(name):
    method = build(name, "model.prior=vmf_mixture", "model.prior.num_components=3")
    means = set_vmf_mixture(method)
    s = sphere_sites(name)
    loss = method(feed(method, s))
    # The prior reads the direction of y (a density on the sphere), so its gradient is tangent at y.
    y = unit(sphere_anchor(name, s))
    log_p = log_vmf_mixture(y, VMF_LOGITS, means, VMF_KAPPAS)  # [B, 2]
    assert log_p.abs().max() > 0.1  # the prior is far from uniform here
    want = sphere_published(name, s) - log_p.mean()
    assert_value_and_grad(loss, want, list(s.values()))
    # The same embeddings under the uniform prior give the published loss: the difference is the prior term.
    uniform = build(name)
    torch.testing.assert_close(uniform(feed(uniform, s)), sphere_published(name, s), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_vmf_mixture_prior_gradient_in_its_parameters(name):
    """d/dκ_k, d/dm_k and d/dlogit_k of −mean log p(ŷ), with responsibilities r_k(ŷ):

    d/dκ_k = −mean r_k (μ̂_kᵀŷ − A_d(κ_k)), d/dm_k = −mean r_k κ_k (I − μ̂μ̂ᵀ)ŷ/‖m_k‖, d/dlogit_k = −mean (r_k − π_k);
    the unconstrained concentration u = log κ gets κ · d/dκ."""
    method = build(name, "model.prior=vmf_mixture", "model.prior.num_components=3")
    means = set_vmf_mixture(method)
    s = sphere_sites(name)
    loss = method(feed(method, s))
    prior = method.model.prior
    wrt = [prior.concentrations_unconstrained, prior.means_unconstrained, prior.logits_unconstrained]
    g_u, g_m, g_logits = torch.autograd.grad(loss, wrt)

    y = sphere_anchor(name, s).detach().reshape(-1, D)  # every (image, anchor)
    cos = y @ means.T  # [N, 3]
    log_norm = torch.as_tensor(log_vmf_normaliser(D, VMF_KAPPAS), dtype=torch.float32)
    log_joint = torch.log_softmax(VMF_LOGITS, 0) + log_norm + VMF_KAPPAS * cos
    r = torch.softmax(log_joint, dim=1)  # responsibilities [N, 3]
    a_d = torch.as_tensor(vmf_mean_resultant(D, VMF_KAPPAS.double().numpy()), dtype=torch.float32)
    want_kappa = -(r * (cos - a_d)).mean(0)
    tangent = y.unsqueeze(1) - cos.unsqueeze(-1) * means  # (I − μ̂μ̂ᵀ)ŷ, ‖m_k‖ = 1
    want_m = -(r.unsqueeze(-1) * VMF_KAPPAS.view(1, 3, 1) * tangent).mean(0)
    want_logits = -(r - torch.softmax(VMF_LOGITS, 0)).mean(0)
    torch.testing.assert_close(g_u, VMF_KAPPAS * want_kappa, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_m, want_m, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_logits, want_logits, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["vicreg", "barlow_twins", "spectral"])
def test_normal_prior_on_euclidean_content_adds_the_gaussian_log_density(name):
    scale = 2.0
    s = {"z": leaf(B, 2, D, seed=4)}
    with_prior = build(name, "model.prior=normal", f"model.prior.scale={scale}")
    flat = build(name)
    assert type(flat.model.prior).__name__ == "FlatPrior"
    difference = with_prior(feed(with_prior, s)) - flat(feed(flat, s))
    want = -log_normal(s["z"], scale).mean()  # mean over images and anchor views
    assert_value_and_grad(difference, want, [s["z"]])


def power_law_pi(exponent, k=K):
    w = torch.arange(1, k + 1, dtype=torch.float64) ** (-exponent)
    return (w / w.sum()).float()


def swav_neg_elbo(s, pi, tau=0.1):
    """−mean_a mean_b Σ_k q_abk [log(Kπ_k) + log softmax(s_other/τ)_k − log q_abk], q_a = Sinkhorn_π(sg s_a)."""
    total = 0.0
    for a in range(2):
        q = sinkhorn(s[:, a], pi)
        log_p_other = F.log_softmax(s[:, 1 - a] / tau, dim=-1)
        total = total + (q * (torch.log(K * pi) + log_p_other)).sum(-1).mean() + row_entropy(q).mean()
    return -total / 2


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_swav_power_law_prior_tilts_the_sinkhorn_codes(exponent):
    method = build("swav", "model.prior=power_law", f"model.prior.exponent={exponent}")
    s = scores_like(B, 2, K, seed=5)
    loss = method(feed(method, {"scores": s}))
    pi = power_law_pi(exponent)
    assert_value_and_grad(loss, swav_neg_elbo(s, pi), [s])
    # The codes' prototype masses follow π: sanity of the reference (each column of Q sums to about Bπ_k).
    q = sinkhorn(s[:, 0], pi, iterations=50)
    torch.testing.assert_close(q.sum(0) / B, pi, rtol=1e-3, atol=1e-4)


def test_swav_uniform_prior_is_power_law_zero():
    """α = 0 is the uniform prior: same −ELBO as the default (uniform) prior."""
    s = scores_like(B, 2, K, seed=6)
    a = build("swav", "model.prior=power_law", "model.prior.exponent=0.0")
    b = build("swav")
    torch.testing.assert_close(a(feed(a, {"scores": s})), b(feed(b, {"scores": s})))
    torch.testing.assert_close(b(feed(b, {"scores": s})), swav_neg_elbo(s, torch.full((K,), 1.0 / K)))


def dino_codes(teacher, pi):
    """q_a ∝ π ⊙ P_teacher(view a)."""
    q = teacher * pi
    return q / q.sum(-1, keepdim=True)


def dino_site_values(seed=7):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.softmax(torch.randn(B, 2, K, generator=g) / 0.5, dim=-1)  # no gradient, as the EMA teacher's
    return {"scores": scores_like(B, 2, K, seed=seed + 1), "teacher_probs": teacher}


def categorical_neg_elbo(q, s, pi, tau):
    """−mean_a mean_b Σ_k q_abk [log(Kπ_k) + log softmax(s_other/τ)_k − log q_abk] for codes q [2, B, K]."""
    total = 0.0
    for a in range(2):
        log_p_other = F.log_softmax(s[:, 1 - a] / tau, dim=-1)
        total = total + (q[a] * (torch.log(K * pi) + log_p_other)).sum(-1).mean() + row_entropy(q[a]).mean()
    return -total / 2


def weights_override():
    return "+model.prior.weights=[" + ",".join(str(w) for w in class_weights()) + "]"


def test_dino_class_marginal_prior_tilts_the_teacher():
    method = build("dino", "model.prior=class_marginal", weights_override())
    sites = dino_site_values()
    loss = method(feed(method, sites))
    pi = torch.tensor(class_weights())
    q = torch.stack([dino_codes(sites["teacher_probs"][:, a], pi) for a in range(2)])
    assert_value_and_grad(loss, categorical_neg_elbo(q, sites["scores"], pi, 0.1), [sites["scores"]])


def fit_deepcluster(name, *overrides, num_images=4 * K):
    """A DeepCluster method whose k-means has run (before_epoch) on ``num_images`` ≥ K random images."""
    method = calibrate(build(name, *overrides))
    images = (images_views(seed=11, batch=num_images)[:, 0] * 255).to(torch.uint8)
    method.before_epoch(images, torch.Generator().manual_seed(0))
    labels = method.guide.base.labels
    assert labels.shape == (num_images,) and int(labels.max()) < K
    assert len(set(labels[:B].tolist())) > 2  # the batches below see several clusters
    return method


def test_deepcluster_class_marginal_prior_adds_log_k_pi_of_the_label():
    method = fit_deepcluster("deepcluster", "model.prior=class_marginal", weights_override())
    views, index = images_views(), torch.arange(3, 3 + B)
    loss = method(views, index)
    sites = method.guide.base.propose(views, index)
    y = method.guide.base.labels[index]
    torch.testing.assert_close(sites["y"], y)
    pi = torch.tensor(class_weights())
    log_p = F.log_softmax(sites["scores"] / 0.1, dim=-1)  # [B, J, K]
    ce = -log_p.gather(-1, y.view(B, 1, 1).expand(B, 2, 1)).mean()
    want = ce - torch.log(K * pi[y]).mean()
    assert_value_and_grad(loss, want, trainable(method))


def test_swav_learnable_power_law_exponent_gets_the_prior_terms_gradient():
    """The codes use sg(π), so only log p(y) = log(Kπ_y) trains α: with π_k ∝ (k+1)^(−α),
    d log π_k/dα = −log(k+1) + Σ_j π_j log(j+1), and d(−ELBO)/dα = −mean_a mean_b Σ_k q_abk d log π_k/dα."""
    exponent = 1.5
    method = build("swav", "model.prior=power_law", f"model.prior.exponent={exponent}", "model.prior.learnable=true")
    s = scores_like(B, 2, K, seed=13)
    loss = method(feed(method, {"scores": s}))
    (g,) = torch.autograd.grad(loss, [method.model.prior.exponent_unconstrained])
    pi = power_law_pi(exponent)
    log_rank = torch.log(torch.arange(1, K + 1, dtype=torch.float32))
    d_log_pi = -log_rank + (pi * log_rank).sum()
    q_mean = torch.stack([sinkhorn(s[:, a], pi) for a in range(2)]).mean((0, 1))  # mean code over anchors, images
    torch.testing.assert_close(g, -(q_mean * d_log_pi).sum(), rtol=1e-4, atol=1e-6)


def test_deepcluster_learnable_class_marginal_moves_towards_the_label_frequencies():
    """d(−mean_b log π_{y_b})/dlogit_k = π_k − (fraction of the batch labelled k)."""
    learnable = ("model.prior=class_marginal", weights_override(), "model.prior.learnable=true")
    method = fit_deepcluster("deepcluster", *learnable)
    views, index = images_views(seed=3), torch.arange(B)
    loss = method(views, index)
    (g,) = torch.autograd.grad(loss, [method.model.prior.logits_unconstrained])
    y = method.guide.base.labels[index]
    frequencies = torch.bincount(y, minlength=K).float() / B
    torch.testing.assert_close(g, torch.tensor(class_weights()) - frequencies, rtol=1e-4, atol=1e-6)


def er_entropy(p, pi):
    """½ Σ_views [H(p̄_j) + Σ_k p̄_jk log(K π_k)] for per-view probabilities p [B, 2, K]."""
    return 0.5 * sum(entropy_of_mean(p[:, j]) + (p[:, j].mean(0) * torch.log(K * pi)).sum() for j in range(2))


def test_dino_er_class_prior_entropy():
    method = build("dino_er", "model.prior=class_marginal", weights_override())
    sites = dino_site_values(seed=9)
    loss = method(feed(method, sites))
    pi = torch.tensor(class_weights())
    s = sites["scores"]
    q = torch.stack([dino_codes(sites["teacher_probs"][:, a], pi) for a in range(2)])
    want = categorical_neg_elbo(q, s, pi, 0.1) - er_entropy(torch.softmax(s / 0.1, -1), pi)
    assert_value_and_grad(loss, want, [s])


def test_swav_er_class_prior_entropy():
    """ER-SwAV: q_a = softmax(s_a/τ) with its gradient; its guide entropy is cancelled by the sharpness
    factor −½Σ_j mean_b H(p_j), so −ELBO = −[mean_a Σ q_a(log Kπ + log p_other) + er_entropy]."""
    method = build("swav_er", "model.prior=class_marginal", weights_override())
    s = scores_like(B, 2, K, seed=12)
    loss = method(feed(method, {"scores": s}))
    pi = torch.tensor(class_weights())
    p = torch.softmax(s / 0.1, -1)
    q = p.transpose(0, 1)
    sharpness = -0.5 * sum(row_entropy(p[:, j]).mean() for j in range(2))
    want = categorical_neg_elbo(q, s, pi, 0.1) - er_entropy(p, pi) - sharpness
    assert_value_and_grad(loss, want, [s])


def test_deepcluster_er_class_prior_entropy():
    method = fit_deepcluster("deepcluster_er", "model.prior=class_marginal", weights_override())
    views, index = images_views(seed=2), torch.arange(B)
    loss = method(views, index)
    sites = method.guide.base.propose(views, index)
    y = sites["y"]
    pi = torch.tensor(class_weights())
    log_p = F.log_softmax(sites["scores"] / 0.1, dim=-1)
    ce = -log_p.gather(-1, y.view(B, 1, 1).expand(B, 2, 1)).mean()
    want = ce - torch.log(K * pi[y]).mean() - er_entropy(log_p.exp(), pi)
    assert_value_and_grad(loss, want, trainable(method))


# ---------------------------------------------- 2. default priors: −ELBO is the published loss


def teacher_logits(method, views):
    teacher = method.guide.base._modules["teacher"]
    with torch.no_grad():
        return [teacher["head"](teacher["encoder"](views[:, j])) for j in range(views.shape[1])]


def published_losses(name, method, views, s):
    """[(reference, lightly or None)] for ``name`` from the guide's own sites ``s``, constants included."""
    z = s.get("z")
    if name == "simclr":
        const = -math.log(2 * B - 1)
        return reference.nt_xent_loss(z[:, 0], z[:, 1], 0.2) + const, NTXentLoss(temperature=0.2)(
            z[:, 0], z[:, 1]
        ) + const
    if name == "simclr_er":
        kappa = 10.0
        rec = kappa * cosine(z[:, 0], z[:, 1]).mean()
        return -(rec + 0.5 * (kde_entropy(z[:, 0], kappa) + kde_entropy(z[:, 1], kappa))), None
    if name == "vicreg":
        return reference.vicreg_loss(z[:, 0], z[:, 1]), VICRegLoss()(z[:, 0], z[:, 1])
    if name == "barlow_twins":
        lightly = BarlowTwinsLoss(lambda_param=0.0051, gather_distributed=False)(z[:, 0], z[:, 1])
        return reference.barlow_twins_loss(z[:, 0], z[:, 1], lambda_=0.0051), lightly
    if name == "spectral":
        return reference.spectral_contrastive_loss(z[:, 0], z[:, 1]), None
    if name in ("byol", "directpred", "simsiam", "byol_er"):
        p, t = s["prediction"], s["target"]
        if name == "simsiam":
            ncs = reference.negative_cosine_similarity
            ref = 0.5 * (ncs(p[:, 0], t[:, 1]) + ncs(p[:, 1], t[:, 0]))
            lightly = NegativeCosineSimilarity()
            return ref, 0.5 * (lightly(p[:, 0], t[:, 1]) + lightly(p[:, 1], t[:, 0]))
        if name == "byol_er":
            kappa = 10.0
            rec = kappa * 0.5 * (cosine(p[:, 0], t[:, 1]).mean() + cosine(p[:, 1], t[:, 0]).mean())
            return -(rec + 0.5 * (kde_entropy(z[:, 0], kappa) + kde_entropy(z[:, 1], kappa))), None
        ref = 0.5 * (reference.byol_loss(p[:, 0], t[:, 1]) + reference.byol_loss(p[:, 1], t[:, 0])) - 2.0
        lightly = NegativeCosineSimilarity()
        return ref, lightly(p[:, 0], t[:, 1]) + lightly(p[:, 1], t[:, 0])
    sc = s["scores"]
    if name in ("swav", "swav_er"):
        if name == "swav_er":
            p = torch.softmax(sc / 0.1, -1)
            log_p = F.log_softmax(sc / 0.1, -1)
            cross = 0.5 * ((p[:, 0] * log_p[:, 1]).sum(-1) + (p[:, 1] * log_p[:, 0]).sum(-1)).mean()
            return -(cross + 0.5 * (entropy_of_mean(p[:, 0]) + entropy_of_mean(p[:, 1]))), None
        uniform = torch.full((K,), 1.0 / K)
        codes_entropy = sum(row_entropy(sinkhorn(sc[:, a], uniform)).mean() for a in range(2)) / 2
        views_list = [sc[:, 0], sc[:, 1]]
        ref = reference.swav_loss(views_list, temperature=0.1, iterations=3, epsilon=0.05)
        lightly = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(views_list, [])
        return ref - codes_entropy, lightly.reshape(()) - codes_entropy
    if name in ("dino", "dino_er"):
        logits = teacher_logits(method, views)
        centre = method.guide.base.centre
        teacher = torch.stack([torch.softmax((t - centre) / 0.04, -1) for t in logits], 1)
        torch.testing.assert_close(teacher, s["teacher_probs"])
        teacher_entropy = row_entropy(teacher).mean()  # mean over views and images
        student = [sc[:, 0], sc[:, 1]]
        ref = reference.dino_loss(logits, student, centre, teacher_temp=0.04, student_temp=0.1)
        lightly_loss = DINOLoss(output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.1)
        lightly_loss.center.copy_(centre.view_as(lightly_loss.center))
        lightly = lightly_loss(logits, student, teacher_temp=0.04)
        if name == "dino_er":
            p = torch.softmax(sc / 0.1, -1)
            er = 0.5 * (entropy_of_mean(p[:, 0]) + entropy_of_mean(p[:, 1]))
            return ref - er - teacher_entropy, lightly - er - teacher_entropy
        return ref - teacher_entropy, lightly - teacher_entropy
    if name in ("deepcluster", "deepcluster_er"):
        ref = reference.deepcluster_loss([sc[:, 0], sc[:, 1]], s["y"], temperature=0.1)
        if name == "deepcluster_er":
            p = torch.softmax(sc / 0.1, -1)
            ref = ref - 0.5 * (entropy_of_mean(p[:, 0]) + entropy_of_mean(p[:, 1]))
        return ref, None
    raise AssertionError(name)


DISCRIMINATIVE = (
    "simclr",
    "simclr_er",
    "vicreg",
    "barlow_twins",
    "spectral",
    "byol",
    "byol_er",
    "simsiam",
    "directpred",
    "swav",
    "swav_er",
    "dino",
    "dino_er",
    "deepcluster",
    "deepcluster_er",
)


@pytest.mark.parametrize("name", DISCRIMINATIVE)
def test_default_prior_gives_the_published_loss(name):
    views = images_views()
    if name in CLUSTERS:
        method, index = fit_deepcluster(name), torch.arange(B)
        loss = method(views, index)
        sites = method.guide.base.propose(views, index)
    else:
        method = calibrate(build(name))
        loss = method(views)
        sites = method.guide.base.propose(views)
    assert min(spread(v) for v in sites.values() if v.is_floating_point()) > 0.1
    ref, lightly = published_losses(name, method, views, sites)
    wrt = trainable(method)
    assert_value_and_grad(loss, ref, wrt)
    if lightly is not None:
        assert_value_and_grad(loss, lightly, wrt)
    # eval mode: a second evaluation agrees (no BatchNorm statistics or F̂ moved)
    again = method(views, index) if name in CLUSTERS else method(views)
    torch.testing.assert_close(again, loss)


# ----------------------------------------------------------------------- 3. Pyro's tools


SCORED = {
    "simclr": "z",
    "byol": "prediction",
    "vicreg": "z",
    "dino": "scores",
    "swav": "scores",
    "deepcluster": "scores",
    "simvae": "z",
}


@pytest.mark.parametrize("name", list(SCORED))
def test_a_trace_of_one_step_shows_y_and_the_scored_site(name):
    method = build(name)
    views = images_views(batch=4)
    guide_trace = poutine.trace(method.guide).get_trace(views)
    model_trace = poutine.trace(poutine.replay(method.model, trace=guide_trace)).get_trace(views)
    samples = {n for n, site in model_trace.nodes.items() if site["type"] == "sample"}
    assert {"y", SCORED[name]} <= samples
    assert "y" in guide_trace.nodes
    model_trace.compute_log_prob()
    for n in ("y", SCORED[name]):
        assert torch.isfinite(model_trace.nodes[n]["log_prob"]).all()


POSTERIOR = (
    ("simclr", ()),
    ("simclr", ("model.prior=vmf_mixture",)),
    ("vicreg", ("model.prior=normal",)),
    ("vicreg", ()),  # flat prior and
    ("byol", ()),  # flat base measures: Pyro traces the model once unconditioned, so these must not raise
    ("swav", ()),
    ("dino", ()),
    ("deepcluster", ()),
)


@pytest.mark.parametrize("name, overrides", POSTERIOR)
def test_posterior_predictive_draws_y_from_the_guide(name, overrides):
    method = build(name, *overrides)
    views = images_views(batch=4)
    draws = Predictive(method.model, guide=method.guide, num_samples=1, return_sites=["y"])(views)
    y = draws["y"]
    sites = method.guide.base.propose(views)
    if name in ("simclr", "vicreg"):
        z = sites["z"].transpose(0, 1)  # one estimate of y per anchor view
        torch.testing.assert_close(y[0], unit(z) if name == "simclr" else z)
    elif name == "byol":
        torch.testing.assert_close(y[0], unit(sites["target"].transpose(0, 1)))
    elif name == "deepcluster":
        torch.testing.assert_close(y.reshape(-1), sites["scores"][:, 0].argmax(-1))
    else:
        assert y.shape == (1, 2, 4) and int(y.min()) >= 0 and int(y.max()) < K


def test_prior_predictive_simclr_draws_unit_vectors_around_y():
    method = build("simclr")
    n = 1000
    draws = Predictive(method.model, num_samples=1, return_sites=["y", "z"])(torch.zeros(n, 2, 1, 1, 1))
    y, z = draws["y"][0], draws["z"][0]  # [A, B, d], [A, B, J, d]
    assert y.shape == (2, n, D) and z.shape == (2, n, 2, D)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(2, n))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2, n, 2))
    for a in range(2):
        torch.testing.assert_close(z[a, :, a], y[a])  # the anchor view is y itself
    # The other view is vMF(ŷ, κ = 1/τ = 5): its mean cosine to ŷ is A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ).
    cos = torch.stack([(z[a, :, 1 - a] * y[a]).sum(-1) for a in range(2)])
    assert abs(float(cos.mean()) - float(vmf_mean_resultant(D, 5.0))) < 0.03
    # y is uniform on the sphere: its mean is near 0.
    assert float(y.mean((0, 1)).norm()) < 0.15


def test_prior_predictive_vicreg_normal_prior():
    scale = 2.0
    method = build("vicreg", "model.prior=normal", f"model.prior.scale={scale}")
    n = 1000
    draws = Predictive(method.model, num_samples=1, return_sites=["y", "z"])(torch.zeros(n, 2, 1, 1, 1))
    y, z = draws["y"][0], draws["z"][0]
    assert y.shape == (2, n, D) and z.shape == (2, n, 2, D)
    for a in range(2):
        torch.testing.assert_close(z[a, :, a], y[a])
    assert abs(float(y.std()) - scale) < 0.1
    # The other view is N(y, σ²I), σ² = d/(2λ) with λ = 25.
    noise = torch.stack([z[a, :, 1 - a] - y[a] for a in range(2)])
    assert abs(float(noise.var()) - D / (2 * 25.0)) < 0.02


RENDERED = ("simclr", "byol", "dino")


@pytest.mark.parametrize("name", RENDERED)
def test_model_relations_have_y(name):
    """What render_model draws (pyro.infer.inspect.get_model_relations), without needing graphviz."""
    method = build(name)
    relations = get_model_relations(method.model, model_args=(images_views(batch=4),))
    assert "y" in relations["sample_sample"]
    # y → the scored site (a vMF conditional samples it) or → the conditional's factor (an energy, as DINO's)
    dependent = "view_conditional" if name == "dino" else SCORED[name]
    assert "y" in relations["sample_sample"][dependent]
    assert {"images", "anchors"} <= set(relations["plate_sample"])


@pytest.mark.parametrize("name", RENDERED)
def test_render_model_mentions_y(name):
    graphviz = pytest.importorskip("graphviz")
    method = build(name)
    graph = pyro.render_model(method.model, model_args=(images_views(batch=4),))
    assert isinstance(graph, graphviz.Digraph)
    assert re.search(r"^\s*y \[", graph.source, re.MULTILINE), graph.source
