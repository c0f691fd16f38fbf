"""``model.prior``: build it, check it fits the method's content latent, and decide how its latents are inferred.

Every family has a content latent y in one of three spaces — R^d (generative, VICReg, Barlow Twins,
spectral), the sphere S^{d−1} (contrastive and distillation) or K classes (SwAV, DINO, DeepCluster)
— and takes the priors of that space. A prior written for R^d also composes with the sphere
families: y is then a unit vector (the guide's estimate is one view's unit embedding) and the prior
acts as an unnormalised density on the sphere. Anything else fails here with the priors that fit.

A prior of the user's own is dry-run once on a tiny batch: its space is read off the support of
its "y" site, and its discrete latents without a guide (a mixture component) are marked for exact
enumeration, which needs ``model.elbo=enum``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import hydra
import pyro
import torch
from hydra._internal.utils import _locate
from pyro import poutine
from pyro.distributions import constraints
from pyro.poutine.messenger import Messenger

from genssl.errors import ConfigError, choices
from genssl.methods.components import instantiation_error, plain
from genssl.models import BUILTIN_PRIORS
from genssl.prior_contract import run_prior_global_guide, run_prior_globals, run_prior_guide

# The built-in priors that fit each space, for error messages (a user's own prior fits by its support).
SPACE_PRIORS = {
    "euclidean": ("normal", "flat", "mog"),
    "sphere": ("uniform", "vmf_mixture", "normal", "flat", "mog"),
    "classes": ("uniform", "power_law", "class_marginal"),
}
SPACE_WORDS = {
    "euclidean": "R^{d}",
    "sphere": "the unit sphere in R^{d}",
    "classes": "the {d} prototypes / clusters {{0, …, {last}}}",
}
# Spaces whose priors a family's content latent accepts: R^d priors also act on the sphere.
ACCEPTS = {"euclidean": ("euclidean",), "sphere": ("sphere", "euclidean"), "classes": ("classes",)}


def build_prior(prior_cfg: Mapping[str, Any] | str, latent_dim: int) -> Callable:
    """Instantiate ``model.prior``: a built-in name or a ``_target_`` dotted path with its kwargs.

    A built-in named by a plain string gets the latent size when its constructor takes one. A
    ``_target_`` that is a plain function (e.g. one using ``pyro.param``) is the prior itself: its
    kwargs are bound with ``functools.partial``, no ``_partial_`` needed.
    """
    prior_cfg = plain(prior_cfg)
    if isinstance(prior_cfg, str):
        return _builtin(prior_cfg, latent_dim)
    target = prior_cfg.get("_target_") if isinstance(prior_cfg, Mapping) else None
    if not target:
        raise ConfigError(
            f"model.prior={prior_cfg!r} names no prior: give one of {choices(BUILTIN_PRIORS)} "
            "or model.prior._target_=<module.Callable>."
        )
    kwargs = {k: v for k, v in prior_cfg.items() if k != "_target_"}
    try:
        obj = _locate(target)  # not hydra.utils.get_object, which also logs the failure to stderr
        if inspect.isfunction(obj) and not kwargs.get("_partial_"):
            return functools.partial(obj, **kwargs) if kwargs else obj
        return hydra.utils.instantiate(prior_cfg, **_size_arguments(obj, kwargs, latent_dim))
    except Exception as err:  # hydra wraps import and signature errors in its own exception types
        raise ConfigError(
            f"Could not build the prior model.prior._target_='{target}' with arguments {kwargs}: "
            f"{instantiation_error(err)}. A prior is a Pyro callable prior(batch_size, latent_dim) importable "
            f"from the current directory or an installed package, or a built-in: {choices(BUILTIN_PRIORS)} "
            "(model.prior=<name>)."
        ) from None


def _size_arguments(obj: Any, given: Mapping[str, Any], latent_dim: int) -> dict[str, int]:
    """``latent_dim`` / ``num_classes`` for a prior class whose constructor takes it and was not given one:
    the builder knows the content latent's size, so prior configs need not repeat it."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}
    return {size: latent_dim for size in ("latent_dim", "num_classes") if size in params and size not in given}


def _builtin(name: str, latent_dim: int) -> Callable:
    if name not in BUILTIN_PRIORS:
        raise ConfigError(
            f"Unknown prior '{name}': model.prior must be {choices(BUILTIN_PRIORS)} or "
            "model.prior._target_=<module.Callable> for a prior of your own."
        )
    prior_class = BUILTIN_PRIORS[name]
    try:
        return prior_class(**_size_arguments(prior_class, {}, latent_dim))
    except TypeError as err:
        raise ConfigError(f"model.prior={name} needs settings: select it as a config group, {err}.") from None


def prepare_prior(prior: Callable, space: str, latent_dim: int, method: str) -> tuple[Callable, bool]:
    """Check ``prior`` fits a content latent in ``space`` (binding the generic uniform prior to it) and
    return (the prior, whether its own discrete latents are to be enumerated)."""
    declared = getattr(prior, "space", None)
    if declared == "any":
        if space not in ("sphere", "classes"):
            raise ConfigError(
                f"model.prior=uniform does not fit {method}: its content latent lives in R^{latent_dim}, which has "
                f"no uniform distribution. Priors that fit: {choices(SPACE_PRIORS[space])} or your own prior on R^d."
            )
        prior.bind(space)
        declared = space
    trace = dry_run(prior, latent_dim, space)
    if declared is None:
        declared = space_of(trace.nodes["y"]["fn"])
    if declared not in ACCEPTS[space]:
        where = SPACE_WORDS[space].format(d=latent_dim, last=latent_dim - 1)
        raise ConfigError(
            f"model.prior does not fit {method}: its content latent y lives in {where}, but the prior is over "
            f"{_space_name(declared)}. Priors that fit: {choices(SPACE_PRIORS[space])}"
            + (" or your own prior over the classes" if space == "classes" else " or your own prior on R^d")
            + "."
        )
    return prior, bool(own_discrete_latents(prior, trace, latent_dim))


