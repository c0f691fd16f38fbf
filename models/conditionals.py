"""View conditionals p(views | y): how a discriminative method's view embeddings depend on the content latent.

For B images with J views, the guide proposes y as a point estimate from *one view* (SimCLR's other
view, BYOL's target, a DINO teacher's distribution …): q(y_i) is a uniform mixture over which view a
stands in for y, and genssl takes the ELBO's expectation over a exactly by laying the J choices along
an ``anchors`` plate (scale 1/J). For anchor a the conditional scores the *other* views,

    log p(z_i | y_i^(a)) = mean_{j≠a} f(y_i^(a), z_ij),

the mean over the scored views being the published losses' normalisation (for two views it is the
plain conditional of the other view). A proposal that is not a view (DeepCluster's k-means label)
has one anchor and scores every view. ``f`` per family:

| family | y lives in | f(y, z_j) |
|---|---|---|
| vMF (SimCLR, BYOL, SimSiam, DirectPred) | S^{d−1} | κ ŷᵀẑ_j (vMF up to its constant normaliser) |
| Gaussian (VICReg) | R^d | −λ·mean_k (z_jk − y_k)², a Gaussian N(y, d/(2λ)·I) up to its normaliser |
| linear kernel (spectral) | R^d | w·yᵀz_j (an energy) |
| cross-correlation (Barlow Twins) | R^d | −Σ_k (1 − C_kk)², C the batch cross-correlation of y and z_j |
| categorical (SwAV, DINO, DeepCluster) | {0, …, K−1} | log softmax(s_j / τ)[y] over the K prototype scores s_j |

Each is a distribution over the scored site (event [J, width]) with batch shape [anchors, images]
(and any enumeration dimensions of y in front); the vMF and Gaussian ones can also be sampled, the
anchor view being y itself. Normalisers constant in the embeddings are dropped, as the published
losses drop them, so with the default priors −ELBO equals the published loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints

from genssl.models.distributions import broadcast, sample_vmf
from genssl.objectives import cross_correlation
from genssl.objectives.gather import gather

EMPTY = torch.Size()
SPACES = ("sphere", "euclidean", "classes")


class ViewsGivenContent(TorchDistribution):
    """Base of the view conditionals: ``pairwise`` scores every (anchor, image, view) triple; ``log_prob``
    averages over the views each anchor scores. ``y`` is [..., A, B, d] (continuous) or [..., A, B]
    (class indices); values are [B, J, width], or [A, B, J, width] as the guide proposes them."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    content_event_dim = 1  # 0 for class indices

    def __init__(
        self, y: torch.Tensor, num_views: int, width: int, anchored: bool, validate_args: bool | None = None
    ) -> None:
        self.y, self.num_views, self.width, self.anchored = y, int(num_views), int(width), bool(anchored)
        # y may carry enumeration dimensions and broadcast over the plates: [..., A or 1, B or 1].
        batch_shape = broadcast(y.shape[: y.dim() - self.content_event_dim], (self.num_anchors, 1))
        super().__init__(batch_shape, torch.Size((self.num_views, self.width)), validate_args=False)

    @property
    def num_anchors(self) -> int:
        """One anchor per view when y is one view's estimate, else one."""
        return self.num_views if self.anchored else 1

    def pairwise(self, value: torch.Tensor) -> torch.Tensor:
        """f(y^(a)_i, z_ij) for every anchor a, image i, view j: [..., A, B, J]."""
        raise NotImplementedError

    def _view_weights(self, device: torch.device) -> torch.Tensor:
        """[A, J] weights of each scored view: 1/(J−1) off the anchor (0 on it), or 1/J with one anchor."""
        a, j = self.num_anchors, self.num_views
        if not self.anchored:
            return torch.full((a, j), 1.0 / j, device=device)
        return (1.0 - torch.eye(a, j, device=device)) / (j - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        scores = self.pairwise(value)
        return (scores * self._view_weights(scores.device).unsqueeze(-2)).sum(-1)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> ViewsGivenContent:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        tail = self.y.shape[self.y.dim() - self.content_event_dim :]
        new.y = self.y.expand(*batch_shape, *tail)
        TorchDistribution.__init__(new, torch.Size(batch_shape), self.event_shape, validate_args=False)
        return new

    def _pin_anchor(self, draws: torch.Tensor, anchor_value: torch.Tensor) -> torch.Tensor:
        """Set view a of anchor a to y^(a) (the anchor view *is* the content latent)."""
        if not self.anchored:
            return draws
        a = self.num_anchors
        eye = torch.eye(a, self.num_views, dtype=torch.bool, device=draws.device)
        mask = eye.view(a, 1, self.num_views, 1)
        return torch.where(mask, anchor_value.unsqueeze(-2), draws)


def _values(value: torch.Tensor) -> torch.Tensor:
    """The proposed views as [..., 1 or A, B, J, w]: the guide repeats them along the anchors."""
    return value if value.dim() >= 4 else value.unsqueeze(-4)


class VMFViews(ViewsGivenContent):
    """f = κ ŷᵀẑ_j: a von Mises–Fisher conditional around the content direction.

    ``detach_content``: the conditional sends no gradient into y (BYOL's target is a stop-gradient).
    """

    def __init__(
        self, y: torch.Tensor, num_views: int, anchored: bool, kappa: float, detach_content: bool = False
    ) -> None:
        super().__init__(y, num_views, y.shape[-1], anchored)
        self.kappa = float(kappa)
        self.detach_content = bool(detach_content)

    def pairwise(self, value: torch.Tensor) -> torch.Tensor:
        y = self.y.detach() if self.detach_content else self.y
        y = F.normalize(y, dim=-1).unsqueeze(-2)  # [..., A, B, 1, d]
        return self.kappa * (y * F.normalize(_values(value), dim=-1)).sum(-1)

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        mu = F.normalize(self.y, dim=-1)
        loc = mu.unsqueeze(-2).expand(*mu.shape[:-1], self.num_views, self.width)
        draws = sample_vmf(loc, torch.tensor(self.kappa), torch.Size(sample_shape))
        return self._pin_anchor(draws, mu.expand(*sample_shape, *mu.shape))


class GaussianViews(ViewsGivenContent):
    """f = −w·mean_k (z_jk − y_k)²: an isotropic Gaussian N(y, σ²I) with σ² = d/(2w), up to its normaliser.

    With w = λ this is VICReg's invariance term λ·MSE(z1, z2) for the other view.
    """

    def __init__(self, y: torch.Tensor, num_views: int, anchored: bool, weight: float) -> None:
        super().__init__(y, num_views, y.shape[-1], anchored)
        self.weight = float(weight)

    @property
    def variance(self) -> float:
        return self.width / (2.0 * self.weight)

    def pairwise(self, value: torch.Tensor) -> torch.Tensor:
        return -self.weight * (_values(value) - self.y.unsqueeze(-2)).pow(2).mean(-1)

    def sample(self, sample_shape: torch.Size = EMPTY) -> torch.Tensor:
        loc = self.y.unsqueeze(-2).expand(*self.y.shape[:-1], self.num_views, self.width)
        draws = loc + self.variance**0.5 * torch.randn(torch.Size(sample_shape) + loc.shape, device=loc.device)
        return self._pin_anchor(draws, self.y.expand(*sample_shape, *self.y.shape))


class LinearKernelViews(ViewsGivenContent):
    """f = w·yᵀz_j: the spectral contrastive loss's linear-kernel reconstruction (an energy, not sampled)."""

    def __init__(self, y: torch.Tensor, num_views: int, anchored: bool, weight: float) -> None:
        super().__init__(y, num_views, y.shape[-1], anchored)
        self.weight = float(weight)

    def pairwise(self, value: torch.Tensor) -> torch.Tensor:
        return self.weight * (_values(value) * self.y.unsqueeze(-2)).sum(-1)


class CrossCorrelationViews(ViewsGivenContent):
    """f = −Σ_k (1 − C_kk)², C = BN(y)ᵀBN(z_j)/B over the batch (Barlow Twins' on-diagonal term).

    Batch-coupled: every image of the batch carries the batch's value, so the images plate's 1/B
    scale returns it once. An energy, not sampled.
    """

    def __init__(self, y: torch.Tensor, num_views: int, anchored: bool, eps: float) -> None:
        super().__init__(y, num_views, y.shape[-1], anchored)
        self.eps = float(eps)

    def pairwise(self, value: torch.Tensor) -> torch.Tensor:
        # The batch statistics are the global batch's in a distributed run (genssl.objectives.gather).
        local_batch = self.y.shape[-2]
        y = gather(self.y, dim=-2)  # [..., A, B, d]
        z = gather(_values(value), dim=-3)  # [..., 1 or A, B, J, w]
        z = z.expand(*y.shape[:-2], *z.shape[-3:])  # [..., A, B, J, w]
        scores = []
        for a in range(y.shape[-3]):
            row = []
            for j in range(self.num_views):
                c = cross_correlation(y[..., a, :, :], z[..., a, :, j, :], eps=self.eps)
                row.append(-(1.0 - torch.diagonal(c, dim1=-2, dim2=-1)).pow(2).sum(-1))
            scores.append(torch.stack(row, -1))
        per_anchor = torch.stack(scores, -2)  # [..., A, J]
        return per_anchor.unsqueeze(-2).expand(*per_anchor.shape[:-1], local_batch, self.num_views)


class CategoricalViews(ViewsGivenContent):
    """f = log softmax(s_j/τ)[y]: each scored view predicts the class y from its K prototype scores.

    ``y`` holds class indices [..., A, B]; under enumeration it is [K, 1, 1] and the result [K, A, B].
    """

    content_event_dim = 0

    def __init__(self, y: torch.Tensor, num_views: int, anchored: bool, width: int, temperature: float) -> None:
        super().__init__(y, num_views, width, anchored)
        self.temperature = float(temperature)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(_values(value)[..., 0, :, :, :] / self.temperature, dim=-1)  # [B, J, K]
        weights = self._view_weights(log_p.device)  # [A, J]
        # Σ_j w_aj log p_j[k], for every anchor a, image b and class k: [A, B, K]. Elementwise, not an
        # einsum: autocast would run a matmul in bfloat16, and the likelihood stays in float32.
        per_class = (weights[:, None, :, None] * log_p).sum(-2)
        # Indexed, not gathered from per_class expanded to y's shape: under enumeration (y [K, 1, 1]) that
        # expansion is [K, A, B, K], and its backward fills and sums K times the tensor it needs.
        anchors, images = per_class.shape[:2]
        a = torch.arange(anchors, device=per_class.device)[:, None]
        b = torch.arange(images, device=per_class.device)
        return per_class[a, b, self.y.long()]


@dataclass(frozen=True)
class ViewConditional:
    """A method's view conditional: which site it scores, the space of y, and how (``kind`` + ``params``).

    ``kind`` is one of :data:`CONDITIONALS`. ``anchored`` is set by the guide's proposal of y: True when
    y is one view's estimate (that view is then excluded from scoring).
    """

    kind: str
    site: str
    space: str
    params: dict = field(default_factory=dict)

    @property
    def samplable(self) -> bool:
        """Whether the conditional is a distribution over the views one can draw from (vMF, Gaussian): the
        model then samples the scored site from it; the energies enter as a factor on the guide's values."""
        return self.kind in SAMPLABLE

    def distribution(self, y: torch.Tensor, num_views: int, width: int, anchored: bool) -> ViewsGivenContent:
        cls = CONDITIONALS[self.kind]
        if cls is CategoricalViews:
            return cls(y, num_views, anchored, width, **self.params)
        return cls(y, num_views, anchored, **self.params)


SAMPLABLE = ("vmf", "gaussian")
CONDITIONALS: dict[str, type[ViewsGivenContent]] = {
    "vmf": VMFViews,
    "gaussian": GaussianViews,
    "linear_kernel": LinearKernelViews,
    "cross_correlation": CrossCorrelationViews,
    "categorical": CategoricalViews,
}


@dataclass(frozen=True)
class ProposalSpec:
    """How the guide estimates y: ``kind`` names a proposal in ``genssl.guides.content.PROPOSALS``."""

    kind: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ContentSpec:
    """A method's content latent: its view conditional and how the guide proposes y.

    ``replaces`` names the energy terms the conditional stands in for when the model has y (the
    terms' own two-view ``view_conditional``, kept for the energy form of the loss); ``extra_terms``
    are factors the latent-variable form adds (e.g. ER-SwAV's assignment sharpness, the part of its
    cross-entropy that the ELBO's guide entropy would otherwise cancel).
    """

    conditional: ViewConditional
    proposal: ProposalSpec
    replaces: tuple[str, ...] = ("view_conditional",)
    extra_terms: dict = field(default_factory=dict)
