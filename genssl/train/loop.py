"""The training loop: batches of multi-view images through a method's ELBO, with checkpoints."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from genssl.data import ImageDataset, build_augment
from genssl.errors import ConfigError, GensslError
from genssl.inference.pyro_ssl import PyroSSL
from genssl.train.build import check_input_shape
from genssl.train.checkpoint import load_checkpoint, save_checkpoint
from genssl.train.loggers import RunLogger
from genssl.train.runtime import autocast, epoch_generator
from genssl.train.schedule import schedule_from_config

CHECKPOINT = Path("checkpoints") / "last.pt"


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0
    seconds: float = 0.0
    samples: int = 0  # views seen


def build_optimizer(params: list[torch.Tensor], optim_cfg: DictConfig) -> torch.optim.Optimizer:
    if optim_cfg.name == "adam":
        return torch.optim.Adam(params, lr=optim_cfg.lr, eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay)
    if optim_cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=optim_cfg.lr, eps=optim_cfg.eps, weight_decay=optim_cfg.weight_decay)
    raise ConfigError(f"Unknown optimiser '{optim_cfg.name}': trainer.optim.name must be 'adam' or 'adamw'.")


def train(cfg: DictConfig, method: PyroSSL, dataset: ImageDataset, device: torch.device, run_dir: Path) -> TrainState:
    """Train ``method`` for ``trainer.max_epochs`` epochs (capped by ``trainer.max_steps``)."""
    tcfg = cfg.trainer
    views_per_image = int(cfg.data.num_views)
    augment = build_augment(cfg.data.augment, views_per_image, dataset.image_size).to(device)
    images = dataset.train.images.to(device)
    batch_size = min(int(tcfg.batch_size), len(images))
    steps_per_epoch = len(images) // batch_size  # drop the ragged last batch: J-view batches stay full

    # One loss evaluation before the optimiser exists: shape errors surface early, and lazily created
    # parameters (pyro.param in a plain-function prior) exist before they are handed to the optimiser.
    # It runs in eval mode and without gradients so no running statistic (BatchNorm, DirectPred's F̂) moves.
    method.eval()
    with torch.device(device), torch.no_grad():
        probe, _ = augment(images[: min(4, len(images))], epoch_generator(cfg.seed, -1, device))
        check_input_shape(method, probe)
    extra = method.extra_parameters()
    trainable = [p for p in method.parameters() if p.requires_grad]  # EMA targets are not trained
    optimizer = build_optimizer([*trainable, *extra.values()], tcfg.optim)
    # Schedules (learning rate, EMA momentum) span the planned run; max_steps only stops it early.
    total_steps = max(tcfg.max_epochs * steps_per_epoch, 1)
    lr_at = schedule_from_config(tcfg.optim, steps_per_epoch, total_steps)  # a bad schedule fails here
    scaler = torch.amp.GradScaler(device.type, enabled=str(tcfg.precision) == "16")

    state = TrainState()
    ckpt_path = run_dir / CHECKPOINT
    if tcfg.resume:
        state = _resume(ckpt_path, method, extra, optimizer, device)

    logger = RunLogger(run_dir, cfg.logger, cfg)
    max_steps = tcfg.max_steps if tcfg.max_steps is not None else math.inf
    try:
        while state.epoch < tcfg.max_epochs and state.step < max_steps:
            _run_epoch(
                cfg,
                method,
                augment,
                images,
                optimizer,
                scaler,
                state,
                logger,
                device,
                batch_size,
                steps_per_epoch,
                max_steps,
                total_steps,
                lr_at,
            )
            save_checkpoint(ckpt_path, _checkpoint_state(cfg, method, extra, optimizer, state))
    finally:
        logger.close()
    if not ckpt_path.exists():  # a zero-epoch run still leaves the (untrained) weights it evaluated
        save_checkpoint(ckpt_path, _checkpoint_state(cfg, method, extra, optimizer, state))
    return state


def _run_epoch(
    cfg,
    method,
    augment,
    images,
    optimizer,
    scaler,
    state,
    logger,
    device,
    batch_size,
    steps_per_epoch,
    max_steps,
    total_steps,
    lr_at,
) -> None:
    tcfg = cfg.trainer
    generator = epoch_generator(cfg.seed, state.epoch, device)
    method.before_epoch(images, generator, progress=tcfg.progress)
    order = torch.randperm(len(images), generator=generator, device=device)
    method.train()
    epoch_loss, epoch_steps, start = 0.0, 0, time.perf_counter()
    bar = tqdm(
        range(steps_per_epoch),
        desc=f"epoch {state.epoch + 1}/{tcfg.max_epochs}",
        unit="step",
        disable=not tcfg.progress,
        dynamic_ncols=True,
        leave=False,
    )
    for index in bar:
        if state.step >= max_steps:
            break
        batch_index = order[index * batch_size : (index + 1) * batch_size]
        batch = images[batch_index]
        tick = time.perf_counter()
        with torch.device(device):
            views, _ = augment(batch, generator)
            with autocast(device, tcfg.precision):
                loss = method(views, batch_index)
        if not torch.isfinite(loss):
            raise GensslError(
                f"The loss became {loss.item()} at step {state.step} (epoch {state.epoch + 1}). "
                f"Lower trainer.optim.lr (now {tcfg.optim.lr}) or use trainer.precision=32."
            )
        lr = lr_at(state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        method.after_step(state.step / total_steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - tick
        state.step += 1
        state.seconds += elapsed
        num_views = views.shape[0] * views.shape[1]
        state.samples += num_views
        value = loss.item()
        epoch_loss, epoch_steps = epoch_loss + value, epoch_steps + 1
        speed = num_views / max(elapsed, 1e-9)
        bar.set_postfix(loss=f"{value:.4g}", views_per_s=f"{speed:.0f}")
        if state.step % tcfg.log_every == 0:
            logger.log(
                {
                    "kind": "step",
                    "epoch": state.epoch,
                    "step": state.step,
                    "loss": value,
                    "samples_per_s": speed,
                    "lr": optimizer.param_groups[0]["lr"],
                }
            )
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


def _checkpoint_state(
    cfg, method: PyroSSL, extra: dict[str, torch.Tensor], optimizer, state: TrainState
) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "method": method.state_dict(),
        "extra_params": {name: p.detach().cpu() for name, p in extra.items()},
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "samples": state.samples,
        "rng": rng,
        "config": OmegaConf.to_yaml(cfg, resolve=True),
    }


def restore_weights(method: PyroSSL, checkpoint: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
    """Load a checkpoint's module weights and ``pyro.param`` values into ``method``."""
    method.load_state_dict(checkpoint["method"])
    extra = method.extra_parameters() if extra is None else extra
    with torch.no_grad():
        for name, value in checkpoint.get("extra_params", {}).items():
            if name in extra:
                extra[name].copy_(value)


def _resume(path: Path, method, extra, optimizer, device) -> TrainState:
    if not path.exists():
        raise ConfigError(
            f"trainer.resume=true but there is no checkpoint at {path}. Pass the run directory of "
            "the run to resume as hydra.run.dir=<dir>, or drop trainer.resume to start afresh."
        )
    checkpoint = load_checkpoint(path, map_location=device)
    restore_weights(method, checkpoint, extra)
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in checkpoint["rng"]["cuda"]])
    return TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["seconds"], checkpoint["samples"])


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
