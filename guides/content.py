"""The guide of the content latent y of the discriminative families, on top of any point-embedding guide.

:class:`ContentGuide` runs its base guide (the encoder and heads, proposing the embeddings as point
masses) and then proposes y from those embeddings with one of :data:`PROPOSALS`:

| proposal | q(y_i) | used by |
|---|---|---|
| ``anchor_embedding`` | δ(one view's embedding; unit-normalised on the sphere) | SimCLR, BYOL (target), VICReg |
| ``sinkhorn`` | Sinkhorn–Knopp codes of one view's detached scores, masses = the prior's π | SwAV |
| ``teacher`` | the EMA teacher's distribution of one view, tilted by the prior's π | DINO |
| ``student`` | softmax(s/τ) of one view, with its gradient | ER-SwAV |
| ``assigned`` | δ(the image's k-means cluster), one estimate for all views | DeepCluster |

The per-view proposals sit in an ``anchors`` plate (one copy per view, scale 1/J): the exact
expectation over which view stands in for y. Categorical proposals are enumerated
(``infer={"enumerate": "parallel"}``, ``model.elbo=enum``): the ELBO sums over the K classes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine

from genssl.guides.base import EncoderGuide
from genssl.objectives import sinkhorn_knopp
from genssl.objectives.gather import gather, local_slice
from genssl.prior_contract import prior_class_log_probs, run_prior_global_guide, run_prior_guide

ClassLogProbs = Callable[[], "torch.Tensor | None"]


class Proposal:
    """How the guide estimates y from the base guide's sites; ``anchored``: one estimate per view."""

    anchored = True
    discrete = False

    def sample(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sample site "y" inside the images and anchors plates."""
        raise NotImplementedError


class AnchorEmbedding(Proposal):
    """y^(a)_i = δ(embedding of view a at ``site``), unit-normalised when ``normalise``.

    ``gradient_site``: the value is ``site``'s (BYOL's stop-gradient EMA target), but gradients of
    log p(y) reach the encoder through this site of the same view (the online projection the target
    is a slow copy of), straight through: a prior on BYOL's y then shapes the representation too.
    """

    def __init__(self, site: str, normalise: bool, gradient_site: str | None = None) -> None:
        self.site, self.normalise, self.gradient_site = site, bool(normalise), gradient_site

    def _estimate(self, sites: dict[str, torch.Tensor], site: str) -> torch.Tensor:
        y = sites[site].transpose(0, 1)  # [J, B, D]: one estimate per anchor view
        return F.normalize(y, dim=-1) if self.normalise else y

    def sample(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        y = self._estimate(sites, self.site)
        if self.gradient_site is not None:
            through = self._estimate(sites, self.gradient_site)
            y = y.detach() + (through - through.detach())
        return pyro.sample("y", dist.Delta(y, event_dim=1))


class _Codes(Proposal):
    discrete = True

    def __init__(self, site: str, class_log_probs: ClassLogProbs) -> None:
        self.site, self.class_log_probs = site, class_log_probs

    def probs(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        codes = self.probs(sites)  # [J, B, K]
        return pyro.sample("y", dist.Categorical(probs=codes), infer={"enumerate": "parallel"})


class SinkhornCodes(_Codes):
    """q(y^(a)_i) = Sinkhorn–Knopp codes of view a's detached scores; prototype masses follow the prior."""

    def __init__(self, site: str, iterations: int, epsilon: float, class_log_probs: ClassLogProbs) -> None:
        super().__init__(site, class_log_probs)
        self.iterations, self.epsilon = int(iterations), float(epsilon)

    def probs(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        # Sinkhorn normalises over the batch: the global one in a distributed run, then this rank's rows.
        scores = gather(sites[self.site].detach())
        log_pi = self.class_log_probs()
        log_pi = None if log_pi is None else log_pi.detach().to(scores.device)
        codes = [sinkhorn_knopp(scores[:, a], self.iterations, self.epsilon, log_pi) for a in range(scores.shape[1])]
        return local_slice(torch.stack(codes), dim=1)


class TeacherCodes(_Codes):
    """q(y^(a)_i) ∝ π_y · P_teacher(y | view a): the teacher's centred, sharpened distribution, tilted by π."""

    def probs(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        teacher = sites[self.site].transpose(0, 1)  # [J, B, K]
        log_pi = self.class_log_probs()
        if log_pi is None:
            return teacher
        return F.softmax(teacher.clamp_min(1e-30).log() + log_pi.detach().to(teacher.device), dim=-1)


class StudentCodes(_Codes):
    """q(y^(a)_i) = softmax(s_a / τ), with its gradient (ER-SwAV's symmetric cross-entropy)."""

    def __init__(self, site: str, temperature: float, class_log_probs: ClassLogProbs) -> None:
        super().__init__(site, class_log_probs)
        self.temperature = float(temperature)

    def probs(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.softmax(sites[self.site].transpose(0, 1) / self.temperature, dim=-1)


class AssignedLabels(Proposal):
    """q(y_i) = δ(the label the base guide assigns image i): one estimate, every view scored."""

    anchored = False
    discrete = True

    def __init__(self, site: str) -> None:
        self.site = site

    def sample(self, sites: dict[str, torch.Tensor]) -> torch.Tensor:
        return pyro.sample("y", dist.Delta(sites[self.site].unsqueeze(0)))


def build_proposal(kind: str, params: dict, class_log_probs: ClassLogProbs) -> Proposal:
    """The proposal ``kind`` of :data:`PROPOSALS` with its parameters."""
    if kind == "anchor_embedding":
        return AnchorEmbedding(**params)
    if kind == "assigned":
        return AssignedLabels(**params)
    return PROPOSALS[kind](**params, class_log_probs=class_log_probs)


PROPOSALS: dict[str, type[Proposal]] = {
    "anchor_embedding": AnchorEmbedding,
    "sinkhorn": SinkhornCodes,
    "teacher": TeacherCodes,
    "student": StudentCodes,
    "assigned": AssignedLabels,
}


class ContentGuide(EncoderGuide):
    """The base guide's point-mass sites, the prior's own guide (if any) and q(y) from ``proposal``.

    ``scored`` is the site the model's view conditional scores; with ``scored_per_anchor`` (a conditional
    the model samples it from) it is proposed inside the anchors plate too, repeated per anchor.
    ``prior`` is the model's prior, held by reference (not registered twice as a submodule): the guide
    runs the prior's own guide, if it has one, and reads its class marginal.
    """

    def __init__(
        self,
        base: EncoderGuide,
        proposal: Proposal,
        scored: str,
        prior: Callable,
        content_dim: int,
        scored_per_anchor: bool = True,
    ) -> None:
        super().__init__()
        self.base = base
        self.proposal = proposal
        self.scored = scored
        self.scored_per_anchor = bool(scored_per_anchor)
        self.content_dim = int(content_dim)
        object.__setattr__(self, "_prior", prior)  # a reference, not a second copy in the state dict
        self.uses_index = base.uses_index
        self.sites = {k: v for k, v in base.sites.items()}
        self.content_classes = base.content_classes

    def forward(self, views: torch.Tensor, index: torch.Tensor | None = None) -> None:
        sites = self.base.propose(views, index)
        batch, num_views = views.shape[:2]
        anchors = num_views if self.proposal.anchored else 1
        with poutine.scale(scale=1.0 / batch):
            run_prior_global_guide(self._prior)
        with pyro.plate("images", batch), poutine.scale(scale=1.0 / batch):
            for name, value in sites.items():
                if name != "y" and (name != self.scored or not self.scored_per_anchor):
                    pyro.sample(name, dist.Delta(value, event_dim=2))
            with pyro.plate("anchors", anchors, dim=-2), poutine.scale(scale=1.0 / anchors):
                if self.scored_per_anchor:
                    value = sites[self.scored]
                    pyro.sample(self.scored, dist.Delta(value.expand(anchors, *value.shape), event_dim=2))
                self.proposal.sample(sites)
                run_prior_guide(self._prior, batch, self.content_dim)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        return self.base.represent(images)

    def before_epoch(
        self, images: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> None:
        self.base.before_epoch(images, generator, progress)

    def after_step(self, progress: float) -> None:
        self.base.after_step(progress)


def class_marginal(prior: Callable, num_classes: int) -> ClassLogProbs:
    """A callable giving the prior's log π over the K classes (None: uniform), read when the codes are made."""
    return lambda: prior_class_log_probs(prior, num_classes)
