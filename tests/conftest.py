"""Shared fixtures: small configs and a helper to run the console scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Pyro's param store is global: clear it so tests do not see each other's parameters."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    yield
    pyro.clear_param_store()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run a genssl console script (e.g. ``genssl-train``) and capture its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd or REPO, env=full_env, text=True, capture_output=True, timeout=timeout
    )


# Tiny, fast training overrides used by the end-to-end tests.
TINY = ["trainer.progress=false", "trainer.num_threads=1", "logger=none"]
