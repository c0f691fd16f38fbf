"""Training on several processes (``torchrun``, Slurm): DDP around the method, each rank its part of a batch.

The global batch is ``trainer.batch_size`` images; each of the W ranks takes B/W of them — its slice
of every batch of the epoch's permutation, which is the same on every rank (drawn from the epoch's
generator) — and augments them with its own stream (seeded from the seed, the epoch and the rank; rank
0's is the one-process stream). DDP averages the gradients; the terms that couple the batch see the
global one (:mod:`genssl.objectives.gather`), so 2 ranks × B/2 train as 1 process × B.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

import genssl.objectives.gather as gather_mod
from genssl.distributed import Processes
from genssl.errors import ConfigError
from genssl.objectives.gather import sum_over_ranks


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are the global batch's, on any backend (torch's SyncBatchNorm
    needs a GPU): the mean, then the centred second moment, summed over the ranks with gradients
    (:func:`~genssl.objectives.gather.sum_over_ranks`). On one process it is plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects [N, C, ...] input, got {input.dim()} dimensions")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        totals = sum_over_ranks(torch.cat([x.sum(dims), local_count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = sum_over_ranks(centred.pow(2).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` (in place, the EMA teachers' too) → torch's SyncBatchNorm on a GPU,
    :class:`GlobalBatchNorm` elsewhere, keeping its parameters (an optimiser built on them still holds them)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, (GlobalBatchNorm, nn.SyncBatchNorm)):
            new = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child, device)
    return module


def has_unused_parameters(method: nn.Module, views: torch.Tensor) -> bool:
    """Whether a loss on ``views`` leaves a trainable parameter without gradient (DDP must then look for
    them on every step). Run in eval mode, so no running statistic moves; the gradients are cleared."""
    was_training = method.training
    method.eval()
    try:
        method(views).backward()
        unused = any(p.grad is None for p in method.parameters() if p.requires_grad)
    finally:
        method.zero_grad(set_to_none=True)
        method.train(was_training)
    return unused


def wrap(
    method: nn.Module, tcfg: DictConfig, procs: Processes, device: torch.device, probe: torch.Tensor | None = None
) -> nn.Module:
    """The module the loop calls for the loss: ``method`` itself, or DDP around it (BatchNorm over the
    global batch first when ``trainer.sync_batchnorm``). ``probe``: a few views to find out whether some
    parameters go unused (else DDP assumes they may, at the cost of a graph traversal per step)."""
    if not procs.distributed:
        return method  # one process: BatchNorm already sees the whole batch
    if tcfg.get("sync_batchnorm", False):
        convert_batchnorm(method, device)
    gather_mod.set_mode("local")  # the probe runs on this rank's views alone
    find_unused = True if probe is None else has_unused_parameters(method, probe)
    gather_mod.set_mode(str(tcfg.get("gather", "global")))
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(method, device_ids=device_ids, find_unused_parameters=find_unused)


def broadcast_(tensors: list[torch.Tensor], procs: Processes) -> None:
    """Rank 0's values of ``tensors`` on every rank (the ``pyro.param`` parameters DDP does not own)."""
    if procs.distributed:
        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)


def average_gradients_(tensors: list[torch.Tensor], procs: Processes) -> None:
    """The mean over the ranks of each tensor's gradient, as DDP does for the module's parameters."""
    if not procs.distributed:
        return
    for tensor in tensors:
        if tensor.grad is None:
            tensor.grad = torch.zeros_like(tensor)  # every rank must join the same all-reduces
        dist.all_reduce(tensor.grad)
        tensor.grad /= procs.world_size


def local_batch_size(global_batch: int, procs: Processes) -> int:
    """Images per rank per step; the global batch must split evenly."""
    if global_batch % procs.world_size:
        raise ConfigError(
            f"trainer.batch_size={global_batch} is the global batch and must split evenly over the "
            f"{procs.world_size} processes: use a multiple of {procs.world_size}."
        )
    return global_batch // procs.world_size


def rank_order(order: torch.Tensor, global_batch: int, steps: int, procs: Processes) -> torch.Tensor:
    """This rank's images of the epoch: its contiguous share of each of the ``steps`` global batches of
    ``order`` (the ragged rest dropped), so its local batch b is part of global batch b on every rank."""
    if not procs.distributed:
        return order
    local = global_batch // procs.world_size
    return order[: steps * global_batch].view(steps, procs.world_size, local)[:, procs.rank].reshape(-1)


def augment_generator(epoch_generator: torch.Generator, seed: int, epoch: int, procs: Processes) -> torch.Generator:
    """Rank 0 augments with the epoch's generator (the one-process stream), rank r with its own."""
    if procs.rank == 0:
        return epoch_generator
    generator = torch.Generator(device=epoch_generator.device)
    generator.manual_seed((seed * 1_000_003 + epoch) * 1_009 + procs.rank)
    return generator


def seed_rank_noise(seed: int, procs: Processes) -> None:
    """Rank r > 0 draws its in-step noise (MAE's masks, the VAE's reparameterisation, random features) from
    its own stream: with one seed on every rank, image i of rank 0 and image i of rank 1 would share them."""
    if procs.rank > 0:
        torch.manual_seed((int(seed) * 1_000_003 + 7_919) * 1_009 + procs.rank)


def reduce_sum(values: list[float], procs: Processes, device: torch.device) -> list[float]:
    """Each value summed over the ranks (the loss window, the views seen, a stop request)."""
    if not procs.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
