"""Guide of the clustering methods: prototype scores, and for DINO an EMA teacher.

Site "scores" [B, J, K] holds the cosine similarities of each view's projection to K learnable
prototypes (SwAV, and DINO's weight-normalised last layer, amount to this). With a teacher, site
"teacher_probs" holds softmax((s_teacher − centre)/τ_t): the EMA teacher's centred and sharpened
distribution, with the centre an EMA of the teacher's mean scores (updated after each step).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from genssl.guides.base import EncoderGuide
from genssl.guides.delta_encoder import DeltaEncoderGuide, embed_views, output_width, sample_point_sites
from genssl.nets.ema import ema_momentum, ema_update, frozen_copy
from genssl.objectives.gather import mean_over_ranks_


class PrototypeScores(nn.Module):
    """s = ẑ Ĉᵀ: cosine similarity of each embedding to each of K prototypes."""

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(F.normalize(torch.randn(num_prototypes, dim), dim=1))
        self.out_features = num_prototypes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) @ F.normalize(self.prototypes, dim=-1).T


class PrototypeGuide(EncoderGuide):
    """Online encoder + head + prototypes; optionally an EMA teacher of all three (DINO)."""

    config_keys = frozenset({"prototypes"})

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        num_prototypes: int,
        teacher: bool = False,
        momentum: float = 0.996,
        teacher_temp: float = 0.04,
        centre_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        head = nn.Sequential(projector, PrototypeScores(output_width(projector), num_prototypes))
        self.online = DeltaEncoderGuide(encoder, head)
        self.has_teacher = teacher
        self.base_momentum, self.teacher_temp, self.centre_momentum = momentum, teacher_temp, centre_momentum
        self.sites = {"scores": num_prototypes, **({"teacher_probs": num_prototypes} if teacher else {})}
        if teacher:
            self.teacher = nn.ModuleDict({"encoder": frozen_copy(encoder), "head": frozen_copy(head)})
            self.register_buffer("centre", torch.zeros(num_prototypes))
            self.register_buffer("batch_centre", torch.zeros(num_prototypes))

    @classmethod
    def from_config(cls, cfg: DictConfig, encoder: nn.Module, projector: nn.Module) -> PrototypeGuide:
        """``guide.kind=prototypes``: ``guide.prototypes.num`` and an optional EMA ``guide.prototypes.teacher``
        (``momentum``, sharpening ``temperature``, ``centre_momentum``; ``null`` for none, as in SwAV)."""
        teacher = cfg.prototypes.get("teacher")
        if teacher is None or teacher.get("enabled") is False:  # runs saved before PR 10 wrote enabled: false
            return cls(encoder, projector, cfg.prototypes.num)
        return cls(
            encoder, projector, cfg.prototypes.num, True, teacher.momentum, teacher.temperature, teacher.centre_momentum
        )

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        return self.online.represent(images)

    def embeddings(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        sites = {"scores": self.online.embed(views)}
        if self.has_teacher:
            teacher = self._modules["teacher"]
            with torch.no_grad():
                scores = embed_views(teacher["encoder"], teacher["head"], views)
                self.batch_centre.copy_(scores.mean(dim=(0, 1)))
                mean_over_ranks_(self.batch_centre)  # the centre stays the same on every rank
                sites["teacher_probs"] = F.softmax((scores - self.centre) / self.teacher_temp, dim=-1)
        return sites

    def propose(self, views: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The point-mass sites: "scores" [B, J, K] (and "teacher_probs" with a teacher)."""
        return self.embeddings(views)

    def forward(self, views: torch.Tensor) -> None:
        sample_point_sites(self.embeddings(views))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA teacher and centre updates after an optimiser step."""
        if not self.has_teacher:
            return
        teacher = self._modules["teacher"]
        online = nn.ModuleDict({"encoder": self.online.encoder, "head": self.online.projector})
        ema_update(teacher, online, ema_momentum(self.base_momentum, progress))
        self.centre.mul_(self.centre_momentum).add_(self.batch_centre, alpha=1.0 - self.centre_momentum)
