"""A model/guide pair trained by its ELBO, as one ``nn.Module``.

Every method in genssl is a Pyro model and guide; the training loss is the negative ELBO of the
pair, built with Pyro's ``ELBO()(model, guide)`` idiom so that a plain torch optimiser, AMP and
``state_dict`` checkpoints work on it like on any other module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from torch import nn

from genssl.errors import ConfigError, choices
from genssl.inference.hooks import TrainingHooks
from genssl.inference.lean_elbo import LeanELBO, Unsupported
from genssl.inference.replay import ReplayedLoss

# "meanfield" uses analytic KL terms wherever both sites have one registered; "enum" sums over the
# discrete latents marked for enumeration (a guide's class codes, a prior's mixture component) exactly.
ELBOS: dict[str, Callable[[], ELBO]] = {
    "meanfield": TraceMeanField_ELBO,
    "trace": Trace_ELBO,
    "enum": functools.partial(TraceEnum_ELBO, max_plate_nesting=2),
}


class PyroSSL(nn.Module, TrainingHooks):
    """Holds the ELBO module of (model, guide); ``forward(views)`` returns the loss to minimise.

    The training hooks (:class:`~genssl.inference.hooks.TrainingHooks`) are the guide's: the guide
    keeps the state they update (EMA targets, k-means labels, DirectPred's F̂).
    """

    def __init__(self, model: nn.Module, guide: nn.Module, elbo: str = "meanfield") -> None:
        super().__init__()
        if elbo not in ELBOS:
            raise ConfigError(f"Unknown ELBO estimator '{elbo}': model.elbo must be {choices(ELBOS)}.")
        if not isinstance(guide, TrainingHooks):
            raise TypeError(
                f"{type(guide).__name__} is not a genssl guide: it must offer represent(), before_epoch(), "
                "after_step() and uses_index (subclass genssl.guides.EncoderGuide for the defaults)."
            )
        self.objective = ELBOS[elbo]()(model, guide)
        # The same ELBO through one light effect handler (lean_elbo.py); used once enable_lean() has
        # checked it against Pyro's estimator on this model and guide.
        self.lean = LeanELBO(analytic_kl=elbo == "meanfield")
        self.use_lean = False
        self.lean_check: str = "not checked"
        # The lean loss traced once and replayed (replay.py), when enable_replay() is called.
        self.replay: ReplayedLoss | None = None

    @property
    def model(self) -> nn.Module:
        return self.objective.model

    @property
    def guide(self) -> nn.Module:
        return self.objective.guide

    @property
    def uses_index(self) -> bool:
        """Whether the guide keeps per-image state looked up by dataset index (DeepCluster's labels)."""
        return bool(self.guide.uses_index)

    def forward(self, views: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """−ELBO of views [B, J, C, H, W]; ``index`` (the images' dataset indices) reaches guides that use it."""
        args = (views, index) if index is not None and self.uses_index else (views,)
        if self.use_lean:
            return self.lean_loss(*args) if self.replay is None else self.replay(*args)
        return self.pyro_loss(*args)

    def lean_loss(self, *args: torch.Tensor) -> torch.Tensor:
        """−ELBO by the lean estimator (lean_elbo.py), run eagerly."""
        return self.lean.differentiable_loss(self.model, self.guide, *args)

    def enable_replay(self, enabled: bool = True, held_back_by: str | None = None) -> None:
        """Replay the lean loss from a trace checked against it (replay.py) once it is in use; the first
        training steps of each new input signature run it eagerly. ``pyro.param`` state outside the
        modules, or ``held_back_by`` (a setting that excludes it), keeps it eager and says why."""
        self.replay = None
        if enabled and self.use_lean:
            self.replay = ReplayedLoss(self, self.lean_loss)
            outside = "pyro.param parameters outside the modules" if self.extra_parameters() else None
            self.replay.reason = outside or held_back_by

    @property
    def estimator(self) -> str:
        """Which estimator computes the loss, and whether it is replayed."""
        return self.lean_check if self.replay is None else f"{self.lean_check}; {self.replay.status}"

    def pyro_loss(self, *args: torch.Tensor) -> torch.Tensor:
        """−ELBO by Pyro's own estimator (``model.elbo``): the reference the lean one is checked against."""
        if not torch.is_grad_enabled() and isinstance(self.objective.elbo, TraceEnum_ELBO):
            # TraceEnum's differentiable loss refuses to run without gradients; its plain loss does.
            return torch.tensor(self.objective.elbo.loss(self.model, self.guide, *args), device=args[0].device)
        return self.objective(*args)

    def enable_lean(self, views: torch.Tensor, index: torch.Tensor | None = None, rtol: float = 1e-4) -> bool:
        """Use the lean estimator from now on if it gives Pyro's −ELBO on ``views`` (same random draws,
        eval mode, no gradients: no running statistic moves); else keep Pyro's. Returns the choice and
        records why in ``lean_check``."""
        args = (views, index) if index is not None and self.uses_index else (views,)
        devices = [views.device] if views.device.type == "cuda" else []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(0)
                    reference = float(self.pyro_loss(*args))
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(0)
                    lean = float(self.lean.differentiable_loss(self.model, self.guide, *args))
        except Unsupported as why:
            self.use_lean, self.lean_check = False, f"Pyro's estimator: the lean one does not handle {why}"
            return False
        finally:
            self.train(was_training)
        same = math.isclose(lean, reference, rel_tol=rtol, abs_tol=rtol)
        self.use_lean = same
        self.lean_check = (
            f"lean estimator (−ELBO {lean:.6g} = Pyro's {reference:.6g})"
            if same
            else f"Pyro's estimator: the lean one gave {lean:.6g}, Pyro's {reference:.6g}"
        )
        return same

    def before_epoch(
        self, images: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> None:
        """Called with the uint8 training images at the start of each epoch (DeepCluster's k-means)."""
        self.guide.before_epoch(images, generator, progress)

    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with training progress in [0, 1] (EMA targets use it)."""
        self.guide.after_step(progress)

    @torch.no_grad()
    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder representation of images [N, C, H, W] (the guide decides what it is)."""
        return self.guide.represent(images)

    def extra_parameters(self) -> dict[str, torch.Tensor]:
        """Parameters created with ``pyro.param`` (e.g. by a plain-function prior), not owned by a module."""
        own = {id(p) for p in self.parameters()}
        store = pyro.get_param_store()
        return {
            name: store.get_param(name).unconstrained()
            for name in store.keys()
            if id(store.get_param(name).unconstrained()) not in own
        }

    def restore_weights(self, checkpoint: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
        """Load a checkpoint's module weights and ``pyro.param`` values (``extra_params``) into this method."""
        self.load_state_dict(checkpoint["method"])
        extra = self.extra_parameters() if extra is None else extra
        with torch.no_grad():
            for name, value in checkpoint.get("extra_params", {}).items():
                if name in extra:
                    extra[name].copy_(value)
