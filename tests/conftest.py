"""Shared fixtures: small configs, a helper to run the console scripts, and −ELBO at point-mass sites."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

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


def negative_elbo(
    terms, sites: dict[str, torch.Tensor], content: torch.Tensor | None = None, content_classes: int | None = None
) -> torch.Tensor:
    """−ELBO of ``ViewModel(terms, {name: width})`` with a hand-written Delta guide at ``sites``.

    ``sites`` maps each embedding site to its value [B, J, D] (the guide's point mass, event_dim 2);
    B and J come from the first site. ``content`` (with ``content_classes`` K) is DeepCluster's
    label y [B], held by a Delta under the model's uniform Categorical(1/K) prior.
    """
    from genssl.models import ViewModel  # here, so that tests not about models do not import them

    if (content is None) != (content_classes is None):
        raise ValueError("negative_elbo: pass content and content_classes together (the label y and its K).")
    batch, num_views = next(iter(sites.values())).shape[:2]

    def guide(views):
        with pyro.plate("images", views.shape[0]):
            for name, value in sites.items():
                pyro.sample(name, dist.Delta(value, event_dim=2))
            if content is not None:
                pyro.sample("y", dist.Delta(content))

    dims = {name: value.shape[-1] for name, value in sites.items()}
    model = ViewModel(terms, dims, content_classes=content_classes)
    return Trace_ELBO().differentiable_loss(model, guide, torch.empty(batch, num_views, 1))
