"""The training loop: batches of multi-view images through a method's ELBO, with checkpoints.

:class:`Trainer` holds what one run needs (method, data on the device, optimiser, schedule, logger,
progress) and :func:`train` runs it. The loop talks to the method through its loss and the hooks of
:class:`~genssl.inference.hooks.TrainingHooks` only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from genssl.data import ImageDataset, build_augment
from genssl.errors import ConfigError, GensslError
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods import check_input_shape
from genssl.runfiles import load_checkpoint, save_checkpoint
from genssl.runtime import autocast, epoch_generator
from genssl.train.accelerate import accelerate
from genssl.train.loggers import RunLogger
from genssl.train.schedule import schedule_from_config

CHECKPOINT = Path("checkpoints") / "last.pt"


@dataclass
class TrainState:
    """How far a run has got; saved in every checkpoint so a resumed run continues the count."""

    epoch: int = 0  # completed epochs
    step: int = 0
    seconds: float = 0.0
    samples: int = 0  # views seen


def lean_estimator(tcfg: DictConfig) -> bool:
    """``trainer.lean_elbo`` (Pyro's estimator every step when false, or when ``trainer.validate`` asks for
    Pyro's checks)."""
    return bool(tcfg.get("lean_elbo", True)) and not bool(tcfg.get("validate", False))


def build_optimizer(params: list[torch.Tensor], optim_cfg: DictConfig) -> torch.optim.Optimizer:
    """``trainer.optim``: Adam or AdamW with its lr, eps and weight decay."""
    if optim_cfg.name == "adam":
        return torch.optim.Adam(params, lr=optim_cfg.lr, eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay)
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=optim_cfg.lr, eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay)
    raise ConfigError(f"Unknown optimiser '{optim_cfg.name}': trainer.optim.name must be 'adam' or 'adamw'.")


