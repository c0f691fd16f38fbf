"""Guide of the distillation methods (BYOL, SimSiam, DirectPred and their ER versions).

Three point-mass sites per view: "z" the online projection g(f(x)), "prediction" the predictor's
output q(z), and "target" the target projection — from an EMA copy of encoder and head (BYOL,
DirectPred) or the online projection itself (SimSiam) — with its gradient stopped.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from genssl.errors import ConfigError, choices
from genssl.guides.base import EncoderGuide
from genssl.guides.delta_encoder import DeltaEncoderGuide, embed_views, output_width, sample_point_sites
from genssl.nets.directpred import DirectPredictor
from genssl.nets.ema import ema_momentum, ema_update, frozen_copy
from genssl.nets.heads import projection_head
from genssl.objectives.gather import gather

TARGETS = ("ema", "stopgrad")
PREDICTORS = ("mlp", "directpred")


def build_predictor(pred_cfg: DictConfig, dim: int) -> nn.Module:
    """BYOL/SimSiam's MLP predictor, or DirectPred's directly-set linear one (``guide.predictor``)."""
    if pred_cfg.kind == "mlp":
        return projection_head(dim, pred_cfg.hidden_dim, dim, layers=2)
    if pred_cfg.kind == "directpred":
        return DirectPredictor(dim, pred_cfg.rho, pred_cfg.eps, pred_cfg.freq, pred_cfg.variant)
    raise ConfigError(f"Unknown predictor '{pred_cfg.kind}': guide.predictor.kind must be {choices(PREDICTORS)}.")


class DistillationGuide(EncoderGuide):
    """Online encoder + head + predictor, and a stop-gradient target branch."""

    config_keys = frozenset({"target", "momentum", "predictor"})

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
        width = output_width(projector)
        self.sites = {"z": width, "prediction": width, "target": width}
        if target == "ema":
            self.target = nn.ModuleDict({"encoder": frozen_copy(encoder), "projector": frozen_copy(projector)})

    @classmethod
    def from_config(cls, cfg: DictConfig, encoder: nn.Module, projector: nn.Module) -> DistillationGuide:
        """``guide.kind=distillation``: ``guide.predictor``, ``guide.target`` (ema | stopgrad), ``guide.momentum``."""
        missing = [key for key in sorted(cls.config_keys) if cfg.get(key) is None]
        if missing:
            raise ConfigError(
                f"guide.kind=distillation needs {', '.join('guide.' + k for k in missing)}: add e.g. "
                "+guide.target=ema +guide.momentum=0.99 +guide.predictor.kind=mlp +guide.predictor.hidden_dim=512."
            )
        predictor = build_predictor(cfg.predictor, output_width(projector))
        return cls(encoder, projector, predictor, cfg.target, cfg.momentum)

    @property
    def _target_branch(self) -> nn.ModuleDict:
        return self._modules["target"]

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        return self.online.represent(images)

    def embeddings(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.online.embed(views)
        if isinstance(self.predictor, DirectPredictor) and self.training:
            self.predictor.observe(gather(z.flatten(0, 1).detach()))  # F̂ of the global batch: same on every rank
        prediction = self.predictor(z.flatten(0, 1)).unflatten(0, z.shape[:2])
        if self.target_kind == "ema":
            with torch.no_grad():
                branch = self._target_branch
                target = embed_views(branch["encoder"], branch["projector"], views)
        else:
            target = z.detach()
        return {"z": z, "prediction": prediction, "target": target}

    def propose(self, views: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The point-mass sites: "z", "prediction" and "target", each [B, J, D]."""
        return self.embeddings(views)

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
