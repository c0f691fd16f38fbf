"""Device, precision and seeding choices for a run."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pyro
import torch

from genssl.errors import ConfigError, choices

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def set_num_threads(num_threads: int | None) -> None:
    """Apply ``trainer.num_threads`` (None keeps torch's default): one thread per run is faster when
    several runs share a small machine, since oversubscribed torch threads spin against each other."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a device is visible, else the CPU."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.device={name} asks for a GPU, but PyTorch sees no CUDA device on this "
                "machine. Use trainer.device=auto (GPU when there is one) or trainer.device=cpu."
            )
        return torch.device(name)
    raise ConfigError(f"Unknown device '{name}': trainer.device must be 'auto', 'cpu' or 'cuda'.")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass (likelihoods are computed in float32 regardless)."""
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision '{precision}': trainer.precision must be {choices(PRECISIONS)}.")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("trainer.precision=16 needs a CUDA device; on the CPU use trainer.precision=bf16 or 32.")
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch (all devices) and Pyro."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator owned by one epoch, so a run resumed at an epoch boundary sees the same batches."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + epoch)
    return generator