class Trainer:
    """One training run of ``method`` on ``dataset``, writing into ``run_dir``."""

    def __init__(
        self, cfg: DictConfig, method: PyroSSL, dataset: ImageDataset, device: torch.device, run_dir: Path
    ) -> None:
        self.cfg, self.method, self.device = cfg, method, device
        self.tcfg = tcfg = cfg.trainer
        self.augment = build_augment(cfg.data.augment, int(cfg.data.num_views), dataset.image_size).to(device)
        self.images = dataset.train.images.to(device)
        self.batch_size = min(int(tcfg.batch_size), len(self.images))
        self.steps_per_epoch = len(self.images) // self.batch_size  # drop the ragged last batch: batches stay full
        self.accelerated = accelerate(method, tcfg)
        self._check_shapes()
        self.extra = method.extra_parameters()
        trainable = [p for p in method.parameters() if p.requires_grad]  # EMA targets are not trained
        self.optimizer = build_optimizer([*trainable, *self.extra.values()], tcfg.optim)
        # Schedules (learning rate, EMA momentum) span the planned run; max_steps only stops it early.
        self.total_steps = max(tcfg.max_epochs * self.steps_per_epoch, 1)
        self.lr_at: Callable[[int], float] = schedule_from_config(tcfg.optim, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=str(tcfg.precision) == "16")
        self.max_steps = tcfg.max_steps if tcfg.max_steps is not None else math.inf
        self.checkpoint_path = run_dir / CHECKPOINT
        self.run_dir = run_dir
        self.state = TrainState()

    def _check_shapes(self) -> None:
        """One loss evaluation before the optimiser exists: shape errors surface early, and lazily created
        parameters (``pyro.param`` in a plain-function prior) exist before they are handed to the optimiser.
        It runs in eval mode and without gradients so no running statistic (BatchNorm, DirectPred's F̂) moves."""
        self.method.eval()
        with torch.no_grad():
            probe, _ = self.augment(
                self.images[: min(4, len(self.images))], epoch_generator(self.cfg.seed, -1, self.device)
            )
            check_input_shape(self.method, probe)
        if lean_estimator(self.tcfg):
            self.method.enable_lean(probe)

    def fit(self) -> TrainState:
        """Train for ``trainer.max_epochs`` epochs (capped by ``trainer.max_steps``), checkpointing each epoch."""
        if self.tcfg.resume:
            self.state = self._resume()
        logger = RunLogger(self.run_dir, self.cfg.logger, self.cfg)
        # Pyro's argument and shape validation costs milliseconds a step: on for the first (shape) check
        # above, off for the loop unless trainer.validate asks for it.
        try:
            with pyro.validation_enabled(bool(self.tcfg.get("validate", False))):
                while self.state.epoch < self.tcfg.max_epochs and self.state.step < self.max_steps:
                    self.run_epoch(logger)
                    save_checkpoint(self.checkpoint_path, self.checkpoint())
        finally:
            logger.close()
        if not self.checkpoint_path.exists():  # a zero-epoch run still leaves the (untrained) weights it evaluated
            save_checkpoint(self.checkpoint_path, self.checkpoint())
        return self.state

    def run_epoch(self, logger: RunLogger) -> None:
        """One pass over a fresh permutation of the training images, drawn from the epoch's own generator.

        The step never waits for the device: the loss is summed on the device and read, with a check that
        it stayed finite, every ``trainer.log_every`` steps and at the end of the epoch (before any
        checkpoint is written), so logged step losses are means over their window.
        """
        tcfg, state, method = self.tcfg, self.state, self.method
        generator = epoch_generator(self.cfg.seed, state.epoch, self.device)
        method.before_epoch(self.images, generator, progress=tcfg.progress)
        order = torch.randperm(len(self.images), generator=generator, device=self.device)
        method.train()
        start = time.perf_counter()
        window = _Window(self.device, start)
        epoch_loss, epoch_steps = 0.0, 0
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {state.epoch + 1}/{tcfg.max_epochs}",
            unit="step",
            disable=not tcfg.progress,
            dynamic_ncols=True,
            leave=False,
        )
        for index in bar:
            if state.step >= self.max_steps:
                break
            batch_index = order[index * self.batch_size : (index + 1) * self.batch_size]
            loss, num_views = self.step(batch_index, generator)
            window.add(loss, num_views, state.step)
            state.step += 1
            if state.step % tcfg.log_every == 0:
                mean, speed = self._close_window(window)
                epoch_loss, epoch_steps = epoch_loss + mean * window.steps, epoch_steps + window.steps
                bar.set_postfix(loss=f"{mean:.4g}", views_per_s=f"{speed:.0f}")
                logger.log(
                    {
                        "kind": "step",
                        "epoch": state.epoch,
                        "step": state.step,
                        "loss": mean,
                        "samples_per_s": speed,
                        "lr": self.optimizer.param_groups[0]["lr"],
                    }
                )
                window = _Window(self.device, time.perf_counter())
        if window.steps:
            mean, _ = self._close_window(window)
            epoch_loss, epoch_steps = epoch_loss + mean * window.steps, epoch_steps + window.steps
        bar.close()
        state.epoch += 1
        record = {
            "kind": "epoch",
            "epoch": state.epoch,
            "step": state.step,
            "loss": epoch_loss / max(epoch_steps, 1),
            "seconds": time.perf_counter() - start,
            "samples_per_s": state.samples / max(state.seconds, 1e-9),
        }
        logger.log(record)
        if tcfg.progress:
            tqdm.write(f"epoch {state.epoch}: loss {record['loss']:.4f}, {record['seconds']:.1f}s")

    def _close_window(self, window: _Window) -> tuple[float, float]:
        """Wait for the device, check the window's losses were finite, count its time; (mean loss, views/s)."""
        mean, first_bad = window.read()
        elapsed = time.perf_counter() - window.start
        self.state.seconds += elapsed
        self.state.samples += window.views
        if first_bad >= 0:
            raise GensslError(
                f"The loss became non-finite at step {first_bad} (epoch {self.state.epoch + 1}); training stopped "
                f"and the last good checkpoint is kept. Lower trainer.optim.lr (now {self.tcfg.optim.lr}) or "
                "use trainer.precision=32."
            )
        return mean, window.views / max(elapsed, 1e-9)

    def step(self, batch_index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """Augment the batch and take one optimiser step on its −ELBO; returns (the loss, still on the device,
        and the number of views). Nothing here waits for the device."""
        tcfg, method, optimizer = self.tcfg, self.method, self.optimizer
        batch = self.images[batch_index]
        # No torch.device(...) context here: it intercepts every torch call (a few ms per step on small
        # networks); the augmentation and the models create their tensors on their inputs' device.
        views, _ = self.augment(batch, generator)
        with autocast(self.device, tcfg.precision):
            loss = method(views, batch_index)
        lr = self.lr_at(self.state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():  # float16: scale the loss against underflow
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        method.after_step(self.state.step / self.total_steps)
        return loss.detach(), views.shape[0] * views.shape[1]

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, ``pyro.param`` values, optimiser, progress, RNG, config."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = self.state
        return {
            "method": self.method.state_dict(),
            "extra_params": {name: p.detach().cpu() for name, p in self.extra.items()},
            "optimizer": self.optimizer.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "seconds": state.seconds,
            "samples": state.samples,
            "rng": rng,
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
        }

    def _resume(self) -> TrainState:
        path = self.checkpoint_path
        if not path.exists():
            raise ConfigError(
                f"trainer.resume=true but there is no checkpoint at {path}. Pass the run directory of "
                "the run to resume as hydra.run.dir=<dir>, or drop trainer.resume to start afresh."
            )
        checkpoint = load_checkpoint(path, map_location=self.device)
        self.method.restore_weights(checkpoint, self.extra)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
        if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in checkpoint["rng"]["cuda"]])
        return TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["seconds"], checkpoint["samples"])


class _Window:
    """Losses of the steps since the last log, summed on the device, and the first non-finite one."""

    def __init__(self, device: torch.device, start: float) -> None:
        self.start, self.steps, self.views = start, 0, 0
        self.total = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, loss: torch.Tensor, num_views: int, step: int) -> None:
        loss = loss.float()
        finite = torch.isfinite(loss)
        self.total += torch.where(finite, loss, 0.0)
        self.first_bad = torch.where(~finite & (self.first_bad < 0), step, self.first_bad)
        self.steps += 1
        self.views += num_views

    def read(self) -> tuple[float, int]:
        """(mean loss, first non-finite step or −1): one wait for the device."""
        values = torch.stack([self.total / max(self.steps, 1), self.first_bad.to(self.total.dtype)]).tolist()
        return values[0], int(values[1])


def train(cfg: DictConfig, method: PyroSSL, dataset: ImageDataset, device: torch.device, run_dir: Path) -> TrainState:
    """Train ``method`` for ``trainer.max_epochs`` epochs (capped by ``trainer.max_steps``)."""
    return Trainer(cfg, method, dataset, device, run_dir).fit()
