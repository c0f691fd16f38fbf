"""The lean ELBO (genssl.inference.lean_elbo) is Pyro's ELBO: same value and gradient for every method.

Both estimators run the same model and guide on the same views with the same random draws (forked
RNG), in training mode; the lean one must match Pyro's Trace_ELBO / TraceMeanField_ELBO /
TraceEnum_ELBO (the method's ``model.elbo``) to float tolerance, including under priors that are not
the defaults (a learnable mixture on the sphere, a power-law class prior, an enumerated component).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from hydra import compose, initialize_config_module
from pyro.nn import PyroModule, PyroParam

from genssl.cli.overrides import group_options, normalise_overrides
from genssl.data import build_augment
from genssl.inference.lean_elbo import LeanELBO, Unsupported
from genssl.methods import build_method

SMALL = ["data=digits", "net.encoder=mlp", "net.mlp_hidden=[32]", "data.image_size=8"]
CASES = [[f"method={m}"] for m in group_options("method")] + [
    ["method=simclr", "model.prior=vmf_mixture"],
    ["method=vicreg", "model.prior=mog"],
    ["method=swav", "model.prior=power_law"],
    ["method=dino_er", "model.prior=power_law"],
    ["method=deepcluster", "model.prior=power_law"],
    ["method=simvae", "model.prior=mog"],
    ["method=simvae", "model.prior=flat"],
]


def build(overrides):
    extra = [] if any(o.startswith("method=") and o[7:] in ("mae", "umae", "mmae") for o in overrides) else SMALL
    if "method=simvae" in overrides or "method=vae" in overrides or "method=beta_vae" in overrides:
        extra = [*SMALL, "model.latent_dim=4"]
    if any(o.startswith("method=deepcluster") for o in overrides):
        extra = [*SMALL, "guide.clusters.num=8"]
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides([*overrides, *extra]))
    torch.manual_seed(0)
    side = int(cfg.data.image_size)
    method = build_method(cfg, 1, side)
    augment = build_augment(cfg.data.augment, cfg.data.num_views, side)
    images = torch.randint(0, 256, (24, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    views, _ = augment(images, torch.Generator().manual_seed(2))
    if method.uses_index:
        method.before_epoch(images, torch.Generator().manual_seed(3))
    return method, views, torch.arange(len(images))


def losses_and_grads(method, views, index):
    params = [p for p in method.parameters() if p.requires_grad]
    out = []
    for lean in (False, True):
        method.use_lean = lean
        with torch.random.fork_rng():
            torch.manual_seed(7)
            loss = method(views, index)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append((loss, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]))
    return out


@pytest.mark.parametrize("overrides", CASES, ids=lambda o: "-".join(x.split("=")[1] for x in o))
def test_lean_elbo_is_pyros_elbo(overrides):
    method, views, index = build(overrides)
    method.train()
    (pyro_loss, pyro_grads), (lean_loss, lean_grads) = losses_and_grads(method, views, index)
    torch.testing.assert_close(lean_loss, pyro_loss, rtol=1e-5, atol=1e-5)
    scale = max(float(g.abs().max()) for g in pyro_grads)
    for a, b in zip(lean_grads, pyro_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * max(scale, 1.0))
    assert method.enable_lean(views, index) and "lean" in method.lean_check


class ComponentMixture(PyroModule):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.means = PyroParam(torch.randn(3, latent_dim))

    def forward(self, batch_size, latent_dim):
        c = pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
        return pyro.sample("y", dist.Normal(self.means[c], 1.0).to_event(1))


def test_what_the_lean_elbo_does_not_handle_falls_back_to_pyro(monkeypatch):
    """Model-side enumeration (a prior's mixture component) is Pyro's: enable_lean keeps Pyro's estimator."""
    import sys
    import types

    module = types.ModuleType("lean_fallback_priors")
    module.ComponentMixture = ComponentMixture
    monkeypatch.setitem(sys.modules, "lean_fallback_priors", module)
    method, views, index = build(
        ["method=simclr", "model.prior._target_=lean_fallback_priors.ComponentMixture", "model.elbo=enum"]
    )
    with pytest.raises(Unsupported, match="model-side enumeration"):
        LeanELBO().differentiable_loss(method.model, method.guide, views)
    assert not method.enable_lean(views) and "Pyro's estimator" in method.lean_check
    assert torch.isfinite(method(views))