CONTRACT = (
    "A prior is a Pyro callable prior(batch_size, latent_dim) that samples the site 'y' once per image inside "
    "the method's images plate — with one event dimension for a continuous y, e.g. pyro.sample('y', "
    "dist.Laplace(0.0, 1.0).expand([latent_dim]).to_event(1)), or a class index for a prior over the K "
    "prototypes, e.g. pyro.sample('y', dist.Categorical(logits=...)) — opens no plate of its own, and returns "
    "the sample."
)


def dry_run(prior: Callable, latent_dim: int, space: str = "euclidean") -> poutine.Trace:
    """Trace the prior on two images (its own latents drawn, the RNG and the param store untouched) and
    check it keeps :data:`CONTRACT`: every way it can break it is one paragraph saying which."""
    returned: dict[str, Any] = {}

    def program() -> None:
        run_prior_globals(prior)
        with pyro.plate("images", 2):
            returned["y"] = prior(2, latent_dim)

    name = _prior_name(prior)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), _ImproperAtZero():
            trace = poutine.trace(poutine.block(program, hide_types=["param"])).get_trace()
    except ConfigError:
        raise
    except Exception as err:  # the user's code: any error it raises is reported, not its traceback
        cause = err.__cause__ or err
        reason = " ".join(str(cause).split("Trace Shapes:")[0].split())[:300]
        hint = " (did it forget .to_event(1)?)" if "Shape mismatch inside plate" in reason else ""
        raise ConfigError(
            f"model.prior ({name}) failed when called as prior(2, {latent_dim}) inside the images plate: "
            f"{type(cause).__name__}: {reason}{hint}. {CONTRACT}"
        ) from None
    sampled = sorted(n for n, site in trace.nodes.items() if site["type"] == "sample" and _is_sample(site))
    if "y" not in trace.nodes:
        found = f"it samples {', '.join(repr(n) for n in sampled)}" if sampled else "it samples nothing"
        raise ConfigError(f"model.prior ({name}) samples no site 'y' ({found}). {CONTRACT}")
    site = trace.nodes["y"]
    discrete = _is_discrete(site["fn"])
    want_event = () if discrete else (latent_dim,)
    event = tuple(site["fn"].event_shape)
    if event != want_event:
        hint = " (did it forget .to_event(1)?)" if not discrete and not event else ""
        raise ConfigError(
            f"model.prior ({name}) samples 'y' with event shape {list(event)}, not {list(want_event)}{hint}: "
            f"its sample must be [batch_size{', latent_dim' if not discrete else ''}]. {CONTRACT}"
        )
    value = returned["y"]
    if value is None or not isinstance(value, torch.Tensor):
        raise ConfigError(f"model.prior ({name}) returned {value!r} instead of its sample of 'y'. {CONTRACT}")
    want_shape = (2, *want_event)
    if tuple(value.shape) != want_shape:
        raise ConfigError(
            f"model.prior ({name}) returned a tensor of shape {list(value.shape)} for two images, not "
            f"{list(want_shape)}. {CONTRACT}"
        )
    return trace


def _prior_name(prior: Callable) -> str:
    target = getattr(prior, "func", prior)
    return getattr(target, "__qualname__", None) or type(target).__name__


def _is_sample(site: dict) -> bool:
    return type(site["fn"]).__name__ != "_Subsample" and not site["is_observed"]


class _ImproperAtZero(Messenger):
    """Gives the sites of distributions that cannot be sampled (improper ones) the value 0, so an improper
    prior (the flat one) can be traced too."""

    def _pyro_sample(self, msg: dict) -> None:
        if msg["value"] is not None or msg["is_observed"]:
            return
        try:
            msg["value"] = msg["fn"].sample()
        except NotImplementedError:
            msg["value"] = torch.zeros(msg["fn"].shape())


def space_of(fn: Any) -> str:
    """ "classes" for a discrete y, "sphere" for one on the unit sphere, else "euclidean"."""
    support = fn.support
    if support.is_discrete:
        return "classes"
    base = getattr(support, "base_constraint", support)
    return "sphere" if base is constraints.sphere or support is constraints.sphere else "euclidean"


def own_discrete_latents(prior: Callable, trace: poutine.Trace, latent_dim: int) -> list[str]:
    """The prior's discrete latent sites other than "y" that its own guide (if any) does not propose."""
    discrete = [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name != "y" and not site["is_observed"] and _is_discrete(site["fn"])
    ]
    if not discrete:
        return []
    guided = set()
    if hasattr(prior, "guide") or hasattr(prior, "global_guide"):

        def guide() -> None:
            run_prior_global_guide(prior)
            with pyro.plate("images", 2):
                run_prior_guide(prior, 2, latent_dim)

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            guided = set(poutine.trace(poutine.block(guide, hide_types=["param"])).get_trace().stochastic_nodes)
    return [name for name in discrete if name not in guided]


def _is_discrete(fn: Any) -> bool:
    support = getattr(fn, "support", None)  # plates' subsample sites have none
    return bool(support is not None and support.is_discrete)


def _space_name(space: str) -> str:
    return {"euclidean": "R^d", "sphere": "the unit sphere", "classes": "discrete classes"}[space]
