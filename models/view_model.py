"""The model side of discriminative SSL: an energy over the batch of view embeddings.

For embeddings proposed by a point-mass guide at named sites — "z" (online projections [B, J, D])
and, for distillation methods, "prediction" and "target" — the model scores

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
from torch import nn

from genssl.models.conditionals import ContentSpec
from genssl.objectives.gather import gather

Sites = Mapping[str, torch.Tensor]
Term = Callable[[Sites], torch.Tensor]


class ObjectiveTerms(dict):
    """A method's terms, ``{name: term(sites)}`` (the energy form of its loss), and its content latent.

    ``content`` (a :class:`~genssl.models.conditionals.ContentSpec`) says how the method reads as a
    latent-variable model with a prior on y: the view conditional that stands in for the two-view
    ``view_conditional`` term, and how the guide proposes y. None for methods without a content latent.
    """

    def __init__(self, terms: Mapping[str, Term], content: ContentSpec | None = None) -> None:
        super().__init__(terms)
        self.content = content


def global_batch(sites: Sites) -> dict[str, torch.Tensor]:
    """The sites of every process's images (batch dimension first), for terms that couple the batch; the
    content latent and the class marginal are left as they are (see :mod:`genssl.objectives.gather`)."""
    return {k: v if k in ("y", "class_log_probs") else gather(v) for k, v in sites.items()}


def enter_terms(terms: Mapping[str, Term], sites: Sites) -> None:
    """Enter every term's log-density of ``sites`` with ``pyro.factor``, under the term's name."""
    for name, term in terms.items():
        pyro.factor(name, term(sites))


class ViewModel(nn.Module):
    """log p(sites) = Σ_t term_t(sites), entered with ``pyro.factor``.

    ``site_dims`` names the embedding sites the guide proposes and their widths; each is a
    [B, J, D] latent under the ``images`` plate with an improper flat base measure. With
    ``content_classes`` K, each image also has a cluster label y_i ~ Categorical(1/K) (site "y").
    ``index`` (dataset indices of the batch) is only read by guides that need it.
    """

    def __init__(
        self, terms: Mapping[str, Term] | nn.Module, site_dims: Mapping[str, int], content_classes: int | None = None
    ) -> None:
        super().__init__()
        # Terms given as an nn.Module with ``items()`` (e.g. SSL-HSIC's learned kernel scale) are a
        # submodule, so their parameters train and are checkpointed with the rest.
        self.terms = terms if isinstance(terms, nn.Module) else dict(terms)
        self.site_dims = dict(site_dims)
        # Clustering methods (DeepCluster) also have a discrete content latent y_i with a uniform prior.
        self.content_classes = content_classes

    def forward(self, views: torch.Tensor, index: torch.Tensor | None = None) -> None:
        batch, num_views = views.shape[:2]
        sites = {}
        with pyro.plate("images", batch):
            if self.content_classes:
                sites["y"] = pyro.sample("y", dist.Categorical(logits=views.new_zeros(self.content_classes)))
            for name, dim in self.site_dims.items():
                base = dist.ImproperUniform(constraints.real, (batch,), (num_views, dim))
                sites[name] = pyro.sample(name, base)
        enter_terms(self.terms, global_batch(sites))
