"""The training loop: batches of multi-view images through a method's ELBO, with checkpoints.

:class:`Trainer` holds what one run needs (method, data on the device, optimiser, schedule, logger,
progress) and :func:`train` runs it. The loop talks to the method through its loss and the hooks of
:class:`~genssl.inference.hooks.TrainingHooks` only.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from genssl.data import BatchStream, ImageDataset, build_augment
from genssl.distributed import all_gather_objects, barrier, processes
from genssl.errors import ConfigError, GensslError
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods import check_input_shape
from genssl.objectives.gather import set_mode as gather_mode
from genssl.runfiles import read_checkpoint, remove_stale_temporaries, save_checkpoint
from genssl.runtime import autocast, epoch_generator
from genssl.train import parallel
from genssl.train.accelerate import accelerate
from genssl.train.loggers import RunLogger
from genssl.train.schedule import schedule_from_config
from genssl.train.state import (
    EpochPosition,
    TrainState,
    checkpoint_payload,
    non_finite_parameters,
    restore,
    truncate_metrics,
)

CHECKPOINT = Path("checkpoints") / "last.pt"


class Stopped(Exception):
    """Training was asked to stop (Ctrl-C, SIGTERM) and did so at a step boundary, after a checkpoint."""


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
        self.procs = processes()
        self.augment = build_augment(cfg.data.augment, int(cfg.data.num_views), dataset.image_size).to(device)
        self.images = dataset.train.images.to(device)
        # trainer.batch_size is the global batch: every rank takes its share of it (parallel.py).
        self.batch_size = min(int(tcfg.batch_size), len(self.images))
        self.local_batch = parallel.local_batch_size(self.batch_size, self.procs)
        self.steps_per_epoch = len(self.images) // self.batch_size  # drop the ragged last batch: batches stay full
        self.accelerated = accelerate(method, tcfg)
        probe = self._check_shapes()
        self.loss_module = parallel.wrap(method, tcfg, self.procs, device, probe)
        parallel.seed_rank_noise(cfg.seed, self.procs)
        self.extra = method.extra_parameters()
        self._extra_list = list(self.extra.values())  # pyro.param parameters: DDP does not see them
        parallel.broadcast_(self._extra_list, self.procs)
        trainable = [p for p in method.parameters() if p.requires_grad]  # EMA targets are not trained
        self.optimizer = build_optimizer([*trainable, *self.extra.values()], tcfg.optim)
        # Schedules (learning rate, EMA momentum) span the planned run; max_steps only stops it early.
        self.total_steps = max(tcfg.max_epochs * self.steps_per_epoch, 1)
        self.lr_at: Callable[[int], float] = schedule_from_config(tcfg.optim, self.steps_per_epoch, self.total_steps)
        # Read once: an OmegaConf attribute costs tens of microseconds, a step of a small network ~1 ms.
        self.precision, self.log_every = str(tcfg.precision), int(tcfg.log_every)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "16")
        self.max_steps = tcfg.max_steps if tcfg.max_steps is not None else math.inf
        self.checkpoint_path = run_dir / CHECKPOINT
        self.run_dir = run_dir
        self.state = TrainState()
        self._batches: BatchStream | None = None
        self._stop_requested = self._stop_agreed = False

    def _check_shapes(self) -> torch.Tensor:
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
            compiled = "trainer.compile compiles the networks instead" if self.tcfg.get("compile", False) else None
            self.method.enable_replay(bool(self.tcfg.get("replay", True)), held_back_by=compiled)
        return probe

    def fit(self) -> TrainState:
        """Train for ``trainer.max_epochs`` epochs (capped by ``trainer.max_steps``), checkpointing each epoch.

        Ctrl-C or SIGTERM finishes the current step, writes a checkpoint of the exact position (mid-epoch
        included) and raises :class:`Stopped`; ``trainer.resume=true`` continues from it.
        """
        if self.procs.main:
            self._prepare_run_dir()
        barrier()
        position = None
        if self.tcfg.resume:
            self.state, position = self._resume()
        barrier()  # every rank has read the checkpoint (and rank 0 cut metrics.jsonl back) before any writes
        logger = RunLogger(self.run_dir, self.cfg.logger, self.cfg, enabled=self.procs.main)
        self._stop_requested = self._stop_agreed = False
        handlers = self._catch_stop_signals()
        # Pyro's argument and shape validation costs milliseconds a step: on for the first (shape) check
        # above, off for the loop unless trainer.validate asks for it.
        try:
            gather_mode(str(self.tcfg.get("gather", "global")))
            with pyro.validation_enabled(bool(self.tcfg.get("validate", False))):
                while self.state.epoch < self.tcfg.max_epochs and self.state.step < self.max_steps:
                    stopped_at = self.run_epoch(logger, position)
                    position = None
                    self.save(stopped_at)
                    if stopped_at is not None:
                        raise Stopped(f"stopped at step {self.state.step} (epoch {self.state.epoch + 1})")
        finally:
            gather_mode("local")  # what runs after training (evaluation) runs on rank 0 alone
            if self._batches is not None:
                self._batches.close()
            logger.close()
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
        if not self.checkpoint_path.exists():  # a zero-epoch run still leaves the (untrained) weights it evaluated
            self.save()
        return self.state

    def _catch_stop_signals(self) -> dict[int, object]:
        """SIGINT and SIGTERM ask the loop to stop after the current step (a second Ctrl-C stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def request_stop(signum: int, frame: object) -> None:
            if self._stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_requested = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
        return previous

    def _prepare_run_dir(self) -> None:
        """Remove what an interrupted write left behind; with ``trainer.overwrite``, the previous run's files."""
        remove_stale_temporaries(self.checkpoint_path.parent)
        remove_stale_temporaries(self.run_dir)
        if self.tcfg.get("overwrite", False) and not self.tcfg.resume:
            for name in ("checkpoints", "eval"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
            for name in ("metrics.jsonl", "metrics.json"):
                (self.run_dir / name).unlink(missing_ok=True)

    def save(self, position: EpochPosition | None = None) -> None:
        """Write ``checkpoints/last.pt`` atomically, never with non-finite weights (the last good one stays)."""
        bad = non_finite_parameters(self.method)
        if bad:
            raise GensslError(
                f"Training diverged: {len(bad)} weights are NaN or infinite (e.g. {bad[0]}) at step {self.state.step}; "
                f"no checkpoint was written and the last good one is kept. Lower trainer.optim.lr (now "
                f"{self.tcfg.optim.lr}) or use trainer.precision=32."
            )
        if self.procs.main:
            save_checkpoint(self.checkpoint_path, self.checkpoint(position))
        barrier()

    def run_epoch(self, logger: RunLogger, position: EpochPosition | None = None) -> EpochPosition | None:
        """One pass over a fresh permutation of the training images, drawn from the epoch's own generator
        (or the rest of a stopped epoch, from ``position``); returns the position where a stop request
        ended it early, else None.

        The step never waits for the device: the loss is summed on the device and read, with a check that
        it stayed finite, every ``trainer.log_every`` steps and at the end of the epoch (before any
        checkpoint is written), so logged step losses are means over their window.
        """
        tcfg, state, method = self.tcfg, self.state, self.method
        generator = epoch_generator(self.cfg.seed, state.epoch, self.device)
        if position is None:
            method.before_epoch(self.images, generator, progress=tcfg.progress)
            order = torch.randperm(len(self.images), generator=generator, device=self.device)
            first = 0
        else:  # the epoch's start (its k-means labels included) is in the restored weights and state
            generator.set_state(position.generator_state.to(generator.get_state().device))
            order, first = position.order.to(self.device), position.steps_done
        method.train()
        start = time.perf_counter()
        window = _Window(self.device, start)
        epoch_loss, epoch_steps = 0.0, 0
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=first,
            desc=f"epoch {state.epoch + 1}/{tcfg.max_epochs}",
            unit="step",
            disable=not tcfg.progress,
            dynamic_ncols=True,
            leave=False,
        )
        stopped_at = None
        augment_generator = parallel.augment_generator(generator, self.cfg.seed, state.epoch, self.procs)
        if position is not None and position.rank_generator_states:
            augment_generator.set_state(position.rank_generator_states[self.procs.rank])
        # This rank's images of every global batch of the epoch, decoded ahead by the stream's workers
        # when the images are files (data=image_folder), indexed in memory otherwise.
        rank_order = parallel.rank_order(order, self.batch_size, self.steps_per_epoch, self.procs)
        stream = self._stream(rank_order, first)
        for index, (batch_index, batch) in enumerate(stream, start=first):
            if state.step >= self.max_steps:
                break
            if self._should_stop():
                stopped_at = EpochPosition(order, index, generator.get_state(), self._rank_states(augment_generator))
                break
            loss, num_views = self.step(batch_index, augment_generator, batch)
            window.add(loss, num_views, state.step)
            state.step += 1
            bar.update()
            if state.step % self.log_every == 0:
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
        if stopped_at is not None:
            return stopped_at
        state.epoch += 1
        record = {
            "kind": "epoch",
            "epoch": state.epoch,
            "step": state.step,
            "loss": epoch_loss / max(epoch_steps, 1),
            "seconds": time.perf_counter() - start,
            "samples_per_s": state.samples / max(state.seconds, 1e-9),
            "estimator": self.method.estimator,
        }
        logger.log(record)
        if tcfg.progress:
            tqdm.write(f"epoch {state.epoch}: loss {record['loss']:.4f}, {record['seconds']:.1f}s")
        return None

    def _close_window(self, window: _Window) -> tuple[float, float]:
        """Wait for the device, check the window's losses were finite, count its time; (mean loss, views/s).
        With several ranks the loss is the mean over them and the views their sum."""
        mean, first_bad = window.read()
        mean, bad, views, stop = parallel.reduce_sum(
            [mean / self.procs.world_size, float(first_bad >= 0), float(window.views), float(self._stop_requested)],
            self.procs,
            self.device,
        )
        self._stop_agreed = stop > 0
        first_bad = first_bad if first_bad >= 0 else (window.first_step if bad else -1)
        elapsed = time.perf_counter() - window.start
        self.state.seconds += elapsed
        self.state.samples += int(views)
        window.views = int(views)
        if first_bad >= 0:
            raise GensslError(
                f"The loss became non-finite at step {first_bad} (epoch {self.state.epoch + 1}); training stopped "
                f"and the last good checkpoint is kept. Lower trainer.optim.lr (now {self.tcfg.optim.lr}) or "
                "use trainer.precision=32."
            )
        return mean, window.views / max(elapsed, 1e-9)

    def _should_stop(self) -> bool:
        """A stop request, on one process at once; with several, once the ranks agreed on it at a log step
        (a request on any rank stops every rank, at the same step)."""
        return self._stop_agreed if self.procs.distributed else self._stop_requested

    def _stream(self, rank_order: torch.Tensor, first: int) -> BatchStream:
        """The epoch's batches (one stream per run, so file-decoding workers persist across epochs)."""
        if self._batches is None:
            self._batches = BatchStream(self.images, rank_order, self.local_batch, device=self.device, start=first)
        return self._batches.set_order(rank_order, first)

    def _rank_states(self, augment_generator: torch.Generator) -> list[torch.Tensor] | None:
        """Every rank's augmentation-generator state (rank 0's is the epoch generator's), for a stopped run."""
        if not self.procs.distributed:
            return None
        return [torch.as_tensor(s) for s in all_gather_objects(augment_generator.get_state().cpu())]

    def step(
        self, batch_index: torch.Tensor, generator: torch.Generator, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """Augment the batch (the images ``batch_index``, given or read here) and take one optimiser step on
        its −ELBO; returns (the loss, still on the device, and the number of views). Nothing here waits for
        the device."""
        tcfg, method, optimizer = self.tcfg, self.method, self.optimizer
        batch = self.images[batch_index] if batch is None else batch
        # No torch.device(...) context here: it intercepts every torch call (a few ms per step on small
        # networks); the augmentation and the models create their tensors on their inputs' device.
        views, _ = self.augment(batch, generator)
        try:
            with autocast(self.device, self.precision):
                loss = self.loss_module(views, batch_index)
        except ValueError as err:  # Pyro's validation (trainer.validate) meeting NaN weights: a divergence
            if "invalid values" not in str(err) and "nan" not in str(err).lower():
                raise
            raise GensslError(
                f"Training diverged at step {self.state.step}: {str(err).splitlines()[0]} The last good checkpoint "
                f"is kept. Lower trainer.optim.lr (now {tcfg.optim.lr}) or use trainer.precision=32."
            ) from None
        lr = self.lr_at(self.state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():  # float16: scale the loss against underflow
            self.scaler.scale(loss).backward()
            parallel.average_gradients_(self._extra_list, self.procs)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            parallel.average_gradients_(self._extra_list, self.procs)
            optimizer.step()
        method.after_step(self.state.step / self.total_steps)
        return loss.detach(), views.shape[0] * views.shape[1]

    def checkpoint(self, position: EpochPosition | None = None) -> dict:
        """Everything a resumed run needs (:func:`~genssl.train.state.checkpoint_payload`)."""
        config = OmegaConf.to_yaml(self.cfg, resolve=True)
        return checkpoint_payload(self.method, self.extra, self.optimizer, self.state, config, position)

    def _resume(self) -> tuple[TrainState, EpochPosition | None]:
        path = self.checkpoint_path
        if not path.exists():
            raise ConfigError(
                f"trainer.resume=true but there is no checkpoint at {path}. Pass the run directory of "
                "the run to resume as hydra.run.dir=<dir>, or drop trainer.resume to start afresh."
            )
        state, position = restore(read_checkpoint(path, map_location=self.device), self.method, self.extra,
                                  self.optimizer)  # fmt: skip
        if self.procs.main:
            truncate_metrics(self.run_dir / "metrics.jsonl", state)
        return state, position


class _Window:
    """Losses of the steps since the last log, summed on the device, and the first non-finite one."""

    def __init__(self, device: torch.device, start: float) -> None:
        self.start, self.steps, self.views = start, 0, 0
        self.first_step = -1
        self.total = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, loss: torch.Tensor, num_views: int, step: int) -> None:
        if self.first_step < 0:
            self.first_step = step
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
