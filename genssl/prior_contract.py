"""The prior contract: what a prior must do, its optional parts, and the one place models and guides call them.

A prior is a Pyro callable ``prior(batch_size, latent_dim)`` that samples site "y" inside the
model's plates. It may also offer, all optional:

- ``global_latents()``: called by the model once per step *outside* the plates, for the prior's own
  global latents (e.g. a shared scale ``s ~ LogNormal``, stored on the prior and read by ``forward``);
- ``global_guide()``: called by the guide outside the plates — the guide of those global latents;
- ``guide(batch_size, latent_dim)``: called by the guide inside the same plates as ``forward``,
  for per-image latents of the prior's own (other than "y", which the method's guide proposes);
- ``class_log_probs(num_classes)``: log π of a prior over K classes (else read off its "y" site).

A prior's discrete latents without a guide (a mixture component) are enumerated exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro import poutine

Prior = Callable[[int, int], torch.Tensor]


def run_prior_globals(prior: Prior) -> None:
    """The model side of the prior's global latents, if it has any."""
    hook = getattr(prior, "global_latents", None)
    if hook is not None:
        hook()


def run_prior_global_guide(prior: Prior) -> None:
    """The guide of the prior's global latents, if it brings one."""
    hook = getattr(prior, "global_guide", None)
    if hook is not None:
        hook()


def run_prior_guide(prior: Prior, batch_size: int, latent_dim: int) -> None:
    """The guide of the prior's per-image latents (inside the model's plates), if it brings one."""
    hook = getattr(prior, "guide", None)
    if hook is not None:
        hook(batch_size, latent_dim)


def prior_class_log_probs(prior: Prior, num_classes: int) -> torch.Tensor | None:
    """log π [K] of a prior over K classes; None for the uniform one (the methods' own marginal).

    A prior without ``class_log_probs`` is traced once (its own latents drawn, the RNG left alone)
    and π read off its "y" site's distribution.
    """
    hook = getattr(prior, "class_log_probs", None)
    if hook is not None:
        return hook(num_classes)
    with torch.random.fork_rng(devices=[]), poutine.block(), torch.no_grad():
        trace = poutine.trace(_in_one_image(prior)).get_trace(num_classes)
    fn = trace.nodes["y"]["fn"]
    values = torch.arange(num_classes)
    log_p = fn.log_prob(values.reshape(-1, *([1] * len(fn.batch_shape)))).reshape(num_classes, -1)[:, 0]
    return torch.log_softmax(log_p, dim=0).detach()


def _in_one_image(prior: Prior) -> Callable[[int], torch.Tensor]:
    def one(num_classes: int) -> torch.Tensor:
        run_prior_globals(prior)
        # Its own plate name: this runs inside the model's and the guide's "images" plates.
        with pyro.plate("_class_marginal", 1):
            return prior(1, num_classes)

    return one
