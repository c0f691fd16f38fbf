"""The global batch across the processes of a distributed run, with correct gradients.

Every term that couples the samples of a batch (an entropy or kernel estimate over the batch, VICReg's
and Barlow Twins' batch statistics, Sinkhorn–Knopp's normalisation, DINO's centre, DirectPred's F̂)
must see the *global* batch, or two processes of B/2 images would optimise another loss than one of
B. :func:`gather` concatenates every rank's tensor along the batch dimension; its backward
all-reduces (sums) the incoming gradient — each rank computed the same global term — and returns
this rank's slice. With the per-image terms averaged over the local images and DDP averaging the
gradients over ranks, 2 × B/2 then gives exactly the loss and gradients of one process on B. (A
gather without the all-reduce in its backward, the bug of lightly #1528 and #1923, gives each rank
only its share of the gradient: off by the world size.)

``trainer.gather=local`` turns the gathers off (each rank's terms see its own images only). They are off
too outside a distributed training loop (:func:`genssl.train.parallel.wrap` turns them on, the Trainer
off when it ends): code that runs on one rank only (checks, evaluation) must not wait for the others.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

_GLOBAL = False  # trainer.gather=global, set by the distributed Trainer while it trains


def set_mode(mode: str) -> None:
    """``global`` or ``local`` (see the module docstring)."""
    global _GLOBAL
    if mode not in ("global", "local"):
        raise ValueError(f"gather mode {mode!r}: choose 'global' or 'local'")
    _GLOBAL = mode == "global"


def active() -> bool:
    """Whether :func:`gather` gathers: a process group of more than one rank, in global mode."""
    return _GLOBAL and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim, ctx.size, ctx.rank = dim, x.shape[dim], dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size), None


def gather(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``x`` concatenated along ``dim`` (rank order), differentiable; ``x`` itself on one process.

    The ranks must hold the same shape (genssl's shards are equal)."""
    if not active():
        return x
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=dim)
    return _GatherWithGradient.apply(x, dim)


def local_slice(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """This rank's part of a gathered ``x`` (the inverse of :func:`gather` on values)."""
    if not active():
        return x
    size = x.shape[dim] // dist.get_world_size()
    return x.narrow(dim, dist.get_rank() * size, size)


def mean_over_ranks_(x: torch.Tensor) -> torch.Tensor:
    """In place: the mean of ``x`` over the ranks (statistics that must stay identical, e.g. DINO's centre)."""
    if active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


class _AllReduceWithGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank used the sum: each rank's share is its total
        return grad


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Σ over the ranks of ``x``, differentiable (batch statistics of a global BatchNorm); ``x`` on one process.

    Unlike :func:`gather` this ignores ``trainer.gather``: it serves ``trainer.sync_batchnorm``."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return x
    return _AllReduceWithGradient.apply(x)
