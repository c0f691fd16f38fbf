"""Processes of a distributed run: torchrun's or Slurm's environment → ``torch.distributed``.

``genssl-train`` under ``torchrun --nproc_per_node=N`` (or one Slurm task per GPU, the rendezvous
taken from Slurm's environment) starts one process per device; :func:`setup` joins them into one
process group (NCCL on GPUs, gloo on CPUs). Rank 0 writes the run's files; the others wait at
barriers. Without that environment everything here is a no-op on one process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Processes()


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compressed host list (``node[01-03,07],gpu5``, ``rack[1-2]-n[1-2]``) → host names."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(hostlist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(hostlist[start:i])
            start = i + 1
    parts.append(hostlist[start:])
    return [host for part in parts if part.strip() for host in _expand_one(part.strip())]


def _expand_one(pattern: str) -> list[str]:
    match = re.match(r"([^\[]*)\[([^\]]*)\](.*)", pattern)
    if not match:
        return [pattern]
    prefix, ranges, rest = match.groups()
    names = []
    for item in ranges.split(","):
        first, _, last = item.partition("-")
        if last:
            names += [f"{i:0{len(first)}d}" for i in range(int(first), int(last) + 1)]
        else:
            names.append(item)
    return [prefix + name + tail for name in names for tail in _expand_one(rest)]


def slurm_rendezvous(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables from one Slurm task's environment (one task per GPU).

    MASTER_ADDR is the job's first node, MASTER_PORT a port derived from the job id (so concurrent
    jobs on a node do not collide), RANK/WORLD_SIZE/LOCAL_RANK the task's SLURM_PROCID/SLURM_NTASKS/
    SLURM_LOCALID. Variables already set (torchrun inside Slurm) are kept.
    """
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost"
    job = int(env.get("SLURM_JOB_ID", "0") or 0)
    mapping = {
        "MASTER_ADDR": expand_hostlist(nodes)[0],
        "MASTER_PORT": str(20000 + job % 20000),
        "RANK": env.get("SLURM_PROCID", "0"),
        "WORLD_SIZE": env.get("SLURM_NTASKS", "1"),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
    }
    return {key: env.get(key, value) for key, value in mapping.items()}


def slurm_restarts(env: Mapping[str, str] | None = None) -> int:
    """How often Slurm requeued this job (after preemption or a time-out): SLURM_RESTART_COUNT, else 0."""
    env = os.environ if env is None else env
    try:
        return max(int(env.get("SLURM_RESTART_COUNT", "0") or 0), 0)
    except ValueError:
        return 0


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The rendezvous variables of this process: torchrun's, else Slurm's (several tasks), else none."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k in env}
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return slurm_rendezvous(env)
    return {}


def setup() -> Processes:
    """Join the process group described by the environment (idempotent); :data:`SINGLE` without one.

    With CUDA the group has two backends, NCCL for GPU tensors and gloo for CPU ones (so a run with
    ``trainer.device=cpu`` on a GPU node works too); without, gloo alone."""
    if dist.is_available() and dist.is_initialized():
        return processes()
    variables = environment()
    world = int(variables.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    os.environ.update(variables)
    local = int(variables.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), local)


def device_for(device: torch.device, procs: Processes) -> torch.device:
    """This rank's device: ``cuda:<local rank>`` (modulo the GPUs it sees) for a CUDA run on several ranks."""
    if device.type != "cuda" or not procs.distributed:
        return device
    return torch.device("cuda", procs.local_rank % torch.cuda.device_count())


def shutdown() -> None:
    """Leave the process group (at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def processes() -> Processes:
    """This process's place (without joining anything)."""
    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return SINGLE


def barrier() -> None:
    if processes().distributed:
        dist.barrier()


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank."""
    if not processes().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not processes().distributed:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
