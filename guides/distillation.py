"""Guide of the distillation methods (BYOL, SimSiam, DirectPred and their ER versions).

Three point-mass sites per view: "z" the online projection g(f(x)), "prediction" the predictor's
output q(z), and "target" the target projection — from an EMA copy of encoder and head (BYOL,
DirectPred) or the online projection itself (SimSiam) — with its gradient stopped.
"""

from __future__ import annotations

import copy
import math

import torch
from pyro.nn import PyroModule
from torch import nn

from genssl.errors import ConfigError, choices
from genssl.guides.delta_encoder import DeltaEncoderGuide, embed_views, sample_point_sites
from genssl.inference.directpred import DirectPredictor

TARGETS = ("ema", "stopgrad")


def ema_momentum(base: float, progress: float) -> float:
    """BYOL's cosine schedule: τ = 1 − (1 − τ_base)(cos(π·progress) + 1)/2, progress ∈ [0, 1]."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the starting point of an EMA target."""
    copied = copy.deepcopy(module)
    copied.requires_grad_(False)
    return copied


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target ← τ·target + (1 − τ)·online for parameters; buffers (BatchNorm statistics) are copied."""
    for target_p, online_p in zip(target.parameters(), online.parameters()):
        target_p.mul_(tau).add_(online_p.detach(), alpha=1.0 - tau)
    for target_b, online_b in zip(target.buffers(), online.buffers()):
        target_b.copy_(online_b)


class DistillationGuide(PyroModule):
    """Online encoder + head + predictor, and a stop-gradient target branch."""

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        predictor: nn.Module,
        target: str = "ema",
        momentum: float = 0.996,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ConfigError(f"Unknown target branch '{target}': guide.target must be {choices(TARGETS)}.")
        self.online = DeltaEncoderGuide(encoder, projector)
        self.predictor = predictor
        self.target_kind = target
        self.base_momentum = momentum
        if target == "ema":
            # A plain nn.Module (not a PyroModule): its frozen weights stay out of Pyro's param store.
            self.target = nn.ModuleDict({"encoder": frozen_copy(encoder), "projector": frozen_copy(projector)})

    @property
    def _target_branch(self) -> nn.ModuleDict:
        # Read past PyroModule.__getattr__, which would register the frozen weights with pyro.module.
        return self._modules["target"]

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        return self.online.represent(images)

    def embeddings(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.online.embed(views)
        if isinstance(self.predictor, DirectPredictor) and self.training:
            self.predictor.observe(z.flatten(0, 1))
        prediction = self.predictor(z.flatten(0, 1)).unflatten(0, z.shape[:2])
        if self.target_kind == "ema":
            with torch.no_grad():
                branch = self._target_branch
                target = embed_views(branch["encoder"], branch["projector"], views)
        else:
            target = z.detach()
        return {"z": z, "prediction": prediction, "target": target}

    def forward(self, views: torch.Tensor) -> None:
        sample_point_sites(self.embeddings(views))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA update of the target branch after an optimiser step."""
        if self.target_kind != "ema":
            return
        tau = ema_momentum(self.base_momentum, progress)
        online = nn.ModuleDict({"encoder": self.online.encoder, "projector": self.online.projector})
        ema_update(self._target_branch, online, tau)
