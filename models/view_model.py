"""The model side of discriminative SSL: an energy over the batch of view embeddings.

For embeddings z [B, J, D] proposed by a point-mass guide, the model scores

    log p(z) = Σ_t log p_t(z)

where each term is either a *view conditional* (a reconstruction log q(z_i2 | z_i1): vMF,
Gaussian, categorical …) or an *entropy* / *kernel* estimate of the aggregate representation
(vMF KDE, Gaussian log-det surrogate, matrix entropy, HSIC …). The terms enter through
``pyro.factor`` on top of an improper flat base measure for z, so Pyro's ELBO of (model, Delta
guide) is exactly Σ_t log p_t(z), and the loss −ELBO is the method's published objective up to
an additive constant (see ``discriminative_terms.py`` and its tests).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule

Term = Callable[[torch.Tensor], torch.Tensor]


class ViewModel(PyroModule):
    """log p(z) = Σ_t term_t(z) for view embeddings z [B, J, D], entered with ``pyro.factor``."""

    def __init__(self, terms: Mapping[str, Term], embed_dim: int) -> None:
        super().__init__()
        self.terms = dict(terms)
        self.embed_dim = embed_dim

    def forward(self, views: torch.Tensor) -> None:
        batch, num_views = views.shape[:2]
        with pyro.plate("images", batch):
            z = pyro.sample("z", dist.ImproperUniform(constraints.real, (batch,), (num_views, self.embed_dim)))
        for name, term in self.terms.items():
            pyro.factor(name, term(z))
