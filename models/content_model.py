"""Discriminative SSL as a latent-variable model with a content prior a user can change.

For B images with J views and guide sites proposed as point masses (the embeddings), the model is

    y_i ~ p(y)                     content latent: model.prior (uniform on the sphere, flat on R^d,
                                   uniform over K prototypes, … or the user's own Pyro prior)
    s_i | y_i ~ p(s | y)           the family's view conditional on one site s (``conditionals.py``)
    other sites                    flat base measure (the guide's point masses score 0)
    + Σ_t factor_t(sites)          the method's entropy / kernel estimates (``pyro.factor``)

so −ELBO = −E_q[log p(y) + log p(s | y) − log q(y)] − Σ_t factor_t, averaged over the batch. When
the guide's q(y) is one view's estimate, y and s sit inside an ``anchors`` plate (one copy per view
standing in for y, scale 1/J): the exact expectation over that uniform choice. With the default
prior (log-density 0) the loss is the method's published loss; another prior changes the method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyro
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import config_enumerate
from torch import nn

from genssl.models.conditionals import ViewConditional
from genssl.models.distributions import FlatBaseMeasure
from genssl.models.view_model import Term, enter_terms, global_batch
from genssl.prior_contract import prior_class_log_probs, run_prior_globals

Prior = Callable[[int, int], torch.Tensor]


class ContentViewModel(nn.Module):
    """p(y) p(s | y) × flat base measures × factors; see the module docstring.

    Args:
        prior: ``prior(batch_size, content_dim)`` sampling site "y" (one event dim for a continuous y).
        conditional: the view conditional and the site it scores.
        content_dim: d of y on R^d or S^{d−1}, or the number of classes K.
        site_dims: every site the guide proposes as a point mass, with its width.
        factors: the method's other terms (entropy, redundancy, kernel …), entered with ``pyro.factor``.
        anchored: y is one view's estimate (the guide's), so the conditional skips that view.
        enumerate_prior: enumerate the prior's own discrete latents exactly (``model.elbo=enum``).
    """

    def __init__(
        self,
        prior: Prior,
        conditional: ViewConditional,
        content_dim: int,
        site_dims: Mapping[str, int],
        factors: Mapping[str, Term] | nn.Module,
        anchored: bool,
        enumerate_prior: bool = False,
    ) -> None:
        super().__init__()
        self.prior = prior
        self.conditional = conditional
        self.content_dim = int(content_dim)
        self.site_dims = dict(site_dims)
        self.factors = factors if isinstance(factors, nn.Module) else dict(factors)
        self.anchored = bool(anchored)
        self.enumerate_prior = bool(enumerate_prior)

    def forward(self, views: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """The model of views [B, J, C, H, W] (only their count is read: the guide encodes them)."""
        batch, num_views = views.shape[:2]
        anchors = num_views if self.anchored else 1
        scored = self.conditional.site
        sites: dict[str, torch.Tensor] = {}
        # Published losses are batch means: per-image terms carry 1/B, anchor copies 1/J. The prior's global
        # latents are weighted like one image's terms (as if the batch were the data set).
        with poutine.scale(scale=1.0 / batch):
            run_prior_globals(self.prior)
        samplable = self.conditional.samplable
        images = pyro.plate("images", batch)  # one plate, entered twice: base measures, then the content latent
        with images, poutine.scale(scale=1.0 / batch):
            for name, width in self.site_dims.items():
                if name != scored or not samplable:  # an energy conditional scores the guide's value as a factor
                    base = FlatBaseMeasure(constraints.real, (batch,), (num_views, width))
                    sites[name] = pyro.sample(name, base)
        if self.conditional.space == "classes":
            log_pi = prior_class_log_probs(self.prior, self.content_dim)
            if log_pi is not None:
                sites["class_log_probs"] = log_pi
        # The factors read only the embeddings, so they come before y (enumeration then sees no dependency).
        if not samplable:
            enter_terms(self.factors, global_batch(sites))
        with images, poutine.scale(scale=1.0 / batch):
            with pyro.plate("anchors", anchors, dim=-2), poutine.scale(scale=1.0 / anchors):
                prior = config_enumerate(self.prior, default="parallel") if self.enumerate_prior else self.prior
                y = prior(batch, self.content_dim)
                given = self.conditional.distribution(y, num_views, self.site_dims[scored], self.anchored)
                if samplable:
                    value = pyro.sample(scored, given)
                    sites[scored] = value.expand(anchors, *value.shape[-3:])[0]
                else:
                    pyro.factor("view_conditional", given.log_prob(sites[scored]))
        if samplable:
            enter_terms(self.factors, global_batch(sites))
