"""Pyro's ELBOs at hand-written speed: the same model and guide, run under one light effect handler.

Pyro's ``Trace_ELBO`` records each program with ``poutine.trace`` (a graph of dict-heavy site
records), replays the guide into the model with ``poutine.replay``, and sums log-densities through
its generic trace machinery and checks. For the small step of a small network that machinery costs
more than the network. :class:`LeanELBO` runs the *same* Pyro programs (``pyro.sample``,
``pyro.plate``, ``poutine.scale``, ``pyro.factor`` as written) under a single handler,
:class:`SiteRecorder`, which records the sample sites as a flat dict and gives the model the
guide's values, then sums

    ELBO = Σ_model sites scale·log p − Σ_guide sites scale·log q

with what Pyro's estimators do at each site: point-mass (Delta) guide sites contribute log q = 0;
``meanfield`` uses the analytic KL(q ‖ p) wherever torch has one; one guide-side enumerated discrete
site (a categorical q(y) over K classes, ``infer={"enumerate": "parallel"}``) is summed exactly,
E_q[f(y)] = Σ_k q_k f(k), over the model terms that depend on it.

:class:`PyroSSL` checks the lean loss against Pyro's own estimator on the first step (value and
structure) and falls back to Pyro's for anything outside this (model-side enumeration, several
enumerated sites), so a model of the user's own is never evaluated wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions import Delta
from pyro.poutine.messenger import Messenger
from torch.distributions import kl_divergence
from torch.distributions.kl import _dispatch_kl

MAX_PLATE_NESTING = 2  # genssl's models nest at most two plates (images, anchors)


class Unsupported(Exception):
    """The programs use a feature the lean estimator does not implement; use Pyro's."""


class SiteRecorder(Messenger):
    """Records every sample site (fn, value, scale, mask, infer) by name; with ``replay`` it gives the
    model the guide's value at each site the guide proposed; in the guide it enumerates the sites
    marked ``infer={"enumerate": "parallel"}`` (values of shape [K, 1, …, 1], the enumeration dim in
    front of the plates)."""

    def __init__(self, replay: dict[str, dict[str, Any]] | None = None, enumerate_sites: bool = False) -> None:
        super().__init__()
        self.sites: dict[str, dict[str, Any]] = {}
        self.replay = replay
        self.enumerate_sites = enumerate_sites

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["is_observed"]:
            return
        if self.replay is not None:
            guide_site = self.replay.get(msg["name"])
            if guide_site is not None:
                msg["value"] = guide_site["value"]
                msg["done"] = True
            elif msg["infer"].get("enumerate"):
                raise Unsupported(f"model-side enumeration at site '{msg['name']}'")
            return
        if self.enumerate_sites and msg["infer"].get("enumerate") == "parallel":
            support = msg["fn"].enumerate_support(expand=False)
            msg["value"] = support.reshape(support.shape[0], *([1] * MAX_PLATE_NESTING))
            msg["done"] = True
            msg["infer"]["_enumerated"] = True

    def _pyro_post_sample(self, msg: dict[str, Any]) -> None:
        if type(msg["fn"]).__name__ == "_Subsample":  # a plate's index site
            return
        self.sites[msg["name"]] = {
            "fn": msg["fn"],
            "value": msg["value"],
            "scale": msg["scale"],
            "mask": msg["mask"],
            "is_observed": msg["is_observed"],
            "enumerated": bool(msg["infer"].get("_enumerated")),
        }


def _scaled_sum(log_prob: torch.Tensor, site: dict[str, Any], weights: torch.Tensor | None = None) -> torch.Tensor:
    mask = site["mask"]
    if mask is not None and mask is not True:
        log_prob = torch.where(mask, log_prob, log_prob.new_zeros(()))
    if weights is not None:
        log_prob = weights * log_prob
    total = log_prob.sum()
    scale = site["scale"]
    return total if isinstance(scale, float) and scale == 1.0 else total * scale


class LeanELBO:
    """−ELBO of (model, guide) on the same Pyro programs; ``analytic_kl`` gives the mean-field estimator."""

    def __init__(self, analytic_kl: bool = False) -> None:
        self.analytic_kl = analytic_kl

    def traces(self, model: Callable, guide: Callable, *args: Any) -> tuple[dict, dict]:
        """The guide's and the model's recorded sites for one evaluation."""
        with SiteRecorder(enumerate_sites=True) as guide_recorder:
            guide(*args)
        with SiteRecorder(replay=guide_recorder.sites) as model_recorder:
            model(*args)
        return guide_recorder.sites, model_recorder.sites

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any) -> torch.Tensor:
        guide_sites, model_sites = self.traces(model, guide, *args)
        return -self.elbo(guide_sites, model_sites)

    def elbo(self, guide_sites: dict, model_sites: dict) -> torch.Tensor:
        """Σ model scale·log p − Σ guide scale·log q at the recorded values (see the module docstring)."""
        enumerated = [name for name, site in guide_sites.items() if site["enumerated"]]
        if len(enumerated) > 1:
            raise Unsupported(f"several enumerated sites {enumerated}")
        weights = None
        if enumerated:
            fn = guide_sites[enumerated[0]]["fn"]
            if not hasattr(fn, "probs"):
                raise Unsupported(f"enumerated site '{enumerated[0]}' is not categorical")
            weights = fn.probs.movedim(-1, 0)  # [K, plates…]: q(y = k) over each plate element
        total = None
        handled_kl: set[str] = set()
        if self.analytic_kl:
            for name, site in model_sites.items():
                guide_site = guide_sites.get(name)
                if guide_site is None or site["is_observed"] or guide_site["enumerated"]:
                    continue
                if _dispatch_kl(type(guide_site["fn"]), type(site["fn"])) is NotImplemented:
                    continue
                term = -_scaled_sum(kl_divergence(guide_site["fn"], site["fn"]), site)
                total = term if total is None else total + term
                handled_kl.add(name)
        for name, site in model_sites.items():
            if name in handled_kl:
                continue
            log_p = site["fn"].log_prob(site["value"])
            depends = weights is not None and log_p.dim() > MAX_PLATE_NESTING
            term = _scaled_sum(log_p, site, weights if depends else None)
            total = term if total is None else total + term
        for name, site in guide_sites.items():
            if name in handled_kl or isinstance(site["fn"], Delta):
                continue  # a point mass at its own value has log q = 0
            if not site["enumerated"] and not site["fn"].has_rsample:
                raise Unsupported(f"the non-reparameterised guide site '{name}' (it needs a score-function term)")
            log_q = site["fn"].log_prob(site["value"])
            term = _scaled_sum(log_q, site, weights if site["enumerated"] else None)
            total = -term if total is None else total - term
        if total is None:
            raise Unsupported("the programs sample nothing")
        return total
